"""softmax vs float64, with and without the causal mask. Tolerance: the max is exact; the argument
scale*x - m is rounded twice, an absolute error of (|scale*x| + |m|) u that exp turns into that
relative error; each exp is within a few ulp; the sum of ncols positive terms (per-thread partials, then a tree) has relative
error <= (ncols/block + log2(block)) u; one division. f16 adds its output rounding."""

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.strategies import arrays, sizes
from tests.oracles._fp import NP_DTYPE, U16, U32
from tests.oracles.softmax import softmax

BLOCK = 256


def run(kctx, x, dtype, causal, scale, rows_per_seq, kv_offset):
    rows, ncols = x.shape
    return run_kernel(kctx, "softmax", {"dtype": dtype, "causal": causal, "block": BLOCK},
                      {"x": x, "y": np.zeros_like(x), "ncols": ncols, "rows_per_seq": rows_per_seq,
                       "kv_offset": kv_offset, "scale": scale}, ["y"], rows=rows)["y"]


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("causal", [False, True])
@given(data=st.data())
def test_softmax(kctx, dtype, causal, data):
    rows_per_seq = data.draw(st.integers(1, 6))
    rows = rows_per_seq * data.draw(st.integers(1, 2))
    ncols = data.draw(sizes(1, 2000))
    kv_offset = data.draw(st.integers(-2, ncols))  # negative: the first rows see nothing
    npd = NP_DTYPE[dtype]
    x = data.draw(arrays((rows, ncols), npd, scale=data.draw(st.sampled_from([0.1, 3.0, 30.0]))))
    scale = data.draw(st.sampled_from([1.0, 0.125, 0.7]))
    out = run(kctx, x, dtype, causal, scale, rows_per_seq, kv_offset).astype(np.float64)
    ref = softmax(x, scale, causal, rows_per_seq, kv_offset)
    z = np.abs(np.float32(scale) * x.astype(np.float64))
    arg = 2 * (z + z.max(axis=1, keepdims=True)) * U32  # rounding of scale*x and of the subtraction
    tol = 2 * (ncols / BLOCK + math.log2(BLOCK) + 8) * U32 + (U16 if dtype == "f16" else 0) + arg
    np.testing.assert_array_less(np.abs(out - ref), tol * np.abs(ref) + tol * 1e-3 * ref.max(axis=1, keepdims=True)
                                 + (6e-8 if dtype == "f16" else 1e-38))
    assert np.all(out[ref == 0] == 0)  # masked positions are exactly zero


def test_softmax_nan_row(kctx):
    x = np.zeros((2, 100), np.float32)
    x[0, 3] = np.nan
    out = run(kctx, x, "f32", False, 1.0, 1, 0)
    assert np.all(np.isnan(out[0])) and np.allclose(out[1], 0.01)
