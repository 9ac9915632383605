"""Oracle for elementwise scale/add/mul/addrow: one float32 operation per element, then rounding to the
storage dtype — exactly what the kernel does, so results must match bit for bit."""

import numpy as np


def elementwise(op: str, a: np.ndarray, b, out_dtype) -> np.ndarray:
    """a, b in their storage dtype (b is the f32 scale for op == "scale")."""
    a32 = a.astype(np.float32)
    if op == "scale":
        r = a32 * np.float32(b)
    elif op == "add":
        r = a32 + b.astype(np.float32)
    elif op == "addrow":  # b is one row, repeated over a (whose length is a multiple of b's)
        r = a32 + np.tile(b.astype(np.float32), a.size // b.size)
    else:
        r = a32 * b.astype(np.float32)
    return r.astype(out_dtype)
