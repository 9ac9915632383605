"""Oracle for matmul_q8: y[t] = W xh[t] in float64, where W is decoded by gguf.quants (forge.quant)
and xh = xq * d_x is the dequantized activation (tests/oracles/quantize_q8.py), so the oracle and
the kernel multiply the same numbers and only the kernel's float steps are left to bound.

Error bound. The kernel splits each output into terms: per 32-column sub-block b, the integer dot
product of the decoded weights and xq is formed in integer lanes of 4 columns each (exact), each
lane is converted to float (exact: |lane| < 2^24) and multiplied by sd_b * d_x (two roundings: the
factor product, then the product with the lane; sd_b = d, d * sc_j or the MX scale is exact), and
the types with a min (q4_1, q5_1, q4_k, q5_k) add m_b * s_x, s_x = fl(d_x * sum xq) (two
roundings plus s_x's own). All these N = n/4 + n/32 terms, each off by at most (1 + u)^3 - 1, are
summed in some order with at most N - 1 further roundings each, so
    |y_kernel - y_exact| <= gamma_{N+3} * sum |terms| + N * 2^-126   (gamma_k = k u / (1 - k u))
with sum |terms| <= sum_c (|q-part of W_c| + |min part of W_c|) |xh_c| =: mag. The oracle's own W
is gguf's float32 decode, which rounds d * q + m (and d*sc*q - dmin*m) once: one more u of the
same magnitude, hence gamma_{N+4} against the oracle. The min part of W is found by decoding the
same blocks with every quant bit zeroed (then w = m, or -dmin * m_j); the q part is the rest.
Underflow adds the 2^-126 term (scales here are normal)."""

from __future__ import annotations

import numpy as np

from tests.oracles.dequant import decode
from tests.oracles.quantize_q8 import dequantized

U = 2.0 ** -24
TINY = 2.0 ** -126
# Byte ranges of the quant bits (values q) in one block of the types whose weights have a min term.
QUANT_BYTES = {"q4_1": (4, 20), "q5_1": (4, 24), "q4_k": (16, 144), "q5_k": (16, 176)}
BLOCK_BYTES = {"q4_1": 20, "q5_1": 24, "q4_k": 144, "q5_k": 176}


def min_part(wtype: str, raw: np.ndarray, n_cols: int) -> np.ndarray:
    """float64 [n_rows][n_cols]: the min term of every weight (0 for types without one)."""
    if wtype not in QUANT_BYTES:
        return np.zeros((raw.shape[0], n_cols))
    lo, hi = QUANT_BYTES[wtype]
    blocks = raw.reshape(raw.shape[0], -1, BLOCK_BYTES[wtype]).copy()
    blocks[..., lo:hi] = 0
    return decode(wtype, blocks.reshape(raw.shape), n_cols).astype(np.float64)


def matmul_q8(wtype: str, raw: np.ndarray, n_cols: int, xq: np.ndarray, xd: np.ndarray):
    """(y float64 [T][n_rows], bound [T][n_rows]) for raw rows of `wtype` and quantized tokens."""
    w = decode(wtype, raw, n_cols).astype(np.float64)
    w0 = min_part(wtype, raw, n_cols)
    xh = dequantized(xq, xd)
    with np.errstate(invalid="ignore", over="ignore"):
        y = xh @ w.T
        mag = np.abs(xh) @ (np.abs(w - w0) + np.abs(w0)).T
    n = n_cols // 4 + n_cols // 32 + 4
    return y, n * U / (1 - n * U) * mag + n * TINY
