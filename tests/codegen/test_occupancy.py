"""forge.codegen.occupancy against cases computed by hand from the rules cited in forge/arch.py
(LLVM AMDGPUBaseInfo.cpp for AMD, cuda_occupancy.h for NVIDIA)."""

from forge.arch import get_arch
from forge.codegen.occupancy import cubin_max_threads, occupancy


def test_gfx1100_wave32_256_vgprs():
    # 256 VGPRs -> 264 (granule 24); 1536 // 264 = 5 waves per SIMD. 256 threads = 8 waves a block:
    # 5 * 4 SIMDs // 8 = 2 blocks = 16 waves, 4 per SIMD of 16
    o = occupancy(get_arch("gfx1100"), 256, 0, 256)
    assert (o.blocks, o.waves, o.max_waves, o.limiter) == (2, 16, 64, "regs")
    assert o.text("SIMD") == "4/16 regs"


def test_gfx1102_has_no_full_vgprs():
    # 1024 VGPRs per lane, granule 16: 128 -> 8 waves per SIMD (gfx1100: 1536 // 144 = 10); one-wave
    # blocks, so no barrier limit
    assert occupancy(get_arch("gfx1102"), 128, 0, 64).waves == 32
    assert occupancy(get_arch("gfx1100"), 128, 0, 64).waves == 40


def test_gfx950_128_vgprs():
    # 512 // 128 = 4 of 8 waves per SIMD; 256 threads = 4 waves a block, 4 blocks
    o = occupancy(get_arch("gfx950"), 128, 0, 256)
    assert (o.blocks, o.waves, o.max_waves, o.limiter) == (4, 16, 32, "regs")
    assert o.text("SIMD") == "4/8 regs"


def test_full_occupancy_names_no_limiter():
    o = occupancy(get_arch("gfx942"), 32, 0, 256)  # 512 // 32 = 16, capped at 8 waves per SIMD
    assert o.waves == o.max_waves == 32 and o.text("SIMD") == "8/8"


def test_amd_lds_limited():
    # gfx1100 WGP: 128 KiB of LDS; 40 KiB a block -> 3 blocks of 4 waves = 3 waves per SIMD
    o = occupancy(get_arch("gfx1100"), 32, 40 * 1024, 128)
    assert (o.blocks, o.waves, o.limiter) == (3, 12, "lds")
    # gfx942's CU has 64 KiB: 40 KiB leaves room for one block
    assert occupancy(get_arch("gfx942"), 32, 40 * 1024, 128).blocks == 1


def test_amd_block_limits():
    # one-wave blocks take no barrier: the 64 wave slots of a WGP are the limit
    o = occupancy(get_arch("gfx1100"), 16, 0, 32)
    assert (o.blocks, o.limiter) == (64, "waves")
    # two-wave blocks: 32 barriers per WGP (gfx942: 16) before the 32 blocks' worth of slots
    assert occupancy(get_arch("gfx1100"), 16, 0, 64).blocks == 32
    o = occupancy(get_arch("gfx942"), 16, 0, 128)  # 2 waves of 64: 32 slots // 2 = 16 = barriers
    assert (o.blocks, o.limiter) == (16, "blocks+waves")
    # a block of 1024 threads: 32 waves, 2 fit in a WGP's 64 slots
    assert occupancy(get_arch("gfx1100"), 16, 0, 1024).blocks == 2


def test_sm90_shared_memory_limited():
    # 64 regs x 32 = 2048 per warp; 16384 per sub-partition -> 8 warps each, 32 per SM = 4 blocks
    # of 8 warps. 64 KiB + 1 KiB reserved -> 233472 // 66560 = 3 blocks: shared memory decides
    o = occupancy(get_arch("sm_90"), 64, 64 * 1024, 256)
    assert (o.blocks, o.waves, o.max_waves, o.limiter) == (3, 24, 64, "lds")
    assert o.text("SM") == "24/64 lds"
    # 48 KiB: 233472 // 50176 = 4 blocks, the same as the registers allow: both named
    assert occupancy(get_arch("sm_90"), 64, 48 * 1024, 256).limiter == "regs+lds"
    # sm_80's 164 KiB: 167936 // 50176 = 3
    assert occupancy(get_arch("sm_80"), 64, 48 * 1024, 256).limiter == "lds"


def test_nvidia_register_and_block_limits():
    # 40 regs -> 1280 per warp; 16384 // 1280 = 12 warps per sub-partition, 48 per SM
    assert occupancy(get_arch("sm_90"), 40, 0, 128).waves == 48
    # 32-thread blocks: 64 warp slots, but 32 blocks per SM
    o = occupancy(get_arch("sm_90"), 16, 0, 32)
    assert (o.blocks, o.waves, o.limiter) == (32, 32, "blocks")
    # over the per-block shared-memory maximum (227 KiB): nothing fits
    assert occupancy(get_arch("sm_90"), 16, 228 * 1024, 32).blocks == 0


def test_no_facts_no_occupancy():
    for name in ("emu", "emu64", "host"):
        assert occupancy(get_arch(name), 32, 0, 256) is None


def test_cubin_max_threads_on_garbage():
    assert cubin_max_threads(b"\x7fELF" + bytes(60), "k") is None
    assert cubin_max_threads(b"", "k") is None
