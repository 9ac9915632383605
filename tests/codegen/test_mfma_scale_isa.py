"""gfx950's scaled MFMA: the gemm's gfx950 code object holds v_mfma_scale_f32_16x16x128_f8f6f4 for
every MX weight type, with no scratch; and the lane-layout table's two entries for it (8-bit and
sub-byte operands) against each source's own formula, transcribed literally (docs/ARCH.md says where
the sources disagree)."""

import pytest

from forge.arch import ARCHS, get_arch
from forge.codegen.codeobject import read_code_object
from forge.codegen.matrix_layouts import get_layout
from forge.codegen.specs.gemm import path
from forge.codegen.store import Store
from forge.codegen.wtypes import WTYPE_NAMES

MX = [w for w in WTYPE_NAMES if path(get_arch("gfx950"), w) == "mfma_scale"]
# Compiling for gfx950 takes ~30 s a kernel here: two types cover both operand formats the kernel
# gives the unit (E4M3 for every re-encoded type, BF8 for E5M2) and the sub-byte re-encoding.


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("wtype", ["mxfp4", "mxfp8_e5m2"])
def test_gfx950_mx_gemm_multiplies_on_the_scaled_mfma_without_scratch(store, wtype):
    from tests.codegen.test_matrix_isa import _compile
    entry, asm = _compile(store, "gemm", {"wtype": wtype}, "gfx950")
    assert "v_mfma_scale_f32_16x16x128_f8f6f4" in asm
    assert ("blgp:1" in asm) == (wtype == "mxfp8_e5m2")  # BF8 weights; E4M3 (the default format) otherwise
    res = entry.meta["resources"]
    k = read_code_object(entry.read_object(), wtype).kernel(entry.meta["symbol"])
    assert res["scratch"] == 0 and not k.vgpr_spill_count, f"{entry.meta['symbol']}: {res}, spills {k.vgpr_spill_count}"


def test_every_mx_type_takes_the_path():
    assert MX == ["mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2"]


def test_only_wave64_archs_claim_the_scaled_mfma():
    have = {a.name for a in ARCHS.values() if a.has("mx_scaled_mfma")}
    assert have == {"gfx950", "emu-gfx950"}
    assert all(get_arch(n).wave_size == 64 for n in have)


def test_scaled_mfma_layouts_match_each_source():
    f8, sub = get_layout("mfma_scale_f32_16x16x128_f8"), get_layout("mfma_scale_f32_16x16x128_f6f4")
    for L in (f8, sub):
        assert (L.builtin, L.instruction, L.feature, L.wave, L.m, L.n, L.k, L.block) == (
            "__builtin_amdgcn_mfma_scale_f32_16x16x128_f8f6f4", "v_mfma_scale_f32_16x16x128_f8f6f4",
            "mx_scaled_mfma", 64, 16, 16, 128, 32)
        # LLVM Verifier: 8 registers for FP8/BF8, 6 for FP6/BF6, 4 for FP4 = 32 values of the width
        assert all(L.a.elems * width == 32 * regs for width, regs in ((8, 8), (6, 6), (4, 4)))
        for lane in range(64):
            for i in range(4):
                # tinygrad c_map(lane, elem) = (lane%16, (lane//16)*4 + elem) as (column, row); FPSan:
                # D[i][j] at reg i%4, lane (i/4)*16 + j
                assert L.d.element(lane, i) == ((lane // 16) * 4 + i, lane % 16)
            # FPSan scale_block_factor / triton's scale layout: block kb of row r from lane 16 kb + r
            assert L.sa.element(lane, 0) == (lane % 16, lane // 16)
            assert L.sb.element(lane, 0) == (lane // 16, lane % 16)
    for row in range(16):
        for k in range(128):
            # FPSan (MI350-verified), 16x16x128 FP8: A[i][k] at lane 16*((k%64)/16) + i, byte (k/64)*16 + (k%16)
            assert f8.holders("a")[(row, k)] == [(16 * ((k % 64) // 16) + row, (k // 64) * 16 + k % 16)]
            assert f8.holders("b")[(k, row)] == [(16 * ((k % 64) // 16) + row, (k // 64) * 16 + k % 16)]
            # FPSan's mix model, sub-byte operand: lane 16*q0 + idx, field p0, q0 = 2((k>>6)&1) + ((k>>5)&1),
            # p0 = 16((k>>4)&1) + (k&15); tinygrad: element k % 32 of lane (k // 32)*16 + row
            q0, p0 = 2 * ((k >> 6) & 1) + ((k >> 5) & 1), 16 * ((k >> 4) & 1) + (k & 15)
            assert sub.holders("a")[(row, k)] == [(16 * q0 + row, p0)] == [((k // 32) * 16 + row, k % 32)]
            assert sub.holders("b")[(k, row)] == [(16 * q0 + row, p0)]


def test_the_blogs_32x32x64_figures_follow_the_same_rules():
    """AMD's ROCm blog shows the 32x32x64 sibling: FP8 a_reg[i*16 + j] = A[l%32][(l/32)*16 + i*32 + j],
    FP4 byte i of lane l = A[l%32][32(l/32) + 2i] (low nibble), 2i+1 (high). The 16x16x128 table
    entries are the same rules with four lane groups of 16 instead of two of 32: FP8 = 16 consecutive
    K per lane group, then the next 64 (there: 32); sub-byte = one whole block per lane group."""
    f8, sub = get_layout("mfma_scale_f32_16x16x128_f8"), get_layout("mfma_scale_f32_16x16x128_f6f4")
    for lane in range(64):
        g = lane // 16
        for i in range(32):
            assert f8.a.element(lane, i)[1] == g * 16 + (i // 16) * 64 + i % 16
            assert sub.a.element(lane, i)[1] == 32 * g + i
