"""Oracle for quantize_q8: the exact bytes the kernel must write, computed with numpy's float32
arithmetic step by step as forge/codegen/specs/quantize_q8.py specifies: per 32 columns
amax = max|x| (NaN when the block holds a NaN), d = amax / 127 (float32 division), q = the
nearest integer to x / d (float32 division, correctly rounded) with ties away from zero (done in
float64, where |x/d| + 1/2 is exact), q = 0 when d is 0 or not finite, s = d * sum(q) (float32)."""

from __future__ import annotations

import numpy as np


def quantize_q8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xq int8 [T][n], xd float32 [T][n / 32][2]) for x float32 [T][n], n a multiple of 32."""
    x = np.ascontiguousarray(x, np.float32)
    t, n = x.shape
    blocks = x.reshape(t, n // 32, 32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        amax = np.abs(blocks).max(axis=-1)  # NaN propagates through max
        d = (amax / np.float32(127)).astype(np.float32)
        ok = np.isfinite(d) & (d > 0)
        v = (blocks / np.where(ok, d, np.float32(1))[..., None]).astype(np.float32).astype(np.float64)
        q = np.where(ok[..., None], np.sign(v) * np.floor(np.abs(v) + 0.5), 0).astype(np.int8)
        s = (d * q.astype(np.int32).sum(axis=-1).astype(np.float32)).astype(np.float32)
    return q.reshape(t, n), np.stack([d, s], axis=-1).astype(np.float32)


def dequantized(xq: np.ndarray, xd: np.ndarray) -> np.ndarray:
    """float64 [T][n]: xq * d per block, exact (an int8 times a float32 is exact in float64)."""
    t, n = xq.shape
    d = np.repeat(xd[..., 0].astype(np.float64), 32, axis=-1).reshape(t, n)
    return xq.astype(np.float64) * d


def assert_blocks_of(xq: np.ndarray, xd: np.ndarray, y: np.ndarray) -> None:
    """A kernel's 8-bit blocks (xq, xd) are exactly quantize_q8(y): for the kernels that quantize
    their own f32 output (rmsnorm, attn_combine with quant q8), y being the plain variant's output."""
    want_q, want_d = quantize_q8(y)
    assert np.array_equal(xq.reshape(want_q.shape), want_q)
    assert np.array_equal(xd.reshape(want_d.shape), want_d, equal_nan=True)
