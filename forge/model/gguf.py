"""Memory-mapped GGUF reading that validates every byte of the header before trusting it.

A GGUF file is: magic, version, tensor count, KV count; the KV table; the tensor-info table; padding
to `general.alignment`; the tensor data. This module walks the three tables itself, bounds-checking
every read against the file size, and maps the file read-only so tensor bytes are only touched when
a caller reads them (an upload). It refuses at least what llama.cpp's ggml/src/gguf.cpp refuses
(see FACTS.md), always with a GGUFError that names the file and the problem. The `gguf` package
supplies the constants (type ids, block sizes) and a second opinion: `verify_with_gguf_reader`.

Why not gguf.GGUFReader as the reader: it accepts overlapping tensors, reports hostile input as
raw numpy errors, and builds numpy objects for every element of a metadata array (0.7 to 1 KB per
element, measured). On SmolLM2-135M (49k tokens, 49k merges) it took 3.0 s and 156 MB where this
walk takes 0.15 s, and no size check can bound it on a hostile file: a 100 MB array of bytes would
become some 70 GB of objects. So this walk is the validation and the reader; GGUFReader runs only
on request (`verify`), after the walk, with anything it raises wrapped in a GGUFError.

Strings: keys and tensor names must be valid UTF-8; string *values* are decoded with
`surrogateescape` so a tokenizer can recover the exact bytes with `.encode("utf-8",
"surrogateescape")`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader
from gguf.constants import (GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION,
                            GGMLQuantizationType, GGUFValueType)

from forge.errors import GGUFError

MAX_STRING_BYTES = 1 << 30   # llama.cpp refuses longer strings; no real key or token comes close
MAX_ARRAY_ITEMS = 1 << 30    # the library's stated cap on metadata arrays
MAX_NAME_BYTES = 63          # GGML_MAX_NAME is 64 including the terminating NUL
MAX_DIMS = 4
MIN_VERSION = 2              # v1 used 32-bit counts and is refused by llama.cpp as well

# value type -> (struct format for one scalar, numpy dtype for arrays)
_SCALARS: dict[GGUFValueType, tuple[str, str]] = {
    GGUFValueType.UINT8: ("<B", "<u1"), GGUFValueType.INT8: ("<b", "<i1"),
    GGUFValueType.UINT16: ("<H", "<u2"), GGUFValueType.INT16: ("<h", "<i2"),
    GGUFValueType.UINT32: ("<I", "<u4"), GGUFValueType.INT32: ("<i", "<i4"),
    GGUFValueType.FLOAT32: ("<f", "<f4"), GGUFValueType.BOOL: ("<b", "<i1"),
    GGUFValueType.UINT64: ("<Q", "<u8"), GGUFValueType.INT64: ("<q", "<i8"),
    GGUFValueType.FLOAT64: ("<d", "<f8"),
}
# Smallest possible encodings, used to refuse counts whose tables cannot fit in the bytes left.
_MIN_KV_BYTES = 8 + 1 + 4 + 1        # key length, 1-byte key, value type, 1-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8   # name length, n_dims, one dim, type, offset


def _pad(n: int, align: int) -> int:
    """n rounded up to a multiple of align."""
    return (n + align - 1) // align * align


@dataclass(frozen=True)
class KV:
    """One metadata entry: its value type, the element type for arrays, and the decoded value.

    Scalars are Python int/float/bool/str; numeric arrays are read-only numpy arrays; string arrays
    are lists of str.
    """
    key: str
    type: GGUFValueType
    value: Any = field(repr=False)
    elem_type: GGUFValueType | None = None


@dataclass(frozen=True, eq=False)
class GGUFTensor:
    """A tensor of the file: type, shapes, where its bytes are, and a zero-copy view of them.

    `ggml_shape` is GGML order (ne0, the contiguous row length, first); `shape` is numpy order.
    `offset` is absolute in the file, `data_offset` relative to the data section. `data` is a
    read-only uint8 view of the `nbytes` raw bytes, backed by the file mapping (nothing is copied
    until someone reads it).
    """
    name: str
    ggml_type: GGMLQuantizationType
    ggml_shape: tuple[int, ...]
    offset: int
    data_offset: int
    nbytes: int
    data: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape in numpy order (rows last-to-first, the contiguous dimension last)."""
        return tuple(reversed(self.ggml_shape))

    @property
    def n_elements(self) -> int:
        """Number of logical elements."""
        return int(np.prod(self.ggml_shape, dtype=object))

    @property
    def type_name(self) -> str:
        """The GGML type name, e.g. "Q4_1"."""
        return self.ggml_type.name

    @property
    def block_size(self) -> int:
        """Elements per block of this type (1 for plain types)."""
        return GGML_QUANT_SIZES[self.ggml_type][0]

    @property
    def type_size(self) -> int:
        """Bytes per block of this type."""
        return GGML_QUANT_SIZES[self.ggml_type][1]

    def rows(self) -> np.ndarray:
        """The raw bytes as uint8 of numpy shape (*shape[:-1], bytes_per_row); no copy."""
        row_bytes = self.ggml_shape[0] // self.block_size * self.type_size
        return self.data.reshape(*self.shape[:-1], row_bytes)

    def array(self) -> np.ndarray:
        """A typed numpy view (numpy shape) for plain types; refuses block-quantized types."""
        dtype = _PLAIN_DTYPES.get(self.ggml_type)
        if dtype is None:
            raise GGUFError(f"tensor {self.name!r} is {self.type_name}, a block type: "
                            "use rows() and a dequantizer")
        return self.data.view(dtype).reshape(self.shape)


_PLAIN_DTYPES = {
    GGMLQuantizationType.F32: np.dtype("<f4"), GGMLQuantizationType.F16: np.dtype("<f2"),
    GGMLQuantizationType.BF16: np.dtype("<u2"), GGMLQuantizationType.F64: np.dtype("<f8"),
    GGMLQuantizationType.I8: np.dtype("<i1"), GGMLQuantizationType.I16: np.dtype("<i2"),
    GGMLQuantizationType.I32: np.dtype("<i4"), GGMLQuantizationType.I64: np.dtype("<i8"),
}


class _Reader:
    """Little-endian reads over the mapped file; every read is checked against the file size."""

    def __init__(self, buf: memoryview, path: str):
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def fail(self, msg: str) -> GGUFError:
        """A GGUFError naming the file."""
        return GGUFError(f"{self.path}: {msg}")

    def left(self) -> int:
        """Bytes between the cursor and the end of the file."""
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        """Refuses a read of n bytes that would run past the end of the file."""
        if n > self.left():
            raise self.fail(f"truncated: {what} at byte {self.pos} needs {n} bytes, "
                            f"only {self.left()} remain")

    def scalar(self, fmt: str, what: str):
        """Reads one little-endian value in struct format fmt."""
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def raw_string(self, what: str) -> bytes:
        """Reads a u64 length and that many bytes; refuses > 1 GiB or past the end of file."""
        n = self.scalar("<Q", f"length of {what}")
        if n > MAX_STRING_BYTES:
            raise self.fail(f"{what} claims {n} bytes (limit {MAX_STRING_BYTES})")
        self.need(n, what)
        raw = self.buf[self.pos:self.pos + n].tobytes()
        self.pos += n
        return raw

    def name(self, what: str) -> str:
        """Reads a string that must be valid UTF-8 (keys, tensor names)."""
        raw = self.raw_string(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not valid UTF-8: {raw[:80]!r}") from None

    def text(self, what: str) -> str:
        """Reads a string value; invalid UTF-8 bytes survive as surrogate escapes."""
        return self.raw_string(what).decode("utf-8", "surrogateescape")


def _value_type(r: _Reader, key: str, what: str) -> GGUFValueType:
    """Reads a value-type id; refuses ids GGUF does not define."""
    tid = r.scalar("<I", f"{what} of {key!r}")
    try:
        return GGUFValueType(tid)
    except ValueError:
        raise r.fail(f"key {key!r} has unknown value type {tid}") from None


def _read_scalar(r: _Reader, vtype: GGUFValueType, key: str):
    """Reads one scalar value of vtype."""
    if vtype == GGUFValueType.STRING:
        return r.text(f"string value of {key!r}")
    v = r.scalar(_SCALARS[vtype][0], f"value of {key!r}")
    if vtype == GGUFValueType.BOOL:
        return v != 0   # llama.cpp reads a bool as an int8 and tests for non-zero
    return v


def _read_array(r: _Reader, key: str) -> tuple[GGUFValueType, Any]:
    """Reads an array: refuses nested arrays and counts that cannot fit in the bytes left."""
    etype = _value_type(r, key, "array element type")
    if etype == GGUFValueType.ARRAY:
        raise r.fail(f"key {key!r} is a nested array, which GGUF does not allow")
    n = r.scalar("<Q", f"array length of {key!r}")
    if n > MAX_ARRAY_ITEMS:
        raise r.fail(f"array {key!r} claims {n} elements (limit {MAX_ARRAY_ITEMS})")
    if etype == GGUFValueType.STRING:
        if n * 8 > r.left():   # each string carries at least its 8-byte length
            raise r.fail(f"array {key!r} claims {n} strings, more than the {r.left()} bytes left hold")
        return etype, [r.text(f"element {i} of {key!r}") for i in range(n)]
    dtype = np.dtype(_SCALARS[etype][1])
    r.need(n * dtype.itemsize, f"array {key!r} of {n} {etype.name}")
    # A view of the read-only mapping: token scores and types cost no memory until read.
    arr = np.frombuffer(r.buf, dtype=dtype, count=n, offset=r.pos)
    r.pos += n * dtype.itemsize
    if etype == GGUFValueType.BOOL:
        arr = arr != 0
        arr.flags.writeable = False
    return etype, arr


def _read_kv(r: _Reader, index: int, seen: dict[str, KV]) -> KV:
    """Reads one KV entry; refuses empty and duplicate keys."""
    key = r.name(f"key {index}")
    if not key:
        raise r.fail(f"key {index} is empty")
    if key in seen:
        raise r.fail(f"duplicate key {key!r}")
    vtype = _value_type(r, key, "value type")
    if vtype == GGUFValueType.ARRAY:
        etype, arr = _read_array(r, key)
        return KV(key, vtype, arr, etype)
    return KV(key, vtype, _read_scalar(r, vtype, key))


def _tensor_type(r: _Reader, name: str) -> GGMLQuantizationType:
    """Reads a GGML type id; refuses ids that the gguf package does not know."""
    tid = r.scalar("<I", f"type of tensor {name!r}")
    try:
        qtype = GGMLQuantizationType(tid)
    except ValueError:
        raise r.fail(f"tensor {name!r} has unknown GGML type id {tid}") from None
    if qtype not in GGML_QUANT_SIZES:
        raise r.fail(f"tensor {name!r} has GGML type {qtype.name} with no known block size")
    return qtype


def _tensor_dims(r: _Reader, name: str) -> tuple[int, ...]:
    """Reads n_dims and the dims (uint64); refuses 0 or > 4 dims, a zero dim, element counts >= 2^63."""
    n_dims = r.scalar("<I", f"dimension count of tensor {name!r}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise r.fail(f"tensor {name!r} has {n_dims} dimensions (forge accepts 1 to {MAX_DIMS})")
    dims = tuple(r.scalar("<Q", f"dimension {i} of tensor {name!r}") for i in range(n_dims))
    if any(d < 1 for d in dims):
        raise r.fail(f"tensor {name!r} has a dimension of 0: {list(dims)}")
    if int(np.prod(dims, dtype=object)) >= 1 << 63:
        raise r.fail(f"tensor {name!r} with shape {list(dims)} has an element count that "
                     "overflows int64")
    return dims


def _read_tensor_info(r: _Reader, index: int, seen: set[str]) -> tuple:
    """Reads one tensor-info entry: (name, type, dims, nbytes, relative offset)."""
    name = r.name(f"name of tensor {index}")
    if not name:
        raise r.fail(f"tensor {index} has an empty name")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise r.fail(f"tensor name {name[:80]!r}... is {len(name.encode())} bytes "
                     f"(GGML allows at most {MAX_NAME_BYTES})")
    if name in seen:
        raise r.fail(f"duplicate tensor name {name!r}")
    seen.add(name)
    dims = _tensor_dims(r, name)
    qtype = _tensor_type(r, name)
    block, type_size = GGML_QUANT_SIZES[qtype]
    if dims[0] % block:
        raise r.fail(f"tensor {name!r} of type {qtype.name} has rows of {dims[0]} elements, "
                     f"not a multiple of its block size {block}")
    nbytes = int(np.prod(dims, dtype=object)) // block * type_size
    offset = r.scalar("<Q", f"data offset of tensor {name!r}")
    return name, qtype, dims, nbytes, offset


def _alignment(r: _Reader, kvs: dict[str, KV]) -> int:
    """general.alignment (default 32); refuses a non-uint32 or one not a non-zero power of two."""
    kv = kvs.get("general.alignment")
    if kv is None:
        return GGUF_DEFAULT_ALIGNMENT
    if kv.type != GGUFValueType.UINT32:
        raise r.fail(f"general.alignment must be a UINT32, found {kv.type.name}")
    a = kv.value
    if a <= 0 or a & (a - 1):
        raise r.fail(f"general.alignment {a} is not a non-zero power of two")
    return a


def _header(r: _Reader) -> tuple[int, int, int]:
    """Reads magic, version and the two counts; refuses bad magic, versions and absurd counts."""
    r.need(4, "magic")
    magic = r.buf[0:4].tobytes()
    if struct.unpack("<I", magic)[0] != GGUF_MAGIC:
        raise r.fail(f"not a GGUF file (magic {magic!r}, expected b'GGUF')")
    r.pos = 4
    version = r.scalar("<I", "version")
    if version != 0 and version & 0xFFFF == 0:
        raise r.fail(f"version field reads 0x{version:08x}: the file is byte-swapped (big-endian), "
                     "which forge does not load")
    if not MIN_VERSION <= version <= GGUF_VERSION:
        raise r.fail(f"GGUF version {version} is not supported "
                     f"(forge reads versions {MIN_VERSION} to {GGUF_VERSION})")
    n_tensors = r.scalar("<Q", "tensor count")  # uint64 in GGUF (v2+), as are dims and lengths
    n_kv = r.scalar("<Q", "metadata key count")
    for n, what, unit in ((n_tensors, "tensors", _MIN_TENSOR_INFO_BYTES), (n_kv, "metadata keys", _MIN_KV_BYTES)):
        if n * unit > r.left():
            raise r.fail(f"header claims {n} {what}, whose table cannot fit in the "
                         f"{r.left()} bytes left in the file")
    return version, n_tensors, n_kv


class GGUFFile:
    """A validated, memory-mapped GGUF file.

    Attributes: path, file_size, version, alignment, data_start (absolute offset of the data
    section), kv (key -> KV, file order), tensors (name -> GGUFTensor, file order).
    Construct with `load_gguf(path)`.
    """

    def __init__(self, path: Path, file_size: int, version: int, alignment: int, data_start: int,
                 kv: dict[str, KV], tensors: dict[str, GGUFTensor]):
        self.path, self.file_size, self.version = path, file_size, version
        self.alignment, self.data_start = alignment, data_start
        self.kv, self.tensors = kv, tensors

    def __repr__(self) -> str:
        return (f"<GGUFFile {self.path.name} v{self.version}: {len(self.kv)} keys, "
                f"{len(self.tensors)} tensors>")

    def __contains__(self, key: str) -> bool:
        return key in self.kv

    def get(self, key: str, default: Any = None) -> Any:
        """The decoded value of key, or default when the key is absent."""
        kv = self.kv.get(key)
        return default if kv is None else kv.value

    def tensor(self, name: str) -> GGUFTensor:
        """The tensor called name; refuses (GGUFError) a name the file lacks."""
        t = self.tensors.get(name)
        if t is None:
            raise GGUFError(f"{self.path}: no tensor named {name!r}")
        return t

    @property
    def architecture(self) -> str:
        """general.architecture; refuses a file without one or with a non-string value."""
        kv = self.kv.get("general.architecture")
        if kv is None or kv.type != GGUFValueType.STRING or not kv.value:
            raise GGUFError(f"{self.path}: general.architecture is missing or not a string")
        return kv.value

    @property
    def tensor_bytes(self) -> int:
        """Total bytes of tensor data (without padding)."""
        return sum(t.nbytes for t in self.tensors.values())


def _place_tensors(r: _Reader, mm: np.ndarray, infos: list, alignment: int) -> tuple[int, dict]:
    """Checks the data section and sequential offsets; returns (data_start, tensors)."""
    data_start = _pad(r.pos, alignment)
    if infos and data_start > r.size:
        raise r.fail(f"data section would start at byte {data_start}, past the end of the "
                     f"file ({r.size} bytes)")
    tensors, expected = {}, 0
    for name, qtype, dims, nbytes, offset in infos:
        if offset != expected:
            raise r.fail(f"tensor {name!r} has data offset {offset}, expected {expected} "
                         f"(offsets must follow each other, padded to {alignment})")
        start = data_start + offset
        if start + nbytes > r.size:
            raise r.fail(f"tensor {name!r} data [{start}, {start + nbytes}) lies past the end "
                         f"of the file ({r.size} bytes): truncated?")
        tensors[name] = GGUFTensor(name, qtype, dims, start, offset, nbytes,
                                   mm[start:start + nbytes])
        expected = offset + _pad(nbytes, alignment)
    return data_start, tensors


def _map(path: Path) -> tuple[np.ndarray, int]:
    """Maps the file read-only; refuses missing, unreadable and too-short files."""
    try:
        # A FIFO or device would block or never end: only regular files are mapped.
        if not path.is_file():
            raise GGUFError(f"{path}: not a regular file" if path.exists() else f"{path}: no such file")
        size = os.stat(path).st_size
        if size < 24:
            raise GGUFError(f"{path}: {size} bytes is too short for a GGUF header (24 bytes)")
        mm = np.memmap(path, dtype=np.uint8, mode="r")
        return mm, len(mm)   # the mapped length, in case the file changed since the stat
    except OSError as e:
        raise GGUFError(f"{path}: cannot open: {e.strerror or e}") from None


def load_gguf(path: str | os.PathLike, verify: bool = False) -> GGUFFile:
    """Opens, validates and maps a GGUF file.

    Returns a GGUFFile whose tensors are zero-copy views into the mapping. Refuses (GGUFError,
    message naming the file): everything in FACTS.md's list — bad magic/version/byte order,
    counts, strings or arrays that cannot fit, empty/duplicate keys, unknown or nested value
    types, a bad general.alignment, long/duplicate tensor names, bad dims, unknown types, rows not
    a multiple of the block size, a misplaced data section, non-sequential offsets, short reads.
    No count or length read from the file is trusted before the bytes it claims are known to
    exist, so memory use is proportional to the header's real size, never to a claimed one.
    verify: also read the file with gguf.GGUFReader and refuse any disagreement (slow: seconds
    for a real vocabulary; see verify_with_gguf_reader).
    """
    path = Path(path)
    mm, size = _map(path)
    r = _Reader(memoryview(mm), str(path))
    try:
        version, n_tensors, n_kv = _header(r)
        kvs: dict[str, KV] = {}
        for i in range(n_kv):
            kv = _read_kv(r, i, kvs)
            kvs[kv.key] = kv
        alignment = _alignment(r, kvs)
        names: set[str] = set()
        infos = [_read_tensor_info(r, i, names) for i in range(n_tensors)]
        data_start, tensors = _place_tensors(r, mm, infos, alignment)
    except (struct.error, ValueError, OverflowError, MemoryError, IndexError, KeyError) as e:
        # Every read is bounds-checked, so reaching this is a forge bug; still never leak it raw.
        raise GGUFError(f"{path}: malformed GGUF header ({type(e).__name__}: {e})") from e
    g = GGUFFile(path, size, version, alignment, data_start, kvs, tensors)
    if verify:
        verify_with_gguf_reader(g)
    return g


def _reader_view(g: GGUFFile):
    """What gguf.GGUFReader makes of g's file: (alignment, data start, keys, tensors)."""
    try:
        ref = GGUFReader(g.path, "r")
    except Exception as e:   # noqa: BLE001 - its failures are numpy/KeyError/ValueError of any kind
        raise GGUFError(f"{g.path}: gguf's reader refuses the file ({type(e).__name__}: {e})") from e
    keys = [(name, f.types[0], f.types[-1] if len(f.types) > 1 else None, len(f.data))
            for name, f in ref.fields.items() if not name.startswith("GGUF.")]
    tensors = [(t.name, t.tensor_type, tuple(int(d) for d in t.shape), int(t.data_offset),
                int(t.n_bytes)) for t in ref.tensors]
    return int(ref.alignment), int(ref.data_offset), keys, tensors


def _first_difference(a, b) -> str:
    """'x vs y' for the first differing item of two lists (or the two values themselves)."""
    if not isinstance(a, list):
        return f"{a} vs {b}"
    return next((f"{x} vs {y}" for x, y in zip(a, b) if x != y), f"{len(a)} vs {len(b)} items")


def verify_with_gguf_reader(g: GGUFFile) -> None:
    """Reads g's file again with gguf.GGUFReader (an independent parser) and compares.

    Refuses (GGUFError) a file the reader cannot read or where it sees other keys, value types,
    array lengths, tensors, shapes, types or offsets than load_gguf did. Returns None when the two
    agree. For tests and explicit checks only: the reader's time and memory grow by about 1 KB
    per metadata array element (seconds for a real vocabulary), which load_gguf's checks cannot
    bound for it; call it only on a file load_gguf accepted.
    """
    def count(kv: KV) -> int:
        return len(kv.value) if kv.type == GGUFValueType.ARRAY else 1

    mine = (g.alignment, g.data_start,
            [(k.key, k.type, k.elem_type if count(k) else None, count(k)) for k in g.kv.values()],
            [(t.name, t.ggml_type, t.ggml_shape, t.offset, t.nbytes) for t in g.tensors.values()])
    theirs = _reader_view(g)
    for what, a, b in zip(("alignment", "data start", "metadata", "tensors"), mine, theirs):
        if a != b:
            raise GGUFError(f"{g.path}: forge and gguf's reader disagree about the {what}: "
                            f"{_first_difference(a, b)}")
