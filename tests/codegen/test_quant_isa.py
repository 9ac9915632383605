"""ISA evidence for the native-MX path: on gfx950 (arch feature mx_cvt) the MXFP4 GEMV and
dequant kernels convert with v_cvt_scalef32_pk_f32_fp4, and forge's MXFP6/MXFP8 layouts with the
pk32 FP6/BF6 and pk FP8/BF8 conversions; on gfx1100 (no such instructions) the same variants
decode in software and contain no v_cvt_scalef32_ at all."""

import pytest

from forge.arch import get_arch
from forge.codegen.build import ASM_FILE, compile_variant
from forge.codegen.spec import get_spec
from forge.codegen.store import Store

MXFP4_VARIANTS = [("gemv", {"wtype": "mxfp4"}), ("dequant", {"wtype": "mxfp4", "out": "f32"}),
                  ("dequant", {"wtype": "mxfp4", "out": "f16"})]
OTHER_MX = [("mxfp6_e2m3", "v_cvt_scalef32_pk32_f32_fp6"), ("mxfp6_e3m2", "v_cvt_scalef32_pk32_f32_bf6"),
            ("mxfp8_e4m3", "v_cvt_scalef32_pk_f32_fp8"), ("mxfp8_e5m2", "v_cvt_scalef32_pk_f32_bf8")]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


def _asm(store, family, params, arch_name) -> str:
    arch = get_arch(arch_name)
    entry, _ = compile_variant(get_spec(family).variant(arch, **params), arch, store, keep_asm=True)
    return entry.file(ASM_FILE).read_text()


@pytest.mark.parametrize("family,params", MXFP4_VARIANTS, ids=lambda v: str(v))
def test_gfx950_mxfp4_uses_native_conversion(store, family, params):
    assert "v_cvt_scalef32_pk_f32_fp4" in _asm(store, family, params, "gfx950")


@pytest.mark.parametrize("family,params", MXFP4_VARIANTS, ids=lambda v: str(v))
def test_gfx1100_mxfp4_decodes_in_software(store, family, params):
    asm = _asm(store, family, params, "gfx1100")
    assert "v_cvt_scalef32_" not in asm and "global_load" in asm


@pytest.mark.parametrize("wtype,insn", OTHER_MX)
def test_gfx950_mx6_mx8_gemv_use_native_conversion(store, wtype, insn):
    assert insn in _asm(store, "gemv", {"wtype": wtype}, "gfx950")


def test_gemv_streams_weights_with_16_byte_loads(store):
    """The GEMV copies weight windows with u32x4 loads: dwordx4 on gfx950, b128 on gfx1100."""
    assert "global_load_dwordx4" in _asm(store, "gemv", {"wtype": "q4_0"}, "gfx950")
    assert "global_load_b128" in _asm(store, "gemv", {"wtype": "q4_k"}, "gfx1100")


@pytest.mark.parametrize("wtype,wide,narrow", [("q4_0", "global_load_ushort", "global_load_ubyte"),
                                               ("f32", "global_load_dwordx4", "global_load_ubyte"),
                                               ("mxfp4", "global_load_dword", None)])
def test_gemv_reads_blocks_with_aligned_loads(store, wtype, wide, narrow):
    """The GEMV decodes straight from global memory (no staging since issue 13) with the widest loads
    the block alignment allows (a Q4_0 block is 2-byte aligned, f32 units are read 16 bytes at a time
    when aligned, MXFP4's 17-byte blocks through aligned words), not byte by byte."""
    asm = _asm(store, "gemv", {"wtype": wtype}, "gfx950")
    assert wide in asm
    if narrow:
        assert narrow not in asm
