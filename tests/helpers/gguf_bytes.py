"""Raw GGUF bytes for hostile-input tests: a permissive encoder and a field map of valid files.

`craft()` writes whatever it is told (wrong counts, bad types, overlapping offsets) so a test can
plant exactly one defect. `fields()` walks a *valid* file and lists where each count, length,
type id, dimension and offset lives, so property tests can plant huge values at those places.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

STRING, ARRAY, UINT32, UINT64 = 8, 9, 4, 10
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gstr(s: str | bytes, length: int | None = None) -> bytes:
    """A GGUF string: u64 length (default: the real one) then the bytes."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b) if length is None else length) + b


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    """One KV entry: key, u32 value type, payload bytes as given."""
    return gstr(key) + struct.pack("<I", vtype) + payload


def kv_u32(key: str, v: int) -> bytes:
    """A UINT32 KV entry."""
    return kv(key, UINT32, struct.pack("<I", v))


def kv_str(key: str, v: str) -> bytes:
    """A STRING KV entry."""
    return kv(key, STRING, gstr(v))


def kv_array(key: str | bytes, etype: int, n: int, items: bytes) -> bytes:
    """An ARRAY KV entry: element type, claimed count n, then the item bytes as given."""
    return kv(key, ARRAY, struct.pack("<IQ", etype, n) + items)


def tensor_info(name: str | bytes, dims: list[int], ttype: int, offset: int) -> bytes:
    """One tensor-info entry; dims are written as signed int64 so negatives can be planted."""
    return (gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<q", d) for d in dims)
            + struct.pack("<I", ttype) + struct.pack("<Q", offset))


def craft(kvs: list[bytes] = (), tensors: list[bytes] = (), data: bytes = b"", *, version: int = 3,
          n_kv: int | None = None, n_tensors: int | None = None, alignment: int = 32,
          magic: bytes = b"GGUF", pad: bool = True) -> bytes:
    """A whole file: header (counts default to the real ones), KVs, tensor infos, padding, data."""
    head = (magic + struct.pack("<I", version)
            + struct.pack("<Q", len(tensors) if n_tensors is None else n_tensors)
            + struct.pack("<Q", len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(tensors))
    padding = (-len(head)) % alignment if pad else 0
    return head + b"\0" * padding + data


def one_f32_tensor(n: int = 8, name: str = "t.weight") -> bytes:
    """A valid file holding one F32 tensor of n elements (the baseline most defects start from)."""
    return craft([kv_str("general.architecture", "llama")],
                 [tensor_info(name, [n], 0, 0)], struct.pack(f"<{n}f", *range(n)))


@dataclass(frozen=True)
class Field:
    """A field of a valid file: byte position, width, and what it is ("n_kv", "str_len", ...)."""
    pos: int
    size: int
    kind: str


def _walk_value(b: bytes, pos: int, vtype: int, out: list[Field]) -> int:
    """Records a value's length fields; returns the position after it."""
    if vtype == STRING:
        out.append(Field(pos, 8, "str_len"))
        return pos + 8 + struct.unpack_from("<Q", b, pos)[0]
    if vtype == ARRAY:
        etype, n = struct.unpack_from("<IQ", b, pos)
        out += [Field(pos, 4, "value_type"), Field(pos + 4, 8, "array_len")]
        pos += 12
        for _ in range(n if etype == STRING else 0):
            pos = _walk_value(b, pos, STRING, out)
        return pos + (0 if etype == STRING else n * _SIZES[etype])
    return pos + _SIZES[vtype]


def fields(b: bytes) -> tuple[list[Field], list[int]]:
    """(fields, section boundaries) of a valid GGUF file's header, KV table and tensor infos.

    Boundaries: the end of the fixed header, of each KV, of each tensor info, and the data start
    (for files with the default alignment of 32).
    """
    out = [Field(8, 8, "n_tensors"), Field(16, 8, "n_kv")]
    n_tensors, n_kv = struct.unpack_from("<QQ", b, 8)
    pos, bounds = 24, [24]
    for _ in range(n_kv):
        pos = _walk_value(b, pos, STRING, out)
        out.append(Field(pos, 4, "value_type"))
        pos = _walk_value(b, pos + 4, struct.unpack_from("<I", b, pos)[0], out)
        bounds.append(pos)
    for _ in range(n_tensors):
        pos = _walk_value(b, pos, STRING, out)
        nd = struct.unpack_from("<I", b, pos)[0]
        out += [Field(pos, 4, "n_dims")] + [Field(pos + 4 + 8 * i, 8, "dim") for i in range(nd)]
        pos += 4 + 8 * nd
        out += [Field(pos, 4, "ggml_type"), Field(pos + 4, 8, "offset")]
        pos += 12
        bounds.append(pos)
    data_start = (pos + 31) // 32 * 32
    bounds.append(data_start)
    return out, bounds


def plant(b: bytes, f: Field, value: int) -> bytes:
    """b with value written little-endian (unsigned, wrapped to the field's width) at field f."""
    v = value % (1 << (8 * f.size))
    return b[:f.pos] + v.to_bytes(f.size, "little") + b[f.pos + f.size:]
