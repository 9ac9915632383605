"""flash_attn's matrix paths in the kept assembly: sm_90 multiplies on mma.sync m16n8k16 and gfx1100 on
v_wmma_f32_16x16x16_f16 (S = Q K^T and O += P V), for the head dims that take the matrix path and
every KV dtype that has one, with no local memory / scratch (the Q fragments and O accumulators
are register arrays indexed in unrolled loops: a run-time index or an overrun register budget
would put them in local memory silently). gfx950 (no f16 MFMA emulated, so no such path) and head
dim 256 stay on scalar fma: the negative controls."""

import re

import pytest

from forge.arch import get_arch
from forge.codegen.specs.flash_attn import MMA_HEAD_DIMS, path
from forge.codegen.store import Store
from tests.codegen.test_matrix_isa import _compile
from tests.codegen.test_resources import driver_resources

MMA_PTX = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"
CASES = [(64, "f16"), (128, "f16"), (128, "q8_0"), (96, "fp8"), (80, "f32")]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


def test_path_choice():
    assert all(path(get_arch("sm_90"), d) == "mma_sync" for d in MMA_HEAD_DIMS)
    assert all(path(get_arch("gfx1100"), d) == "wmma" for d in MMA_HEAD_DIMS)
    assert path(get_arch("sm_90"), 256) == path(get_arch("gfx950"), 128) == path(get_arch("emu"), 128) == "scalar"
    assert path(get_arch("host"), 128) == "scalar"


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
    res = entry.meta["resources"]
    if not res["vgpr"]:  # no ptxas report (seen with the lent H100's NVRTC): ask the driver
        res = driver_resources(entry)
        if res is None:
            pytest.skip("no ptxas report and no CUDA device")
    assert res["scratch"] == 0 and res["spills"] == 0, f"{entry.meta['symbol']}: {res}"


@pytest.mark.parametrize("d, kv", CASES)
def test_gfx1100_flash_attn_multiplies_on_wmma_without_scratch(store, d, kv):
    from forge.codegen.codeobject import read_code_object
    entry, asm = _compile(store, "flash_attn", {"head_dim": d, "kv": kv}, "gfx1100")
    assert "v_wmma_f32_16x16x16_f16" in asm
    res = entry.meta["resources"]
    k = read_code_object(entry.read_object(), kv).kernel(entry.meta["symbol"])
    assert res["scratch"] == 0 and not k.vgpr_spill_count, f"{entry.meta['symbol']}: {res}, spills {k.vgpr_spill_count}"


@pytest.mark.parametrize("arch_name, d, needle", [("gfx950", 128, "v_mfma"), ("gfx950", 128, "v_wmma"),
                                                  ("sm_90", 256, "mma.sync")])
def test_scalar_paths_have_no_matrix_instruction(store, arch_name, d, needle):
    from forge.errors import ToolchainError
    try:
        _, asm = _compile(store, "flash_attn", {"head_dim": d, "kv": "f16"}, arch_name)
    except ToolchainError as e:
        pytest.skip(f"no compiler for {arch_name}: {e}")
    assert needle not in asm and ("fma" in asm)
