"""Oracle for RoPE in float64 from the rope base itself: pair i turns by pos * freq_scale *
base^(-2i/n_rot), computed by rope_base() from `base` and never from the kernel's own `freq_log2`
argument (forge.codegen.specs.rope.freq_log2), so a wrong argument formula is caught, not copied.

The kernel computes the angle in float32 as (pos * freq_scale) * exp2(i * freq_log2);
`angle_error` bounds how far that may be from the exact angle."""

import math

import numpy as np

U = 2.0 ** -24  # float32 unit roundoff
EXP2_ULP = 2  # exp2f's accuracy on every backend (CUDA documents 2 ulp; glibc and AMD are tighter)


def pairs(mode: str, n_rot: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i0, i1) of the rotated pairs: NeoX (i, i + n_rot/2), normal (2i, 2i + 1)."""
    half = n_rot // 2
    if mode == "neox":
        return np.arange(half), np.arange(half) + half
    return 2 * np.arange(half), 2 * np.arange(half) + 1


def angles(pos: np.ndarray, n_rot: int, base: float, freq_scale: float) -> np.ndarray:
    """theta[token, i] = pos * freq_scale * base^(-2i/n_rot), float64."""
    i = np.arange(n_rot // 2, dtype=np.float64)
    return pos.astype(np.float64)[:, None] * freq_scale * float(base) ** (-2.0 * i / n_rot)[None, :]


def angle_error(theta: np.ndarray, n_rot: int, base: float) -> np.ndarray:
    """Bound on |theta_kernel - theta| for the kernel's float32 steps. freq_log2 = -2 log2(base)/n_rot
    is rounded to float32 and multiplied by i (two roundings: the exponent i*freq_log2 is off by
    at most 2u|i*freq_log2|, which moves exp2's result by ln2 times that, relatively); exp2f adds
    EXP2_ULP ulp (2u each); pos and freq_scale are exact in float32 (integers below 2^24, powers
    of two) and their product with exp2's result is one more rounding (u). A 1 % margin covers
    the second-order terms."""
    i = np.arange(n_rot // 2, dtype=np.float64)
    expo = np.abs(i * 2.0 * math.log2(base) / n_rot)
    rel = (math.log(2.0) * 2 * expo + 2 * EXP2_ULP + 1) * U * 1.01
    return np.abs(theta) * rel[None, :]


def rope_base(x: np.ndarray, pos: np.ndarray, n_rot: int, base: float, freq_scale: float, mode: str):
    """x: [tokens, heads, head_dim]; returns (rotated float64 array, theta [tokens, n_rot/2])."""
    theta = angles(pos, n_rot, base, freq_scale)
    return rotate(x, theta, mode), theta


def rotate(x: np.ndarray, theta: np.ndarray, mode: str) -> np.ndarray:
    """x rotated by the angles theta [tokens, n_rot/2] (float64); dims past n_rot unchanged."""
    y = x.astype(np.float64).copy()
    i0, i1 = pairs(mode, 2 * theta.shape[1])
    x0, x1 = y[:, :, i0].copy(), y[:, :, i1].copy()
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    y[:, :, i0] = x0 * c - x1 * s
    y[:, :, i1] = x0 * s + x1 * c
    return y


def rope(x, pos, n_rot: int, freq_log2: float, freq_scale: float, mode: str):
    """rope_base() for a caller that holds only the kernel's freq_log2 argument. It trusts that
    argument, so kernel tests use rope_base() with the base."""
    return rope_base(x, pos, n_rot, 2.0 ** (-freq_log2 * n_rot / 2), freq_scale, mode)
