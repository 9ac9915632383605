"""matmul_q8 (integer dot products of decoded weights and 8-bit activations) vs the float64
product of gguf's decoded weights and the dequantized activations xq * d_x, within the bound
derived in tests/oracles/matmul_q8.py (only the kernel's float scale products and sums round).
Activations come from the quantize_q8 oracle, so xd[1] = d * sum(q) is what the kernel will see.
Shapes: row counts around the 16-row chunks and the 4- and 2-row tiles (1, 3, 17, 33, ...),
token counts around the 4-token tiles and the 32-token chunks (1..5, 9, 33), rows of one block to
several, every integer-capable weight type."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.codegen.spec import get_spec
from forge.codegen.specs.matmul_q8 import INT_WTYPES, TB, TEAMS, TOKENS, team_for
from forge.codegen.wtypes import get_wtype
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.oracles.dequant import random_weights
from tests.oracles.gemv import check
from tests.oracles.matmul_q8 import matmul_q8
from tests.oracles.quantize_q8 import quantize_q8


@pytest.fixture
def host_kctx(kctx):
    if kctx.arch.vendor != "host":
        pytest.skip(f"host-template mutants; {kctx.arch.name} runs the GPU template")
    return kctx


def check_matmul(kctx, wtype, data, teams=TEAMS):
    """The property: one drawn case agrees with the oracle (the mutant tests use it too, with
    `teams` only the mutated variant's team: the other teams' variants are not mutated)."""
    wt = get_wtype(wtype)
    rows = data.draw(st.one_of(st.sampled_from([1, 3, 5, 17, 33]), st.integers(1, 40)), label="rows")
    cols = wt.qk * data.draw(st.one_of(st.sampled_from([1, 2]), st.integers(1, max(2, 512 // wt.qk))), label="blocks")
    toks = data.draw(st.one_of(st.sampled_from([1, TB - 1, TB + 1, 2 * TB + 1, TOKENS + 1]), st.integers(1, 9)),
                     label="tokens")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w = random_weights(wtype, rows, cols, rng)
    xq, xd = quantize_q8(data.draw(arrays((toks, cols), np.float32), label="x"))
    params = {"wtype": wtype}
    if kctx.arch.is_gpu_semantics:  # row teams of every size (each a compile-time stride)
        params["team"] = data.draw(st.sampled_from(teams), label="team")
    y = run_kernel(kctx, "matmul_q8", params,
                   {"w": w, "xq": xq, "xd": xd, "y": np.full((toks, rows), np.nan, np.float32),
                    "n_rows": rows, "n_cols": cols, "n_tokens": toks},
                   ["y"], n_rows=rows, n_cols=cols, n_tokens=toks)["y"]
    ref, tol = matmul_q8(wtype, w, cols, xq, xd)
    check(y, ref, tol)


@pytest.mark.parametrize("wtype", INT_WTYPES)
@given(data=st.data())
def test_matmul_q8(kctx, wtype, data):
    check_matmul(kctx, wtype, data)


MUTANTS = {
    # the min terms (m * s_x) of q4_1 are dropped
    ("q4_1", "min_dropped"): ("if (MQ_MIN) macc[r][t] += f;", "if (MQ_MIN) macc[r][t] += f * (vf4){1, 0, 1, 0};"),
    # the rows left over after the last 2-row tile (prefill) are skipped
    ("q4_1", "tail_rows_skipped"): ("for (; r < r1; ++r) mq_tile", "for (; r + 1 < r1; ++r) mq_tile"),
    # an odd number of blocks: the lone last block is dropped
    ("q4_0", "lone_block_dropped"): ("if (b < nb) mq_step", "if (b < 0u) mq_step"),
    # q4_k: sub-blocks 4-7 read their scale from the wrong packing
    ("q4_k", "kq_scale_packing"): ("(u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4)",
                                   "(u[2] & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4)"),
    # q6_k: both 16-column halves of a sub-block use the first half's scale
    ("q6_k", "one_scale_per_32"): ("p[c].ls[l] = sc[4 * c + l / 4];", "p[c].ls[l] = sc[4 * c + l / 8 * 2];"),
}


@pytest.mark.parametrize("wtype,mutant", sorted(MUTANTS), ids=[f"{w}-{m}" for w, m in sorted(MUTANTS)])
def test_property_test_catches_mutant(host_kctx, wtype, mutant, tmp_path, monkeypatch):
    assert_property_catches(host_kctx, "matmul_q8", {"wtype": wtype}, MUTANTS[(wtype, mutant)],
                            lambda ctx, data: check_matmul(ctx, wtype, data), tmp_path, monkeypatch, max_examples=30)


GPU_MUTANTS = {
    # a block's rows split among its teams rounding down: the last rows of a block are dropped
    ("q4_0", "team_rows_round_down"): ("const u32 tr = (per + teams - 1) / teams;", "const u32 tr = per / teams;"),
    # q4_0's offset of 8 is subtracted as 7
    ("q4_0", "offset_7"): ("s -= 8 * x->sum[0];", "s -= 7 * x->sum[0];"),
    # q8_0 blocks at unaligned addresses are not shifted into place
    ("q8_0", "unaligned_unshifted"): ("w[i] = (u32)((((u64)nxt << 32) | cur) >> s);", "w[i] = cur;"),
    # a team round with two live rows leaves the second at 0
    ("q8_0", "two_rows_last_skipped"): ("(live == 2u) {\n      mq_rows<2>", "(live == 2u) {\n      mq_rows<1>"),
    # q5_0: the high halves take their fifth bit from the low half's bits
    ("q5_0", "high_bit_from_low_half"): ("(((qh >> (16u + 4u * i))", "(((qh >> (4u * i))"),
    # q4_k: the second sub-block's min term is dropped
    ("q4_k", "min_dropped"): ("return f_fma(-(dmin * (float)mn[1]), x->s[1], acc);", "return acc;"),
    # q6_k: the second 16 columns use the first half's scale
    ("q6_k", "one_scale_per_32"): ("scb = (i32)(i8)blk[193u", "scb = (i32)(i8)blk[192u"),
    # mxfp4: negative codes lose their sign
    ("mxfp4", "sign_lost"): ("(c & 8u ? 0u - mag : mag)", "mag"),
}


@pytest.mark.parametrize("wtype,mutant", sorted(GPU_MUTANTS), ids=[f"{w}-{m}" for w, m in sorted(GPU_MUTANTS)])
def test_property_test_catches_gpu_mutant(emu_kctx, wtype, mutant, tmp_path, monkeypatch):
    """The GPU kernel's plausible mistakes, run on the emulator, fail the same property."""
    team = get_spec("matmul_q8").variant(emu_kctx.arch, wtype=wtype).params["team"]
    assert_property_catches(emu_kctx, "matmul_q8", {"wtype": wtype, "team": team}, GPU_MUTANTS[(wtype, mutant)],
                            lambda ctx, data: check_matmul(ctx, wtype, data, (team,)), tmp_path, monkeypatch,
                            max_examples=30)


def test_team_for_gives_each_thread_at_most_the_units_asked():
    assert [team_for("q4_0", c) for c in (576, 1024, 1536, 2048, 4096, 14336)] == [32, 32, 64, 64, 128, 128]
    assert [team_for("q4_k", c) for c in (2048, 4096, 14336)] == [32, 64, 128]
    assert [team_for("q4_0", c, 4) for c in (576, 2048, 4096, 8192, 14336)] == [32, 32, 32, 64, 128]
