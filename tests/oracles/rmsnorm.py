"""Oracle for RMSNorm in float64: y = x / sqrt(mean(x^2) + eps) * w, row-wise."""

import numpy as np


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    ms = np.mean(x64 * x64, axis=-1, keepdims=True)
    return x64 / np.sqrt(ms + eps) * w.astype(np.float64)
