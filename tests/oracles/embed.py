"""Oracle for the token-embedding gather: decoded rows (forge.quant, bit-exact) picked by id; an id
outside [0, n_rows) gives a row of NaN (the kernel's documented behaviour)."""

from __future__ import annotations

import numpy as np

from tests.oracles.dequant import decode


def embed(wtype: str, raw: np.ndarray, n_cols: int, ids: np.ndarray) -> np.ndarray:
    """float32 (len(ids), n_cols): row ids[t] of the decoded matrix, NaN rows for bad ids."""
    table = decode(wtype, raw, n_cols)
    ok = (ids >= 0) & (ids < raw.shape[0])
    out = np.full((len(ids), n_cols), np.nan, np.float32)
    out[ok] = table[ids[ok]]
    return out
