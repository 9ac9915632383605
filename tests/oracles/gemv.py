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


def fused(fuse: str, parts: list, res: np.ndarray | None = None) -> list:
    """[(ref, bound)] of a fused GEMV-shaped launch (common/rowteams.j2) from the (ref, bound) of its
    plain products W x (and W2 x, W3 x): one per output.

    add: s + res rounds once more: |fl(s + r) - (y + r)| <= tol + u (|y + r| + tol).
    glu: silu(g) u computed as g / (1 + exp(-g)) * u in f32: the formula's own rounding is at most
    5 u relative (expf within 2 ulp, then +, / and * once each; an error e in exp(-g) moves
    1 / (1 + exp(-g)) by at most e relative), bound 8u; the products' errors propagate through
    |silu'| <= 1.1; and where f32's exp(-g) overflows (g < -88) the kernel gives 0 where silu(g) is
    below 1e-36 in magnitude."""
    if fuse == "add":
        (y, tol), r = parts[0], res.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            z = y + r
            return [(z, tol + U * (np.abs(z) + tol))]
    if fuse == "glu":
        (g, tg), (u, tu) = parts
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            e = np.exp(-g)
            s = g / (1.0 + np.where(e > np.finfo(np.float32).max, np.inf, e))
            z = s * u
            tol = (np.abs(s) * tu + 1.1 * tg * (np.abs(u) + tu) + 8 * U * np.abs(z)
                   + 1e-36 * (np.abs(u) + tu) + TINY)
        return [(z, tol)]
    return parts
