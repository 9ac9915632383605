"""Oracle for RoPE in float64, with the kernel's angle formula evaluated in float32 steps so that the
only difference left is the accuracy of exp2/sincos (bounded in the test)."""

import numpy as np


def angles(pos: np.ndarray, n_rot: int, freq_log2: float, freq_scale: float) -> np.ndarray:
    """theta[token, i] = pos * freq_scale * exp2(i * freq_log2), in float32 as the kernel computes it."""
    i = np.arange(n_rot // 2, dtype=np.float32)
    inv = np.exp2((i * np.float32(freq_log2)).astype(np.float64)).astype(np.float32)
    return (pos.astype(np.float32)[:, None] * np.float32(freq_scale)) * inv[None, :]


def rope(x: np.ndarray, pos: np.ndarray, n_rot: int, freq_log2: float, freq_scale: float, mode: str):
    """x: [tokens, heads, head_dim]; returns (rotated float64 array, theta [tokens, n_rot/2])."""
    theta = angles(pos, n_rot, freq_log2, freq_scale).astype(np.float64)
    y = x.astype(np.float64).copy()
    half = n_rot // 2
    if mode == "neox":
        i0, i1 = np.arange(half), np.arange(half) + half
    else:
        i0, i1 = 2 * np.arange(half), 2 * np.arange(half) + 1
    x0, x1 = y[:, :, i0].copy(), y[:, :, i1].copy()
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    y[:, :, i0] = x0 * c - x1 * s
    y[:, :, i1] = x0 * s + x1 * c
    return y, theta
