"""rope vs float64. The angle is computed in float32 by the kernel and the oracle alike; the
kernel's exp2 may differ from a correctly rounded one by ~2 ulp, which moves the angle by
~2 ulp(theta) (times the position scale), and f_sincos is accurate to a few 1e-7 absolute. So each
output may differ by (|x0| + |x1|) * (3 ulp(theta) + 1e-6), plus f16 output rounding."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.codegen.specs.rope import freq_log2
from tests.kernels.harness import run_kernel
from tests.kernels.strategies import arrays
from tests.oracles._fp import NP_DTYPE, U16, ulp32
from tests.oracles.rope import rope


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("mode", ["normal", "neox"])
@given(data=st.data())
def test_rope(kctx, mode, dtype, data):
    tokens, heads = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    head_dim = data.draw(st.sampled_from([2, 8, 64, 80, 128]))
    n_rot = data.draw(st.sampled_from(sorted({2, head_dim // 2 - head_dim // 2 % 2 or 2, head_dim})))
    base = data.draw(st.sampled_from([10000.0, 1e5, 5e5]))
    fscale = data.draw(st.sampled_from([1.0, 0.25]))
    pos = np.array(data.draw(st.lists(st.integers(0, 40000), min_size=tokens, max_size=tokens)), np.int32)
    npd = NP_DTYPE[dtype]
    x = data.draw(arrays((tokens, heads, head_dim), npd, scale=1.0))
    fl = freq_log2(base, n_rot)
    out = run_kernel(kctx, "rope", {"mode": mode, "dtype": dtype, "block": 128},
                     {"x": x, "pos": pos, "n_heads": heads, "head_dim": head_dim, "n_rot": n_rot,
                      "freq_log2": fl, "freq_scale": fscale}, ["x"],
                     n_tokens=tokens, n_heads=heads, n_rot=n_rot)["x"].astype(np.float64)
    ref, theta = rope(x, pos, n_rot, fl, fscale, mode)
    pair = np.abs(x.astype(np.float64))
    half = n_rot // 2
    i0, i1 = (np.arange(half), np.arange(half) + half) if mode == "neox" else (2 * np.arange(half), 2 * np.arange(half) + 1)
    bound = np.zeros_like(ref)
    mag = pair[:, :, i0] + pair[:, :, i1]
    per = mag * (3 * ulp32(theta)[:, None, :] + 1e-6)
    bound[:, :, i0] = per
    bound[:, :, i1] = per
    bound += np.abs(ref) * (U16 if dtype == "f16" else 0) + 1e-30
    err = np.abs(out - ref)
    assert np.all(err <= bound), float(np.max(err - bound))
    untouched = np.setdiff1d(np.arange(head_dim), np.concatenate([i0, i1]))
    np.testing.assert_array_equal(out[:, :, untouched], x.astype(np.float64)[:, :, untouched])
