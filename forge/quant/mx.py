"""OCP Microscaling (MX) v1.0 reference codecs in numpy: the oracle forge's MX kernels are checked against.

Scalar formats (all little formats keep the sign in their top bit):

    E8M0 scale      8 bits, value 2^(e-127), e in 0..254; 0xFF is NaN. No sign, no zero.
    FP4 E2M1        bias 1, magnitudes 0 0.5 1 1.5 2 3 4 6; no Inf, no NaN.
    FP6 E2M3        bias 1, max 7.5, subnormal step 0.125; no Inf, no NaN.
    FP6 E3M2        bias 3, max 28, subnormal step 0.0625; no Inf, no NaN.
    FP8 E4M3        bias 7, max 448, no Inf; S.1111.111 is NaN.
    FP8 E5M2        bias 15, IEEE-like: S.11111.00 is Inf, S.11111.{01,10,11} NaN; max 57344.

A code is the element's bit pattern in the low bits of a uint8 (4, 6 or 8 bits).

Element encoding (`ElementFormat.encode`) rounds to nearest, ties to even, and saturates finite
values beyond the largest normal to +-max, as the MX spec's conversion ("clamping normal numbers")
says. Infinities become +-Inf where the format has them (E5M2) and +-max otherwise. NaN becomes the
canonical NaN code 0x7F for E4M3 and E5M2; FP4 and FP6 have no NaN, so encoding a NaN there is
refused with QuantError. The sign of zero is kept: -0.0, and a negative value that rounds to
zero, give the code with only the sign bit set, so decode/encode round-trips every non-NaN code.

MX block quantization (`quantize_mx`), 32 elements along the last axis, per spec section 6.3:

    shared_exp = floor(log2(max_i |V_i|)) - emax(element), clamped to [-127, 127]
    X          = 2^shared_exp (an E8M0 code shared_exp + 127)
    P_i        = encode(V_i / X)       (round to nearest even, saturate)

Inputs are converted to float32 first (the precision kernels read). Defined where the spec leaves
a choice: an all-zero block gets the smallest scale, code 0x00 (2^-127, what the clamp of
floor(log2(0)) = -inf gives), with zero elements; a block holding any NaN or +-Inf gets the NaN
scale 0xFF and all element codes 0, so it decodes to 32 NaNs. Values whose V_i / X falls below
the element's smallest subnormal (possible once the scale is clamped at 2^-127) round to zero.

Packed byte layouts (one block = 32 values; a row is its blocks back to back, no padding):

    mxfp4       17 bytes: [E8M0][16 bytes]; byte 1+j holds element j in its low nibble and element
                j+16 in its high nibble. This is GGML's MXFP4 (type 39) byte for byte: GGML's
                table is the E2M1 table doubled, used with half the scale, so the nibble is the
                E2M1 code and the value is the same, with two exceptions: scale 0xFF (GGML:
                the number 2^128, the spec: NaN) and code 8 (GGML: +0.0, the spec: -0.0).
    mxfp6_*     25 bytes: [E8M0][24 bytes]; the 24 bytes are one little-endian bit stream in which
                element i occupies bits 6i..6i+5 (bit 0 = least significant bit of the first
                byte). Equivalently: every 3 bytes b0 b1 b2 hold 4 elements, w = b0 | b1<<8 |
                b2<<16 and element 4k+t = (w >> 6t) & 63. Elements 0..15 sit in payload bytes
                0..11 and elements 16..31 in bytes 12..23, so a thread decodes a half block from
                three 32-bit words (elements 5 and 10 of a half straddle two words).
    mxfp8_*     33 bytes: [E8M0][32 bytes]; byte 1+i is element i.

forge's own MXFP6/MXFP8 layouts exist because GGUF has no such types; they are never written into
a .gguf file (they come from converting other types at load time, and serve the KV cache).
docs/FORMATS.md has the same facts as tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import QuantError

BLOCK = 32  # elements per MX block (the spec's k for every concrete MX format)
E8M0_NAN = 0xFF
E8M0_BIAS = 127
SCALE_EXP_MIN, SCALE_EXP_MAX = -127, 127  # the exponents E8M0 codes 0x00..0xFE stand for


# --------------------------------------------------------------------------------------------
# E8M0
# --------------------------------------------------------------------------------------------

def _as_codes(codes, bits: int, what: str) -> np.ndarray:
    """codes as a uint8 array; QuantError for non-integers or values outside 0..2^bits-1."""
    arr = np.asarray(codes)
    if arr.dtype.kind not in "iub":
        raise QuantError(f"{what}: codes must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= (1 << bits)):
        raise QuantError(f"{what}: codes must lie in 0..{(1 << bits) - 1}, got {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


def e8m0_decode(codes) -> np.ndarray:
    """float32 values 2^(c-127) of E8M0 codes (NaN for 0xFF). Refuses codes outside 0..255."""
    c = _as_codes(codes, 8, "E8M0").astype(np.int32)
    # ldexp is exact: 2^-127 is a float32 subnormal, 2^127 the largest power of two float32 holds.
    vals = np.ldexp(np.float64(1.0), c - E8M0_BIAS)
    return np.where(c == E8M0_NAN, np.nan, vals).astype(np.float32)


def e8m0_from_exponent(exponents) -> np.ndarray:
    """E8M0 codes for integer exponents k (value 2^k), clamped to the code range [-127, 127]."""
    k = np.asarray(exponents)
    if k.dtype.kind not in "iu":
        raise QuantError(f"E8M0: exponents must be integers, got dtype {k.dtype}")
    return (np.clip(k.astype(np.int64), SCALE_EXP_MIN, SCALE_EXP_MAX) + E8M0_BIAS).astype(np.uint8)


def e8m0_encode(values) -> np.ndarray:
    """uint8 E8M0 codes of values that are exactly 2^k with -127 <= k <= 127, or NaN (-> 0xFF).

    Refuses (QuantError) anything E8M0 cannot hold exactly: zero, negatives, Inf, and values that
    are not powers of two. Use `e8m0_from_exponent` to build a scale from an exponent."""
    with np.errstate(invalid="ignore"):  # signalling NaNs widen to quiet ones: not an error
        v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    fin = np.where(nan, 1.0, v)
    mant, exp = np.frexp(fin)  # fin = mant * 2^exp, mant in [0.5, 1) for positive finite fin
    ok = nan | ((mant == 0.5) & (exp - 1 >= SCALE_EXP_MIN) & (exp - 1 <= SCALE_EXP_MAX))
    if not ok.all():
        bad = v[~ok].ravel()[:4]
        raise QuantError(f"E8M0 holds only NaN and powers of two 2^-127..2^127; got {bad.tolist()}")
    return np.where(nan, E8M0_NAN, exp - 1 + E8M0_BIAS).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Element formats
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ElementFormat:
    """A sign + exponent + mantissa element type of the MX spec.

    `specials` says which top-exponent codes are not finite: "none" (FP4/FP6: every code is a
    number), "e4m3" (only S.1111.111 is NaN), "ieee" (E5M2: all-ones exponent is Inf or NaN)."""

    name: str
    ebits: int
    mbits: int
    bias: int
    specials: str

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number (subnormals share it, with a leading 0)."""
        return 1 - self.bias

    @cached_property
    def table(self) -> np.ndarray:
        """Read-only float64 value of every code (NaN where the code is NaN), index = code."""
        codes = np.arange(1 << self.bits)
        sign = np.where(codes >> (self.ebits + self.mbits) & 1, -1.0, 1.0)
        e = (codes >> self.mbits) & ((1 << self.ebits) - 1)
        m = codes & ((1 << self.mbits) - 1)
        # A subnormal (e == 0) is 0.m * 2^emin; a normal is 1.m * 2^(e - bias).
        lead = (e > 0).astype(np.float64)
        mag = np.ldexp(lead + m / (1 << self.mbits), np.maximum(e, 1) - self.bias)
        top = e == (1 << self.ebits) - 1
        if self.specials == "e4m3":
            mag = np.where(top & (m == (1 << self.mbits) - 1), np.nan, mag)
        elif self.specials == "ieee":
            mag = np.where(top, np.where(m == 0, np.inf, np.nan), mag)
        table = sign * mag
        table.flags.writeable = False
        return table

    @cached_property
    def max(self) -> float:
        """Largest finite value."""
        t = self.table
        return float(t[np.isfinite(t)].max())

    @property
    def emax(self) -> int:
        """The spec's emax_elem: exponent of the largest normal number, floor(log2(max))."""
        return int(np.frexp(self.max)[1]) - 1

    @property
    def has_nan(self) -> bool:
        return self.specials != "none"

    @property
    def has_inf(self) -> bool:
        return self.specials == "ieee"

    @property
    def nan_code(self) -> int:
        """Canonical NaN code forge writes (positive sign, all-ones exponent and mantissa)."""
        if not self.has_nan:
            raise QuantError(f"{self.name} has no NaN encoding")
        return (1 << (self.bits - 1)) - 1

    def decode(self, codes) -> np.ndarray:
        """float32 values of `codes` (any shape). Refuses codes that do not fit in `bits` bits."""
        c = _as_codes(codes, self.bits, self.name)
        return self.table[c].astype(np.float32)

    def encode(self, values) -> np.ndarray:
        """uint8 codes of `values` (any shape, read as float64): round to nearest, ties to even,
        finite overflow saturated to +-max, Inf -> Inf (E5M2) or +-max, NaN -> `nan_code`.

        Refuses (QuantError) NaN input for formats without NaN (FP4, FP6)."""
        with np.errstate(invalid="ignore"):  # signalling NaNs widen to quiet ones: not an error
            v = np.asarray(values, dtype=np.float64)
        nan = np.isnan(v)
        if nan.any() and not self.has_nan:
            raise QuantError(f"{self.name} has no NaN; cannot encode {int(nan.sum())} NaN value(s)")
        a = np.where(nan, 0.0, np.abs(v))
        inf = np.isinf(a)
        mag = self._round_magnitude(np.where(inf, 0.0, a))
        code = self._magnitude_code(mag)
        if self.has_inf:
            code = np.where(inf, ((1 << self.ebits) - 1) << self.mbits, code)
        else:
            code = np.where(inf, self._magnitude_code(np.float64(self.max)), code)
        code = code | (np.signbit(v).astype(np.int64) << (self.bits - 1))
        return np.where(nan, self.nan_code if self.has_nan else 0, code).astype(np.uint8)

    def _round_magnitude(self, a: np.ndarray) -> np.ndarray:
        """Finite magnitudes rounded to the nearest representable one (ties to even), saturated."""
        # The spacing of representable numbers at a is 2^(max(floor(log2 a), emin) - mbits);
        # a / spacing is then exact in float64 and np.rint rounds half to even, whose parity is
        # the mantissa's last bit (or the carry into the next binade, mantissa 0: even too).
        _, e = np.frexp(a)
        quantum = np.ldexp(1.0, np.maximum(e - 1, self.emin) - self.mbits)
        return np.minimum(np.rint(a / quantum) * quantum, self.max)

    def _magnitude_code(self, mag: np.ndarray) -> np.ndarray:
        """Exponent and mantissa bits of representable, finite, non-negative magnitudes."""
        _, e = np.frexp(mag)
        normal = mag >= np.ldexp(1.0, self.emin)
        exp_field = np.where(normal, e - 1 + self.bias, 0)
        # Subnormals are integer multiples of 2^(emin - mbits); normals add the hidden bit.
        units = np.rint(np.ldexp(mag, np.where(normal, -(e - 1), -self.emin) + self.mbits)).astype(np.int64)
        mant = np.where(normal, units - (1 << self.mbits), units)
        return (exp_field.astype(np.int64) << self.mbits) | mant


FP4_E2M1 = ElementFormat("fp4_e2m1", 2, 1, 1, "none")
FP6_E2M3 = ElementFormat("fp6_e2m3", 2, 3, 1, "none")
FP6_E3M2 = ElementFormat("fp6_e3m2", 3, 2, 3, "none")
FP8_E4M3 = ElementFormat("fp8_e4m3", 4, 3, 7, "e4m3")
FP8_E5M2 = ElementFormat("fp8_e5m2", 5, 2, 15, "ieee")
ELEMENT_FORMATS: dict[str, ElementFormat] = {f.name: f for f in (FP4_E2M1, FP6_E2M3, FP6_E3M2, FP8_E4M3, FP8_E5M2)}


# --------------------------------------------------------------------------------------------
# MX formats: element type + block layout
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MXFormat:
    """A concrete MX format: its element type and forge's packed block of 32 values."""

    name: str
    elem: ElementFormat

    @property
    def block_bytes(self) -> int:
        """One E8M0 byte, then 32 elements packed densely."""
        return 1 + BLOCK * self.elem.bits // 8

    def row_bytes(self, n_cols: int) -> int:
        """Bytes of a row of n_cols values; QuantError unless n_cols is a positive multiple of 32."""
        return _n_blocks(n_cols, self.name) * self.block_bytes


MXFP4 = MXFormat("mxfp4", FP4_E2M1)
MXFP6_E2M3 = MXFormat("mxfp6_e2m3", FP6_E2M3)
MXFP6_E3M2 = MXFormat("mxfp6_e3m2", FP6_E3M2)
MXFP8_E4M3 = MXFormat("mxfp8_e4m3", FP8_E4M3)
MXFP8_E5M2 = MXFormat("mxfp8_e5m2", FP8_E5M2)
MX_FORMATS: dict[str, MXFormat] = {f.name: f for f in (MXFP4, MXFP6_E2M3, MXFP6_E3M2, MXFP8_E4M3, MXFP8_E5M2)}


def mx_format(fmt) -> MXFormat:
    """The MXFormat named `fmt` (case-insensitive) or `fmt` itself; QuantError for unknown names."""
    if isinstance(fmt, MXFormat):
        return fmt
    if isinstance(fmt, str) and fmt.lower() in MX_FORMATS:
        return MX_FORMATS[fmt.lower()]
    raise QuantError(f"unknown MX format {fmt!r}; known: {', '.join(MX_FORMATS)}")


def _n_blocks(n: int, what: str) -> int:
    """n // 32; QuantError unless n is a positive multiple of the block size."""
    if n <= 0 or n % BLOCK:
        raise QuantError(f"{what}: {n} values is not a positive multiple of the MX block size {BLOCK}")
    return n // BLOCK


def _floor_log2(a: np.ndarray) -> np.ndarray:
    """floor(log2(a)) for positive finite float64 a, exactly (frexp, not a rounded log2)."""
    return np.frexp(a)[1] - 1


# --------------------------------------------------------------------------------------------
# Block quantization
# --------------------------------------------------------------------------------------------

def quantize_mx(x, fmt) -> tuple[np.ndarray, np.ndarray]:
    """MX-quantize x (converted to float32) in blocks of 32 along its last axis.

    Returns (scales, codes): uint8 E8M0 codes of shape (..., n // 32) and uint8 element codes of
    x's shape. Refuses (QuantError) a last axis that is not a positive multiple of 32 and unknown
    formats. See the module docstring for all-zero and NaN/Inf blocks."""
    f = mx_format(fmt)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0:
        raise QuantError(f"{f.name}: cannot quantize a scalar; need a last axis of 32k values")
    nb = _n_blocks(x.shape[-1], f.name)
    with np.errstate(invalid="ignore"):  # signalling NaNs widen to quiet ones: not an error
        blocks = x.astype(np.float64).reshape(*x.shape[:-1], nb, BLOCK)
    finite = np.isfinite(blocks)
    special = ~finite.all(axis=-1)
    amax = np.where(finite, np.abs(blocks), 0.0).max(axis=-1)
    # floor(log2(0)) is -inf, which the clamp to the E8M0 range turns into -127.
    shared = np.where(amax > 0, _floor_log2(np.where(amax > 0, amax, 1.0)) - f.elem.emax, SCALE_EXP_MIN)
    shared = np.clip(shared, SCALE_EXP_MIN, SCALE_EXP_MAX)
    # Division by a power of two in float64 is exact for every float32 input and |shared| <= 127.
    scaled = np.where(finite, blocks, 0.0) / np.ldexp(1.0, shared)[..., None]
    codes = f.elem.encode(scaled)
    codes[special] = 0
    scales = np.where(special, E8M0_NAN, e8m0_from_exponent(shared)).astype(np.uint8)
    return scales, codes.reshape(x.shape)


def dequantize_mx(scales, codes, fmt) -> np.ndarray:
    """float32 values X * P of MX blocks: scales (..., nb) E8M0 codes, codes (..., nb * 32).

    Products beyond float32's range become +-Inf (only reachable with scales near 2^127).
    Refuses mismatched shapes, out-of-range codes and unknown formats (QuantError)."""
    f = mx_format(fmt)
    s = np.asarray(scales)
    c = np.asarray(codes)
    if c.ndim == 0 or c.shape[:-1] != s.shape[:-1] or c.shape[-1] != BLOCK * (s.shape[-1] if s.ndim else 0):
        raise QuantError(f"{f.name}: codes of shape {c.shape} do not match scales of shape {s.shape} "
                         f"(need codes (..., nb*{BLOCK}) for scales (..., nb))")
    x = e8m0_decode(s).astype(np.float64)[..., None]
    p = f.elem.decode(c).astype(np.float64).reshape(*s.shape, BLOCK)
    with np.errstate(over="ignore", invalid="ignore"):
        return (p * x).astype(np.float32).reshape(c.shape)


# --------------------------------------------------------------------------------------------
# Byte layouts
# --------------------------------------------------------------------------------------------

def pack_block(fmt, scales, codes) -> np.ndarray:
    """Packed blocks (uint8, shape S + (block_bytes,)) from scales of shape S and element codes of
    shape S + (32,), in the layout of the module docstring. Refuses bad shapes or codes."""
    f = mx_format(fmt)
    s = _as_codes(scales, 8, f"{f.name} scales")
    c = _as_codes(codes, f.elem.bits, f.name)
    if c.shape != s.shape + (BLOCK,):
        raise QuantError(f"{f.name}: codes of shape {c.shape} do not match scales {s.shape} + ({BLOCK},)")
    if f.elem.bits == 4:
        payload = c[..., :16] | (c[..., 16:] << 4)
    elif f.elem.bits == 6:
        g = c.reshape(*s.shape, 8, 4).astype(np.uint32)
        w = g[..., 0] | (g[..., 1] << 6) | (g[..., 2] << 12) | (g[..., 3] << 18)
        payload = np.stack([w & 0xFF, (w >> 8) & 0xFF, w >> 16], axis=-1).reshape(*s.shape, 24)
    else:
        payload = c
    return np.concatenate([s[..., None], payload.astype(np.uint8)], axis=-1)


def unpack_block(fmt, raw) -> tuple[np.ndarray, np.ndarray]:
    """(scales S, codes S + (32,)) of packed blocks raw, shape S + (block_bytes,): the inverse of
    `pack_block`. Refuses arrays whose last axis is not the format's block size."""
    f = mx_format(fmt)
    r = np.asarray(raw)
    if r.dtype != np.uint8 or r.ndim == 0 or r.shape[-1] != f.block_bytes:
        raise QuantError(f"{f.name}: packed blocks must be uint8 (..., {f.block_bytes}), got {r.dtype} {r.shape}")
    scales, payload = r[..., 0], r[..., 1:]
    if f.elem.bits == 4:
        codes = np.concatenate([payload & 0x0F, payload >> 4], axis=-1)
    elif f.elem.bits == 6:
        b = payload.reshape(*r.shape[:-1], 8, 3).astype(np.uint32)
        w = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
        codes = np.stack([(w >> (6 * t)) & 0x3F for t in range(4)], axis=-1).reshape(*r.shape[:-1], BLOCK)
    else:
        codes = payload.copy()
    return scales.copy(), codes.astype(np.uint8)


def quantize_rows(x, fmt) -> np.ndarray:
    """uint8 rows (..., row_bytes) of x (..., n_cols) in `fmt`'s packed layout, blocks back to back.

    Refuses n_cols that are not a positive multiple of 32 and unknown formats (QuantError)."""
    f = mx_format(fmt)
    scales, codes = quantize_mx(x, f)
    packed = pack_block(f, scales, codes.reshape(*scales.shape, BLOCK))
    return packed.reshape(*scales.shape[:-1], scales.shape[-1] * f.block_bytes)


def dequantize_rows(raw, fmt, ncols: int) -> np.ndarray:
    """float32 rows (..., ncols) from packed rows raw (..., row_bytes).

    Refuses (QuantError) a row length that does not match ncols, and ncols not a multiple of 32."""
    f = mx_format(fmt)
    r = np.asarray(raw)
    nb = _n_blocks(ncols, f.name)
    if r.dtype != np.uint8 or r.ndim == 0 or r.shape[-1] != nb * f.block_bytes:
        raise QuantError(f"{f.name}: rows of {ncols} values need uint8 (..., {nb * f.block_bytes}), "
                         f"got {r.dtype} {r.shape}")
    scales, codes = unpack_block(f, r.reshape(*r.shape[:-1], nb, f.block_bytes))
    return dequantize_mx(scales, codes.reshape(*r.shape[:-1], ncols), f)
