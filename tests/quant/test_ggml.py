"""forge.quant.ggml: the type table, dequantization through gguf.quants checked against decoders
written independently from docs/FORMATS.md, quantization against gguf.quants, random valid
blocks, and GGML's MXFP4 against forge's MX codec (forge.quant.mx)."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import quants as gq
from gguf.constants import GGMLQuantizationType as QT
from hypothesis import given, strategies as st

from forge.errors import QuantError
from forge.quant import ggml, mx

# name: (GGUF type id, values per block, bytes per block), from docs/FORMATS.md.
TABLE = {
    "F32": (0, 1, 4), "F16": (1, 1, 2), "BF16": (30, 1, 2),
    "Q8_0": (8, 32, 34), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24),
    "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "MXFP4": (39, 32, 17),
}
NAMES = list(TABLE)
QUANTIZABLE = [n for n in NAMES if n not in ("Q4_K", "Q5_K", "Q6_K")]


# ---------------------------------------------------------------------------------------------
# Decoders written from docs/FORMATS.md (float32 arithmetic in the order the page states)
# ---------------------------------------------------------------------------------------------

def _f16(b: np.ndarray) -> np.ndarray:
    """(n, 2) little-endian bytes -> (n, 1) float32."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def _nibbles_0_16(qs: np.ndarray) -> np.ndarray:
    """(n, 16) bytes -> (n, 32): element j in the low nibble of byte j, j+16 in its high nibble."""
    return np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32)


def _bit(qh_u32: np.ndarray) -> np.ndarray:
    """(n, 1) uint32 -> (n, 32) bit i of each."""
    return ((qh_u32 >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32)


def _kscales(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K 6-bit scales and mins (n, 8) from the 12 scale bytes S (n, 12)."""
    S = S.astype(np.int32)
    sc, m = np.zeros((len(S), 8), np.int32), np.zeros((len(S), 8), np.int32)
    for s in range(8):
        if s < 4:
            sc[:, s], m[:, s] = S[:, s] & 63, S[:, s + 4] & 63
        else:
            sc[:, s] = (S[:, s + 4] & 15) | ((S[:, s - 4] >> 6) << 4)
            m[:, s] = (S[:, s + 4] >> 4) | ((S[:, s] >> 6) << 4)
    return sc, m


def _kquant(b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """d*sc_s*q - dmin*m_s for Q4_K/Q5_K: (d*sc) and (dmin*m) first, in float32."""
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, m = _kscales(b[:, 4:16])
    s = np.arange(256) // 32
    return (d * sc[:, s].astype(np.float32)) * q.astype(np.float32) - dmin * m[:, s].astype(np.float32)


def ref_decode(name: str, b: np.ndarray) -> np.ndarray:
    """(n_blocks, type_size) uint8 -> (n_blocks, block_size) float32."""
    if name == "F32":
        return np.ascontiguousarray(b).view(np.float32)
    if name == "F16":
        return _f16(b)
    if name == "BF16":
        return (np.ascontiguousarray(b).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if name == "Q8_0":
        return _f16(b[:, 0:2]) * np.ascontiguousarray(b[:, 2:34]).view(np.int8).astype(np.float32)
    if name == "Q4_0":
        return _f16(b[:, 0:2]) * (_nibbles_0_16(b[:, 2:18]) - 8).astype(np.float32)
    if name == "Q4_1":
        return _f16(b[:, 0:2]) * _nibbles_0_16(b[:, 4:20]).astype(np.float32) + _f16(b[:, 2:4])
    if name == "Q5_0":
        qh = np.ascontiguousarray(b[:, 2:6]).view("<u4")
        q = _nibbles_0_16(b[:, 6:22]) | (_bit(qh) << 4)
        return _f16(b[:, 0:2]) * (q - 16).astype(np.float32)
    if name == "Q5_1":
        qh = np.ascontiguousarray(b[:, 4:8]).view("<u4")
        q = _nibbles_0_16(b[:, 8:24]) | (_bit(qh) << 4)
        return _f16(b[:, 0:2]) * q.astype(np.float32) + _f16(b[:, 2:4])
    i = np.arange(256)
    s, l = i // 32, i % 32
    if name == "Q4_K":
        qs = b[:, 16:144].astype(np.int32)
        return _kquant(b, (qs[:, 32 * (s // 2) + l] >> (4 * (s % 2))) & 15)
    if name == "Q5_K":
        qh, qs = b[:, 16:48].astype(np.int32), b[:, 48:176].astype(np.int32)
        nib = (qs[:, 32 * (s // 2) + l] >> (4 * (s % 2))) & 15
        return _kquant(b, nib | (((qh[:, l] >> s) & 1) << 4))
    if name == "Q6_K":
        ql, qh = b[:, 0:128].astype(np.int32), b[:, 128:192].astype(np.int32)
        sc = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float32)
        d = _f16(b[:, 208:210])
        h, r = i // 128, i % 128
        low = (ql[:, 64 * h + r % 64] >> (4 * (r // 64))) & 15
        high = (qh[:, 32 * h + r % 32] >> (2 * (r // 32))) & 3
        return (d * sc[:, i // 16]) * ((low | (high << 4)) - 32).astype(np.float32)
    if name == "MXFP4":
        kvalues = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.float32)
        half = np.ldexp(np.float32(1), b[:, :1].astype(np.int32) - 128).astype(np.float32)
        with np.errstate(over="ignore"):
            return half * kvalues[_nibbles_0_16(b[:, 1:17])]
    raise AssertionError(name)


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same float32 bit pattern everywhere (so -0 != +0), or both NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and bool(((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))).all())


# ---------------------------------------------------------------------------------------------
# The table and lookups
# ---------------------------------------------------------------------------------------------

def test_type_table():
    assert list(ggml.GGML_TYPES) == NAMES
    for name, (tid, bs, ts) in TABLE.items():
        e = ggml.GGML_TYPES[name]
        assert (e.type_id, e.block_size, e.type_size) == (tid, bs, ts)
        assert e.qtype == QT(tid) and e.quantizable == (name in QUANTIZABLE)
        for key in (name, name.lower(), tid, QT(tid), e):
            assert ggml.ggml_type(key) is e
    for bad in ("Q2_K", "q9", 10, 40, True, 1.0, None, -1):
        with pytest.raises(QuantError):
            ggml.ggml_type(bad)


def test_row_bytes():
    assert ggml.row_bytes("Q4_0", 64) == 36 and ggml.row_bytes("Q6_K", 512) == 420
    assert ggml.row_bytes("F16", 3) == 6 and ggml.row_bytes("MXFP4", 32) == 17
    for t, n in (("Q4_0", 48), ("Q4_K", 32), ("F32", 0), ("Q8_0", -32), ("Q8_0", 32.0), ("Q8_0", True)):
        with pytest.raises(QuantError):
            ggml.row_bytes(t, n)


# ---------------------------------------------------------------------------------------------
# Dequantization
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # Inf/NaN scales in random bytes
def test_dequantize_matches_formats_md(name):
    """Valid random blocks and uniformly random bytes (NaN/Inf/subnormal f16 scales, E8M0 0xFF)."""
    e = ggml.GGML_TYPES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    n_cols = 3 * max(e.block_size, 8)
    for raw in (ggml.random_blocks(name, 4, n_cols, rng),
                rng.integers(0, 256, (4, ggml.row_bytes(name, n_cols)), dtype=np.uint8)):
        got = ggml.dequantize(raw, name, (4, n_cols))
        assert got.dtype == np.float32 and got.shape == (4, n_cols)
        want = ref_decode(name, raw.reshape(-1, e.type_size)).reshape(4, n_cols)
        assert bits_equal(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_dequantize_shapes_and_inputs(name):
    e = ggml.GGML_TYPES[name]
    rng = np.random.default_rng(1)
    n = 2 * max(e.block_size, 8)
    raw = ggml.random_blocks(name, 6, n, rng)
    flat = ggml.dequantize(raw, name, (6, n))
    assert bits_equal(ggml.dequantize(raw.reshape(-1), name, (2, 3, n)), flat.reshape(2, 3, n))
    assert bits_equal(ggml.dequantize(raw[0].tobytes(), name, n), flat[0])
    assert bits_equal(ggml.dequantize(bytearray(raw[1].tobytes()), name, np.int64(n)), flat[1])
    assert ggml.dequantize(np.zeros(0, np.uint8), name, (0, n)).shape == (0, n)
    for bad_raw, shape in ((raw, (5, n)), (raw.astype(np.int16), (6, n)), (raw, ()),
                           (raw, (6, n + 1) if e.block_size > 1 else (6, 0))):
        with pytest.raises(QuantError):
            ggml.dequantize(bad_raw, name, shape)


# ---------------------------------------------------------------------------------------------
# Quantization
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in QUANTIZABLE if n != "MXFP4"])
def test_quantize_is_gguf_quants(name):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 2, 256)) * np.exp2(rng.integers(-6, 6, (2, 2, 1)))).astype(np.float32)
    x[0, 0, :32] = 0.0  # an all-zero block
    raw = ggml.quantize(x, name)
    assert raw.dtype == np.uint8 and raw.shape == (2, 2, ggml.row_bytes(name, 256))
    ref = np.ascontiguousarray(gq.quantize(x, QT[name])).view(np.uint8).reshape(raw.shape)
    np.testing.assert_array_equal(raw, ref)
    # A sanity bound on the round trip: within about one quantization step of the block.
    y = ggml.dequantize(raw, name, x.shape)
    b = x.reshape(-1, 32)
    amax, span = np.abs(b).max(1, keepdims=True), np.ptp(b, 1, keepdims=True)
    step = {"F32": 0 * amax, "F16": np.abs(b) * 2.0**-11, "BF16": np.abs(b) * 2.0**-8,
            "Q8_0": amax / 127, "Q4_0": amax / 8, "Q5_0": amax / 16, "Q4_1": span / 15, "Q5_1": span / 31}[name]
    assert (np.abs(y.reshape(-1, 32) - b) <= 1.1 * step + amax * 2.0**-9).all()


def test_quantize_errors():
    for k in ("Q4_K", "Q5_K", "Q6_K"):
        with pytest.raises(QuantError, match="random_blocks"):
            ggml.quantize(np.ones(256), k)
    with pytest.raises(QuantError):
        ggml.quantize(np.float32(1), "Q8_0")
    with pytest.raises(QuantError):
        ggml.quantize(np.ones(48), "Q8_0")
    with pytest.raises(QuantError):
        ggml.quantize(np.ones(32), "IQ4_NL")
    assert ggml.quantize(np.ones((0, 64)), "Q4_0").shape == (0, 36)


# ---------------------------------------------------------------------------------------------
# GGML MXFP4 and the MX codec
# ---------------------------------------------------------------------------------------------

def _mxfp4_all_blocks() -> np.ndarray:
    """For every scale byte 0..254 and every code at every position: 255 * 16 blocks."""
    scale = np.repeat(np.arange(255), 16)
    shift = np.tile(np.arange(16), 255)
    codes = (np.arange(32)[None, :] + shift[:, None]) % 16
    return mx.pack_block(mx.MXFP4, scale.astype(np.uint8), codes.astype(np.uint8))


def test_mxfp4_ggml_and_mx_agree_on_every_scale_and_code():
    raw = _mxfp4_all_blocks()
    n = len(raw) * 32
    g = ggml.dequantize(raw, "MXFP4", n)
    m = mx.dequantize_rows(raw.reshape(-1), "mxfp4", n)
    np.testing.assert_array_equal(g, m)  # equal as numbers (-0 == +0)
    _, codes = mx.unpack_block(mx.MXFP4, raw)
    differ = g.view(np.uint32) != m.view(np.uint32)
    # The only bit difference: code 8 is +0 in GGML's table, -0 in E2M1.
    assert (codes.reshape(-1)[differ] == 8).all() and differ.sum() == (codes == 8).sum()
    assert not np.signbit(g[differ]).any() and np.signbit(m[differ]).all()
    assert bits_equal(g, ref_decode("MXFP4", raw).reshape(-1))


def test_mxfp4_nan_scale_differs_as_documented():
    raw = mx.pack_block(mx.MXFP4, np.array([255], np.uint8), (np.arange(32) % 16)[None].astype(np.uint8))
    assert np.isnan(mx.dequantize_rows(raw.reshape(-1), "mxfp4", 32)).all()
    g = ggml.dequantize(raw, "MXFP4", 32)[:16]  # GGML: 2^127 * kvalues in float32
    assert g[0] == 0 and g[1] == np.float32(2.0**127) and g[9] == -np.float32(2.0**127)
    assert np.isinf(g[[2, 3, 4, 5, 6, 7]]).all() and (g[10:] == -np.inf).all()


def test_mxfp4_quantize_is_the_mx_codec():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 128)) * np.exp2(rng.integers(-20, 20, (3, 1)))).astype(np.float32)
    raw = ggml.quantize(x, "MXFP4")
    np.testing.assert_array_equal(raw, mx.quantize_rows(x, "mxfp4"))
    np.testing.assert_array_equal(ggml.dequantize(raw, "MXFP4", x.shape), mx.dequantize_rows(raw, "mxfp4", 128))
    # Without ties, gguf.quants' own MXFP4 quantizer writes the same bytes, except that a small
    # negative value rounds to -0 (code 8) here and to +0 (code 0, its first table entry) there ...
    ref = np.asarray(gq.quantize(x, QT.MXFP4)).reshape(-1, 17)
    s_ours, c_ours = mx.unpack_block(mx.MXFP4, raw.reshape(-1, 17))
    s_ref, c_ref = mx.unpack_block(mx.MXFP4, ref)
    np.testing.assert_array_equal(s_ours, s_ref)
    np.testing.assert_array_equal(np.where(c_ours == 8, 0, c_ours), c_ref)
    assert (c_ours == 8).any()
    # ... and at ties it rounds toward zero where the spec rounds to even.
    ties = np.zeros(32, np.float32)
    ties[:6] = [4.0, 0.75, 1.75, 3.5, 2.5, 5.0]  # scale 2^0: amax 4 -> floor(log2 4) - 2 = 0
    ours = ggml.dequantize(ggml.quantize(ties, "MXFP4"), "MXFP4", 32)[:6]
    theirs = ggml.dequantize(np.asarray(gq.quantize(ties[None], QT.MXFP4)).reshape(-1), "MXFP4", 32)[:6]
    assert ours.tolist() == [4.0, 1.0, 2.0, 4.0, 2.0, 4.0]
    assert theirs.tolist() == [4.0, 0.5, 1.5, 3.0, 2.0, 4.0]


def test_mxfp4_tiny_blocks_clamp_the_scale():
    """Blocks whose max is below 2^-125: the spec's clamp gives scale byte 0 (2^-127), where
    gguf.quants' floor(log2(amax)) - 2 + 127 would go negative and wrap; elements below a quarter
    of that scale's E2M1 step round to zero."""
    x = np.zeros(32, np.float32)
    x[:3] = [2.0**-126, -(2.0**-127), 2.0**-130]
    raw = ggml.quantize(x, "MXFP4")
    assert raw[0] == 0
    assert ggml.dequantize(raw, "MXFP4", 32)[:3].tolist() == [2.0**-126, -(2.0**-127), 0.0]


# ---------------------------------------------------------------------------------------------
# Random valid blocks
# ---------------------------------------------------------------------------------------------

@given(st.sampled_from(NAMES), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_random_blocks_property(name, n_rows, n_blocks, seed):
    e = ggml.GGML_TYPES[name]
    n_cols = n_blocks * max(e.block_size, 8)
    raw = ggml.random_blocks(name, n_rows, n_cols, np.random.default_rng(seed))
    assert raw.dtype == np.uint8 and raw.shape == (n_rows, ggml.row_bytes(name, n_cols))
    np.testing.assert_array_equal(raw, ggml.random_blocks(name, n_rows, n_cols, np.random.default_rng(seed)))
    y = ggml.dequantize(raw, name, (n_rows, n_cols))
    assert np.isfinite(y).all() and np.abs(y).max() <= ggml.RANDOM_BOUND * 1.01


@pytest.mark.parametrize("name", NAMES)
def test_random_blocks_cover_the_codes(name):
    """Enough variety that kernels see every quant value: many distinct outputs per row."""
    e = ggml.GGML_TYPES[name]
    raw = ggml.random_blocks(name, 8, 4 * max(e.block_size, 8), np.random.default_rng(9))
    y = ggml.dequantize(raw, name, (8, raw.shape[1] // e.type_size * e.block_size))
    assert min(len(np.unique(r)) for r in y) >= min(16, y.shape[1] // 2)
    assert (y < 0).any() and (y > 0).any()
    if name == "MXFP4":
        assert raw[:, ::17].max() < 255


def test_random_blocks_errors():
    rng = np.random.default_rng(0)
    for t, rows, cols in (("Q4_0", 0, 32), ("Q4_0", True, 32), ("Q4_0", 1, 31), ("Q2_K", 1, 256)):
        with pytest.raises(QuantError):
            ggml.random_blocks(t, rows, cols, rng)


def test_formats_md_ggml_table_matches():
    """docs/FORMATS.md's GGML table states the same ids and sizes as gguf's constants."""
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "FORMATS.md").read_text()
    seen = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in TABLE and len(cells) > 3 and cells[1].isdigit():
            seen[cells[0]] = (int(cells[1]), int(cells[2]), int(cells[3]))
    assert seen == TABLE
