"""rmsnorm vs float64. Tolerance: each thread sums ncols/block squares, then a tree of log2(block)
levels adds the partials, so the relative error of the sum of squares is at most
(ncols/block + log2(block)) u; rsqrt and the two products add a few u more. f16 output adds its
rounding."""

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.strategies import arrays, sizes
from tests.oracles._fp import NP_DTYPE, U16, U32
from tests.oracles.rmsnorm import rmsnorm

BLOCK = 256


def tolerance(ncols: int, dtype: str) -> float:
    return 2 * (ncols / BLOCK + math.log2(BLOCK) + 6) * U32 + (U16 if dtype == "f16" else 0)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@given(data=st.data())
def test_rmsnorm(kctx, dtype, data):
    check_rmsnorm(kctx, dtype, data)


def check_rmsnorm(kctx, dtype, data):
    """The property: one drawn case of rmsnorm agrees with the oracle (used by the mutant tests too)."""
    rows, ncols = data.draw(st.integers(1, 5)), data.draw(sizes(1, 3000))
    npd = NP_DTYPE[dtype]
    x = data.draw(arrays((rows, ncols), npd))
    w = data.draw(arrays((ncols,), np.float32, scale=1.0))
    eps = data.draw(st.sampled_from([1e-6, 1e-5]))
    out = run_kernel(kctx, "rmsnorm", {"dtype": dtype, "block": BLOCK},
                     {"x": x, "w": w, "y": np.zeros_like(x), "ncols": ncols, "eps": eps}, ["y"], rows=rows)["y"]
    ref = rmsnorm(x, w, np.float32(eps))
    scale = np.max(np.abs(ref), axis=1, keepdims=True) + 1e-30
    err = np.abs(out.astype(np.float64) - ref)
    assert np.all(err <= tolerance(ncols, dtype) * (np.abs(ref) + 1e-3 * scale)), np.max(err)


def test_rmsnorm_nan_propagates(kctx):
    x = np.ones((2, 300), np.float32)
    x[1, 7] = np.nan
    out = run_kernel(kctx, "rmsnorm", {"dtype": "f32", "block": BLOCK},
                     {"x": x, "w": np.ones(300, np.float32), "y": np.zeros_like(x), "ncols": 300, "eps": 1e-6},
                     ["y"], rows=2)["y"]
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))
