"""Reference (numpy) codecs: GGML block types (via the `gguf` package) and OCP MX formats.

These are the oracles forge's kernels are checked against; docs/FORMATS.md lists every byte layout.
"""

from .ggml import GGML_TYPES, RANDOM_BOUND, GGMLType, dequantize, ggml_type, quantize, random_blocks, row_bytes
from .mx import (
    BLOCK,
    ELEMENT_FORMATS,
    FP4_E2M1,
    FP6_E2M3,
    FP6_E3M2,
    FP8_E4M3,
    FP8_E5M2,
    MX_FORMATS,
    MXFP4,
    MXFP6_E2M3,
    MXFP6_E3M2,
    MXFP8_E4M3,
    MXFP8_E5M2,
    ElementFormat,
    MXFormat,
    dequantize_mx,
    dequantize_rows,
    e8m0_decode,
    e8m0_encode,
    e8m0_from_exponent,
    mx_format,
    pack_block,
    quantize_mx,
    quantize_rows,
    unpack_block,
)

__all__ = [
    "GGML_TYPES", "RANDOM_BOUND", "GGMLType", "dequantize", "ggml_type", "quantize", "random_blocks",
    "row_bytes",
    "BLOCK", "ELEMENT_FORMATS", "FP4_E2M1", "FP6_E2M3", "FP6_E3M2", "FP8_E4M3", "FP8_E5M2",
    "MX_FORMATS", "MXFP4", "MXFP6_E2M3", "MXFP6_E3M2", "MXFP8_E4M3", "MXFP8_E5M2", "ElementFormat",
    "MXFormat", "dequantize_mx", "dequantize_rows", "e8m0_decode", "e8m0_encode", "e8m0_from_exponent",
    "mx_format", "pack_block", "quantize_mx", "quantize_rows", "unpack_block",
]
