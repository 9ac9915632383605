"""forge.load(..., weights="mxfp4"|"mxfp6"|"mxfp8"): the load-time conversion (forge/model/convert.py).

- Bit for bit: converting F32/F16/BF16/Q8_0 rows gives exactly forge.quant.mx.quantize_rows of
  their values as gguf.quants decodes them (hypothesis draws blocks of normal numbers at every
  scale, raw bit patterns — subnormals, NaN, Inf included — and format edges such as ties and
  saturation points), for every MX format, through the chunked, threaded path too.
- End to end: a converted tiny model runs on the backends under test and matches the float64
  reference forward computed on the *converted* (dequantized) weights, within the tolerance
  tests/runtime/test_executor.py derives for the path the arch takes.
- What is kept (the embedding, tied heads, already-quantized matrices), what is refused (an unknown
  `weights`, rows that are not whole MX blocks), and the CLI's --weights.
"""

import json
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType as QT
from hypothesis import given, settings, strategies as st

import forge
from forge.errors import ForgeError, PackError
from forge.model import convert
from forge.model.config import load_config
from forge.model.convert import (WEIGHT_FORMATS, WeightsKept, convert_tensor, convert_weights, encode_rows,
                                 model_graph)
from forge.model.gguf import GGUFTensor, load_gguf
from forge.quant import ggml
from forge.quant.mx import MX_FORMATS, dequantize_rows, quantize_rows
from tests.helpers.tiny_gguf import write_tiny_gguf
from tests.oracles.llama import Reference
from tests.runtime.test_executor import IDS, bound, q8_rule
from tests.test_cli import run_cli

FORMATS = list(MX_FORMATS)
# Magnitudes where rounding decides something in some element format: ties between neighbours,
# the largest finite values and the points that saturate, E8M0's ends, float32's ends.
EDGES = np.array([0.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0, 7.0, 7.25, 7.5, 7.75, 28.0, 30.0, 0.0625,
                  0.03125, 0.09375, 240.0, 448.0, 464.0, 480.0, 57344.0, 61440.0, 1.0, 2.0 ** -127, 2.0 ** -126,
                  2.0 ** -149, 2.0 ** -140, 1.5 * 2.0 ** -133, float(np.finfo(np.float32).max), 2.0 ** 127],
                 np.float32)


# ------------------------------------------------------------------------------ drawing values
@st.composite
def float_blocks(draw, n_blocks: int) -> np.ndarray:
    """float32 values of n_blocks blocks of 32, each block of one drawn kind."""
    out = []
    for _ in range(n_blocks):
        kind = draw(st.sampled_from(["normal", "bits", "edges", "zeros", "special"]))
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        if kind == "normal":  # ordinary weights at any scale, float32 subnormals to overflow
            with np.errstate(over="ignore"):
                b = (rng.standard_normal(32) * 2.0 ** draw(st.integers(-150, 127))).astype(np.float32)
        elif kind == "bits":  # any float32, NaN and Inf included
            b = rng.integers(0, 2 ** 32, 32, dtype=np.uint32).view(np.float32)
        elif kind == "edges":  # format edges, scaled by a shared power of two so they stay edges
            with np.errstate(over="ignore"):
                b = rng.choice(EDGES, 32) * np.float32(2.0 ** draw(st.integers(-20, 20)))
            b = np.where(rng.random(32) < 0.5, -b, b).astype(np.float32)
        elif kind == "zeros":  # all-zero blocks (E8M0 code 0) with both signs of zero
            b = np.where(rng.random(32) < 0.5, np.float32(-0.0), np.float32(0.0))
        else:  # one NaN or Inf among normal numbers: the whole block becomes NaN
            b = rng.standard_normal(32).astype(np.float32)
            b[rng.integers(32)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        out.append(np.asarray(b, np.float32))
    return np.concatenate(out)


def tensor(qtype: QT, raw: np.ndarray, n_rows: int, n_cols: int) -> GGUFTensor:
    """A GGUFTensor over raw bytes, as load_gguf makes them (tests need no file)."""
    data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    return GGUFTensor("w", qtype, (n_cols, n_rows), 0, 0, data.nbytes, data)


def source(qtype: QT, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Raw bytes of a tensor of `qtype` built from float32 `values` (n_rows, n_cols): F16 rounds,
    BF16 keeps the top half of each float32's bits, Q8_0 takes its f16 scale from the values' bits
    and random int8 codes (so scales are subnormal, huge, Inf or NaN as drawn)."""
    if qtype == QT.F32:
        return values
    if qtype == QT.F16:
        with np.errstate(over="ignore"):
            return values.astype(np.float16)
    if qtype == QT.BF16:
        return (values.view(np.uint32) >> 16).astype(np.uint16)
    n_rows, n_cols = values.shape
    blocks = np.empty((n_rows, n_cols // 32, 34), np.uint8)
    blocks[..., :2] = (values[:, ::32].view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(n_rows, -1, 2)
    blocks[..., 2:] = rng.integers(0, 256, (n_rows, n_cols // 32, 32), dtype=np.uint8)
    return blocks


def reference(t: GGUFTensor, fmt: str) -> np.ndarray:
    """The reference conversion: gguf.quants decodes, forge.quant.mx.quantize_rows encodes."""
    with np.errstate(over="ignore", invalid="ignore"):
        values = ggml.dequantize(t.data, t.type_name, t.shape)
    return quantize_rows(values, fmt)


# ------------------------------------------------------------------------------ bit for bit
@settings(max_examples=40)
@given(data=st.data())
@pytest.mark.parametrize("qtype", [QT.F32, QT.F16, QT.BF16, QT.Q8_0], ids=lambda q: q.name)
def test_conversion_equals_the_reference_codec_bit_for_bit(qtype, data):
    n_rows, n_blocks = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    values = data.draw(float_blocks(n_rows * n_blocks)).reshape(n_rows, 32 * n_blocks)
    t = tensor(qtype, source(qtype, values, np.random.default_rng(n_rows)), n_rows, 32 * n_blocks)
    for fmt in FORMATS:
        got = convert_tensor(t, fmt)
        np.testing.assert_array_equal(got, reference(t, fmt), err_msg=f"{qtype.name} -> {fmt}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_float16_and_every_float32_binade_bit_for_bit(fmt):
    """All 65536 float16 bit patterns, shuffled into blocks, and float32 values of every binade."""
    rng = np.random.default_rng(1)
    h = rng.permutation(np.arange(1 << 16, dtype=np.uint32)).astype(np.uint16).view(np.float16)
    x = h.astype(np.float32).reshape(-1, 1024)
    np.testing.assert_array_equal(encode_rows(x, fmt), quantize_rows(x, fmt))
    top = np.repeat(np.arange(0, 255), 4)[:, None]  # four blocks led by each exponent field
    exps = np.clip(top - rng.integers(0, 32, (top.size, 32)), 0, 254).astype(np.uint32)  # and nearby ones
    bits = (exps << 23) | rng.integers(0, 1 << 23, exps.shape, dtype=np.uint32)
    y = (bits | (rng.integers(0, 2, exps.shape, dtype=np.uint32) << 31)).view(np.float32).reshape(-1, 1920)
    np.testing.assert_array_equal(encode_rows(y, fmt), quantize_rows(y, fmt))


@pytest.mark.parametrize("qtype", [QT.F16, QT.Q8_0], ids=lambda q: q.name)
def test_chunks_on_a_thread_pool_give_the_same_bytes(monkeypatch, qtype):
    """Rows split into many small chunks, converted by two threads, land where they belong."""
    rng = np.random.default_rng(2)
    values = (rng.standard_normal((37, 96)) * np.exp2(rng.integers(-30, 30, (37, 1)))).astype(np.float32)
    t = tensor(qtype, source(qtype, values, rng), 37, 96)
    monkeypatch.setattr(convert, "CHUNK_VALUES", 200)  # two rows a chunk: 19 chunks
    with ThreadPoolExecutor(2) as pool:
        for fmt in FORMATS:
            got = convert_tensor(t, fmt, pool)
            assert got.ctypes.data % 64 == 0 and got.flags.owndata is False and got.base is not None
            np.testing.assert_array_equal(got, reference(t, fmt))


def test_only_2d_float_and_q8_0_tensors_convert():
    t = tensor(QT.Q4_0, np.zeros(18, np.uint8), 1, 32)
    with pytest.raises(ForgeError, match="only 2-D F32, F16, BF16, Q8_0"):
        convert_tensor(t, "mxfp4")


# ------------------------------------------------------------------------------ the plan
@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """F16 layer matrices, a Q8_0 embedding, a Q4_0 output head."""
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "mixed.gguf", n_embd=128, n_head=2, n_head_kv=1,
                           n_ff=256, weight_type="F16", embd_type="Q8_0", output_type="Q4_0")


def plan(path, weights):
    g = load_gguf(path)
    return g, model_graph(g, load_config(path), weights)


def test_the_plan_converts_layer_matrices_and_keeps_embedding_and_quantized_ones(mixed):
    g, (graph, conv) = plan(mixed, "mxfp6")
    layer = [n for n in g.tensors if n.startswith("blk.") and len(g.tensors[n].shape) == 2]
    assert conv.fmt == "mxfp6_e2m3" and sorted(conv.converted) == sorted(layer) and len(layer) == 14
    assert conv.kept == {"output.weight": "Q4_0"} and conv.embedding == "Q8_0"
    assert {graph.tensors[n].dtype for n in layer} == {"mxfp6_e2m3"}
    assert graph.tensors["token_embd.weight"].dtype == "q8_0" and graph.tensors["output.weight"].dtype == "q4_0"
    assert graph.tensors["blk.0.attn_norm.weight"].dtype == "f32"
    assert conv.summary() == ("weights mxfp6 (mxfp6_e2m3): 14 matrices (F16 14) converted; 1 matrix (Q4_0 1) "
                              "already quantized, kept; token_embd.weight kept as Q8_0 (a lookup)")
    assert model_graph(g, load_config(mixed), None)[1] is None


@pytest.mark.parametrize("weights", ["mxfp4", "mxfp8"])
def test_a_separate_head_converts_and_a_tied_one_stays_the_embedding(tmp_path, weights):
    p = write_tiny_gguf(tmp_path / "a.gguf", weight_type="Q8_0", embd_type="F16")
    _, (graph, conv) = plan(p, weights)
    assert conv.converted["output.weight"] == "Q8_0" and graph.tensors["output.weight"].dtype == WEIGHT_FORMATS[weights]
    assert graph.tensors["token_embd.weight"].dtype == "f16" and not conv.kept
    t = write_tiny_gguf(tmp_path / "t.gguf", weight_type="F16", tied=True)
    _, (graph, conv) = plan(t, weights)
    assert "token_embd.weight" not in conv.converted and graph.tensors["token_embd.weight"].dtype == "f16"


@pytest.mark.parametrize("weights", ["mxfp5", "MXFP4", "fp8", "", 4])
def test_an_unknown_weights_value_is_refused(mixed, weights):
    with pytest.raises(ForgeError, match="unknown weights .*choose one of mxfp4, mxfp6, mxfp8"):
        forge.load(mixed, backend="cpu", weights=weights)


def test_rows_that_are_not_whole_mx_blocks_are_refused(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", n_embd=64, n_head=1, n_head_kv=1, n_ff=100, weight_type="F16")
    with pytest.raises(ForgeError, match=r"cannot convert 'blk.0.ffn_down.weight' \(F16, 100 columns\) to "
                                         r"mxfp8_e4m3: MX blocks need a multiple of 32 columns"):
        forge.load(p, backend="cpu", weights="mxfp8")


def test_kept_matrices_warn_in_one_line_and_the_model_runs(tmp_path):
    p = write_tiny_gguf(tmp_path / "q.gguf", n_embd=128, n_head=2, n_head_kv=1, n_ff=256, weight_type="Q4_0")
    with pytest.warns(WeightsKept) as w:
        m = forge.load(p, backend="cpu", max_context=16, weights="mxfp8")
    msg = str(w[0].message)
    assert "\n" not in msg and "no matrices converted" in msg and "15 matrices (Q4_0 15) already quantized, kept" in msg
    want = forge.load(p, backend="cpu", max_context=16).logits([5, 6, 7])
    np.testing.assert_array_equal(m.logits([5, 6, 7]), want)  # nothing changed


# ------------------------------------------------------------------------------ end to end
CASES = [("mxfp4", "F16"), ("mxfp6", "BF16"), ("mxfp8", "Q8_0"), ("mxfp6_e3m2", "F32"), ("mxfp8_e5m2", "F16")]


def converted_reference(path, conv, q8) -> Reference:
    """The float64 reference of `path` with the converted matrices' decoded values in place of the
    file's: the conversion's rounding is then no error, as the file's own is for the executor test."""
    ref = Reference(path, q8=q8)
    ref.wtypes = dict(conv.wtypes)  # the 8-bit-activation rule asks by the converted type
    for name, raw in convert_weights(load_gguf(path), conv).items():
        ref._w[name] = dequantize_rows(raw, conv.fmt, ref.g.tensors[name].shape[-1]).astype(np.float64)
    return ref


@pytest.mark.parametrize("weights, wtype", CASES)
def test_a_converted_model_matches_the_reference_on_its_converted_weights(tmp_path, backend, weights, wtype):
    p = write_tiny_gguf(tmp_path / "m.gguf", arch="qwen2" if wtype == "BF16" else "llama", n_embd=128, n_head=2,
                        n_head_kv=1, n_ff=256, weight_type=wtype)
    m = forge.load(p, backend=backend, kv_dtype="f32", max_context=64, weights=weights)
    ex, conv = m.executor, m.conversion
    assert len(conv.converted) == 15 and not conv.kept and conv.seconds > 0
    ref = converted_reference(p, conv, q8_rule(ex, 2))
    want = ref.logits(IDS)
    tol = bound(ex, "f32") * np.abs(want).max()
    got = m.logits(IDS)  # 13 tokens, all rows
    assert np.abs(got - want).max() <= tol, np.abs(got - want).max() / np.abs(want).max()
    ex.prefill(IDS[:-1])  # then the last token through the decode path
    dec = ex.decode_logits(int(IDS[-1]), len(IDS) - 1)
    assert np.abs(dec[0] - ref.logits(IDS, q8_last=q8_rule(ex, 1))[-1]).max() <= tol


# ------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def f16(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "f16.gguf", n_embd=128, n_head=2, n_head_kv=1, n_ff=256,
                           weight_type="F16")


def test_cli_run_with_weights_says_what_it_converted(capsys, f16):
    code, out, err = run_cli(capsys, "run", f16, "-p", "hello", "-n", "3", "--temp", "0", "--backend", "cpu",
                             "--weights", "mxfp6")
    assert code == 0 and out.startswith("hello")
    assert "forge: weights mxfp6 (mxfp6_e2m3): 15 matrices (F16 15) converted in " in err
    code, out, _ = run_cli(capsys, "graph", f16, "--json", "--weights", "mxfp8")
    types = {t["name"]: t["dtype"] for t in json.loads(out)["tensors"]}
    assert code == 0 and types["blk.1.attn_v.weight"] == "mxfp8_e4m3" and types["token_embd.weight"] == "f16"


def test_cli_refuses_an_unknown_weights_value(capsys, f16):
    with pytest.raises(SystemExit) as e:
        run_cli(capsys, "run", f16, "-p", "x", "--weights", "mxfp5")
    assert e.value.code == 2 and "invalid choice: 'mxfp5'" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "build", "--arch", "host", "--weights", "mxfp4")
    assert code == 1 and "use them with --pack FILE --model" in err


def test_a_pack_built_with_weights_runs_that_model_converted(capsys, f16, tmp_path):
    """build --pack --model --weights holds the converted types' kernels: the converted model runs
    from it, and the unconverted one (F16 matmuls) is refused as lacking kernels."""
    pack = tmp_path / "p.tar"
    code, out, err = run_cli(capsys, "build", "--arch", "host", "--pack", pack, "--model", f16, "--weights", "mxfp8",
                             "-q")
    assert code == 0 and pack.is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is kept: no warning
        m = forge.load(f16, kernels=pack, max_context=16, weights="mxfp8")
    assert m.graph.tensors["blk.0.ffn_up.weight"].dtype == "mxfp8_e4m3"
    with pytest.raises(PackError, match="gemm"):
        forge.load(f16, kernels=pack, max_context=16)
