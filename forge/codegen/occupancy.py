"""Theoretical occupancy: how many waves of a kernel one CU (AMD) or SM (NVIDIA) keeps resident,
limited by its registers, its LDS / shared memory per block and its block size.

    occupancy(get_arch("gfx950"), vgprs=128, lds_bytes=0, threads_per_block=256)
    # Occupancy(blocks=4, waves=16, max_waves=32, limiter="regs", simds=4): 4 of 8 waves per SIMD

The calculation is CUDA's (cuda_occupancy.h: blocks per SM = the least of the warp-slot, block,
register and shared-memory limits) with each vendor's facts from forge/arch.py; on AMD it matches
LLVM's (AMDGPUBaseInfo.cpp getNumWavesPerEUWithNumVGPRs, getMaxWorkGroupsPerCU, and
AMDGPUSubtarget::getOccupancyWithWorkGroupSizes for LDS). Registers are allocated per SIMD
(NVIDIA: per sub-partition), so a block's waves are assumed spread evenly over them, as both do.

`block_occupancy` reads the numbers from a store entry: the resources its metadata recorded and the
block size from the code object (AMD .max_flat_workgroup_size, NVIDIA the cubin's max-threads
attribute: forge launches every kernel at its declared bound). Anything missing gives None.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from ..arch import Arch

LIMITERS = ("regs", "lds", "blocks", "waves")  # the order tied limiters are named in


@dataclass(frozen=True)
class Occupancy:
    blocks: int  # resident blocks per CU / SM
    waves: int  # resident waves per CU / SM
    max_waves: int  # the arch's wave slots per CU / SM
    limiter: str  # the limits that decided `blocks` (LIMITERS; ties joined by "+")
    simds: int  # SIMDs (NVIDIA sub-partitions) per CU / SM, for the per-SIMD figures

    @property
    def fraction(self) -> float:
        return self.waves / self.max_waves

    def text(self, per: str) -> str:
        """`forge build`'s cell: waves per SIMD (AMD's usual figure) or warps per SM (NVIDIA's),
        of the most, with the limiter when it keeps the kernel below the most."""
        div = self.simds if per == "SIMD" else 1
        got = f"{self.waves / div:.3g}/{self.max_waves // div}"
        return got if self.waves >= self.max_waves else f"{got} {self.limiter}"


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def _waves_per_simd_by_regs(arch: Arch, regs: int) -> int:
    """LLVM getNumWavesPerEUWithNumVGPRs (and cudaOcc's warps per sub-partition): the register file
    over the count rounded up to the allocation granule. Not capped at the wave slots (LLVM caps):
    that is the "waves" limit's job, so "regs" is named only where registers bind."""
    allocated = _round_up(max(regs, 1), arch.reg_granule)
    return arch.regs_per_simd // allocated


def _blocks_by_lds(arch: Arch, lds_bytes: int) -> int | None:
    """Blocks the CU's LDS holds; None when the block uses none (no limit); 0 when one block's
    exceeds what a block may have."""
    need = lds_bytes + arch.lds_reserved
    if need == 0:
        return None
    allocated = _round_up(need, arch.lds_granule)
    return 0 if lds_bytes > arch.lds_bytes else arch.lds_per_cu // allocated


def occupancy(arch: Arch, vgprs: int, lds_bytes: int, threads_per_block: int) -> Occupancy | None:
    """The theoretical occupancy of a kernel using `vgprs` registers per lane (AMD .vgpr_count,
    AGPRs included on CDNA; NVIDIA registers per thread), `lds_bytes` of LDS / shared memory per
    block, launched with `threads_per_block`. None where the arch has no occupancy facts."""
    if not arch.simds:
        return None
    waves_per_block = -(-threads_per_block // arch.wave_size)
    slots = arch.max_waves_per_simd * arch.simds
    limits = {"regs": _waves_per_simd_by_regs(arch, vgprs) * arch.simds // waves_per_block,
              "lds": _blocks_by_lds(arch, lds_bytes),
              "blocks": None if arch.single_wave_blocks_free and waves_per_block == 1 else arch.max_blocks_per_cu,
              "waves": slots // waves_per_block}
    if threads_per_block > arch.max_threads:
        limits["blocks"] = 0
    blocks = min(v for v in limits.values() if v is not None)
    # every limit at the minimum is named: easing one of two tied limits gains nothing
    limiter = "+".join(n for n in LIMITERS if limits[n] == blocks)
    return Occupancy(blocks, blocks * waves_per_block, slots, limiter, arch.simds)


# ------------------------------------------------------------------------------- from a store entry
_DYN_SHARED = re.compile(r"^\s*DYN_SHARED\(", re.M)  # a use, not the prelude's #define
EIATTR_MAX_THREADS = 0x05  # in a cubin's .nv.info.<kernel>: x, y, z of __launch_bounds__ (u32 each)
EIFMT_SVAL = 0x04  # attribute format with a u16 size and that many bytes; the others carry 2 bytes


def _elf_sections(data: bytes) -> dict[str, bytes]:
    """Section name -> contents of a 64-bit little-endian ELF (a cubin)."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    heads = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = heads[shstrndx][4]

    def name(off: int) -> str:
        start = names + off
        return data[start:data.index(b"\0", start)].decode()
    return {name(h[0]): data[h[4]:h[4] + h[5]] for h in heads}


def cubin_max_threads(data: bytes, symbol: str) -> int | None:
    """The block size a cubin's kernel was declared for (__launch_bounds__), or None. The attribute
    number was found by compiling the same kernel at bounds 128 and 256 with NVRTC (CUDA 13): only
    attribute 0x05 of .nv.info.<kernel> changed (x = 128 / 256, then y = z = 1)."""
    try:
        info = _elf_sections(data).get(f".nv.info.{symbol}")
    except (struct.error, ValueError, IndexError, UnicodeDecodeError):
        return None
    i = 0
    while info is not None and i + 4 <= len(info):
        fmt, attr = info[i], info[i + 1]
        size = struct.unpack_from("<H", info, i + 2)[0] if fmt == EIFMT_SVAL else 0
        if fmt == EIFMT_SVAL and attr == EIATTR_MAX_THREADS and size >= 12:
            x, y, z = struct.unpack_from("<III", info, i + 4)
            return x * y * z
        i += 4 + size
    return None


def _block_threads(entry, arch: Arch, symbol: str) -> int | None:
    try:
        data = entry.read_object()
        if arch.vendor == "amd":
            from .codeobject import read_code_object
            return read_code_object(data).kernel(symbol).max_flat_workgroup_size
        return cubin_max_threads(data, symbol)
    except Exception:  # a corrupt or unreadable entry: the column says "-", the build is unaffected
        return None


def _uses_dynamic_lds(entry) -> bool | None:
    """Whether the kernel's source takes dynamic LDS / shared memory, whose size only a launch knows
    (and the metadata's static count lacks). None when the source is not kept."""
    path = next((entry.file(n) for n in ("source.hip", "source.cu") if entry.file(n)), None)
    return None if path is None else bool(_DYN_SHARED.search(path.read_text(errors="replace")))


def block_occupancy(entry, arch: Arch, symbol: str, resources: dict) -> Occupancy | None:
    """The occupancy of a built kernel, or None where a number is missing: no occupancy facts for
    the arch, no register count (e.g. no ptxas report), no block size in the object, or dynamic
    shared memory (its size is the launch's)."""
    vgprs, lds = resources.get("vgpr"), resources.get("lds")
    if not arch.simds or entry is None or vgprs is None or lds is None or _uses_dynamic_lds(entry) is not False:
        return None
    threads = _block_threads(entry, arch, symbol)
    return None if not threads else occupancy(arch, vgprs, lds, threads)
