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
    _amd("gfx942", "cdna3", 64, 65536, 0x4C, 18, {"fp16", "bf16", "dot4_i8", "mfma", "fp8"},
         "CDNA3: MI300X/MI300A/MI325X (FP8 is FNUZ)"),
    _amd("gfx950", "cdna4", 64, 163840, 0x4F, 20,
         {"fp16", "bf16", "dot4_i8", "mfma", "fp8", "fp8_ocp", "mx_scaled_mfma", "mx_cvt"},
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
    # common/mx_cvt_emu.h). mfma (the unscaled f16/bf16/int8 MFMAs) and fp8/fp8_ocp (conversions no
    # template uses yet) are not emulated, hence absent. LDS: gfx950's 160 KiB.
    Arch("emu-gfx950", "emu", "emulator", 64, 163840, 1024,
         frozenset({"fp16", "bf16", "dot4_i8", "mx_scaled_mfma", "mx_cvt"}),
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
