"""gemv (y = W x, one token, dequantization fused into the dot product) vs the float64 product of
the oracle's decoded weights (bit-exact by test_dequant) and x.

Tolerance (tests/oracles/gemv.py): every product w_i x_i is exact inside an f32 fma, so the only
errors are the roundings of the additions; whatever order the lanes and the wave tree add the n
terms in, each term passes through at most n of them, so
    |y_kernel - y| <= gamma_n * sum_i |w_i x_i| + n * 2^-126,   gamma_n = n u / (1 - n u), u = 2^-24
(Higham, Accuracy and Stability of Numerical Algorithms, 3.1; the last term covers underflow).

Shapes: odd row counts (a last block with idle waves), rows of one block, and rows that need
several staging windows at both wave sizes, with a partial last window; float types also end in
a partial 8-element unit."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.codegen.specs.gemv import ROWS, window
from forge.codegen.wtypes import WTYPE_NAMES, get_wtype
from tests.kernels.harness import run_kernel
from tests.kernels.strategies import arrays
from tests.kernels.test_dequant import n_cols
from tests.oracles.dequant import random_weights
from tests.oracles.gemv import check, gemv


def window_units(wtype: str) -> int:
    """Unit blocks in one staging window at wave 64 (twice wave 32's): rows up to ~2 windows."""
    return window(get_wtype(wtype).unit_bytes, 64)[0]


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_gemv(kctx, wtype, data):
    rows = data.draw(st.one_of(st.sampled_from([1, ROWS - 1, ROWS + 1, 2 * ROWS + 3]), st.integers(1, 13)),
                     label="rows")
    cols = data.draw(n_cols(wtype, 2 * window_units(wtype) + 1), label="cols")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w = random_weights(wtype, rows, cols, rng)
    x = data.draw(arrays((cols,), np.float32), label="x")
    y = run_kernel(kctx, "gemv", {"wtype": wtype},
                   {"w": w, "x": x, "y": np.full(rows, np.nan, np.float32), "n_rows": rows, "n_cols": cols},
                   ["y"], n_rows=rows, n_cols=cols)["y"]
    ref, tol = gemv(wtype, w, cols, x)
    check(y, ref, tol)
