"""Load-time conversion of a model's matrices to MX weight types: forge.load(path, weights="mxfp6").

GGUF has no MXFP6/MXFP8 tensor type (and few files ship MXFP4), so MX weights are made when a model
is loaded: every matrix a matmul reads (attention q/k/v/output, FFN gate/up/down, a separate output
head) that is F32, F16, BF16 or Q8_0 is decoded to float32 (exactly: each of those types' values is
a float32) and encoded with forge.quant.mx's rounding — spec block scales, round to nearest even,
saturation; a block holding NaN/Inf becomes the NaN block — byte for byte what `quantize_rows`
gives (tests/model/test_convert.py checks that), only faster: float32 and integer tricks instead of
float64, rows in cache-sized chunks on a thread pool.

What is not converted, and why:
- token_embd.weight keeps its type: the embedding is a row lookup, not a matmul (llama.cpp keeps
  it too), and a tied output head is that same tensor, so it keeps the type as well.
- Matrices already in another quantized type (Q4_0, Q4_K, MXFP4, ...) are kept as they are:
  requantizing would add a second rounding error to the first, and the kernels run those types.
  `Conversion.summary()` says so in one line (load() warns with it; the CLI prints it).
- Vectors (norms, biases) stay float32, as always.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import ForgeError
from ..quant.mx import BLOCK, E8M0_BIAS, E8M0_NAN, MXFormat, mx_format
from ..runtime.graph import LayerGraph
from .config import ModelConfig
from .gguf import GGUFFile, GGUFTensor
from .llama import build_llama_graph
from .weights import weight_types

# weights= values: the short names pick the element type usually meant for weights (FP6 E2M3 has
# the finer mantissa; E4M3 is the weight/activation FP8, E5M2 the gradient one); the long names
# pick either element type explicitly.
WEIGHT_FORMATS = {"mxfp4": "mxfp4", "mxfp6": "mxfp6_e2m3", "mxfp8": "mxfp8_e4m3",
                  "mxfp6_e2m3": "mxfp6_e2m3", "mxfp6_e3m2": "mxfp6_e3m2",
                  "mxfp8_e4m3": "mxfp8_e4m3", "mxfp8_e5m2": "mxfp8_e5m2"}
# acts= values: what the matmuls on MX weights quantize their activations to where the arch multiplies
# MX on its matrix unit (gfx950's scaled MFMA: the gemm's and gemv_mx's `acts` parameter); elsewhere the
# activations stay f32 / f16 / 8-bit blocks and the choice changes nothing. MXFP4 weights x MXFP6
# activations kept most of FP8's accuracy on MI355X in AMD's measurements (../shared/FACTS.md).
ACT_FORMATS = ("mxfp8", "mxfp6")
SOURCE_TYPES = ("F32", "F16", "BF16", "Q8_0")  # types whose values float32 holds exactly
EMBEDDING = "token_embd.weight"
CHUNK_VALUES = 1 << 18  # values per work item: ~1 MiB of float32, so a chunk's passes stay in cache


@dataclass
class Conversion:
    """What weights=... does to one model: the weight types the graph gets, which matrices are
    converted (name -> source type) and which kept (name -> type), and the time converting took."""

    weights: str  # as asked ("mxfp6")
    fmt: str  # the forge weight type made ("mxfp6_e2m3")
    wtypes: dict[str, str]  # every tensor's forge weight type after conversion
    converted: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)  # matmul weights already quantized
    embedding: str = ""  # the token embedding's type (kept for the lookup)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the user: what was converted and what kept."""
        name = self.weights if self.weights == self.fmt else f"{self.weights} ({self.fmt})"
        parts = [f"weights {name}: {_count(self.converted)} converted"
                 + (f" in {self.seconds:.1f} s" if self.seconds else "")]
        if self.kept:
            parts.append(f"{_count(self.kept)} already quantized, kept")
        parts.append(f"{EMBEDDING} kept as {self.embedding} (a lookup)")
        return "; ".join(parts)


def _count(types: dict[str, str]) -> str:
    """'14 matrices (F16 12, Q8_0 2)' or 'no matrices'."""
    if not types:
        return "no matrices"
    by = Counter(types.values())
    n = len(types)
    return f"{n} {'matrix' if n == 1 else 'matrices'} ({', '.join(f'{t} {k}' for t, k in sorted(by.items()))})"


class WeightsKept(UserWarning):
    """load(weights=...) kept some matrices in their quantized types (the message says which)."""


def model_graph(g: GGUFFile, cfg: ModelConfig, weights: str | None = None,
                acts: str | None = None) -> tuple[LayerGraph, Conversion | None]:
    """The layer graph of `g` with its weights' types after `weights` (None: the file's own types),
    and the Conversion planned (None when nothing is asked). Converts nothing yet: a pack's kernel
    list needs only the types (forge.model.packs). `acts` (ACT_FORMATS; None: the kernels' default)
    is written as the attribute `acts` of every matmul node whose weight is an MX type (mark_acts)."""
    wtypes = weight_types(g)
    graph = build_llama_graph(cfg, wtypes)
    conv = None
    if weights is not None:
        conv = plan_conversion(g, graph, wtypes, weights)
        graph = build_llama_graph(cfg, conv.wtypes)
    if acts is not None:
        mark_acts(graph, acts, str(g.path))
    return graph, conv


def act_format(acts: str) -> str:
    """`acts` if it is one of ACT_FORMATS; ForgeError listing them otherwise."""
    if acts not in ACT_FORMATS:
        raise ForgeError(f"unknown acts {acts!r}; choose one of {', '.join(ACT_FORMATS)} (or None: the default, "
                         f"mxfp8)")
    return acts


def mark_acts(graph: LayerGraph, acts: str, where: str = "the model") -> int:
    """Set attrs["acts"] on every matmul node of `graph` whose weight is an MX type (the only matmuls
    that quantize their activations to an MX format); returns how many. ForgeError for an unknown
    `acts`, or when no matmul has MX weights (the choice would change nothing: convert with weights=)."""
    act_format(acts)
    n = 0
    for node in graph.nodes:
        if node.op == "matmul" and is_mx_type(graph.tensors[node.inputs[0]].dtype):
            node.attrs["acts"] = acts
            n += 1
    if not n:
        raise ForgeError(f"{where}: acts={acts!r} sets the activation format of matmuls on MX weights, and no "
                         f"matmul here has MX weights (convert them with weights='mxfp4', 'mxfp6' or 'mxfp8')")
    return n


def is_mx_type(wtype: str) -> bool:
    """Whether `wtype` (a forge weight type name) is one of the MX types."""
    return wtype in WEIGHT_FORMATS.values()


def weight_format(weights: str) -> str:
    """The forge weight type `weights` names; ForgeError listing the choices otherwise."""
    fmt = WEIGHT_FORMATS.get(weights) if isinstance(weights, str) else None
    if fmt is None:
        raise ForgeError(f"unknown weights {weights!r}; choose one of {', '.join(WEIGHT_FORMATS)} "
                         f"(or None: the file's own types)")
    return fmt


def matmul_weights(graph: LayerGraph) -> list[str]:
    """Names of the weights matmul nodes read, in graph order, without repeats."""
    seen: dict[str, None] = {}
    for n in graph.nodes:
        if n.op == "matmul" and graph.tensors[n.inputs[0]].kind == "weight":
            seen.setdefault(n.inputs[0], None)
    return list(seen)


def plan_conversion(g: GGUFFile, graph: LayerGraph, wtypes: dict[str, str], weights: str) -> Conversion:
    """The Conversion of `g` (whose graph, built with the file's types `wtypes`, is `graph`) to
    `weights`, deciding per matrix without converting anything. ForgeError for an unknown
    `weights` or a matrix to convert whose rows are not whole MX blocks."""
    fmt = weight_format(weights)
    conv = Conversion(weights, fmt, dict(wtypes), embedding=g.tensors[EMBEDDING].type_name)
    for name in matmul_weights(graph):
        if name == EMBEDDING:  # a tied head is the embedding: one tensor, one type
            continue
        t = g.tensors[name]
        if t.type_name not in SOURCE_TYPES:
            conv.kept[name] = t.type_name
            continue
        if t.shape[-1] % BLOCK:
            raise ForgeError(f"{g.path}: cannot convert {name!r} ({t.type_name}, {t.shape[-1]} columns) to {fmt}: "
                             f"MX blocks need a multiple of {BLOCK} columns")
        conv.converted[name] = t.type_name
        conv.wtypes[name] = fmt
    return conv


def convert_weights(g: GGUFFile, conv: Conversion, threads: int | None = None) -> dict[str, np.ndarray]:
    """name -> uint8 rows (n_rows, row_bytes) in conv.fmt for every matrix conv converts; owned,
    64-byte aligned arrays (the host backend uses weight arrays in place). Sets conv.seconds."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
        out = {name: convert_tensor(g.tensors[name], conv.fmt, pool) for name in conv.converted}
    conv.seconds = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------ one tensor
def convert_tensor(t: GGUFTensor, fmt, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """A 2-D F32/F16/BF16/Q8_0 tensor as uint8 MX rows (n_rows, row_bytes), equal byte for byte to
    forge.quant.mx.quantize_rows of its float32 values. Rows go in chunks, on `pool` if given."""
    f = mx_format(fmt)
    if t.type_name not in SOURCE_TYPES or len(t.shape) != 2:
        raise ForgeError(f"{t.name}: only 2-D {', '.join(SOURCE_TYPES)} tensors convert to {f.name}; "
                         f"it is {t.type_name} {t.shape}")
    n_rows, n_cols = t.shape
    out = _aligned((n_rows, f.row_bytes(n_cols)))
    step = max(1, CHUNK_VALUES // n_cols)
    jobs = [(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step)]

    def work(span):
        lo, hi = span
        encode_rows(source_rows(t, lo, hi), f, out[lo:hi])

    for _ in (pool.map(work, jobs) if pool is not None else map(work, jobs)):
        pass  # map's iterator re-raises a chunk's exception here
    return out


def _aligned(shape: tuple[int, int], align: int = 64) -> np.ndarray:
    """A zeroed uint8 array whose data starts on an `align`-byte boundary (kernels load weight
    blocks with 16-byte loads; numpy promises less)."""
    n = shape[0] * shape[1]
    raw = np.zeros(n + align, np.uint8)
    off = -raw.ctypes.data % align
    return raw[off:off + n].reshape(shape)


def source_rows(t: GGUFTensor, lo: int, hi: int) -> np.ndarray:
    """float32 values of rows lo..hi of a F32/F16/BF16/Q8_0 tensor: exact, as each type's values
    are float32 numbers (a Q8_0 value d*q is an 11-bit by 8-bit product)."""
    if t.type_name == "F32":
        return t.array()[lo:hi]
    if t.type_name == "F16":
        return t.array()[lo:hi].astype(np.float32)
    if t.type_name == "BF16":  # the top half of a float32
        return (t.array()[lo:hi].astype(np.uint32) << 16).view(np.float32)
    blocks = t.rows()[lo:hi].reshape(hi - lo, -1, 34)  # Q8_0: f16 d, then 32 int8 q
    d = np.ascontiguousarray(blocks[..., :2]).view("<f2").astype(np.float32)  # (rows, nb, 1)
    with np.errstate(invalid="ignore", over="ignore"):  # an Inf/NaN scale gives the values GGML gives
        return (blocks[..., 2:].view(np.int8).astype(np.float32) * d).reshape(hi - lo, -1)


# ------------------------------------------------------------------------------------ the encoder
def encode_rows(x: np.ndarray, fmt, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 MX rows of float32 x (rows, n_cols), written into `out` (rows, row_bytes) if given:
    the same bytes as forge.quant.mx.quantize_rows(x, fmt), computed in float32 and integers.

    Why it is exact: the shared exponent is the biased exponent field of the block's largest
    magnitude (as bits, |x| orders like an integer); dividing by the power-of-two scale is exact in
    float32 (results stay below 2^16; those that underflow are far below half the element's
    smallest step and round to zero either way, keeping their sign); and rounding |v| to the
    element grid is one float32 addition: with M = 2^(23 + k) for the step 2^k of |v|'s binade,
    M + |v| rounds |v| to a multiple of 2^k, ties to even, and its low mantissa bits count steps."""
    f = mx_format(fmt)
    e = f.elem
    rows, n = x.shape
    nb, row_bytes = n // BLOCK, f.row_bytes(n)  # QuantError unless n is whole blocks
    if out is None:
        out = np.empty((rows, row_bytes), np.uint8)
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).reshape(rows, nb, BLOCK)
    mag = bits & np.uint32(0x7FFFFFFF)
    amax = mag.max(axis=-1)
    special = amax >= 0x7F800000  # an Inf or NaN in the block: the spec leaves it; the codec says NaN
    # floor(log2(amax)) - emax, clamped to E8M0's range; a zero or subnormal amax clamps to -127,
    # since emax >= 2 for every element type.
    shared = np.clip((amax >> 23).astype(np.int32) - 127 - e.emax, -127, 127)
    scaled = mag.view(np.float32)  # |x| / 2^shared, in place: fresh temporaries cost page faults
    with np.errstate(invalid="ignore", over="ignore"):  # Inf/NaN blocks: replaced below
        np.multiply(scaled, np.ldexp(np.float32(1), -shared)[..., None].astype(np.float32), out=scaled)
    codes = _element_codes(scaled, bits, e)
    codes[special] = 0
    scales = np.where(special, E8M0_NAN, shared + E8M0_BIAS).astype(np.uint8)
    _pack(f, scales, codes, out.reshape(rows, nb, f.block_bytes))
    return out


def _element_codes(a: np.ndarray, bits: np.ndarray, e) -> np.ndarray:
    """uint8 codes of the non-negative float32 magnitudes `a` (overwritten) with the signs of the
    float32 `bits`: round to nearest even on the element grid, saturate at the largest finite
    code (Inf/NaN give garbage the caller replaces)."""
    with np.errstate(invalid="ignore", over="ignore"):
        lo_exp = np.uint32(e.emin + 127)  # float32 exponent field of the element's smallest normal
        eb = a.view(np.uint32) >> 23
        np.maximum(eb, lo_exp, out=eb)  # binade of |v|, subnormals sharing the smallest one's step
        m = eb + np.uint32(23 - e.mbits)
        m <<= 23  # M = 2^(binade - mbits + 23), as float32 bits
        np.add(a, m.view(np.float32), out=a)  # the FPU rounds M + |v|: ties to even
        steps = a.view(np.uint32)
        steps -= m  # whole steps of the binade above M
        eb -= lo_exp
        eb <<= e.mbits
        eb += steps  # exponent field (less one for normals) then steps: the code, carries included
        np.minimum(eb, np.uint32(_max_code(e)), out=eb)
        np.right_shift(bits, 31, out=m)
        m <<= e.bits - 1
        eb |= m  # the sign bit, from the input: -0.0 and negatives that round to zero keep it
        return eb.astype(np.uint8)


def _max_code(e) -> int:
    """Code of the element's largest finite magnitude (what saturation gives)."""
    t = e.table[: 1 << (e.bits - 1)]
    return int(np.flatnonzero(t == e.max)[0])


def _pack(f: MXFormat, scales: np.ndarray, codes: np.ndarray, out: np.ndarray) -> None:
    """Write blocks (scale byte, then the packed elements) into out (rows, nb, block_bytes), in the
    layouts of forge.quant.mx.pack_block."""
    out[..., 0] = scales
    if f.elem.bits == 4:
        out[..., 1:] = codes[..., :16] | (codes[..., 16:] << np.uint8(4))
    elif f.elem.bits == 6:
        g = codes.reshape(*codes.shape[:-1], 8, 4).astype(np.uint32)
        w = g[..., 0] | (g[..., 1] << 6) | (g[..., 2] << 12) | (g[..., 3] << 18)
        p = out[..., 1:].reshape(*codes.shape[:-1], 8, 3)
        p[..., 0], p[..., 1], p[..., 2] = w, w >> 8, w >> 16  # assignment keeps the low byte
    else:
        out[..., 1:] = codes
