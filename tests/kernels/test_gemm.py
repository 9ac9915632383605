"""gemm (Y = X W^T for many tokens, dequantization fused into the tile loads) vs the float64 product
of the oracle's decoded weights and X. Each output is one thread's fma chain over the n_cols
columns, so the gemv bound applies (tests/oracles/gemv.py):
    |Y_kernel - Y| <= gamma_n * sum_k |X_k W_k| + n * 2^-126,  gamma_n = n u / (1 - n u), u = 2^-24.
Shapes: token and row counts around the 32 x 32 tile (1, 31, 33, 65 and arbitrary), and column
counts of one to several K steps (float types with a partial last step)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.codegen.specs.gemm import BM, BN, k_step
from forge.codegen.wtypes import WTYPE_NAMES, get_wtype
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.kernels.test_dequant import n_cols
from tests.oracles.dequant import random_weights
from tests.oracles.gemm import gemm
from tests.oracles.gemv import check


def tile_counts(tile: int):
    return st.one_of(st.sampled_from([1, tile - 1, tile + 1, 2 * tile + 1]), st.integers(1, 2 * tile + 1))


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_gemm(kctx, wtype, data):
    check_gemm(kctx, wtype, data)


def check_gemm(kctx, wtype, data):
    """The property: one drawn case agrees with the oracle (the mutant test uses it too)."""
    wt = get_wtype(wtype)
    m, rows = data.draw(tile_counts(BM), label="m"), data.draw(tile_counts(BN), label="rows")
    cols = data.draw(n_cols(wtype, max(2, 3 * k_step(wt.span) // wt.unit_qk)), label="cols")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w = random_weights(wtype, rows, cols, rng)
    x = data.draw(arrays((m, cols), np.float32), label="x")
    y = run_kernel(kctx, "gemm", {"wtype": wtype},
                   {"w": w, "x": x, "y": np.full((m, rows), np.nan, np.float32), "m": m, "n_rows": rows,
                    "n_cols": cols},
                   ["y"], m=m, n_rows=rows, n_cols=cols)["y"]
    ref, tol = gemm(wtype, w, cols, x)
    check(y, ref, tol)


# The X tile's row guard dropped: rows past m are read (never written back, so only checking mode,
# whose guard pages end every buffer, sees the out-of-bounds read). The mutant test runs on a
# checked device whatever FORGE_EMU_CHECK says; the suite runs checked (tests/conftest.py).
X_ROW_GUARD = ("(m0 + r < (u32)m && k0 + c < ncols) ? x[", "(k0 + c < ncols) ? x[")


def test_property_test_catches_x_row_overread(emu_kctx, tmp_path, monkeypatch):
    from forge.runtime.emu import EmuDevice
    checked = EmuDevice(emu_kctx.arch.wave_size, check=True)
    assert_property_catches(emu_kctx, "gemm", {"wtype": "f32"}, X_ROW_GUARD,
                            lambda ctx, data: check_gemm(ctx, "f32", data), tmp_path, monkeypatch,
                            max_examples=30, device=checked)
