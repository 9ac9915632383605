"""Oracle for x_f16 (forge/codegen/specs/x_f16.py): X rounded to f16 with one power-of-two scale per
row, e_r from the row's largest finite |x| (Inf and NaN not counted), exactly as common/x_f16.h."""

from __future__ import annotations

import numpy as np


def scale_exp(amax: np.ndarray) -> np.ndarray:
    """e for f32 maxima: biased exponent - 141 where it is at least 142 (|max| >= 2^15), else 0."""
    ex = (np.asarray(amax, np.float32).view(np.uint32) >> 23).astype(np.int64)
    return np.where(ex >= 142, ex - 141, 0).astype(np.int32)


def row_max(x: np.ndarray) -> np.ndarray:
    a = np.abs(x.astype(np.float32))
    return np.where(np.isfinite(a), a, np.float32(0)).max(axis=-1, initial=np.float32(0))


def x_f16(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xh f16 [m, n], xe i32 [m]) for x f32 [m, n]: x 2^-e_r in f32 (exact: a power of two, unless
    it falls into f32's subnormals, where IEEE rounding applies as on the device), then rounded to f16
    to nearest even (numpy's float32 -> float16 conversion rounds once, correctly)."""
    x = np.asarray(x, np.float32)
    e = scale_exp(row_max(x))
    down = np.ldexp(np.float32(1), -e).astype(np.float32)[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        return (x * down).astype(np.float16), e
