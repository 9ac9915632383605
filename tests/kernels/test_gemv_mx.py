"""gemv_mx (forge/templates/gemv_mx.hip.j2): Y = X W^T for m = 1..16 tokens on gfx950's scaled MFMA with
the MX weights given to the unit natively (FP4 / FP6 / FP8 codes, E8M0 scales as they are), run on
emu-gfx950 against numpy, for both activation formats (acts = mxfp8 | mxfp6).

Oracles and bounds: those of tests/kernels/test_gemm_mx_acts.py (its module docstring derives them):
on the activations quantized by forge.quant.mx (every product of a weight element and an activation
element is exact on the unit: at most 4 x 4 significant bits, E5M2's 3 x E4M3's 4; only the n
additions may round, by u_a = 2^-21 each), and on the float activations with the per-value MX
rounding added. n counts K padded to the step of 128 plus one addition per step.

Shapes: m biased to 1 (decode) and 16 (the most), rows around the block's 64 and a wave's 16, columns
of one to several steps of 128 with partial last steps (whole blocks of 32)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from forge.arch import get_arch
from forge.codegen.spec import get_spec
from forge.codegen.specs.gemm import ACTS
from forge.codegen.specs.gemv_mx import BK, MX_FORMATS, ROWS, TOKENS
from forge.errors import SpecError
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.kernels.test_dequant import n_cols
from tests.kernels.test_gemm import emulator_target
from tests.kernels.test_gemm_mx_acts import check_case
from tests.oracles.dequant import random_weights


@pytest.fixture(scope="module")
def ms_ctx(request):
    return emulator_target(request, "emu-gfx950")


def check_gemv_mx(kctx, wtype, acts, data):
    """One drawn case against both oracles (the mutant tests use it too)."""
    m = data.draw(st.one_of(st.sampled_from([1, 1, 2, TOKENS]), st.integers(1, TOKENS)), label="m")
    rows = data.draw(st.one_of(st.sampled_from([1, 15, 17, ROWS - 1, ROWS + 1, 2 * ROWS + 16]),
                               st.integers(1, 3 * ROWS)), label="rows")
    cols = data.draw(n_cols(wtype, 2 * BK // 32 + 1), label="cols")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w = random_weights(wtype, rows, cols, rng)
    x = data.draw(arrays((m, cols), np.float32), label="x") * np.float32(data.draw(st.sampled_from([1, 1, 2**20])))
    y = run_kernel(kctx, "gemv_mx", {"wtype": wtype, "acts": acts},
                   {"w": w, "x": x, "y": np.full((m, rows), np.nan, np.float32), "m": m, "n_rows": rows,
                    "n_cols": cols}, ["y"], m=m, n_rows=rows, n_cols=cols)["y"]
    steps = -(-cols // BK)
    check_case(y, w, x, cols, wtype, acts, steps * BK + steps)


@pytest.mark.parametrize("acts", ACTS)
@pytest.mark.parametrize("wtype", list(MX_FORMATS))
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_gemv_mx(ms_ctx, wtype, acts, data):
    check_gemv_mx(ms_ctx, wtype, acts, data)


def test_gemv_mx_exists_only_with_the_scaled_mfma_and_refuses_more_than_16_tokens():
    spec = get_spec("gemv_mx")
    assert {v.symbol for v in spec.variants(get_arch("gfx950"))} >= {"gemv_mx_mxfp4_mxfp6", "gemv_mx_mxfp8_e5m2_mxfp8"}
    for arch in ("gfx1100", "gfx942", "sm_90", "emu64", "host"):
        assert spec.variants(get_arch(arch)) == []
    v = spec.variant(get_arch("gfx950"), wtype="mxfp4", acts="mxfp8")
    assert spec.launch(v.params, get_arch("gfx950"), m=16, n_rows=130, n_cols=64).grid == (3, 1, 1)
    with pytest.raises(SpecError, match="at most 16"):
        spec.launch(v.params, get_arch("gfx950"), m=17, n_rows=130, n_cols=64)


# Each mutant is tested on the variant it mutates (its site renders only there), the draws pinned to it.
MUTANTS = {
    # GGML's MXFP4 nibbles taken in byte order (element 2j low, 2j + 1 high: the unit's own order)
    # instead of regrouped: elements land on the wrong K.
    "fp4_nibble_order": ("mxfp4", "mxfp8", "return (blk[1u + kk % 16u] >> (4u * (kk / 16u))) & 15u;",
                         "return (blk[1u + kk / 2u] >> (4u * (kk % 2u))) & 15u;"),
    # Each lane's weight scale taken from block l % 4 instead of its own block l / 16.
    "w_scale_block": ("mxfp6_e2m3", "mxfp8", "DEVICE u32 gv_sa_blk(u32 lane) { return ((lane) / 16u); }",
                      "DEVICE u32 gv_sa_blk(u32 lane) { return ((lane) % 4u); }"),
    # FP8 weights read as if one block per lane group (the sub-byte order) while X keeps the 8-bit one.
    "w8_k_order": ("mxfp8_e4m3", "mxfp8",
                   "DEVICE u32 gv_a_k(u32 lane, u32 i) { return (((64u * ((i) / 16u)) + (16u * ((lane) / 16u))) + ((i) % 16u)); }",
                   "DEVICE u32 gv_a_k(u32 lane, u32 i) { return ((32u * ((lane) / 16u)) + (i)); }"),
    # The token guard on X dropped: rows of X past m are read (checking mode's guard pages end every
    # buffer) and multiplied into columns nobody writes back.
    "x_token_guard": ("mxfp4", "mxfp6", "const bool in = tok < (u32)m && c0 < ncols;", "const bool in = c0 < ncols;"),
    # The barrier after the instructions removed: wave 0 refills xq for the next step while other
    # waves still read this step's.
    "barrier_after_mfma": ("mxfp4", "mxfp8", "MX_ACT_FORMAT, 0, sa, 0, sb);\n    sync_threads();",
                           "MX_ACT_FORMAT, 0, sa, 0, sb);\n"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_gemv_mx_property_catches_mutant(ms_ctx, mutant, tmp_path, monkeypatch):
    wtype, acts, old, new = MUTANTS[mutant]
    assert_property_catches(ms_ctx, "gemv_mx", {"wtype": wtype, "acts": acts}, (old, new),
                            lambda ctx, data: check_gemv_mx(ctx, wtype, acts, data), tmp_path, monkeypatch,
                            max_examples=30)
