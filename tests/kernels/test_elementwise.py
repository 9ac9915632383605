"""elementwise: bit-exact against one float32 op per element (no rounding freedom)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.strategies import arrays, sizes
from tests.oracles._fp import NP_DTYPE
from tests.oracles.elementwise import elementwise


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("op", ["scale", "add", "mul", "addrow"])
@given(data=st.data())
def test_elementwise(kctx, op, dtype, data):
    n = data.draw(sizes(1, 5000))
    npd = NP_DTYPE[dtype]
    a = data.draw(arrays((n,), npd))
    if data.draw(st.booleans()):
        a[data.draw(st.integers(0, n - 1))] = np.nan
    if op == "scale":
        s = data.draw(st.floats(-100, 100, width=32))
        args, ref = {"x": a, "s": s}, elementwise(op, a, s, npd)
    elif op == "addrow":  # n = rows * ncols, b one row
        ncols = data.draw(st.sampled_from([d for d in range(1, min(n, 700) + 1) if n % d == 0]))
        b = data.draw(arrays((ncols,), npd))
        args, ref = {"a": a, "b": b, "ncols": ncols}, elementwise(op, a, b, npd)
    else:
        b = data.draw(arrays((n,), npd))
        args, ref = {"a": a, "b": b}, elementwise(op, a, b, npd)
    args.update(y=np.zeros(n, npd), n=n)
    got = run_kernel(kctx, "elementwise", {"op": op, "dtype": dtype, "block": 256}, args, ["y"], n=n)["y"]
    np.testing.assert_array_equal(got, ref)
