"""The AMD kernel-argument segment (kernarg) forge packs for a launch, and the checks that prove it
against a compiled code object's AMDGPU metadata (forge/codegen/codeobject.py).

    lay = layout_for(variant.symbol, variant.args, co.kernel(variant.symbol))
    lay.size, lay.align, [(s.name, s.offset, s.size) for s in lay.slots]
    data = lay.pack(values, grid, block, shared_bytes)     # bytes, lay.size long
    abi_mismatches(lay, kernel_info)                       # [] when the packing is what the kernel reads
    kernel_problems(kernel_info, arch)                     # [] when registers, LDS, scratch, wave fit the arch
    launch_problems(kernel_info, arch, grid, block, shared_bytes)   # [] when this launch fits

The layout (LLVM AMDGPUUsage: "Kernel Argument Layout", "Code Object V5 Metadata"):
- explicit arguments in declaration order, each at the next offset aligned to its size (pointers 8,
  i32/u32/f32 4, i64/u64 8), values in little-endian;
- when the kernel reads any implicit argument, the compiler appends hidden_* entries and the segment
  gains the 256-byte implicit block at the next 8-byte boundary. Each hidden kind has a fixed place
  in that block (HIDDEN) and the metadata lists only those the kernel reads, so the whole block is
  written: what a launch decides (block counts, group sizes, remainders, grid dims, dynamic LDS)
  and zero for the rest (global offsets, which HIP launches never have, and the printf / hostcall /
  heap / queue pointers a language runtime provides, which forge kernels do not use: RUNTIME_PROVIDED);
- kernarg_segment_size ends with the implicit block, else with the last explicit argument;
  kernarg_segment_align is the largest alignment, at least 4 (8 with an implicit block).

HIP's hipModuleLaunchKernel reads the explicit arguments from this buffer at the metadata's offsets
and writes the hidden ones itself (ROCclr hip_module.cpp); a launcher that hands the segment to the
GPU as is (an HSA dispatch) relies on the hidden values packed here. Both are served by one layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

from ..arch import Arch
from ..errors import CodeObjectError, DeviceError
from .codeobject import KernelInfo
from .spec import Arg

IMPLICIT_BYTES = 256  # the code object V5 implicit-argument block
IMPLICIT_ALIGN = 8
# kind -> (offset in the implicit block, size, struct code)
HIDDEN: dict[str, tuple[int, int, str]] = {
    "hidden_block_count_x": (0, 4, "I"), "hidden_block_count_y": (4, 4, "I"), "hidden_block_count_z": (8, 4, "I"),
    "hidden_group_size_x": (12, 2, "H"), "hidden_group_size_y": (14, 2, "H"), "hidden_group_size_z": (16, 2, "H"),
    "hidden_remainder_x": (18, 2, "H"), "hidden_remainder_y": (20, 2, "H"), "hidden_remainder_z": (22, 2, "H"),
    "hidden_global_offset_x": (40, 8, "Q"), "hidden_global_offset_y": (48, 8, "Q"),
    "hidden_global_offset_z": (56, 8, "Q"), "hidden_grid_dims": (64, 2, "H"),
    "hidden_printf_buffer": (72, 8, "Q"), "hidden_hostcall_buffer": (80, 8, "Q"),
    "hidden_multigrid_sync_arg": (88, 8, "Q"), "hidden_heap_v1": (96, 8, "Q"), "hidden_default_queue": (104, 8, "Q"),
    "hidden_completion_action": (112, 8, "Q"), "hidden_dynamic_lds_size": (120, 4, "I"),
    "hidden_private_base": (192, 4, "I"), "hidden_shared_base": (196, 4, "I"), "hidden_queue_ptr": (200, 8, "Q"),
}
# Hidden kinds whose value only a language runtime can give (a buffer, a queue, an aperture); forge
# packs zero there, so a kernel that reads one cannot run from forge's packing.
RUNTIME_PROVIDED = frozenset({
    "hidden_printf_buffer", "hidden_hostcall_buffer", "hidden_multigrid_sync_arg", "hidden_heap_v1",
    "hidden_default_queue", "hidden_completion_action", "hidden_private_base", "hidden_shared_base",
    "hidden_queue_ptr"})
# Explicit argument kinds: (struct code, size = alignment, metadata value_kind).
_EXPLICIT = {"ptr": ("Q", 8, "global_buffer"), "i32": ("i", 4, "by_value"), "u32": ("I", 4, "by_value"),
             "f32": ("f", 4, "by_value"), "i64": ("q", 8, "by_value"), "u64": ("Q", 8, "by_value")}
# HIP launches a 3-D grid of whole blocks: ROCclr writes its NDRange's 3 dimensions as grid_dims.
GRID_DIMS = 3
_U32 = 1 << 32


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


@dataclass(frozen=True)
class Slot:
    """One field of the segment: an explicit argument (kind = its Arg kind) or a hidden_* kind."""

    name: str
    kind: str
    offset: int
    size: int
    code: str  # struct format character

    @property
    def hidden(self) -> bool:
        return self.kind.startswith("hidden_")

    @property
    def value_kind(self) -> str:
        """The metadata `.value_kind` this slot must carry."""
        return self.kind if self.hidden else _EXPLICIT[self.kind][2]


class KernargLayout:
    """The kernarg segment of one kernel: slots in offset order, total size and alignment."""

    def __init__(self, symbol: str, explicit: tuple[Slot, ...], hidden: tuple[Slot, ...], size: int, align: int):
        self.symbol, self.explicit, self.hidden, self.size, self.align = symbol, explicit, hidden, size, align
        self.slots = explicit + hidden
        self.hidden_base = hidden[0].offset - HIDDEN[hidden[0].kind][0] if hidden else None
        fmt, at = "<", 0
        for s in self.slots:
            fmt += "x" * (s.offset - at) + s.code
            at = s.offset + s.size
        self._struct = struct.Struct(fmt + "x" * (size - at))

    def __repr__(self) -> str:
        return f"<KernargLayout {self.symbol} {self.size} B, {len(self.explicit)} explicit, {len(self.hidden)} hidden>"

    def hidden_values(self, grid, block, shared_bytes: int) -> list[int]:
        """The value of each hidden slot for a launch of `grid` blocks of `block` threads."""
        return [_hidden_value(s.kind, grid, block, shared_bytes) for s in self.hidden]

    def pack(self, values: Sequence, grid, block, shared_bytes: int = 0) -> bytes:
        """The segment for one launch: `values` are the explicit arguments (pointers as integer
        device addresses). DeviceError naming the kernel and argument for a count or value that
        does not fit."""
        if len(values) != len(self.explicit):
            raise DeviceError(f"{self.symbol}: {len(self.explicit)} arguments expected "
                              f"({', '.join(s.name for s in self.explicit)}), {len(values)} given")
        try:
            return self._struct.pack(*values, *self.hidden_values(grid, block, shared_bytes))
        except struct.error:
            self._explain(values, grid, block, shared_bytes)
            raise

    def _explain(self, values, grid, block, shared_bytes) -> None:
        for s, v in zip(self.explicit, values):
            try:
                struct.pack("<" + s.code, v)
            except struct.error:
                raise DeviceError(f"{self.symbol}: argument {s.name!r}: {v!r} does not fit a "
                                  f"{s.kind} argument ({s.size} bytes)") from None
        for s, v in zip(self.hidden, self.hidden_values(grid, block, shared_bytes)):
            try:
                struct.pack("<" + s.code, v)
            except struct.error:
                raise DeviceError(f"{self.symbol}: launch grid={tuple(grid)} block={tuple(block)} "
                                  f"shared={shared_bytes}: {s.kind} = {v!r} does not fit {s.size} bytes") from None


def _hidden_value(kind: str, grid, block, shared_bytes: int) -> int:
    """What a launch writes into hidden argument `kind`: block counts and group sizes per axis, the
    grid's dimensions, the dynamic LDS bytes; zero for remainders (forge launches whole blocks),
    global offsets (HIP has none) and RUNTIME_PROVIDED pointers."""
    if kind.startswith("hidden_block_count_"):
        return grid["xyz".index(kind[-1])]
    if kind.startswith("hidden_group_size_"):
        return block["xyz".index(kind[-1])]
    if kind == "hidden_grid_dims":
        return GRID_DIMS
    if kind == "hidden_dynamic_lds_size":
        return shared_bytes
    return 0


def layout(symbol: str, args: Sequence[Arg], implicit: bool) -> KernargLayout:
    """The segment forge packs for a kernel with explicit `args`, with the 256-byte implicit block
    when `implicit` (the kernel reads hidden arguments)."""
    explicit, at, align = [], 0, 4
    for a in args:
        code, size, _ = _EXPLICIT[a.kind]
        at = _align(at, size)
        explicit.append(Slot(a.name, a.kind, at, size, code))
        at += size
        align = max(align, size)
    hidden = []
    if implicit:
        base = _align(at, IMPLICIT_ALIGN)
        hidden = [Slot(kind, kind, base + off, size, code)
                  for kind, (off, size, code) in sorted(HIDDEN.items(), key=lambda kv: kv[1][0])]
        at, align = base + IMPLICIT_BYTES, max(align, IMPLICIT_ALIGN)
    return KernargLayout(symbol, tuple(explicit), tuple(hidden), at, align)


def layout_for(symbol: str, args: Sequence[Arg], kernel: KernelInfo) -> KernargLayout:
    """layout() with `implicit` read from the code object: whether the compiler listed any hidden_*
    argument. Whether those hidden arguments sit where forge writes them is abi_mismatches' job."""
    return layout(symbol, args, implicit=bool(kernel.hidden_args))


# ------------------------------------------------------------------------------------------ proof
def _meta_name(name: str | None) -> str | None:
    """A metadata argument name as the source declared it (clang spells by-value pointer
    parameters `<name>.coerce`)."""
    return name[:-len(".coerce")] if name and name.endswith(".coerce") else name


def abi_mismatches(lay: KernargLayout, kernel: KernelInfo) -> list[str]:
    """Every way the packing `lay` differs from what `kernel`'s metadata says the code reads:
    argument count, order (names), offsets, sizes, value kinds, hidden arguments at unknown or
    different places, segment size and alignment. Each message names the kernel and the argument."""
    k, out = lay.symbol, []
    meta_ex = kernel.explicit_args
    if len(meta_ex) != len(lay.explicit):
        out.append(f"{k}: forge packs {len(lay.explicit)} explicit arguments "
                   f"({', '.join(s.name for s in lay.explicit)}), the code object has {len(meta_ex)} "
                   f"({', '.join(str(_meta_name(a.name)) for a in meta_ex)})")
    for s, m in zip(lay.explicit, meta_ex):
        where = f"{k}: argument {s.name!r}"
        if _meta_name(m.name) not in (None, s.name):
            out.append(f"{where}: the code object has {_meta_name(m.name)!r} in its place (argument order differs)")
        if (s.offset, s.size) != (m.offset, m.size):
            out.append(f"{where}: packed at offset {s.offset} ({s.size} bytes), the kernel reads offset "
                       f"{m.offset} ({m.size} bytes)")
        if s.value_kind != m.value_kind:
            out.append(f"{where}: packed as {s.value_kind}, the code object says {m.value_kind}")
    packed = {s.kind: s for s in lay.hidden}
    for m in kernel.hidden_args:
        s = packed.get(m.value_kind)
        if s is None:  # a kind HIDDEN does not place (a newer code object version?)
            out.append(f"{k}: hidden argument {m.value_kind} at offset {m.offset} ({m.size} bytes) is "
                       f"not in forge's packing")
        elif (s.offset, s.size) != (m.offset, m.size):
            out.append(f"{k}: hidden argument {m.value_kind}: packed at offset {s.offset} ({s.size} bytes), "
                       f"the kernel reads offset {m.offset} ({m.size} bytes)")
    if kernel.kernarg_segment_size != lay.size:
        out.append(f"{k}: forge packs {lay.size} bytes, kernarg_segment_size is {kernel.kernarg_segment_size}")
    if kernel.kernarg_segment_align != lay.align:
        out.append(f"{k}: forge aligns the segment to {lay.align}, kernarg_segment_align is "
                   f"{kernel.kernarg_segment_align}")
    return out


def runtime_provided(kernel: KernelInfo) -> list[str]:
    """The hidden arguments `kernel` reads that only a language runtime can fill (forge packs zero)."""
    return [a.value_kind for a in kernel.hidden_args if a.value_kind in RUNTIME_PROVIDED]


def require_abi(lay: KernargLayout, kernel: KernelInfo) -> None:
    """CodeObjectError listing every mismatch (abi_mismatches) and every runtime-provided hidden
    argument; returns quietly when forge's packing is exactly what the kernel reads."""
    problems = abi_mismatches(lay, kernel) + [f"{lay.symbol}: reads {kind}, which forge cannot provide"
                                              for kind in runtime_provided(kernel)]
    if problems:
        raise CodeObjectError("kernel arguments disagree with the code object: " + "; ".join(problems))


# -------------------------------------------------------------------------------------- resources
def kernel_problems(kernel: KernelInfo, arch: Arch) -> list[str]:
    """Where `kernel`'s metadata exceeds `arch` (forge/arch.py facts): wave size, VGPRs, SGPRs,
    AGPRs, scratch per lane, static LDS, flat work-group size. [] when it fits."""
    k, out = kernel.name, []
    if kernel.wavefront_size != arch.wave_size:
        out.append(f"{k}: compiled for wave {kernel.wavefront_size}, {arch.name} runs wave {arch.wave_size}")
    limits = (("vgpr_count", kernel.vgpr_count, arch.max_vgprs, "VGPRs"),
              ("sgpr_count", kernel.sgpr_count, arch.max_sgprs, "SGPRs"),
              ("agpr_count", kernel.agpr_count or 0, arch.max_agprs, "AGPRs"),
              ("private_segment_fixed_size", kernel.private_segment_fixed_size, arch.max_scratch, "scratch bytes per lane"),
              ("group_segment_fixed_size", kernel.group_segment_fixed_size, arch.lds_bytes, "LDS bytes"),
              ("max_flat_workgroup_size", kernel.max_flat_workgroup_size, arch.max_threads, "threads per block"))
    for field, used, limit, what in limits:
        if used > limit:
            out.append(f"{k}: {field} {used} exceeds {arch.name}'s {limit} {what}")
    return out


def launch_problems(kernel: KernelInfo, arch: Arch, grid, block, shared_bytes: int = 0) -> list[str]:
    """Why a launch of `kernel` with this geometry cannot run on `arch`: LDS (static + dynamic) over
    the arch's, a block over the kernel's max_flat_workgroup_size, empty or oversized dimensions
    (HIP requires blocks x threads < 2^32 per dimension). [] when it can."""
    k, out = kernel.name, []
    if len(grid) != 3 or len(block) != 3 or min(*grid, *block) < 1:
        return [f"{k}: grid {tuple(grid)} and block {tuple(block)} must be three dimensions of at least 1"]
    threads = block[0] * block[1] * block[2]
    if threads > kernel.max_flat_workgroup_size:
        out.append(f"{k}: block {tuple(block)} has {threads} threads, the kernel allows "
                   f"{kernel.max_flat_workgroup_size} (max_flat_workgroup_size)")
    lds = kernel.group_segment_fixed_size + shared_bytes
    if shared_bytes < 0 or lds > arch.lds_bytes:
        out.append(f"{k}: LDS {kernel.group_segment_fixed_size} static + {shared_bytes} dynamic = {lds} bytes, "
                   f"{arch.name} has {arch.lds_bytes}")
    for axis, g, b in zip("xyz", grid, block):
        if g * b >= _U32:
            out.append(f"{k}: {g} blocks x {b} threads in {axis} reach 2^32 work-items")
    return out
