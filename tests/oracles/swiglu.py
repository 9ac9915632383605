"""Oracle for SwiGLU: y = g / (1 + exp(-g)) * u in float64."""

import numpy as np


def swiglu(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    g64, u64 = g.astype(np.float64), u.astype(np.float64)
    with np.errstate(over="ignore"):
        return g64 / (1.0 + np.exp(-g64)) * u64
