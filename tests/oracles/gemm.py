"""Oracle for Y = X W^T with W of any weight type: float64 product of the decoded f32 weights
(forge.quant) and X, with the same f32 summation bound as gemv (tests/oracles/gemv.py): each
output is an n_cols-term dot product."""

from __future__ import annotations

import numpy as np

from tests.oracles.dequant import decode
from tests.oracles.gemv import bound


def gemm(wtype: str, raw: np.ndarray, n_cols: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Y, bound) for X (m, n_cols) f32: Y (m, n_rows) float64 and its per-element error bound."""
    w = decode(wtype, raw, n_cols).astype(np.float64)
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return x64 @ w.T, bound(n_cols, np.abs(x64) @ np.abs(w).T)
