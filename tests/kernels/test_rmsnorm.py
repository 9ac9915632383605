"""rmsnorm vs float64. Tolerance: each thread sums ncols/block squares, then a tree of log2(block)
levels adds the partials, so the relative error of the sum of squares is at most
(ncols/block + log2(block)) u; rsqrt and the two products add a few u more. f16 output adds its
rounding."""

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays, sizes
from tests.oracles._fp import NP_DTYPE, U16, U32
from tests.oracles.quantize_q8 import assert_blocks_of
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


def check_rmsnorm_q8(kctx, data):
    """quant q8: the 8-bit blocks equal the quantize_q8 oracle applied to the plain kernel's y on
    the same device, bit for bit (the same f32 y, and quantization is exact given y)."""
    rows, ncols = data.draw(st.integers(1, 3)), 32 * data.draw(st.one_of(st.sampled_from([1, 9]), st.integers(1, 80)))
    x = data.draw(arrays((rows, ncols), np.float32))
    if data.draw(st.booleans()):
        x[0, data.draw(st.integers(0, ncols - 1))] = data.draw(st.sampled_from([np.nan, np.inf]))
    w = data.draw(arrays((ncols,), np.float32, scale=1.0))
    args = {"x": x, "w": w, "ncols": ncols, "eps": 1e-5}
    y = run_kernel(kctx, "rmsnorm", {"dtype": "f32", "block": BLOCK}, {**args, "y": np.zeros_like(x)}, ["y"],
                   rows=rows)["y"]
    got = run_kernel(kctx, "rmsnorm", {"dtype": "f32", "block": BLOCK, "quant": "q8"},
                     {**args, "xq": np.full(x.shape, 99, np.int8),
                      "xd": np.full((rows, ncols // 32, 2), 7.0, np.float32)}, ["xq", "xd"], rows=rows)
    assert_blocks_of(got["xq"], got["xd"], y)


@given(data=st.data())
def test_rmsnorm_q8(gpu_kctx, data):
    check_rmsnorm_q8(gpu_kctx, data)


@pytest.mark.parametrize("mutation", [
    ("xd + ((u64)bid_x() * nb + b) * 2", "xd + (u64)b * 2"),  # every row's scales written to row 0's
    ("for (u32 b0 = 0; b0 < nb; b0 += ", "for (u32 b0 = 0; b0 + 8u < nb; b0 += "),  # the last round skipped
], ids=["row_scales", "last_round"])
def test_rmsnorm_q8_catches_mutant(emu_kctx, mutation, tmp_path, monkeypatch):
    assert_property_catches(emu_kctx, "rmsnorm", {"dtype": "f32", "block": BLOCK, "quant": "q8"}, mutation,
                            check_rmsnorm_q8, tmp_path, monkeypatch, max_examples=30)
