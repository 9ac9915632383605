"""Read an AMDGPU code object (an ELF64 shared object) with no ROCm installed.

    co = read_code_object(Path("k.co"))        # or bytes, with a name for error messages
    co.mach == 0x41, co.processor == "gfx1100"
    k = co.kernel("rmsnorm_f32_b256")            # by name or by symbol ("<name>.kd")
    [(a.offset, a.size, a.value_kind) for a in k.args]
    resources(co, "rmsnorm_f32_b256")            # {"vgpr", "sgpr", "agpr", "lds", "scratch", "wave", "spills"}

The metadata lives in an ELF note named "AMDGPU" of type NT_AMDGPU_METADATA (32) whose descriptor
is a MessagePack map (LLVM AMDGPUUsage, code object V4/V5). Every offset and size read from the
file is bounds-checked: a truncated or hostile file raises CodeObjectError naming the file and
the problem, never struct.error or IndexError.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from ..errors import CodeObjectError

# llvm/include/llvm/BinaryFormat/ELF.h
ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
EM_AMDGPU = 224
SHT_NOTE = 7
EF_AMDGPU_MACH = 0xFF
NT_AMDGPU_METADATA = 32
NOTE_NAME = "AMDGPU"

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, 64 bytes
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr, 64 bytes
_NHDR = struct.Struct("<III")  # Elf64_Nhdr: namesz, descsz, type

# The resource-usage dict every toolchain fills (NVIDIA from the ptxas report); None = unknown.
RESOURCE_KEYS = ("vgpr", "sgpr", "agpr", "lds", "scratch", "wave", "spills")


@dataclass(frozen=True)
class KernelArg:
    """One entry of a kernel's `.args`: explicit parameters first, then the compiler's hidden_*."""

    offset: int
    size: int
    value_kind: str
    name: str | None = None

    @property
    def hidden(self) -> bool:
        return self.value_kind.startswith("hidden_")


@dataclass(frozen=True)
class KernelInfo:
    """A kernel's metadata entry. Counts the compiler may omit (agpr, spills) are None then."""

    name: str
    symbol: str
    kernarg_segment_size: int
    kernarg_segment_align: int
    group_segment_fixed_size: int  # static LDS bytes
    private_segment_fixed_size: int  # scratch bytes per lane
    wavefront_size: int
    sgpr_count: int
    vgpr_count: int
    max_flat_workgroup_size: int
    agpr_count: int | None = None
    sgpr_spill_count: int | None = None
    vgpr_spill_count: int | None = None
    args: tuple[KernelArg, ...] = ()

    @property
    def explicit_args(self) -> tuple[KernelArg, ...]:
        """The parameters the kernel source declares (everything before the hidden_* block)."""
        return tuple(a for a in self.args if not a.hidden)

    @property
    def hidden_args(self) -> tuple[KernelArg, ...]:
        """The arguments the compiler appended, which a launcher must fill or zero."""
        return tuple(a for a in self.args if a.hidden)


@dataclass(frozen=True)
class CodeObject:
    """What forge needs from a code object: ELF flags, target, kernels, and the raw metadata map."""

    source: str  # file name (or "<bytes>") used in error messages
    e_flags: int
    abi_version: int  # e_ident[EI_ABIVERSION]: 2 = code object V4, 3 = V5, 4 = V6
    target: str  # amdhsa.target, e.g. "amdgcn-amd-amdhsa--gfx1100"
    version: tuple[int, ...]  # amdhsa.version
    kernels: tuple[KernelInfo, ...]
    metadata: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def mach(self) -> int:
        """EF_AMDGPU_MACH: the processor id in e_flags (gfx1100 0x41, gfx942 0x4c, gfx950 0x4f)."""
        return self.e_flags & EF_AMDGPU_MACH

    @property
    def processor(self) -> str:
        """The processor named by amdhsa.target, without target features ("gfx942:xnack-" → "gfx942")."""
        return self.target.split(":", 1)[0].rsplit("-", 1)[-1]

    def kernel(self, name_or_symbol: str) -> KernelInfo:
        """The kernel whose name or symbol is `name_or_symbol`; CodeObjectError listing the
        kernels present when there is none."""
        for k in self.kernels:
            if name_or_symbol in (k.name, k.symbol):
                return k
        have = ", ".join(k.name for k in self.kernels) or "none"
        raise CodeObjectError(f"{self.source}: no kernel {name_or_symbol!r} in the code object (has: {have})")


# ----------------------------------------------------------------------------------- ELF walking
def _unpack(st: struct.Struct, data: bytes, off: int, src: str, what: str) -> tuple:
    """st unpacked at `off`; CodeObjectError when the record runs past the end of the file."""
    if off < 0 or off + st.size > len(data):
        raise CodeObjectError(f"{src}: truncated: {what} at offset {off} needs {st.size} bytes, "
                              f"file has {len(data)}")
    return st.unpack_from(data, off)


def _check_header(data: bytes, src: str) -> tuple:
    """The ELF header fields; refuses a non-ELF, non-64-bit, big-endian or non-AMDGPU file."""
    if len(data) < 4 or data[:4] != ELF_MAGIC:
        raise CodeObjectError(f"{src}: not an ELF file (magic {data[:4]!r}, expected {ELF_MAGIC!r})")
    hdr = _unpack(_EHDR, data, 0, src, "ELF header")
    ident, machine = hdr[0], hdr[2]
    if ident[4] != ELFCLASS64:
        raise CodeObjectError(f"{src}: ELF class {ident[4]}, expected 2 (ELF64)")
    if ident[5] != ELFDATA2LSB:
        raise CodeObjectError(f"{src}: ELF data encoding {ident[5]}, expected 1 (little-endian)")
    if machine != EM_AMDGPU:
        raise CodeObjectError(f"{src}: ELF machine {machine}, expected {EM_AMDGPU} (EM_AMDGPU)")
    return hdr


def _sections(data: bytes, hdr: tuple, src: str) -> list[tuple]:
    """Every section header as a tuple of Elf64_Shdr fields; refuses a table outside the file."""
    shoff, shentsize, shnum = hdr[6], hdr[11], hdr[12]
    if shoff == 0:
        raise CodeObjectError(f"{src}: no section header table (e_shoff = 0)")
    if shentsize != _SHDR.size:
        raise CodeObjectError(f"{src}: section header size {shentsize}, expected {_SHDR.size}")
    if shnum == 0:
        # Extended numbering (more than 0xff00 sections): the count is in section 0's sh_size.
        shnum = _unpack(_SHDR, data, shoff, src, "section header 0")[5]
    if shoff + shnum * _SHDR.size > len(data):
        raise CodeObjectError(f"{src}: truncated: {shnum} section headers at offset {shoff} "
                              f"run past the end of the file ({len(data)} bytes)")
    return [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def iter_notes(data: bytes, src: str = "<bytes>"):
    """Yield (name, type, descriptor bytes) for every note in every SHT_NOTE section.
    Refuses (CodeObjectError) a note section or a note that runs outside the file or its section."""
    hdr = _check_header(data, src)
    for sh in _sections(data, hdr, src):
        if sh[1] != SHT_NOTE:
            continue
        off, size, align = sh[4], sh[5], (8 if sh[8] == 8 else 4)
        end = off + size
        if end > len(data):
            raise CodeObjectError(f"{src}: truncated: note section at {off} of {size} bytes "
                                  f"runs past the end of the file ({len(data)} bytes)")
        pos = off
        while pos + _NHDR.size <= end:
            namesz, descsz, ntype = _NHDR.unpack_from(data, pos)
            name_at = pos + _NHDR.size
            desc_at = name_at + _align(namesz, align)
            nxt = desc_at + _align(descsz, align)
            if desc_at + descsz > end:
                raise CodeObjectError(f"{src}: note at offset {pos} (namesz {namesz}, descsz {descsz}) "
                                      f"runs past its section's end at {end}")
            name = data[name_at:name_at + namesz].rstrip(b"\0").decode("latin-1")
            yield name, ntype, data[desc_at:desc_at + descsz]
            pos = nxt


# ------------------------------------------------------------------------------------- metadata
def _field(d: dict, key: str, kind, src: str, where: str, required: bool = True):
    """d[key] checked against `kind`; None for an absent optional key; CodeObjectError otherwise."""
    if key not in d:
        if required:
            raise CodeObjectError(f"{src}: {where} lacks {key}")
        return None
    v = d[key]
    # bool is an int subclass; a count given as True/False is as malformed as a string.
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)) or (kind is int and v < 0):
        raise CodeObjectError(f"{src}: {where} has {key} = {v!r}, expected a "
                              f"{'non-negative integer' if kind is int else kind.__name__}")
    return v


def _arg(a, src: str, where: str) -> KernelArg:
    if not isinstance(a, dict):
        raise CodeObjectError(f"{src}: {where} is {type(a).__name__}, expected a map")
    return KernelArg(_field(a, ".offset", int, src, where), _field(a, ".size", int, src, where),
                     _field(a, ".value_kind", str, src, where), _field(a, ".name", str, src, where, False))


def _kernel(k, i: int, src: str) -> KernelInfo:
    """One amdhsa.kernels entry as a KernelInfo; refuses missing or mistyped required fields."""
    if not isinstance(k, dict):
        raise CodeObjectError(f"{src}: amdhsa.kernels[{i}] is {type(k).__name__}, expected a map")
    where = f"kernel {k.get('.name', i)!r}"
    req = lambda key: _field(k, key, int, src, where)
    opt = lambda key: _field(k, key, int, src, where, required=False)
    args = k.get(".args", [])
    if not isinstance(args, list):
        raise CodeObjectError(f"{src}: {where} has .args of type {type(args).__name__}, expected a list")
    return KernelInfo(
        name=_field(k, ".name", str, src, where), symbol=_field(k, ".symbol", str, src, where),
        kernarg_segment_size=req(".kernarg_segment_size"), kernarg_segment_align=req(".kernarg_segment_align"),
        group_segment_fixed_size=req(".group_segment_fixed_size"),
        private_segment_fixed_size=req(".private_segment_fixed_size"),
        wavefront_size=req(".wavefront_size"), sgpr_count=req(".sgpr_count"), vgpr_count=req(".vgpr_count"),
        max_flat_workgroup_size=req(".max_flat_workgroup_size"),
        agpr_count=opt(".agpr_count"), sgpr_spill_count=opt(".sgpr_spill_count"),
        vgpr_spill_count=opt(".vgpr_spill_count"),
        args=tuple(_arg(a, src, f"{where} .args[{j}]") for j, a in enumerate(args)),
    )


def _decode(desc: bytes, src: str) -> dict:
    """The metadata map; CodeObjectError when the descriptor is not one MessagePack map."""
    try:
        meta = msgpack.unpackb(desc, raw=False, strict_map_key=False)
    # msgpack signals bad input with many types (ExtraData, FormatError, StackError, ValueError,
    # UnicodeDecodeError, TypeError for unhashable keys); all mean the same thing here.
    except Exception as e:
        raise CodeObjectError(f"{src}: AMDGPU metadata note is not valid MessagePack ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise CodeObjectError(f"{src}: AMDGPU metadata is {type(meta).__name__}, expected a map")
    return meta


def read_code_object(data: bytes | bytearray | memoryview | str | os.PathLike, name: str | None = None) -> CodeObject:
    """Parse a code object given as bytes or a path. `name` is what error messages call it (default:
    the path, or "<bytes>"). Returns a CodeObject; raises CodeObjectError for an unreadable file, a
    non-AMDGPU ELF, a truncated or inconsistent file, a missing or malformed metadata note."""
    if isinstance(data, (str, os.PathLike)):
        src = name or str(data)
        try:
            data = Path(data).read_bytes()
        except OSError as e:
            raise CodeObjectError(f"{src}: cannot read: {e.strerror or e}") from None
    else:
        src = name or "<bytes>"
        data = bytes(data)
    hdr = _check_header(data, src)
    desc = next((d for n, t, d in iter_notes(data, src) if n == NOTE_NAME and t == NT_AMDGPU_METADATA), None)
    if desc is None:
        raise CodeObjectError(f"{src}: no AMDGPU metadata note (name {NOTE_NAME!r}, type {NT_AMDGPU_METADATA})")
    meta = _decode(desc, src)
    kernels = meta.get("amdhsa.kernels", [])
    if not isinstance(kernels, list):
        raise CodeObjectError(f"{src}: amdhsa.kernels is {type(kernels).__name__}, expected a list")
    version = meta.get("amdhsa.version", [])
    if not (isinstance(version, list) and all(isinstance(v, int) for v in version)):
        raise CodeObjectError(f"{src}: amdhsa.version is {version!r}, expected a list of integers")
    target = _field(meta, "amdhsa.target", str, src, "metadata")
    return CodeObject(src, hdr[7], hdr[0][8], target, tuple(version),
                      tuple(_kernel(k, i, src) for i, k in enumerate(kernels)), meta)


def resources(meta: CodeObject, symbol: str) -> dict:
    """The store's resource-usage dict for kernel `symbol` (name or "<name>.kd"): vgpr, sgpr, agpr,
    lds (static bytes), scratch (bytes per lane), wave, spills (VGPRs + SGPRs spilled). A value the
    metadata lacks is None. CodeObjectError when the kernel is not in the object."""
    k = meta.kernel(symbol)
    spills = [c for c in (k.vgpr_spill_count, k.sgpr_spill_count) if c is not None]
    return {"vgpr": k.vgpr_count, "sgpr": k.sgpr_count, "agpr": k.agpr_count,
            "lds": k.group_segment_fixed_size, "scratch": k.private_segment_fixed_size,
            "wave": k.wavefront_size, "spills": sum(spills) if spills else None}
