"""The f16-X prefill path on sm_90, compiled by NVRTC: the gemm variant xin="f16" still multiplies on
mma.sync m16n8k16 with ldmatrix fragments, loads its f16 X in 16-byte global loads (ld.global.v4),
and uses no local memory (ptxas's report, or the CUDA driver's where there is none), for both block
tiles and a few weight types; x_f16 (the once-per-batch conversion) uses none either."""

from __future__ import annotations

import pytest

from forge.codegen.matrix_layouts import get_layout
from forge.errors import ToolchainError
from tests.codegen.test_matrix_isa import _compile, store  # noqa: F401  (the module's store fixture)
from tests.codegen.test_resources import driver_resources

F16_X_GEMMS = [(w, t) for w in ("q4_0", "q8_0", "q4_k", "q6_k", "f16") for t in (128, 64)]


def _resources(entry) -> dict:
    res = entry.meta["resources"]
    if not res["vgpr"]:  # no ptxas report (seen with the lent H100's NVRTC): ask the driver
        res = driver_resources(entry)
        if res is None:
            pytest.skip("no ptxas report and no CUDA device")
    return res


@pytest.mark.parametrize("wtype, tile", F16_X_GEMMS)
def test_f16_x_gemm_on_mma_sync_with_ldmatrix_and_no_local_memory(store, wtype, tile):  # noqa: F811
    try:
        entry, ptx = _compile(store, "gemm", {"wtype": wtype, "tile": tile, "xin": "f16"}, "sm_90")
    except ToolchainError as e:
        pytest.skip(f"no NVRTC: {e}")
    assert "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" in ptx
    assert get_layout("ldmatrix_m8n8_x4_b16").instruction in ptx
    assert "ld.global.v4.u32" in ptx or "ld.global.nc.v4.u32" in ptx, "f16 X should come in 16-byte loads"
    res = _resources(entry)
    assert res["scratch"] == 0 and res["spills"] == 0, f"{entry.meta['symbol']}: {res}"


def test_x_f16_uses_no_local_memory(store):  # noqa: F811
    try:
        entry, ptx = _compile(store, "x_f16", {}, "sm_90")
    except ToolchainError as e:
        pytest.skip(f"no NVRTC: {e}")
    assert "st.global.v4.u32" in ptx or "st.global.v4.b32" in ptx, "f16 rows should be stored 16 bytes at a time"
    res = _resources(entry)
    assert res["scratch"] == 0 and res["spills"] == 0, f"{entry.meta['symbol']}: {res}"
