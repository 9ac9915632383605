"""forge.quant.mx against the OCP MX v1.0 spec: every code of every element format decoded, every
value round-tripped, every tie and every float16/bfloat16 input encoded, MX blocks checked
against a scalar re-implementation of the spec's quantization, and the packed layouts against
bit streams built independently from docs/FORMATS.md.

The references here are written from the spec text, not from forge.quant.mx: scalar decoding
from the bit fields with exact fractions, and encoding by searching the value table (nearest,
ties to the even code, saturating)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from forge.errors import QuantError
from forge.quant import mx

# name: (ebits, mbits, bias, max normal, min normal, min subnormal, emax_elem), OCP MX v1.0 tables 1-3.
SPEC = {
    "fp4_e2m1": (2, 1, 1, 6.0, 1.0, 0.5, 2),
    "fp6_e2m3": (2, 3, 1, 7.5, 1.0, 0.125, 2),
    "fp6_e3m2": (3, 2, 3, 28.0, 0.25, 0.0625, 4),
    "fp8_e4m3": (4, 3, 7, 448.0, 2.0**-6, 2.0**-9, 8),
    "fp8_e5m2": (5, 2, 15, 57344.0, 2.0**-14, 2.0**-16, 15),
}
NAMES = list(SPEC)
MX_OF = {"fp4_e2m1": "mxfp4", "fp6_e2m3": "mxfp6_e2m3", "fp6_e3m2": "mxfp6_e3m2",
         "fp8_e4m3": "mxfp8_e4m3", "fp8_e5m2": "mxfp8_e5m2"}


# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------

def ref_value(name: str, code: int) -> float:
    """Value of one element code from its sign, exponent and mantissa fields (spec section 5)."""
    eb, mb, bias = SPEC[name][:3]
    sign = -1.0 if code >> (eb + mb) & 1 else 1.0
    e, m = (code >> mb) & ((1 << eb) - 1), code & ((1 << mb) - 1)
    if name == "fp8_e4m3" and e == 15 and m == 7:
        return math.nan
    if name == "fp8_e5m2" and e == 31:
        return sign * math.inf if m == 0 else math.nan
    frac = Fraction(m, 1 << mb)
    mag = frac * Fraction(2) ** (1 - bias) if e == 0 else (1 + frac) * Fraction(2) ** (e - bias)
    return math.copysign(float(mag), sign)


def ref_table(name: str) -> np.ndarray:
    eb, mb = SPEC[name][:2]
    return np.array([ref_value(name, c) for c in range(1 << (1 + eb + mb))])


REF_TABLES = {n: ref_table(n) for n in NAMES}


def ref_encode(name: str, x) -> np.ndarray:
    """Codes of x by table search: nearest finite value, ties to the even code, magnitudes past the
    max saturate, +-Inf -> Inf (E5M2) or +-max, NaN -> 0x7F (FP8). Positive codes increase with
    value in every MX element format, so the non-negative finite codes are a sorted table."""
    eb, mb = SPEC[name][:2]
    bits = 1 + eb + mb
    t = REF_TABLES[name][: 1 << (bits - 1)]
    pos = t[np.isfinite(t)]
    with np.errstate(invalid="ignore"):  # signalling NaNs among the inputs
        x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(np.nan_to_num(x, nan=0.0)), pos[-1])
    hi = np.clip(np.searchsorted(pos, a), 0, len(pos) - 1)
    lo = np.maximum(hi - 1, 0)
    dl, dh = a - pos[lo], pos[hi] - a
    code = np.where(dl < dh, lo, np.where(dh < dl, hi, np.where(lo % 2 == 0, lo, hi)))
    if name == "fp8_e5m2":
        code = np.where(np.isinf(x), 0x7C, code)
    code = code | (np.signbit(x).astype(np.int64) << (bits - 1))
    return np.where(np.isnan(x), 0x7F, code).astype(np.uint8)


def ref_quantize_block(name: str, v: np.ndarray) -> tuple[int, np.ndarray]:
    """(E8M0 code, element codes) of one block of 32 float32 values, spec section 6.3 verbatim,
    plus forge's documented choices: all-zero -> scale code 0, any NaN/Inf -> scale 0xFF, codes 0."""
    emax = SPEC[name][6]
    vals = [float(x) for x in v]
    if not all(math.isfinite(x) for x in vals):
        return 0xFF, np.zeros(32, np.uint8)
    amax = max(abs(x) for x in vals)
    shared = -127 if amax == 0 else math.frexp(amax)[1] - 1 - emax  # frexp: exact floor(log2)
    shared = min(max(shared, -127), 127)
    scaled = np.array([math.ldexp(x, -shared) for x in vals])
    return shared + 127, ref_encode(name, scaled)


def spec_floats(n: int, rng: np.random.Generator) -> np.ndarray:
    """float32 values over many binades, both signs, with zeros and subnormals sprinkled in."""
    x = rng.standard_normal(n) * np.exp2(rng.integers(-140, 128, n).astype(np.float64))
    x[rng.random(n) < 0.05] = 0.0
    return np.clip(x, -3e38, 3e38).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# E8M0
# ---------------------------------------------------------------------------------------------

def test_e8m0_decodes_every_code():
    got = mx.e8m0_decode(np.arange(256))
    assert got.dtype == np.float32
    for c in range(255):
        assert got[c] == np.float32(math.ldexp(1.0, c - 127)), c
    assert np.isnan(got[255])
    assert got[0] == np.float32(2.0**-127) and got[127] == 1.0 and got[254] == np.float32(2.0**127)


def test_e8m0_encode_round_trips_and_refuses_the_rest():
    codes = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(mx.e8m0_encode(mx.e8m0_decode(codes)), codes)
    for bad in (0.0, -1.0, 3.0, 1.5, math.inf, 2.0**128, 2.0**-128, -0.0):
        with pytest.raises(QuantError):
            mx.e8m0_encode([bad])


def test_e8m0_from_exponent_clamps():
    np.testing.assert_array_equal(mx.e8m0_from_exponent(np.array([-1000, -127, 0, 5, 127, 1000])),
                                  [0, 0, 127, 132, 254, 254])
    with pytest.raises(QuantError):
        mx.e8m0_from_exponent([1.0])


@pytest.mark.parametrize("codes", [[256], [-1], [1.0]])
def test_e8m0_decode_refuses_bad_codes(codes):
    with pytest.raises(QuantError):
        mx.e8m0_decode(codes)


# ---------------------------------------------------------------------------------------------
# Element formats: every code
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_constants_match_the_spec(name):
    f = mx.ELEMENT_FORMATS[name]
    eb, mb, bias, vmax, min_normal, min_sub, emax = SPEC[name]
    assert (f.ebits, f.mbits, f.bias, f.bits) == (eb, mb, bias, 1 + eb + mb)
    assert (f.max, f.emax) == (vmax, emax)
    assert f.decode([1])[0] == min_sub and f.decode([1 << mb])[0] == min_normal


@pytest.mark.parametrize("name", NAMES)
def test_decode_every_code(name):
    f = mx.ELEMENT_FORMATS[name]
    codes = np.arange(1 << f.bits)
    got = f.decode(codes)
    assert got.dtype == np.float32 and got.shape == codes.shape
    ref = REF_TABLES[name]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    # Same value and same sign (so -0.0 is the sign-only code).
    np.testing.assert_array_equal(got[ok], ref[ok])
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(ref[ok]))
    np.testing.assert_array_equal(f.decode(codes.reshape(2, -1)), got.reshape(2, -1))


def test_special_codes():
    e4, e5 = mx.FP8_E4M3, mx.FP8_E5M2
    assert set(np.flatnonzero(np.isnan(e4.decode(np.arange(256))))) == {0x7F, 0xFF}
    assert e4.decode([0x7E, 0xFE]).tolist() == [448.0, -448.0]
    assert not np.isinf(e4.decode(np.arange(256))).any()
    d5 = e5.decode(np.arange(256))
    assert set(np.flatnonzero(np.isnan(d5))) == {0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF}
    assert d5[0x7C] == np.inf and d5[0xFC] == -np.inf and d5[0x7B] == 57344.0
    for f in (mx.FP4_E2M1, mx.FP6_E2M3, mx.FP6_E3M2):
        assert np.isfinite(f.decode(np.arange(1 << f.bits))).all()
        assert not f.has_nan and not f.has_inf
        with pytest.raises(QuantError):
            f.nan_code  # noqa: B018
    assert mx.FP4_E2M1.decode(np.arange(8)).tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]


@pytest.mark.parametrize("name", NAMES)
def test_decode_refuses_bad_codes(name):
    f = mx.ELEMENT_FORMATS[name]
    for bad in ([1 << f.bits], [-1], np.array([0.5])):
        with pytest.raises(QuantError):
            f.decode(bad)


@pytest.mark.parametrize("name", NAMES)
def test_every_representable_value_round_trips(name):
    f = mx.ELEMENT_FORMATS[name]
    codes = np.arange(1 << f.bits)
    vals = f.decode(codes)
    finite = ~np.isnan(vals)
    np.testing.assert_array_equal(f.encode(vals[finite]), codes[finite])
    if f.has_nan:  # every NaN code comes back as the canonical NaN, which decodes to NaN
        assert (f.encode(vals[~finite]) == f.nan_code).all()
        assert np.isnan(f.decode([f.nan_code])).all()


# ---------------------------------------------------------------------------------------------
# Element formats: rounding, saturation, specials
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_ties_go_to_even(name):
    """Each midpoint between neighbouring finite values goes to the code whose mantissa is even;
    one float64 ulp either side goes to the nearer one."""
    f = mx.ELEMENT_FORMATS[name]
    half = 1 << (f.bits - 1)
    pos = f.decode(np.arange(half)).astype(np.float64)
    n = int(np.isfinite(pos).sum())
    lo, hi = np.arange(n - 1), np.arange(1, n)
    mids = (pos[lo] + pos[hi]) / 2
    even = np.where(lo % 2 == 0, lo, hi)
    np.testing.assert_array_equal(f.encode(mids), even)
    np.testing.assert_array_equal(f.encode(-mids), even | half)
    np.testing.assert_array_equal(f.encode(np.nextafter(mids, 0)), lo)
    np.testing.assert_array_equal(f.encode(np.nextafter(mids, np.inf)), hi)


@pytest.mark.parametrize("name", NAMES)
def test_saturation(name):
    f = mx.ELEMENT_FORMATS[name]
    top = int(f.encode([f.max])[0])
    half = 1 << (f.bits - 1)
    # Past the max, including where round-to-nearest would reach the (absent) next binade.
    over = np.array([np.nextafter(f.max, np.inf), f.max * 1.0625, f.max * 1.25, f.max * 2, 1e30, 3e38, 1e300])
    assert (f.encode(over) == top).all() and (f.encode(-over) == top | half).all()
    named = {"fp4_e2m1": [7.0, 100.0], "fp8_e4m3": [464.0, 480.0], "fp8_e5m2": [61440.0, 65536.0],
             "fp6_e2m3": [7.75, 8.0], "fp6_e3m2": [30.0, 32.0]}[name]
    assert (f.decode(f.encode(named)) == f.max).all()


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_inputs(name):
    f = mx.ELEMENT_FORMATS[name]
    half = 1 << (f.bits - 1)
    inf = f.encode([np.inf, -np.inf])
    if f.has_inf:
        assert inf.tolist() == [0x7C, 0xFC]
    else:
        assert f.decode(inf).tolist() == [f.max, -f.max]
    if f.has_nan:
        assert f.encode([np.nan, -np.nan]).tolist() == [0x7F, 0x7F]
    else:
        with pytest.raises(QuantError):
            f.encode([1.0, np.nan])
    assert f.encode([-0.0, 0.0]).tolist() == [half, 0]


@pytest.mark.parametrize("name", NAMES)
def test_underflow_to_signed_zero(name):
    f = mx.ELEMENT_FORMATS[name]
    half = 1 << (f.bits - 1)
    tiny = SPEC[name][5]
    # Half the smallest subnormal is a tie between 0 (even) and code 1.
    assert f.encode([tiny / 2, tiny / 4, 1e-300]).tolist() == [0, 0, 0]
    assert f.encode([-tiny / 2, -1e-300]).tolist() == [half, half]
    assert f.encode([np.nextafter(tiny / 2, 1.0), tiny * 0.75]).tolist() == [1, 1]


def _all_16bit_inputs() -> np.ndarray:
    """Every float16 and every bfloat16 bit pattern as float32: all binades, subnormals, signed
    zeros, Inf and NaN, and every midpoint of every element format (all lie on these grids)."""
    u = np.arange(1 << 16, dtype=np.uint32)
    f16 = u.astype(np.uint16).view(np.float16).astype(np.float32)
    bf16 = (u << 16).view(np.float32)
    return np.concatenate([f16, bf16])


ALL16 = _all_16bit_inputs()


@pytest.mark.parametrize("name", NAMES)
def test_every_16bit_input_encodes_like_the_table_search(name):
    f = mx.ELEMENT_FORMATS[name]
    x = ALL16 if f.has_nan else ALL16[~np.isnan(ALL16)]
    np.testing.assert_array_equal(f.encode(x), ref_encode(name, x))


@given(st.sampled_from(NAMES), hnp.arrays(np.float32, st.integers(1, 40),
                                          elements=st.floats(width=32, allow_nan=False)))
def test_encode_property(name, x):
    f = mx.ELEMENT_FORMATS[name]
    np.testing.assert_array_equal(f.encode(x), ref_encode(name, x))
    np.testing.assert_array_equal(f.encode(x.astype(np.float64)), ref_encode(name, x))


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_ml_dtypes(name):
    """A second, independent implementation of these formats, where it is installed: same value
    for every code, same code for every in-range input (ml_dtypes does not saturate)."""
    ml = pytest.importorskip("ml_dtypes")
    dt = {"fp4_e2m1": ml.float4_e2m1fn, "fp6_e2m3": ml.float6_e2m3fn, "fp6_e3m2": ml.float6_e3m2fn,
          "fp8_e4m3": ml.float8_e4m3fn, "fp8_e5m2": ml.float8_e5m2}[name]
    f = mx.ELEMENT_FORMATS[name]
    codes = np.arange(1 << f.bits, dtype=np.uint8)
    np.testing.assert_array_equal(codes.view(dt).astype(np.float32), f.decode(codes))
    x = ALL16[np.abs(ALL16) <= f.max]
    np.testing.assert_array_equal(x.astype(dt).view(np.uint8) & ((1 << f.bits) - 1), f.encode(x))
    e = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(e.view(ml.float8_e8m0fnu).astype(np.float32), mx.e8m0_decode(e))


# ---------------------------------------------------------------------------------------------
# MX blocks
# ---------------------------------------------------------------------------------------------

def _check_blocks(name: str, x: np.ndarray) -> None:
    """quantize_mx / dequantize_mx on x (rows of 32k float32) against ref_quantize_block."""
    f = mx.mx_format(MX_OF[name])
    scales, codes = mx.quantize_mx(x, f)
    nb = x.shape[-1] // 32
    assert scales.shape == x.shape[:-1] + (nb,) and codes.shape == x.shape
    assert scales.dtype == codes.dtype == np.uint8
    blocks = x.reshape(-1, 32)
    ref = [ref_quantize_block(name, b) for b in blocks]
    np.testing.assert_array_equal(scales.reshape(-1), [s for s, _ in ref])
    np.testing.assert_array_equal(codes.reshape(-1, 32), np.stack([c for _, c in ref]))
    # Decoded value: X * P, computed here from the reference tables.
    got = mx.dequantize_mx(scales, codes, f).reshape(-1, 32)
    for (s, c), g in zip(ref, got):
        want = np.full(32, np.nan) if s == 0xFF else \
            np.array([math.ldexp(REF_TABLES[name][k], s - 127) for k in c])
        np.testing.assert_array_equal(g, want.astype(np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_blocks_follow_the_spec(name):
    rng = np.random.default_rng(7)
    x = spec_floats(4 * 96, rng).reshape(4, 96)
    # Blocks of one magnitude (the usual case) next to blocks spanning many binades.
    x[0] = (rng.standard_normal(96) * 3).astype(np.float32)
    _check_blocks(name, x)


@given(st.sampled_from(NAMES), hnp.arrays(np.float32, st.sampled_from([(32,), (2, 64), (1, 3, 32)]),
                                          elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
def test_blocks_property(name, x):
    _check_blocks(name, x)


@pytest.mark.parametrize("name", NAMES)
def test_shared_exponent_is_an_exact_floor_log2(name):
    """amax just below a power of two must not round up in log2 (float32 log2 would)."""
    f = mx.mx_format(MX_OF[name])
    emax = SPEC[name][6]
    for k in (-100, -3, 0, 1, 10, 100):
        below = np.nextafter(np.float32(2.0**k), np.float32(0))
        for amax, shared in ((below, k - 1), (np.float32(2.0**k), k)):
            block = np.zeros(32, np.float32)
            block[5] = -amax
            scales, codes = mx.quantize_mx(block, f)
            assert scales[0] == shared - emax + 127, (k, amax)
            # amax / X lies in [2^emax, 2^(emax+1)): the element saturates or rounds to the max.
            assert abs(f.elem.decode(codes[5:6])[0]) <= f.elem.max


@pytest.mark.parametrize("name", NAMES)
def test_special_blocks(name):
    f = mx.mx_format(MX_OF[name])
    half = 1 << (f.elem.bits - 1)
    x = np.ones((5, 32), np.float32)
    x[0] = 0.0
    x[1] = -0.0
    x[2, 7] = np.nan
    x[3, 31] = -np.inf
    x[4, 0] = np.float32(1.4e-45)  # the smallest float32 subnormal, next to 1s: rounds to 0
    scales, codes = mx.quantize_mx(x.reshape(-1), f)
    assert scales.tolist() == [0, 0, 0xFF, 0xFF, 127 - f.elem.emax]
    assert (codes[:32] == 0).all() and (codes[32:64] == half).all() and (codes[64:128] == 0).all()
    assert codes[128] == 0
    y = mx.dequantize_mx(scales, codes, f).reshape(5, 32)
    assert (y[0] == 0).all() and np.signbit(y[1]).all() and np.isnan(y[2:4]).all()
    assert y[4, 0] == 0 and (y[4, 1:] == 1).all()


@pytest.mark.parametrize("name", NAMES)
def test_tiny_and_huge_blocks(name):
    f = mx.mx_format(MX_OF[name])
    tiny = np.full(32, 1.4e-45, np.float32)  # scale clamps at 2^-127, elements underflow to 0
    s, c = mx.quantize_mx(tiny, f)
    assert s[0] == 0 and (c == 0).all()
    big = np.linspace(-3.4e38, 3.4e38, 32, dtype=np.float32)
    s, c = mx.quantize_mx(big, f)
    assert s[0] == 127 + 127 - f.elem.emax
    y = mx.dequantize_mx(s, c, f)
    assert np.isfinite(y).all() and np.abs(y).max() <= np.float32(3.4028235e38)


@pytest.mark.parametrize("name", NAMES)
def test_requantizing_is_the_identity(name):
    f = mx.mx_format(MX_OF[name])
    x = spec_floats(32 * 64, np.random.default_rng(3))
    s, c = mx.quantize_mx(x, f)
    s2, c2 = mx.quantize_mx(mx.dequantize_mx(s, c, f), f)
    np.testing.assert_array_equal(s2, s)
    np.testing.assert_array_equal(c2, c)


def test_dequantize_edges():
    # Scale 0xFF is NaN whatever the elements; products past float32 become +-Inf.
    codes = np.full(32, 0x7B, np.uint8)
    assert np.isnan(mx.dequantize_mx([0xFF], codes, "mxfp8_e5m2")).all()
    assert (mx.dequantize_mx([254], codes, "mxfp8_e5m2") == np.inf).all()
    assert mx.dequantize_mx([0], np.full(32, 1, np.uint8), "mxfp4")[0] == np.float32(2.0**-128)


def test_quantize_errors():
    with pytest.raises(QuantError):
        mx.quantize_mx(np.float32(1.0), "mxfp4")
    for n in (0, 31, 33):
        with pytest.raises(QuantError):
            mx.quantize_mx(np.ones(n), "mxfp4")
    with pytest.raises(QuantError):
        mx.quantize_mx(np.ones(32), "mxfp5")
    with pytest.raises(QuantError):
        mx.dequantize_mx([1, 2], np.zeros(32, np.uint8), "mxfp4")
    with pytest.raises(QuantError):
        mx.dequantize_mx([1], np.full(32, 16), "mxfp4")
    assert mx.mx_format("MXFP4") is mx.MXFP4 and mx.mx_format(mx.MXFP4) is mx.MXFP4


# ---------------------------------------------------------------------------------------------
# Packed layouts
# ---------------------------------------------------------------------------------------------

def ref_pack(name: str, scale: int, codes: np.ndarray) -> bytes:
    """One block, from docs/FORMATS.md: the scale byte, then the elements as FORMATS.md lays them."""
    c = [int(v) for v in codes]
    if name == "fp4_e2m1":
        payload = bytes(c[j] | c[j + 16] << 4 for j in range(16))
    elif name.startswith("fp6"):
        payload = sum(v << (6 * i) for i, v in enumerate(c)).to_bytes(24, "little")
    else:
        payload = bytes(c)
    return bytes([scale]) + payload


@pytest.mark.parametrize("name", NAMES)
def test_pack_layout(name):
    f = mx.mx_format(MX_OF[name])
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 1 << f.elem.bits, (3, 2, 32)).astype(np.uint8)
    codes[0, 0] = np.arange(32) % (1 << f.elem.bits)
    scales = rng.integers(0, 256, (3, 2)).astype(np.uint8)
    packed = mx.pack_block(f, scales, codes)
    assert packed.shape == (3, 2, f.block_bytes) and packed.dtype == np.uint8
    assert f.block_bytes == {4: 17, 6: 25, 8: 33}[f.elem.bits]
    for i in np.ndindex(3, 2):
        assert packed[i].tobytes() == ref_pack(name, int(scales[i]), codes[i])
    s2, c2 = mx.unpack_block(f, packed)
    np.testing.assert_array_equal(s2, scales)
    np.testing.assert_array_equal(c2, codes)


@pytest.mark.parametrize("name", NAMES)
def test_rows(name):
    f = mx.mx_format(MX_OF[name])
    x = spec_floats(3 * 96, np.random.default_rng(5)).reshape(3, 96)
    raw = mx.quantize_rows(x, f)
    assert raw.shape == (3, f.row_bytes(96)) == (3, 3 * f.block_bytes)
    s, c = mx.quantize_mx(x, f)
    y = mx.dequantize_rows(raw, f, 96)
    np.testing.assert_array_equal(y, mx.dequantize_mx(s, c, f))
    assert raw[0, 0] == s[0, 0] and raw[0, f.block_bytes] == s[0, 1]
    with pytest.raises(QuantError):
        mx.dequantize_rows(raw, f, 64)
    with pytest.raises(QuantError):
        mx.dequantize_rows(raw.astype(np.int16), f, 96)
    with pytest.raises(QuantError):
        f.row_bytes(48)
    with pytest.raises(QuantError):
        mx.unpack_block(f, raw[:, :5])
    with pytest.raises(QuantError):
        mx.pack_block(f, s[:, :1], c)


def test_formats_md_scalar_table_matches_the_codec():
    """docs/FORMATS.md's scalar table states the same biases and ranges as the codec."""
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "FORMATS.md").read_text()
    rows = {"FP4 E2M1": "fp4_e2m1", "FP6 E2M3": "fp6_e2m3", "FP6 E3M2": "fp6_e3m2",
            "FP8 E4M3": "fp8_e4m3", "FP8 E5M2": "fp8_e5m2"}
    num = lambda s: 2.0 ** int(s[2:]) if s.startswith("2^") else float(s)  # noqa: E731
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in rows:
            f = mx.ELEMENT_FORMATS[rows.pop(cells[0])]
            assert int(cells[2]) == f.bias and num(cells[3]) == f.max, line
            assert num(cells[4]) == f.decode([1 << f.mbits])[0] and num(cells[5]) == f.decode([1])[0], line
    assert not rows, f"rows missing from FORMATS.md: {rows}"
