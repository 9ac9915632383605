"""gfx950 code objects of the KV kernels for the fp8 and mxfp6 dtypes: the cvt_scalef32 instructions
the templates claim (common/kv.j2, kv_store.j2, attn_decode_seg.j2) appear in the assembly, and
nothing spills to scratch. Compiled with the portable clang (ziglang) where the machine has it,
skipped otherwise (tests/codegen/test_matrix_isa.py's _compile). What the instructions compute is
checked on emu-gfx950 (tests/kernels/test_kv_cvt_gfx950.py); no AMD GPU has run them."""

import pytest

from forge.codegen.store import Store
from tests.codegen.test_matrix_isa import compiled_gfx950


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


def test_kv_append_mxfp6_encodes_with_2xpk16_fp6(store):
    asm = compiled_gfx950(store, "kv_append", {"kv": "mxfp6", "block": 128})
    assert "v_cvt_scalef32_2xpk16_fp6_f32" in asm


@pytest.mark.parametrize("family,params", [("flash_attn", {"head_dim": 128, "kv": "mxfp6"}),
                                           ("attn_decode", {"head_dim": 128, "kv": "mxfp6"})])
def test_attention_decodes_mxfp6_with_pk32_f32_fp6(store, family, params):
    asm = compiled_gfx950(store, family, params)
    assert "v_cvt_scalef32_pk32_f32_fp6" in asm


@pytest.mark.parametrize("family", ["flash_attn", "attn_decode"])
def test_attention_decodes_fp8_with_pk_f32_fp8(store, family):
    asm = compiled_gfx950(store, family, {"head_dim": 128, "kv": "fp8"})
    assert "v_cvt_scalef32_pk_f32_fp8" in asm
