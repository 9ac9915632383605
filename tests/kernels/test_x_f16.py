"""x_f16 (X rounded to f16 once per batch, a power-of-two scale per row) vs its oracle
(tests/oracles/x_f16.py), bit for bit: every f16 value and every row's exponent. Rows of odd and
16-byte-friendly lengths (the kernel's vector and scalar paths), values of every magnitude: typical
activations, rows reaching 2^15 and far beyond (up to f32's largest, e_r = 113), tiny values that
land in f16's subnormals or flush to zero, rows of zeros (e_r = 0), and Inf / NaN sprinkled in (not
counted in the max: they stay Inf / NaN and the row's finite values are still scaled into range)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.oracles.x_f16 import x_f16

SPECIALS = (np.inf, -np.inf, np.nan)


def run(kctx, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, n = x.shape
    out = run_kernel(kctx, "x_f16", {},
                     {"x": x, "xh": np.full((m, n), 0x7E01, np.uint16), "xe": np.full(m, -7, np.int32), "n_cols": n},
                     ["xh", "xe"], rows=m, n_cols=n)
    return out["xh"], out["xe"]


@st.composite
def activations(draw):
    """x f32 [m, n]: rows scaled independently (so rows of one launch get different exponents), some
    rows all zero, some with Inf / NaN."""
    m = draw(st.integers(1, 9), label="m")
    n = draw(st.one_of(st.sampled_from([1, 7, 8, 9, 2040, 2048, 2056]), st.integers(1, 600)), label="n")
    x = draw(arrays((m, n), np.float32)).astype(np.float64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    scales = draw(st.lists(st.sampled_from([1.0, 1.0, 2.0 ** 15, 2.0 ** 20, 1e30, 2.0 ** -20, 1e-30, 0.0]),
                           min_size=m, max_size=m), label="row scales")
    x *= np.array(scales)[:, None]
    if draw(st.booleans(), label="f32 max"):  # a row reaching f32's largest value: e_r = 113
        x[rng.integers(0, m), rng.integers(0, n)] = np.finfo(np.float32).max
    if draw(st.booleans(), label="specials"):
        idx = rng.integers(0, x.size, size=max(1, x.size // 40))
        x.flat[idx] = rng.choice(SPECIALS, size=idx.size)
    return x.astype(np.float32)


def check(kctx, x):
    xh, xe = run(kctx, x)
    want_h, want_e = x_f16(x)
    np.testing.assert_array_equal(xe, want_e)
    want = want_h.view(np.uint16)
    nan = np.isnan(want_h)
    assert np.array_equal(np.isnan(xh.view(np.float16)), nan), "NaN where the oracle has none, or lost"
    bad = (xh != want) & ~nan
    assert not bad.any(), f"{bad.sum()} f16 values differ, first at {np.argwhere(bad)[0]}: " \
                          f"{xh[bad][0]:#06x} against {want[bad][0]:#06x}"


@given(x=activations())
def test_x_f16(kctx, x):
    check(kctx, x)


def test_rows_reaching_the_threshold(kctx):
    """Maxima just below and at 2^15 (e 0 and 1), f16's largest value, and 2^15 - ulp rounding up to
    an f16 of 32768: the boundaries of the rule, against the oracle and by hand."""
    rows = np.array([[32767.998, 1.0, -2.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [32768.0, 1.0, -2.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [65504.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [-np.inf, 1e5, np.nan, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [0.0] * 8], np.float32)
    xh, xe = run(kctx, rows)
    assert xe.tolist() == [0, 1, 1, 2, 0]
    assert xh.view(np.float16)[3, 1] == np.float16(1e5 / 4)  # finite values scaled past the infinity
    check(kctx, rows)


# Mutants, each caught by the property (checked 10 of 10 runs): the threshold off by one (2^16
# instead of 2^15: rows in [2^15, 2^16) left unscaled, f16 values differ), the row stride of the
# output taken as a multiple of 8 rounded down (rows overlap or leave gaps), infinities counted in
# the max (a row with Inf gets e = 0 ... and overflows its finite values).
X_F16_MUTANTS = {
    "threshold": ("ex >= 142u ? ex - 141u : 0u", "ex >= 143u ? ex - 142u : 0u"),
    "row_stride": ("f16* hr = xh + (u64)bid_y() * nc;", "f16* hr = xh + (u64)bid_y() * (nc & ~7u);"),
    "inf_counted": ("return a < f_inf() ? a : 0.0f;", "return a == a ? a : 0.0f;"),
}


@pytest.mark.parametrize("mutant", sorted(X_F16_MUTANTS))
def test_property_catches_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    assert_property_catches(emu_kctx, "x_f16", {}, X_F16_MUTANTS[mutant],
                            lambda ctx, data: check(ctx, data.draw(activations())), tmp_path, monkeypatch,
                            max_examples=60)
