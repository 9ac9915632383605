"""flash_attn's matrix paths in the kept assembly: sm_90 multiplies on mma.sync m16n8k16, gfx1100 on
v_wmma_f32_16x16x16_f16 and gfx950 / gfx942 on v_mfma_f32_16x16x16_f16 (S = Q K^T and O += P V), for
the head dims that take the matrix path and every KV dtype that has one, with no local memory /
scratch (the Q fragments and O accumulators are register arrays indexed in unrolled loops: a run-time
index or an overrun register budget would put them in local memory silently). Head dim 256 stays on
scalar fma everywhere: the negative controls. The second mma.sync version (v=2) adds ldmatrix and
builds P's A fragments from S's accumulators: that correspondence and the row's lanes are derived from
the lane-layout table (specs/flash_attn.py p_from_s, row_lanes) and checked here against the PTX
ISA's fragment formulas, transcribed literally."""

import re
from dataclasses import replace

import pytest

from forge.arch import get_arch
from forge.codegen.matrix_layouts import LAYOUTS, Expr, Operand
from forge.codegen.specs.flash_attn import MMA_HEAD_DIMS, p_from_s, path, row_lanes
from forge.codegen.store import Store
from forge.errors import SpecError
from tests.codegen.test_matrix_isa import _compile, compiled_gfx950
from tests.codegen.test_resources import assert_no_local_memory

MMA_PTX = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"
CASES = [(64, "f16"), (128, "f16"), (128, "q8_0"), (96, "fp8"), (80, "f32")]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


def test_path_choice():
    assert all(path(get_arch("sm_90"), d) == "mma_sync" for d in MMA_HEAD_DIMS)
    assert all(path(get_arch("gfx1100"), d) == "wmma" for d in MMA_HEAD_DIMS)
    assert all(path(get_arch(a), d) == "mfma" for a in ("gfx942", "gfx950", "emu-gfx950") for d in MMA_HEAD_DIMS)
    assert path(get_arch("sm_90"), 256) == path(get_arch("gfx950"), 256) == path(get_arch("emu"), 128) == "scalar"
    assert path(get_arch("host"), 128) == path(get_arch("emu64"), 128) == "scalar"  # wave64 without the feature


@pytest.mark.parametrize("d, kv", CASES)
def test_sm90_flash_attn_multiplies_on_mma_sync_without_local_memory(store, d, kv):
    from forge.errors import ToolchainError
    try:
        entry, ptx = _compile(store, "flash_attn", {"head_dim": d, "kv": kv}, "sm_90")
    except ToolchainError as e:
        pytest.skip(f"no NVRTC: {e}")
    # both products: the scores' (d/16 per 8 keys) and the outputs' (d/8 per 16 keys) instructions
    assert len(re.findall(re.escape(MMA_PTX), ptx)) >= 2, "mma.sync missing from the PTX"
    assert "ld.shared.u32" in ptx, "fragments should load 32 bits at a time"
    assert_no_local_memory(entry)  # the driver's count where NVRTC gave no ptxas report


@pytest.mark.parametrize("d, kv", CASES)
def test_gfx1100_flash_attn_multiplies_on_wmma_without_scratch(store, d, kv):
    from forge.codegen.codeobject import read_code_object
    entry, asm = _compile(store, "flash_attn", {"head_dim": d, "kv": kv}, "gfx1100")
    assert "v_wmma_f32_16x16x16_f16" in asm
    res = entry.meta["resources"]
    k = read_code_object(entry.read_object(), kv).kernel(entry.meta["symbol"])
    assert res["scratch"] == 0 and not k.vgpr_spill_count, f"{entry.meta['symbol']}: {res}, spills {k.vgpr_spill_count}"


@pytest.mark.parametrize("arch_name, d, needle", [("gfx950", 256, "v_mfma"), ("gfx942", 256, "v_mfma"),
                                                  ("sm_90", 256, "mma.sync")])
def test_scalar_paths_have_no_matrix_instruction(store, arch_name, d, needle):
    from forge.errors import ToolchainError
    try:
        _, asm = _compile(store, "flash_attn", {"head_dim": d, "kv": "f16"}, arch_name)
    except ToolchainError as e:
        pytest.skip(f"no compiler for {arch_name}: {e}")
    assert needle not in asm and ("fma" in asm)


@pytest.mark.parametrize("d, kv", CASES)
def test_gfx950_flash_attn_multiplies_on_mfma_without_scratch(store, d, kv, record_property):
    """Both products on the f16 MFMA, fully unrolled (d / 16 K blocks x 2 key blocks of 16 x 2 row
    blocks for the scores, as many for P V: d / 2 instructions), no scratch, no spills (the portable
    clang, as the other gfx950 ISA tests)."""
    asm = compiled_gfx950(store, "flash_attn", {"head_dim": d, "kv": kv})
    n = len(re.findall(r"\bv_mfma_f32_16x16x16_f16\b", asm))
    assert n >= 2, "v_mfma_f32_16x16x16_f16 missing from the assembly"
    record_property("mfma", n)
    assert "v_mfma_scale" not in asm and "v_wmma" not in asm


def test_gfx942_flash_attn_multiplies_on_mfma_without_scratch(store):
    """gfx942 (CDNA3) has the same instruction and takes the same path."""
    from forge.codegen.codeobject import read_code_object
    entry, asm = _compile(store, "flash_attn", {"head_dim": 128, "kv": "f16"}, "gfx942")
    assert re.search(r"\bv_mfma_f32_16x16x16_f16\b", asm)
    res = entry.meta["resources"]
    k = read_code_object(entry.read_object(), "flash_attn").kernel(entry.meta["symbol"])
    assert res["scratch"] == 0 and not k.vgpr_spill_count, f"{entry.meta['symbol']}: {res}, spills {k.vgpr_spill_count}"


def test_p_fragment_is_the_score_accumulators():
    """PTX ISA, mma.m16n8k16 fragments (groupID g = lane >> 2, threadID_in_group t = lane % 4): C/D
    element c_i is row g + 8 (i >= 2), column 2t + (i & 1); A element a_i is row g + 8 ((i >> 1) & 1),
    column 2t + (i & 1) + 8 (i >= 4). So a_i of k block kb is c_(i % 4) of n8 tile 2 kb + (i >= 4),
    in the same lane: what p_from_s must derive from the table."""
    L = LAYOUTS["mma_m16n8k16_f16_f32"]
    for lane in range(32):
        g, t = lane >> 2, lane % 4
        for i in range(8):
            a = (g + 8 * ((i >> 1) & 1), 2 * t + (i & 1) + 8 * (i >= 4))
            tile, e = p_from_s(L)[i]
            c = (g + 8 * (e >= 2), 2 * t + (e & 1) + 8 * tile)
            assert a == c == L.a.element(lane, i)
    assert p_from_s(L) == [(i // 4, i % 4) for i in range(8)]


def test_row_lanes_are_the_quad():
    """The lanes sharing a row of D are the 4 of a group (lane ^ 1, lane ^ 2); each lane holds rows g
    (elements 0, 1) and g + 8 (elements 2, 3)."""
    masks, slots, first = row_lanes(LAYOUTS["mma_m16n8k16_f16_f32"])
    assert masks == [1, 2] and slots == [0, 0, 1, 1] and first == [0, 2]


def test_derivations_refuse_a_layout_without_the_trick():
    """A table whose D rows sit in other lanes than A's (here one row a lane, as on RDNA3) has no
    register-to-register P: p_from_s refuses it rather than render a wrong kernel. (A permutation
    within each lane would be fine: the map would name other elements.)"""
    L = LAYOUTS["mma_m16n8k16_f16_f32"]
    bad = replace(L, name="bad", d=Operand(16, 8, 4, Expr("lane % 16"), Expr("lane // 16 * 4 + i")))
    bad.check()
    with pytest.raises(SpecError):
        p_from_s(bad)


V2_CASES = [(64, "f16"), (128, "f16"), (128, "q8_0"), (96, "fp8"), (80, "f32")]


@pytest.mark.parametrize("d, kv", V2_CASES)
def test_sm90_flash_attn_v2_uses_ldmatrix_and_mma_without_local_memory(store, d, kv, record_property):
    from forge.errors import ToolchainError
    try:
        entry, ptx = _compile(store, "flash_attn", {"head_dim": d, "kv": kv, "v": 2}, "sm_90")
    except ToolchainError as e:
        pytest.skip(f"no NVRTC: {e}")
    assert len(re.findall(re.escape(MMA_PTX), ptx)) >= 2, "mma.sync missing from the PTX"
    assert "ldmatrix.sync.aligned.m8n8.x4.shared.b16" in ptx, "fragments should come by ldmatrix"
    assert "ld.local" not in ptx and "st.local" not in ptx
    res = assert_no_local_memory(entry)
    record_property("registers", res["vgpr"])
    print(f"{entry.meta['symbol']}: {res['vgpr']} registers, {res['lds']} bytes shared")
