"""Oracle for y = W x with W of any weight type: the decoded f32 weights (forge.quant) times x in
float64, and the error bound an f32 kernel must meet.

Bound: every product w*x of two f32 numbers is exact in float64 and is formed exactly inside an
f32 fma; a sum of n terms evaluated in any order (lane-strided partial sums, then a wave tree)
with at most n roundings of relative size u = 2^-24 differs from the exact sum by at most
gamma_n * sum|w*x|, gamma_n = n u / (1 - n u) (Higham, Accuracy and Stability, 3.1). Terms that
underflow add at most n smallest-normal-scale absolute errors."""

from __future__ import annotations

import numpy as np

from tests.oracles.dequant import decode

U = 2.0 ** -24
TINY = 2.0 ** -126


def gemv(wtype: str, raw: np.ndarray, n_cols: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, bound): float64 W x for raw rows of `wtype`, and the per-row error bound of an f32 kernel."""
    w = decode(wtype, raw, n_cols).astype(np.float64)
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        y = w @ x64
        mag = np.abs(w) @ np.abs(x64)
    return y, bound(n_cols, mag)


def bound(n: int, mag: np.ndarray) -> np.ndarray:
    """gamma_n * sum|w x| + n * TINY, with gamma_n = n u / (1 - n u)."""
    return n * U / (1 - n * U) * mag + n * TINY


def check(out: np.ndarray, ref: np.ndarray, tol: np.ndarray) -> None:
    """Assert out is within tol of ref where ref is finite, and equally NaN / same Inf elsewhere."""
    fin = np.isfinite(ref)
    err = np.abs(out.astype(np.float64) - ref)
    bad = fin & ~(err <= tol)
    assert not bad.any(), f"{bad.sum()} outputs off: worst err {err[bad].max()} vs tol {tol[bad].min()}"
    assert np.array_equal(np.isnan(out[~fin]), np.isnan(ref[~fin])), "NaN pattern differs"
    inf = ~fin & ~np.isnan(ref)
    assert np.array_equal(out[inf], ref[inf]), "Inf outputs differ"
