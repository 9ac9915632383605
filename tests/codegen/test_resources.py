"""Hot decode kernels use no local memory: no stack frame and no spills in NVRTC's ptxas report for
sm_90, no scratch (private segment) and no VGPR spills in the AMDGPU metadata for gfx1100 and gfx950
(SGPR spills land in VGPR lanes, not in memory).
Local memory / scratch is per-thread DRAM traffic in the kernels whose whole job is streaming
weights and the KV cache at the memory roofline; a run-time index into a register array, or a
register budget the compiler overruns, puts it there silently (issue 13 found NVRTC 13.0 giving
some GEMV types a stack frame). The resources are the toolchain's own report, kept in the store
entry's metadata (codegen/toolchain.py ptxas_resources, codegen/codeobject.py resources)."""

from __future__ import annotations

import pytest

from forge.arch import get_arch
from forge.codegen.build import compile_variant
from forge.codegen.spec import get_spec
from forge.codegen.store import Store
from forge.errors import ToolchainError

# The kernels of a decode step that stream weights or the KV cache: every GEMV weight type (the
# float-x gemv and the integer matmul_q8, with quantize_q8 before it), decode attention at the head
# sizes of the llama family (64: SmolLM2, 128: Llama 3 1B/8B) for every KV dtype, and the split merge.
HOT = ([("gemv", {"wtype": v.params["wtype"]}) for v in get_spec("gemv").variants(get_arch("sm_90"))]
       + [("attn_decode", {"head_dim": d, "kv": kv}) for d in (64, 128) for kv in ("f32", "f16", "fp8", "q8_0")]
       + [("attn_combine", {"block": 128})]
       + [("matmul_q8", {"wtype": v.params["wtype"]}) for v in get_spec("matmul_q8").variants(get_arch("sm_90"))]
       + [("quantize_q8", {})])


def driver_resources(entry) -> dict | None:
    """The kernel's registers and local memory per thread as the CUDA driver reports them for the
    loaded cubin (cuFuncGetAttribute), in the ptxas report's keys; None without a CUDA device.
    Local memory holds both a stack frame and spills, so both keys carry it."""
    from forge.errors import DeviceError
    try:
        from forge.runtime.cuda import CudaDevice
        dev = CudaDevice()
    except (DeviceError, ImportError):
        return None
    r = dev.load_module(entry.read_object()).resources(entry.meta["symbol"])
    return {"vgpr": r["registers"], "scratch": r["local"], "spills": r["local"], "lds": r["smem"]}


def nvidia_resources(entry) -> dict:
    """An NVIDIA kernel's resources: the ptxas report NVRTC gave, else the driver's (some NVRTC
    builds give no report); the test skips when neither is available."""
    res = entry.meta["resources"]
    if not res["vgpr"]:
        res = driver_resources(entry)
        if res is None:
            pytest.skip("no ptxas report and no CUDA device")
    return res


def assert_no_local_memory(entry) -> dict:
    """nvidia_resources(entry), after asserting the kernel has no stack frame and spills nothing."""
    res = nvidia_resources(entry)
    assert res["scratch"] == 0 and res["spills"] == 0, f"{entry.meta['symbol']}: {res}"
    return res


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("arch_name", ["sm_90", "gfx1100", "gfx950"])
@pytest.mark.parametrize("family, params", HOT, ids=[f"{f}-{'-'.join(map(str, p.values()))}" for f, p in HOT])
def test_hot_kernel_uses_no_local_memory(store, arch_name, family, params):
    arch = get_arch(arch_name)
    try:
        entry, _ = compile_variant(get_spec(family).variant(arch, **params), arch, store)
    except ToolchainError as e:
        pytest.skip(f"no toolchain for {arch_name}: {e}")
    res = entry.meta["resources"]
    where = f"{entry.meta['symbol']} on {arch_name} ({entry.meta['toolchain']}): {res}"
    if arch.vendor == "nvidia":
        if not res["vgpr"]:  # no ptxas report (seen on the lent H100's NVRTC): ask the driver instead
            res = driver_resources(entry)
            where += f"; driver: {res}"
            assert res is not None, f"no ptxas report and no CUDA device: the check would prove nothing ({where})"
        assert res["scratch"] == 0 and res["spills"] == 0, where
    else:
        # AMD: no private segment (scratch) and no VGPR spills; SGPR spills go to VGPR lanes
        # (v_writelane), not to memory, and are allowed.
        from forge.codegen.codeobject import read_code_object
        k = read_code_object(entry.read_object(), where).kernel(entry.meta["symbol"])
        assert res["scratch"] == 0 and not k.vgpr_spill_count, f"{where}, vgpr spills {k.vgpr_spill_count}"


@pytest.mark.parametrize("arch_name, instruction", [("sm_90", "dp4a"), ("gfx1100", "v_dot4_i32_iu8"),
                                                    ("gfx950", "v_dot4")])
def test_integer_gemv_uses_the_dot4_instruction(store, arch_name, instruction):
    """matmul_q8 multiplies with the arch's 4-way int8 dot product (dp4a in the PTX; v_dot4 on AMD),
    not a byte-by-byte fallback."""
    import re
    arch = get_arch(arch_name)
    v = get_spec("matmul_q8").variant(arch, wtype="q4_0")
    try:
        entry, _ = compile_variant(v, arch, store, keep_asm=True)
    except ToolchainError as e:
        pytest.skip(f"no toolchain for {arch_name}: {e}")
    text = entry.file("kernel.asm").read_text()
    if arch.vendor == "nvidia":  # the listing is PTX
        assert re.search(r"\bdp4a\.s32\.s32\b", text), "no dp4a in the PTX"
    else:
        assert instruction in text, f"no {instruction} in the {arch_name} assembly"
