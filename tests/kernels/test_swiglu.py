"""swiglu vs float64. Tolerance: exp is accurate to a few ulp on every target and the division and
product add one rounding each, so 8 float32 ulps of the result (plus the f16 output rounding for
f16) bound the error; atol covers results that underflow; results past the f16 range must come
out as inf of the right sign."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.strategies import arrays, sizes
from tests.oracles._fp import NP_DTYPE, U16, U32
from tests.oracles.swiglu import swiglu


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@given(data=st.data())
def test_swiglu(kctx, dtype, data):
    n = data.draw(sizes(1, 4000))
    npd = NP_DTYPE[dtype]
    g = data.draw(arrays((n,), npd, scale=data.draw(st.sampled_from([0.5, 4.0, 40.0]))))
    u = data.draw(arrays((n,), npd))
    out = run_kernel(kctx, "swiglu", {"dtype": dtype, "block": 256},
                     {"g": g, "u": u, "y": np.zeros(n, npd), "n": n}, ["y"], n=n)["y"]
    ref = swiglu(g, u)
    out = out.astype(np.float64)
    # Results beyond the output type's range overflow to inf (or, at the rounding boundary, stay
    # at the largest finite value).
    big = np.abs(ref) > np.finfo(npd).max
    assert np.all(np.sign(out[big]) == np.sign(ref[big])) and np.all(np.abs(out[big]) >= np.finfo(npd).max)
    rtol = 8 * U32 + (U16 if dtype == "f16" else 0)
    atol = 1e-30 if dtype == "f32" else 6e-8  # f16 subnormal spacing
    np.testing.assert_allclose(out[~big], ref[~big], rtol=rtol, atol=atol)
