"""Hypothesis strategies shared by kernel tests: odd sizes, tails, extremes — never only zeros."""

import numpy as np
from hypothesis import strategies as st


def sizes(lo: int = 1, hi: int = 3000):
    """Sizes biased toward block tails: 1, wave/block edges +-1, and arbitrary values."""
    edges = [n for n in (1, 2, 31, 32, 33, 63, 64, 65, 255, 256, 257, 511, 513) if lo <= n <= hi]
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi)) if edges else st.integers(lo, hi)


@st.composite
def arrays(draw, shape, dtype=np.float32, scale=None, finite=True):
    """A random array of `shape`: values of a drawn magnitude (1e-3 .. 1e3), with a few extreme
    elements; not all zero."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mag = scale if scale is not None else draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3]))
    x = rng.standard_normal(shape) * mag
    if x.size and draw(st.booleans()):  # plant a few extremes
        idx = rng.integers(0, x.size, size=max(1, x.size // 50))
        x.flat[idx] = rng.choice([-1, 1], size=idx.size) * mag * 8
    if x.size and not np.any(x):
        x.flat[0] = mag
    return x.astype(dtype)
