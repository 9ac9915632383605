"""GGML block types: the table of the types forge runs, reference (de)quantization through the `gguf`
package's `gguf.quants` (an independent implementation of llama.cpp's formats), and random but
valid encodings for kernel tests.

A tensor of shape (..., n_cols) in a block type is stored row by row; a row is
`row_bytes(type, n_cols)` bytes: n_cols / block_size blocks of type_size bytes, back to back.

MXFP4 (type 39) is GGML's and forge's MX layout at once (see forge.quant.mx): `dequantize` gives
what llama.cpp computes (gguf.quants), which differs from the MX spec in two places only: scale
byte 0xFF (spec: NaN; GGML: the number 2^128, so 2^127 * kvalues in float32, which is +-Inf for
|E2M1| >= 1) and element code 8 (spec: -0.0; GGML's table: +0.0). `quantize` uses forge's
spec-exact MX quantizer, because gguf.quants' one rounds ties toward zero (0.75 -> 0.5, 1.75 -> 1.5,
3.5 -> 3 at scale 1), takes floor(log2(amax)) from a float32 log2 (off by one just below a power of
two) and wraps the scale byte of blocks whose max is below 2^-125.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import quants as gq
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as QT

from ..errors import QuantError
from . import mx

# Dequantized magnitudes random_blocks stays within (up to the rounding of its f16 scales).
RANDOM_BOUND = 1000.0


@dataclass(frozen=True)
class GGMLType:
    """One GGML tensor type: block_size values per type_size bytes, and its GGUF type id."""

    name: str
    qtype: QT
    block_size: int
    type_size: int
    quantizable: bool  # quantize() supports it (gguf.quants, or forge's MX codec for MXFP4)

    @property
    def type_id(self) -> int:
        return int(self.qtype)


def _entry(qtype: QT, quantizable: bool) -> GGMLType:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    return GGMLType(qtype.name, qtype, block_size, type_size, quantizable)


GGML_TYPES: dict[str, GGMLType] = {t.name: t for t in (
    _entry(QT.F32, True), _entry(QT.F16, True), _entry(QT.BF16, True),
    _entry(QT.Q8_0, True), _entry(QT.Q4_0, True), _entry(QT.Q4_1, True),
    _entry(QT.Q5_0, True), _entry(QT.Q5_1, True),
    _entry(QT.Q4_K, False), _entry(QT.Q5_K, False), _entry(QT.Q6_K, False),
    _entry(QT.MXFP4, True),
)}


def ggml_type(t) -> GGMLType:
    """The GGMLType for a name (case-insensitive, "Q4_K"), a GGUF type id or GGMLQuantizationType,
    or a GGMLType. QuantError for anything forge does not support."""
    if isinstance(t, GGMLType):
        return t
    if isinstance(t, str):
        found = GGML_TYPES.get(t.upper())
    elif isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        found = next((e for e in GGML_TYPES.values() if e.type_id == int(t)), None)
    else:
        found = None
    if found is None:
        raise QuantError(f"unsupported GGML type {t!r}; supported: {', '.join(GGML_TYPES)}")
    return found


def row_bytes(t, n_cols: int) -> int:
    """Bytes of one row of n_cols values. QuantError for an unknown type or an n_cols that is not
    a positive multiple of the type's block size."""
    e = ggml_type(t)
    if isinstance(n_cols, bool) or not isinstance(n_cols, (int, np.integer)) or n_cols <= 0 \
            or n_cols % e.block_size:
        raise QuantError(f"{e.name}: a row of {n_cols!r} values is not a positive multiple of the "
                         f"block size {e.block_size}")
    return int(n_cols) // e.block_size * e.type_size


def _as_bytes(raw, what: str) -> np.ndarray:
    """raw (a uint8 array of any shape, or bytes / bytearray / memoryview) as contiguous uint8."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return np.frombuffer(raw, dtype=np.uint8)
    r = np.ascontiguousarray(raw)
    if r.dtype != np.uint8:
        raise QuantError(f"{what}: raw data must be uint8 bytes, got {r.dtype}")
    return r


def dequantize(raw, t, shape) -> np.ndarray:
    """float32 array of `shape` (a tuple, or an int n for n values) decoded from raw bytes (uint8
    array of any shape or a bytes-like object, rows back to back) with gguf.quants. QuantError
    for unknown types, bad row lengths and a byte count that does not match shape."""
    e = ggml_type(t)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if not shape:
        raise QuantError(f"{e.name}: dequantize needs a shape with a last (row) axis")
    rb = row_bytes(e, shape[-1])
    r = _as_bytes(raw, e.name)
    n_rows = int(np.prod(shape[:-1], dtype=np.int64))
    if r.size != n_rows * rb:
        raise QuantError(f"{e.name}: {r.size} bytes do not hold shape {shape} ({n_rows} rows of {rb} bytes)")
    if n_rows == 0:  # gguf.quants cannot reshape an empty block array
        return np.zeros(shape, dtype=np.float32)
    # Inf/NaN from Inf/NaN f16 scales or GGML's MXFP4 scale 0xFF are the format's values, not errors.
    with np.errstate(over="ignore", invalid="ignore"):
        out = gq.dequantize(r.reshape(n_rows, rb), e.qtype)
    return np.array(out, dtype=np.float32).reshape(shape)


def quantize(x, t) -> np.ndarray:
    """uint8 bytes (..., row_bytes) of x (..., n_cols) in type t: gguf.quants for the float and
    legacy types, forge.quant.mx for MXFP4. QuantError for K-quants (gguf.quants cannot quantize
    them: use random_blocks for test data), unknown types and bad row lengths."""
    e = ggml_type(t)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0:
        raise QuantError(f"{e.name}: cannot quantize a scalar")
    rb = row_bytes(e, x.shape[-1])
    if not e.quantizable:
        raise QuantError(f"{e.name}: gguf.quants has no quantizer for this type; "
                         f"use random_blocks() to get valid {e.name} data")
    if x.size == 0:  # gguf.quants cannot reshape an empty block array
        return np.zeros((*x.shape[:-1], rb), dtype=np.uint8)
    if e.qtype == QT.MXFP4:
        return mx.quantize_rows(x, mx.MXFP4)
    out = gq.quantize(np.ascontiguousarray(x), e.qtype)
    return np.ascontiguousarray(out).view(np.uint8).reshape(*x.shape[:-1], rb)


# --------------------------------------------------------------------------------------------
# Random valid encodings
# --------------------------------------------------------------------------------------------
# Each block type is a list of fields in byte order:
#   ("f16", hi)        a float16 scale, sign random, magnitude log-uniform in [hi / 2^12, hi]
#                      (never below float16's smallest normal), hi chosen so the block's
#                      dequantized values stay within RANDOM_BOUND
#   ("bytes", n)       n uniformly random bytes: every bit pattern of a GGML quant field is valid
#   ("e8m0", lo, hi)   an E8M0 exponent byte, uniform in lo..hi (never the NaN code 0xFF)
_B = RANDOM_BOUND
_FIELDS: dict[str, list[tuple]] = {
    "Q8_0": [("f16", _B / 128), ("bytes", 32)],                         # d * int8
    "Q4_0": [("f16", _B / 8), ("bytes", 16)],                           # d * (q - 8)
    "Q4_1": [("f16", _B / 2 / 15), ("f16", _B / 2), ("bytes", 16)],     # d * q + m
    "Q5_0": [("f16", _B / 16), ("bytes", 4), ("bytes", 16)],            # d * (q - 16)
    "Q5_1": [("f16", _B / 2 / 31), ("f16", _B / 2), ("bytes", 4), ("bytes", 16)],
    # K-quants: d * sc * q - dmin * m with 6-bit sc, m (12 packed bytes) and 4/5-bit q.
    "Q4_K": [("f16", _B / 2 / (63 * 15)), ("f16", _B / 2 / 63), ("bytes", 12), ("bytes", 128)],
    "Q5_K": [("f16", _B / 2 / (63 * 31)), ("f16", _B / 2 / 63), ("bytes", 12), ("bytes", 32),
             ("bytes", 128)],
    # Q6_K: ql, qh, 16 int8 sub-scales, then d; value d * sc * (q - 32), |sc| <= 128, |q-32| <= 32.
    "Q6_K": [("bytes", 128), ("bytes", 64), ("bytes", 16), ("f16", _B / (128 * 32))],
    # 2^(e-127) * E2M1 (|P| <= 6): e - 127 <= 7 keeps 6 * 2^7 = 768 within the bound.
    "MXFP4": [("e8m0", 127 - 24, 127 + 7), ("bytes", 16)],
}
_F16_MIN_NORMAL = 2.0 ** -14


def _random_f16(rng: np.random.Generator, n: int, hi: float) -> np.ndarray:
    """n random finite float16 values as (n, 2) bytes, |v| in [max(hi/4096, 2^-14), ~hi]."""
    mag = np.exp2(rng.uniform(np.log2(hi) - 12, np.log2(hi), n))
    mag = np.maximum(mag, _F16_MIN_NORMAL)
    v = np.where(rng.random(n) < 0.5, -mag, mag).astype(np.float16)
    return v.view(np.uint8).reshape(n, 2)


def _random_field(rng: np.random.Generator, field: tuple, n: int) -> np.ndarray:
    """(n, width) random bytes of one block field (see _FIELDS)."""
    kind = field[0]
    if kind == "f16":
        return _random_f16(rng, n, field[1])
    if kind == "bytes":
        return rng.integers(0, 256, (n, field[1]), dtype=np.uint8)
    return rng.integers(field[1], field[2] + 1, (n, 1), dtype=np.uint8)


def _random_floats(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random float64 values, random sign, magnitudes log-uniform in [RANDOM_BOUND / 2^20, RANDOM_BOUND]."""
    mag = np.exp2(rng.uniform(np.log2(_B) - 20, np.log2(_B), shape))
    return np.where(rng.random(shape) < 0.5, -mag, mag)


def random_blocks(t, n_rows: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 array (n_rows, row_bytes(t, n_cols)) of random, valid encodings of type t.

    Every quant field is uniformly random (all bit patterns are valid in GGML); scales are finite,
    normal float16 (or E8M0 below 0xFF) sized so that every dequantized value lies within about
    +-RANDOM_BOUND (1e3); F32/F16/BF16 are finite values within the same bound. Deterministic for
    a given rng state. Refuses unknown types, bad n_cols, or n_rows < 1 (QuantError)."""
    e = ggml_type(t)
    rb = row_bytes(e, n_cols)
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 1:
        raise QuantError(f"{e.name}: n_rows must be a positive integer, got {n_rows!r}")
    if e.name in ("F32", "F16"):
        vals = _random_floats(rng, (n_rows, n_cols)).astype(np.float32 if e.name == "F32" else np.float16)
        return vals.view(np.uint8).reshape(n_rows, rb)
    if e.name == "BF16":
        # Truncating a float32 to its top 16 bits is a valid bfloat16 (finite stays finite).
        bits = _random_floats(rng, (n_rows, n_cols)).astype(np.float32).view(np.uint32) >> 16
        return bits.astype(np.uint16).view(np.uint8).reshape(n_rows, rb)
    n = n_rows * (n_cols // e.block_size)
    block = np.concatenate([_random_field(rng, f, n) for f in _FIELDS[e.name]], axis=1)
    assert block.shape[1] == e.type_size, (e.name, block.shape)
    return block.reshape(n_rows, rb)
