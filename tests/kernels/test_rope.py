"""rope vs float64 rotation by angles the oracle computes from the base itself (base^(-2i/n_rot)),
not from the kernel's `freq_log2` argument, which the test computes with
forge.codegen.specs.rope.freq_log2 as every caller does: a wrong formula there is caught.

Tolerance: the kernel's float32 angle is within angle_error (tests/oracles/rope.py: the rounding
of freq_log2 and of i*freq_log2 moved through exp2, exp2's own 2 ulp, one product), f_sincos is
accurate to a few 1e-7 absolute, so each output may differ by (|x0| + |x1|) * (angle error + 1e-6),
plus f16 output rounding."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.codegen.specs import rope as rope_spec
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import property_fails
from tests.kernels.strategies import arrays
from tests.oracles._fp import NP_DTYPE, U16
from tests.oracles.rope import angle_error, pairs, rope_base


def rotation_bound(x, theta, n_rot, base, mode) -> np.ndarray:
    """Per-element bound from the angle error and sincos accuracy (zero past n_rot)."""
    i0, i1 = pairs(mode, n_rot)
    ax = np.abs(x.astype(np.float64))
    bound = np.zeros_like(ax)
    per = (ax[:, :, i0] + ax[:, :, i1]) * (angle_error(theta, n_rot, base)[:, None, :] + 1e-6)
    bound[:, :, i0], bound[:, :, i1] = per, per
    return bound


def check_rope(kctx, mode, dtype, data):
    """The property: one drawn case agrees with the oracle (the mutant tests use it too)."""
    tokens, heads = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    head_dim = data.draw(st.sampled_from([2, 8, 64, 80, 128]))
    n_rot = data.draw(st.sampled_from(sorted({2, head_dim // 2 - head_dim // 2 % 2 or 2, head_dim})))
    base = data.draw(st.sampled_from([10000.0, 1e5, 5e5]))
    fscale = data.draw(st.sampled_from([1.0, 0.25]))
    pos = np.array(data.draw(st.lists(st.integers(0, 40000), min_size=tokens, max_size=tokens)), np.int32)
    x = data.draw(arrays((tokens, heads, head_dim), NP_DTYPE[dtype], scale=1.0))
    out = run_kernel(kctx, "rope", {"mode": mode, "dtype": dtype, "block": 128},
                     {"x": x, "pos": pos, "n_heads": heads, "head_dim": head_dim, "n_rot": n_rot,
                      "freq_log2": rope_spec.freq_log2(base, n_rot), "freq_scale": fscale}, ["x"],
                     n_tokens=tokens, n_heads=heads, n_rot=n_rot)["x"].astype(np.float64)
    ref, theta = rope_base(x, pos, n_rot, base, fscale, mode)
    bound = rotation_bound(x, theta, n_rot, base, mode) + np.abs(ref) * (U16 if dtype == "f16" else 0) + 1e-30
    err = np.abs(out - ref)
    assert np.all(err <= bound), float(np.max(err - bound))
    i0, i1 = pairs(mode, n_rot)
    untouched = np.setdiff1d(np.arange(head_dim), np.concatenate([i0, i1]))
    np.testing.assert_array_equal(out[:, :, untouched], x.astype(np.float64)[:, :, untouched])


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("mode", ["normal", "neox"])
@given(data=st.data())
def test_rope(kctx, mode, dtype, data):
    check_rope(kctx, mode, dtype, data)


def test_property_test_catches_wrong_freq_log2(emu_kctx, monkeypatch):
    """The mutation audit's survivor: freq_log2 with exponent -1 instead of -2 (pair i turning by
    base^(-i/n_rot)) passed while the oracle took the kernel's own freq_log2. Now it must fail."""
    import math
    monkeypatch.setattr(rope_spec, "freq_log2", lambda base, n_rot: -1.0 * math.log2(base) / n_rot)
    assert property_fails(emu_kctx, lambda ctx, data: check_rope(ctx, "neox", "f32", data), max_examples=30)
