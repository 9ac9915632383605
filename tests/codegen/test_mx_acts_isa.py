"""gfx950 code objects of the MXFP6-activation gemm and of gemv_mx: the scaled MFMA with the operand
formats the kernels claim (cbsz / blgp in the assembly), the FP6 conversion instruction, and no
scratch. Compiled with the portable clang (ziglang) where the machine has it, skipped otherwise (as
tests/codegen/test_matrix_isa.py's _compile does). LLVM prints cbsz / blgp only when non-zero (FP8
E4M3 is 0)."""

import pytest

from forge.codegen.store import Store
from tests.codegen.test_matrix_isa import compiled_gfx950


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


def test_gfx950_gemm_with_mxfp6_acts_converts_with_cvt_scalef32_and_gives_fp6_to_the_unit(store):
    asm = compiled_gfx950(store, "gemm", {"wtype": "mxfp4", "acts": "mxfp6"})
    assert "v_mfma_scale_f32_16x16x128_f8f6f4" in asm
    assert "v_cvt_scalef32_2xpk16_fp6_f32" in asm
    assert "cbsz:2" in asm and "blgp:" not in asm  # A = X in FP6 E2M3, B = W re-encoded as FP8 E4M3


@pytest.mark.parametrize("wtype,acts,cbsz,blgp", [("mxfp4", "mxfp6", 4, 2), ("mxfp6_e3m2", "mxfp8", 3, 0),
                                                  ("mxfp8_e5m2", "mxfp6", 1, 2)])
def test_gfx950_gemv_mx_gives_the_weights_natively(store, wtype, acts, cbsz, blgp):
    asm = compiled_gfx950(store, "gemv_mx", {"wtype": wtype, "acts": acts})
    assert "v_mfma_scale_f32_16x16x128_f8f6f4" in asm
    assert f"cbsz:{cbsz}" in asm and (f"blgp:{blgp}" in asm if blgp else "blgp:" not in asm)
    assert ("v_cvt_scalef32_2xpk16_fp6_f32" in asm) == (acts == "mxfp6")
