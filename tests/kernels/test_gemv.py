"""gemv (y = W x, one token, dequantization fused into the dot product) vs the float64 product of
the oracle's decoded weights (bit-exact by test_dequant) and x.

Tolerance (tests/oracles/gemv.py): every product w_i x_i is exact inside an f32 fma, so the only
errors are the roundings of the additions; whatever order the lanes and the wave tree add the n
terms in, each term passes through at most n of them, so
    |y_kernel - y| <= gamma_n * sum_i |w_i x_i| + n * 2^-126,   gamma_n = n u / (1 - n u), u = 2^-24
(Higham, Accuracy and Stability of Numerical Algorithms, 3.1; the last term covers underflow).

Shapes: odd row counts and rows per team of 1 .. RMAX and more (a team loops over its rows; a last
team with fewer live rows, or none), row lengths from one group (teams of 32 threads, several per
wave at wave 64) to groups that wrap a 256-thread team two and three times (the unrolled column
loop and its remainder) at both wave sizes; float types also end in a partial 8-element unit."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.arch import get_arch
from forge.codegen.specs.gemv import RMAX, THREADS, default_rows_per_team, row_grid
from forge.codegen.spec import get_spec
from forge.codegen.wtypes import WTYPE_NAMES, get_wtype
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.kernels.test_dequant import n_cols
from tests.oracles.dequant import random_weights
from tests.oracles.gemv import check, gemv


def wrap_units(wtype: str) -> int:
    """Unit blocks in a row whose groups wrap the block's threads ~2.5 times."""
    return -(-5 * THREADS // (2 * get_wtype(wtype).groups_per_unit))


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_gemv(kctx, wtype, data):
    check_gemv(kctx, wtype, data)


def check_gemv(kctx, wtype, data):
    """The property: one drawn case of gemv agrees with the oracle (used by the mutant test too)."""
    # Hypothesis favours the first value of a sampled_from: the first ones are the richest cases.
    # 8 * RMAX + 5 rows give teams of several rounds even at 8 teams per block (rows of few groups).
    rows = data.draw(st.one_of(st.sampled_from([8 * RMAX + 5, 2 * RMAX + 3, 1, 2, RMAX - 1, RMAX, RMAX + 1]),
                               st.integers(1, 10 * RMAX)), label="rows")
    rpt = data.draw(st.sampled_from([RMAX + 3, None, 1, 2, 3, RMAX, 3 * RMAX]), label="rows_per_team")
    cols = data.draw(n_cols(wtype, wrap_units(wtype)), label="cols")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w = random_weights(wtype, rows, cols, rng)
    x = data.draw(arrays((cols,), np.float32), label="x")
    y = run_kernel(kctx, "gemv", {"wtype": wtype},
                   {"w": w, "x": x, "y": np.full(rows, np.nan, np.float32), "n_rows": rows, "n_cols": cols},
                   ["y"], n_rows=rows, n_cols=cols, rows_per_team=rpt)["y"]
    ref, tol = gemv(wtype, w, cols, x)
    check(y, ref, tol)


def test_rows_per_block_fill_the_device():
    """The launch gives a device at least a full wave of blocks while rows allow, with RMAX rows per
    block once the rows are many; the emulator (size unknown) takes RMAX."""
    sm90 = get_arch("sm_90")
    v = get_spec("gemv").variant(sm90, wtype="q4_0")
    slots = sm90.compute_units * sm90.threads_per_cu // THREADS
    for rows in (14336, 8192, 4096, 2048, 576, 1):
        rpt = default_rows_per_team(sm90, rows, THREADS)
        grid = v.launch(sm90, n_rows=rows, n_cols=4096).grid[0]
        assert grid == row_grid(sm90, rows, THREADS) == -(-rows // rpt)
        assert grid >= slots or rpt == 1
    assert default_rows_per_team(sm90, 14336, THREADS) == RMAX
    assert default_rows_per_team(get_arch("emu"), 5, THREADS) == RMAX


MUTANTS = {
    # a block with RMAX live rows leaves its last row undecoded (its sum stays 0)
    "full_block_last_row_skipped": (f"if (live == {RMAX}u) {{\n      gemv_rows<{RMAX}>", f"if (live == {RMAX}u) {{\n      gemv_rows<{RMAX - 1}>"),
    # the last decode group of a row is never read
    "tail_group_dropped": ("for (u32 g = lt; g < ng; g += TPR)", "for (u32 g = lt; g + 1 < ng; g += TPR)"),
    # x is read at the group's column inside its unit block instead of inside the row
    "x_unit_relative": ("wq_load_x(x, wq_row_col(g), ncols, xv);", "wq_load_x(x, wq_col(g % WQ_NG), ncols, xv);"),
    # a team's last wave is left out of its sum (teams wider than a wave)
    "last_wave_dropped": ("for (u32 k = 0; k < tpr / WAVE_SIZE; ++k) s += part[w0 + k][lt];",
                          "for (u32 k = 0; k + 1 < tpr / WAVE_SIZE; ++k) s += part[w0 + k][lt];"),
    # partial sums are read before every wave has written them
    "barrier_removed": ("      sync_threads();\n      if (lt < live) {", "      if (lt < live) {"),
    # the shuffle sum stops at half the team's lanes in a wave
    "segment_sum_half": ("for (u32 o = seg / 2; o > 0; o >>= 1) s += shfl_xor(s, o);",
                         "for (u32 o = seg / 4; o > 0; o >>= 1) s += shfl_xor(s, o);"),
    # rows per block taken as RMAX whatever the grid: blocks of a larger grid skip rows
    "rows_per_block_fixed": ("const u32 per = (nrows + nblk - 1) / nblk;", "const u32 per = RMAX;"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_property_test_catches_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    """Each plausible mistake above, rendered into the real q4_0 source, makes the gemv property fail."""
    assert_property_catches(emu_kctx, "gemv", {"wtype": "q4_0"}, MUTANTS[mutant],
                            lambda ctx, data: check_gemv(ctx, "q4_0", data), tmp_path, monkeypatch, max_examples=40)
