"""Oracle for dequantization: the float32 values of raw weight rows of any weight type, from
forge.quant (gguf.quants for the GGML types, forge.quant.mx for forge's MX layouts), plus random
valid weights and a bit-level comparison. Kernels must match these values bit for bit."""

from __future__ import annotations

import numpy as np

from forge.codegen.wtypes import get_wtype
from forge.quant import ggml, mx


def is_mx(wtype: str) -> bool:
    """True for forge's MX layouts (mxfp6_*, mxfp8_*): decoded by forge.quant.mx, not gguf."""
    return get_wtype(wtype).codec in mx.MX_FORMATS


def row_bytes(wtype: str, n_cols: int) -> int:
    codec = get_wtype(wtype).codec
    return mx.mx_format(codec).row_bytes(n_cols) if is_mx(wtype) else ggml.row_bytes(codec, n_cols)


def decode(wtype: str, raw: np.ndarray, n_cols: int) -> np.ndarray:
    """float32 (n_rows, n_cols) values of raw rows (n_rows, row_bytes) of `wtype`."""
    codec = get_wtype(wtype).codec
    if is_mx(wtype):
        return mx.dequantize_rows(raw, codec, n_cols)
    return ggml.dequantize(raw, codec, (raw.shape[0], n_cols))


def dequant(wtype: str, raw: np.ndarray, n_cols: int, out: str) -> np.ndarray:
    """What the dequant kernel writes: decode() in f32, or rounded to f16 (nearest even, values
    past f16's range become +-Inf)."""
    v = decode(wtype, raw, n_cols)
    if out == "f32":
        return v
    with np.errstate(over="ignore"):
        return v.astype(np.float16)


def random_weights(wtype: str, n_rows: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """Valid random rows: forge.quant.ggml.random_blocks for GGML types; MX-quantized random
    floats (magnitudes over a few binades, so blocks get different scales) for forge's MX types."""
    if not is_mx(wtype):
        return ggml.random_blocks(get_wtype(wtype).codec, n_rows, n_cols, rng)
    x = rng.standard_normal((n_rows, n_cols)) * np.exp2(rng.integers(-8, 8, (n_rows, n_cols // 32, 1))).repeat(32, 2).reshape(n_rows, n_cols)
    return mx.quantize_rows(x.astype(np.float32), get_wtype(wtype).codec)


def random_bytes(wtype: str, n_rows: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random bytes as rows: every block is still decodable, and this reaches the edge
    cases the valid generators avoid — f16 scales that are subnormal, Inf or NaN, E8M0 0x00 and
    0xFF, FP8 NaN/Inf codes."""
    return rng.integers(0, 256, (n_rows, row_bytes(wtype, n_cols)), dtype=np.uint8)


def bits_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: same bit pattern (so -0 differs from +0), or both NaN (payloads may differ)."""
    ua = a.view(np.uint32 if a.dtype == np.float32 else np.uint16)
    ub = b.view(ua.dtype)
    return (ua == ub) | (np.isnan(a) & np.isnan(b))
