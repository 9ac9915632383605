"""Floating-point facts the oracles use to justify tolerances."""

import numpy as np

U32 = 2.0 ** -24  # unit roundoff of float32 (half an ulp at 1.0)
U16 = 2.0 ** -11  # unit roundoff of float16


def ulp32(x) -> np.ndarray:
    """Spacing of float32 numbers at |x|."""
    return np.spacing(np.abs(np.asarray(x, dtype=np.float32))).astype(np.float64)


def storage(x: np.ndarray, dtype: str) -> np.ndarray:
    """x rounded to the storage dtype (f32/f16) and widened back to float64, as a kernel sees it."""
    return np.asarray(x, dtype={"f32": np.float32, "f16": np.float16}[dtype]).astype(np.float64)


NP_DTYPE = {"f32": np.float32, "f16": np.float16}
