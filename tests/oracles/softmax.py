"""Oracle for (causal) softmax of scale*x in float64, with the kernel's mask convention: row r is
query q = r % rows_per_seq and sees columns c <= q + kv_offset; fully masked rows are zeros."""

import numpy as np


def visible(rows: int, ncols: int, rows_per_seq: int, kv_offset: int, causal: bool) -> np.ndarray:
    if not causal:
        return np.ones((rows, ncols), bool)
    q = (np.arange(rows) % rows_per_seq)[:, None]
    return np.arange(ncols)[None, :] <= q + kv_offset


def softmax(x: np.ndarray, scale: float, causal: bool, rows_per_seq: int = 1, kv_offset: int = 0) -> np.ndarray:
    rows, ncols = x.shape
    vis = visible(rows, ncols, rows_per_seq, kv_offset, causal)
    z = np.where(vis, np.float64(np.float32(scale)) * x.astype(np.float64), -np.inf)
    m = np.max(z, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.where(vis, np.exp(z - m), 0.0)
    s = e.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, e / np.where(s > 0, s, 1.0), 0.0)
