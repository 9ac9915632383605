"""Architecture descriptors: the facts about each target, and the only place outside templates that
knows arch names.

Code elsewhere asks an Arch for a feature (`arch.has("mx_scaled_mfma")`, `arch.wave_size`) rather
than comparing names. Sources: LLVM AMDGPUUsage (processor table, e_flags EF_AMDGPU_MACH values),
the RDNA3 / CDNA3 / CDNA4 ISA guides, the CUDA programming guide (compute capabilities).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import ArchError

# Feature vocabulary. Templates branch on these through `arch.has(name)`.
FEATURES = {
    "fp16": "native half-precision arithmetic",
    "bf16": "bfloat16 conversions in hardware",
    "dot4_i8": "4-way int8 dot product (v_dot4_i32_i8 / dp4a)",
    "wmma_f16": "RDNA3 wave32 WMMA f32 += f16 x f16, 16x16x16",
    "wmma_bf16": "RDNA3 wave32 WMMA f32 += bf16 x bf16, 16x16x16",
    "mfma": "CDNA matrix fused multiply-add (v_mfma_*)",
    "mfma_f16": "CDNA wave64 v_mfma_f32_16x16x16_f16: f32 += f16 x f16, 16x16x16",
    "fp8": "8-bit float conversions in hardware (FNUZ on gfx942, OCP on gfx950 and NVIDIA)",
    "fp8_ocp": "OCP FP8 E4M3/E5M2 encodings (not the FNUZ variants)",
    "mx_scaled_mfma": "gfx950 v_mfma_scale_f32_*_f8f6f4 with E8M0 block scales",
    "mx_cvt": "gfx950 v_cvt_scalef32_* conversions for FP4/FP6/FP8 with a scale",
    "mma_sync": "NVIDIA warp-level tensor-core mma.sync",
}


@dataclass(frozen=True)
class Arch:
    """One compile target. `target` is what the toolchain is told (gfx1100, sm_90, host)."""

    name: str
    vendor: str  # "amd" | "nvidia" | "emu" (the CPU emulator) | "host" (the fast host-CPU target)
    family: str  # rdna3, cdna3, cdna4, ampere, hopper, emulator, host
    wave_size: int
    lds_bytes: int  # shared memory a block may use (static + dynamic)
    max_threads: int
    features: frozenset = field(default_factory=frozenset)
    target: str = ""
    elf_mach: int = 0  # AMD only: EF_AMDGPU_MACH in the code object's e_flags
    min_clang: int = 0  # AMD only: oldest clang major that knows this processor
    description: str = ""
    # AMD only: the most a kernel's code-object metadata may claim (checked before a launch and by
    # the ABI tests). max_vgprs: .vgpr_count per lane (on CDNA's unified register file it counts the
    # AGPRs too: 256 + 256). max_sgprs: .sgpr_count per wave, the addressable SGPRs (LLVM
    # getAddressableNumSGPRs: 102 on GFX9, 106 on GFX10+) plus the VCC/FLAT_SCRATCH/XNACK_MASK
    # registers the count includes (6 on GFX9, 2 on GFX10+): 108 on both. max_agprs: .agpr_count.
    # max_scratch: .private_segment_fixed_size, bytes per lane: ROCr's MAX_WAVE_SCRATCH (8,387,584
    # bytes, the COMPUTE_TMPRING_SIZE.WAVESIZE field) over the wave size.
    max_vgprs: int = 0
    max_sgprs: int = 0
    max_agprs: int = 0
    max_scratch: int = 0
    # Size of the target's reference part (the device launch geometry is sized for): compute units
    # (NVIDIA SMs, AMD CUs) and the threads one of them keeps resident at once. 0: unknown (the
    # emulator and the host target), where launch geometry takes its plain default.
    compute_units: int = 0
    threads_per_cu: int = 0
    # Occupancy facts (forge/codegen/occupancy.py; `forge build`'s occupancy column): what the waves
    # resident on one CU (AMD; a WGP on RDNA, which compiles in WGP mode) or SM (NVIDIA) share.
    # 0: unknown (the emulator, the host), where the column says "-". Each target's values and their
    # sources are in _OCCUPANCY below.
    simds: int = 0  # AMD SIMDs (LLVM getEUsPerCU), NVIDIA SM sub-partitions: each holds its own registers
    max_waves_per_simd: int = 0  # wave slots of one SIMD / sub-partition
    regs_per_simd: int = 0  # 32-bit registers one SIMD / sub-partition holds, per lane
    reg_granule: int = 0  # registers per lane a wave is allocated in multiples of
    lds_per_cu: int = 0  # LDS / shared-memory bytes the resident blocks share
    lds_granule: int = 1  # bytes a block's LDS / shared memory is allocated in multiples of
    lds_reserved: int = 0  # bytes the driver adds to every block's shared memory
    max_blocks_per_cu: int = 0  # resident blocks (AMD: barriers, so blocks of one wave don't count)
    single_wave_blocks_free: bool = False  # AMD: a one-wave block takes no barrier, so no block slot
    occupancy_per: str = ""  # what `forge build` counts waves per: "SIMD" (AMD) or "SM" (NVIDIA)

    @property
    def prelude(self) -> str:
        """Which templates/common prelude the target uses: amd, cuda, emu or host."""
        return {"amd": "amd", "nvidia": "cuda", "emu": "emu", "host": "host"}[self.vendor]

    @property
    def is_gpu_semantics(self) -> bool:
        """True for targets that run the GPU execution model (blocks of threads, waves, barriers):
        the GPUs and the emulator. False for the host target, whose kernels are plain loops."""
        return self.vendor != "host"

    def has(self, feature: str) -> bool:
        """True when the arch has `feature`; an unknown feature name is a programming error."""
        if feature not in FEATURES:
            raise ArchError(f"unknown feature {feature!r}; known: {', '.join(sorted(FEATURES))}")
        return feature in self.features

    def __str__(self) -> str:
        return self.name


_MAX_WAVE_SCRATCH = 8387584  # ROCr amd_gpu_agent.cpp (GFX9-GFX11)


def _amd(name, family, wave, lds, mach, min_clang, feats, desc):
    unified = family.startswith("cdna")  # CDNA: one register file, ArchVGPRs + AGPRs
    return Arch(name, "amd", family, wave, lds, 1024, frozenset(feats), name, mach, min_clang, desc,
                max_vgprs=512 if unified else 256, max_sgprs=108, max_agprs=256 if unified else 0,
                max_scratch=_MAX_WAVE_SCRATCH // wave)


_RDNA3 = {"fp16", "bf16", "dot4_i8", "wmma_f16", "wmma_bf16"}
_ARCHS = [
    _amd("gfx1100", "rdna3", 32, 65536, 0x41, 16, _RDNA3, "RDNA3: RX 7900 XTX/XT, W7900"),
    _amd("gfx1101", "rdna3", 32, 65536, 0x46, 16, _RDNA3, "RDNA3: RX 7800 XT/7700 XT"),
    _amd("gfx1102", "rdna3", 32, 65536, 0x47, 16, _RDNA3, "RDNA3: RX 7600"),
    # mfma_f16: v_mfma_f32_16x16x16_f16 (forge/codegen/matrix_layouts.py), emulated on emu-gfx950.
    _amd("gfx942", "cdna3", 64, 65536, 0x4C, 18, {"fp16", "bf16", "dot4_i8", "mfma", "mfma_f16", "fp8"},
         "CDNA3: MI300X/MI300A/MI325X (FP8 is FNUZ)"),
    _amd("gfx950", "cdna4", 64, 163840, 0x4F, 20,
         {"fp16", "bf16", "dot4_i8", "mfma", "mfma_f16", "fp8", "fp8_ocp", "mx_scaled_mfma", "mx_cvt"},
         "CDNA4: MI350X/MI355X (native MX: scaled MFMA, cvt_scalef32)"),
    Arch("sm_80", "nvidia", "ampere", 32, 166912, 1024,
         frozenset({"fp16", "bf16", "dot4_i8", "mma_sync"}), "sm_80", description="Ampere: A100"),
    Arch("sm_90", "nvidia", "hopper", 32, 232448, 1024,
         frozenset({"fp16", "bf16", "dot4_i8", "mma_sync", "fp8", "fp8_ocp"}), "sm_90",
         description="Hopper: H100/H200"),
    Arch("emu", "emu", "emulator", 32, 65536, 1024, frozenset(), "host",
         description="CPU emulation of the GPU model, wave32 (a test vehicle, not fast)"),
    Arch("emu64", "emu", "emulator", 64, 65536, 1024, frozenset(), "host",
         description="CPU emulation of the GPU model, wave64 (a test vehicle, not fast)"),
    # The emulator carrying gfx1100's features at its wave size, so that the templates' RDNA3
    # branches (WMMA) run in CI against the oracles: the emulator prelude implements each feature's
    # instructions (templates/common/mma_emu.h.j2), so a feature goes here only once it does.
    # wmma_bf16 is not emulated yet, hence absent.
    Arch("emu-gfx1100", "emu", "emulator", 32, 65536, 1024, frozenset(_RDNA3 - {"wmma_bf16"}), "host",
         description="CPU emulation with gfx1100's features (WMMA f16) at wave32 (a test vehicle)"),
    # The same for sm_90: mma.sync (m16n8k16 f16 -> f32 emulated). fp8/fp8_ocp name hardware
    # conversions no template uses yet, hence absent.
    Arch("emu-sm90", "emu", "emulator", 32, 232448, 1024, frozenset({"fp16", "bf16", "dot4_i8", "mma_sync"}),
         "host", description="CPU emulation with sm_90's features (mma.sync f16) at warp32 (a test vehicle)"),
    # The same for gfx950 (CDNA4, wave 64): the scaled MFMA (v_mfma_scale_f32_16x16x128_f8f6f4) and
    # the cvt_scalef32 conversions the MX decoders use are emulated (common/mma_emu.h.j2,
    # common/mx_cvt_emu.h), and the f16 MFMA v_mfma_f32_16x16x16_f16 (mfma_f16: common/mfma_emu.h.j2).
    # mfma (all the unscaled MFMAs: bf16, int8, other shapes) and fp8/fp8_ocp (conversions no template
    # uses yet) are not emulated, hence absent. LDS: gfx950's 160 KiB.
    Arch("emu-gfx950", "emu", "emulator", 64, 163840, 1024,
         frozenset({"fp16", "bf16", "dot4_i8", "mfma_f16", "mx_scaled_mfma", "mx_cvt"}),
         "host", description="CPU emulation with gfx950's MX features (scaled MFMA, cvt_scalef32) at wave64 (a test vehicle)"),
    # The host target: kernels written for a CPU (loops the compiler vectorizes, integer dot products
    # on 8-bit activations), one block = one chunk of work on one thread of the pool. Its wave is 1:
    # there are no waves, barriers or shared memory. What `backend="cpu"` runs.
    Arch("host", "host", "host", 1, 0, 1, frozenset({"dot4_i8"}), "host",
         description="this machine's CPU, -O3 -march=native (the fast CPU path)"),
]
# (compute units, resident threads per unit) of each target's reference part. Sources: NVIDIA's
# H100 SXM5 / A100 whitepapers (132 / 108 SMs, 64 warps per SM); AMD's RDNA3 instruction set guide
# (a CU: 2 SIMD32 of 16 waves) with the RX 7900 XTX / 7800 XT / 7600 CU counts; the CDNA3 / CDNA4
# guides (a CU: 4 SIMD64 of 8 waves) with MI300X's 304 and MI355X's 256 CUs. A part of the same
# target with fewer units (H100 PCIe, 7900 XT) is still filled by a grid sized for these.
_SIZES = {"gfx1100": (96, 1024), "gfx1101": (60, 1024), "gfx1102": (32, 1024), "gfx942": (304, 2048),
          "gfx950": (256, 2048), "sm_80": (108, 2048), "sm_90": (132, 2048)}
_ARCHS = [replace(a, compute_units=_SIZES[a.name][0], threads_per_cu=_SIZES[a.name][1]) if a.name in _SIZES
          else a for a in _ARCHS]
# Occupancy facts per target (Arch fields above). AMD, from LLVM's AMDGPU backend
# (llvm/lib/Target/AMDGPU/Utils/AMDGPUBaseInfo.cpp, GCNSubtarget.cpp, AMDGPU.td):
# - simds: getEUsPerCU: 4 "for gfx10 in WGP mode (the WGP contains two CUs)" and on GFX9 (CDNA);
#   forge passes no -mcumode, so RDNA3 kernels run in WGP mode.
# - max_waves_per_simd: getMaxWavesPerEU: 8 where isGFX90A (gfx90a/gfx942/gfx950), 16 on GFX10.3+.
# - regs_per_simd: getTotalNumVGPRs: 512 with GFX90AInsts (ArchVGPRs + AGPRs, what .vgpr_count counts
#   there); wave32 on GFX10+ 1024, or 1536 with Feature1_5xVGPRs (FeatureGFX11FullVGPRs before its
#   rename), which AMDGPU.td gives FeatureISAVersion11_0_0 (gfx1100) and 11_0_1 (gfx1101), not 11_0_2.
# - reg_granule: getVGPRAllocGranule: 8 with GFX90AInsts; wave32: 24 with Feature1_5xVGPRs, else 16
#   with GFX10_3Insts.
# - lds_per_cu: GCNSubtarget: LocalMemorySize = the addressable size (64 KiB; 160 KiB on gfx950,
#   FeatureAddressableLocalMemorySize163840), doubled "if isGFX10Plus && !FeatureCuMode" (WGP mode).
#   LLVM's occupancy ignores an LDS allocation granule ("FIXME"), hence 1.
# - max_blocks_per_cu: getMaxWorkGroupsPerCU: MaxBarriers 32 on GFX10+ in WGP mode, else 16; "single-
#   wave workgroups don't consume barrier resources".
# NVIDIA, from CUDA 13.0's cuda_occupancy.h (cudaOccMaxBlocksPerSM{Warps,Regs,Smem}Limit) and the CUDA
# C Programming Guide's "Technical Specifications per Compute Capability" (8.0 and 9.0 alike unless
# noted): 64 resident warps and 32 resident blocks per SM; 64 K 32-bit registers per SM split over
# cudaOccSubPartitionsPerMultiprocessor = 4 sub-partitions (16 warps and 65536 / 4 / 32 = 512 registers
# per lane each); cudaOccRegAllocationGranularity 256 registers per warp = 8 per lane; shared memory
# per SM 164 KiB (8.0) / 228 KiB (9.0) at the largest carveout; cudaOccSMemAllocationGranularity 128
# bytes; reservedSharedMemPerBlock 1 KiB (the per-SM minus the per-block maximum, 163 / 227 KiB).
_GFX11_WGP = dict(simds=4, max_waves_per_simd=16, lds_per_cu=131072, max_blocks_per_cu=32)
_CDNA = dict(simds=4, max_waves_per_simd=8, regs_per_simd=512, reg_granule=8, max_blocks_per_cu=16)
_SM = dict(simds=4, max_waves_per_simd=16, regs_per_simd=512, reg_granule=8, lds_granule=128,
           lds_reserved=1024, max_blocks_per_cu=32, occupancy_per="SM")
_OCCUPANCY = {
    "gfx1100": dict(_GFX11_WGP, regs_per_simd=1536, reg_granule=24),
    "gfx1101": dict(_GFX11_WGP, regs_per_simd=1536, reg_granule=24),
    "gfx1102": dict(_GFX11_WGP, regs_per_simd=1024, reg_granule=16),
    "gfx942": dict(_CDNA, lds_per_cu=65536),
    "gfx950": dict(_CDNA, lds_per_cu=163840),
    "sm_80": dict(_SM, lds_per_cu=167936),
    "sm_90": dict(_SM, lds_per_cu=233472),
}
_AMD_OCCUPANCY = dict(single_wave_blocks_free=True, occupancy_per="SIMD")
_ARCHS = [replace(a, **(_AMD_OCCUPANCY if a.vendor == "amd" else {}), **_OCCUPANCY[a.name])
          if a.name in _OCCUPANCY else a for a in _ARCHS]
ARCHS: dict[str, Arch] = {a.name: a for a in _ARCHS}
EMU_ARCHS = ("emu", "emu64", "emu-gfx1100", "emu-sm90", "emu-gfx950")


def get_arch(name: str | Arch) -> Arch:
    """The Arch called `name`. Raises ArchError listing the known names for anything else."""
    if isinstance(name, Arch):
        return name
    try:
        return ARCHS[name]
    except KeyError:
        raise ArchError(f"unknown arch {name!r}; known archs: {', '.join(ARCHS)}") from None


def emu_arch(wave_size: int) -> Arch:
    """The plain CPU emulation target (no arch features) with the given wave size (32 or 64)."""
    for a in _ARCHS:
        if a.vendor == "emu" and a.wave_size == wave_size and not a.features:
            return a
    raise ArchError(f"the CPU emulator has wave sizes 32 and 64, not {wave_size}")
