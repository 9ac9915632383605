"""The matrix instructions in the kept assembly, and their lane-layout table against the sources.

gfx1100 (arch feature wmma_f16): every gemm weight type multiplies on v_wmma_f32_16x16x16_f16,
loads its fragments from shared memory with 16-byte loads, and uses no scratch and no VGPR spills
(a v16h/v8f fragment array indexed at run time, or an over-budget tile, would put it in scratch
silently). gfx950 has no WMMA: its gemm stays on scalar fma (the negative control).

The table (forge/codegen/matrix_layouts.py) is what both the kernels and the emulator render, so a
wrong entry would pass every emulated test; here each entry is compared with each source's own
formula, transcribed literally."""

import pytest

from forge.arch import ARCHS, get_arch
from forge.codegen.build import ASM_FILE, compile_variant
from forge.codegen.codeobject import read_code_object
from forge.codegen.matrix_layouts import LAYOUTS, Expr, get_layout
from forge.codegen.spec import get_spec
from forge.codegen.store import Store
from forge.codegen.wtypes import WTYPE_NAMES
from forge.errors import SpecError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


def _compile(store, family, params, arch_name):
    arch = get_arch(arch_name)
    entry, _ = compile_variant(get_spec(family).variant(arch, **params), arch, store, keep_asm=True)
    return entry, entry.file(ASM_FILE).read_text()


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
def test_gfx1100_gemm_multiplies_on_wmma_without_scratch(store, wtype):
    entry, asm = _compile(store, "gemm", {"wtype": wtype}, "gfx1100")
    assert "v_wmma_f32_16x16x16_f16" in asm
    assert "ds_load_b128" in asm, "fragments should come from shared memory in 16-byte loads"
    res = entry.meta["resources"]
    k = read_code_object(entry.read_object(), wtype).kernel(entry.meta["symbol"])
    assert res["scratch"] == 0 and not k.vgpr_spill_count, f"{entry.meta['symbol']}: {res}, spills {k.vgpr_spill_count}"
    assert res["vgpr"] <= get_arch("gfx1100").max_vgprs


def test_gfx950_gemm_has_no_wmma(store):
    _, asm = _compile(store, "gemm", {"wtype": "q4_0"}, "gfx950")
    assert "v_wmma" not in asm and "v_fma" in asm


def test_only_wave32_archs_with_the_feature_claim_wmma():
    """The builtin is the _w32 one: an arch claiming wmma_f16 must run waves of 32 (gfx1100-1102 and
    the emulator target that stands in for them)."""
    have = {a.name for a in ARCHS.values() if a.has("wmma_f16")}
    assert have == {"gfx1100", "gfx1101", "gfx1102", "emu-gfx1100"}
    assert all(get_arch(n).wave_size == get_layout("wmma_f32_16x16x16_f16").wave for n in have)


# ------------------------------------------------------------------------------- the table
def test_rdna3_wmma_layout_matches_each_source():
    L = get_layout("wmma_f32_16x16x16_f16")
    assert (L.builtin, L.feature, L.wave, L.m, L.n, L.k) == (
        "__builtin_amdgcn_wmma_f32_16x16x16_f16_w32", "wmma_f16", 32, 16, 16, 16)
    assert (L.a.elems, L.b.elems, L.d.elems) == (16, 16, 8)  # V16h, V16h, V8f (BuiltinsAMDGPU.def)
    for lane in range(32):
        for i in range(16):
            # tinygrad ops_python.py: a_elem(x, k, row, goff) = x[k][goff + row] (register element k
            # of lane row holds A[row][k]); b_elem(x, col, k, goff) = a_elem(x, k, col, goff)
            assert L.a.element(lane, i) == (lane % 16, i)
            assert L.b.element(lane, i) == (i, lane % 16)
        for v in range(8):
            # tinygrad: c_map(lane, elem) = (lane % 16, lane // 16 + elem * 2) as (column, row);
            # Modular's get_rdna_fragment_layout: D[row = v*2 + l//16, col = l%16]
            assert L.d.element(lane, v) == (lane // 16 + v * 2, lane % 16)
    # GPUOpen / tinygrad: lanes 16-31 replicate lanes 0-15's A and B; one home per accumulator
    for op in ("a", "b"):
        for holders in L.holders(op).values():
            assert [lane for lane, _ in holders] == [holders[0][0], holders[0][0] + 16]
    assert all(len(h) == 1 for h in L.holders("d").values())


def test_every_layout_is_consistent():
    for layout in LAYOUTS.values():
        layout.check()


def test_layout_expressions_render_to_the_same_unsigned_c():
    e = Expr("2 * i + lane // 16")
    assert e(lane=17, i=3) == 7 and e.names == {"i", "lane"}
    assert e.c(lane="l", i="e") == "((2u * (e)) + ((l) / 16u))"
    for bad in ("lane - 1", "lane / 2", "f(lane)", "-1", "lane ** 2", "1.5"):
        with pytest.raises(SpecError):
            Expr(bad)
