"""The activation-format choice at load (forge.load(..., acts="mxfp8"|"mxfp6"), `--acts` beside
`--weights`): forge/model/convert.py marks every matmul on MX weights with attrs["acts"], which the
lowering gives the scaled-MFMA kernels as their `acts` parameter (gemm, gemv_mx); what it refuses."""

import numpy as np
import pytest

import forge
from forge.arch import get_arch
from forge.codegen.spec import get_spec
from forge.errors import ForgeError
from forge.model.config import config_from_gguf
from forge.model.convert import ACT_FORMATS, model_graph
from forge.runtime.lower import lower
from tests.model.test_convert import converted_reference
from tests.runtime.test_executor import IDS
from forge.model.gguf import load_gguf
from tests.helpers.tiny_gguf import write_tiny_gguf
from tests.test_cli import run_cli


ACTS_FORMAT = {"mxfp8": "mxfp8_e4m3", "mxfp6": "mxfp6_e2m3"}  # forge.quant.mx's name of each choice


@pytest.fixture(scope="module")
def f16(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "f16.gguf", n_embd=128, n_head=2, n_head_kv=1, n_ff=256,
                           weight_type="F16")


def graph_of(path, weights=None, acts=None):
    g = load_gguf(path)
    return model_graph(g, config_from_gguf(g), weights, acts)[0]


@pytest.mark.parametrize("acts", ACT_FORMATS)
def test_every_matmul_on_mx_weights_carries_the_choice(f16, acts):
    graph = graph_of(f16, "mxfp4", acts)
    matmuls = [n for n in graph.nodes if n.op == "matmul"]
    mx = [n for n in matmuls if graph.tensors[n.inputs[0]].dtype == "mxfp4"]
    assert len(mx) == 2 * 7 + 1  # q, k, v, o, gate, up, down in each of 2 layers, and the (untied) head
    assert all(n.attrs["acts"] == acts for n in mx)
    assert all("acts" not in n.attrs for n in matmuls if n not in mx)
    assert all("acts" not in n.attrs for n in graph_of(f16, "mxfp4").nodes)  # not asked: the default


def test_the_kernels_have_the_choice_where_the_arch_multiplies_mx():
    for acts in ACT_FORMATS:
        for family in ("gemm", "gemv_mx"):
            assert get_spec(family).variant(get_arch("gfx950"), wtype="mxfp4", acts=acts)


def test_an_unknown_acts_is_refused(f16):
    with pytest.raises(ForgeError, match="unknown acts 'mxfp4'; choose one of mxfp8, mxfp6"):
        graph_of(f16, "mxfp4", "mxfp4")


def test_acts_without_mx_weights_is_refused_before_anything_runs(f16):
    with pytest.raises(ForgeError, match="no matmul here has MX weights"):
        graph_of(f16, None, "mxfp6")
    with pytest.raises(ForgeError, match="no matmul here has MX weights"):
        forge.load(f16, backend="cpu", acts="mxfp6")


def test_cli_graph_shows_the_choice(capsys, f16):
    code, out, err = run_cli(capsys, "graph", f16, "--weights", "mxfp4", "--acts", "mxfp6")
    assert code == 0, err
    assert out.count("acts=mxfp6") == 15
    with pytest.raises(SystemExit):  # argparse's own refusal, listing the choices
        run_cli(capsys, "graph", f16, "--weights", "mxfp4", "--acts", "fp6")
    assert "invalid choice: 'fp6' (choose from 'mxfp8', 'mxfp6')" in capsys.readouterr().err


def test_load_on_the_host_accepts_the_choice_and_runs_unchanged(f16):
    """The host target has no scaled MFMA: acts changes nothing there (same logits as without)."""
    ids = [1, 5, 9]
    a = forge.load(f16, backend="cpu", weights="mxfp4", acts="mxfp6").logits(ids)
    b = forge.load(f16, backend="cpu", weights="mxfp4").logits(ids)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("acts", ACT_FORMATS)
def test_a_model_on_the_scaled_mfma_matches_the_reference_with_its_activation_rounding(tmp_path, acts):
    """End to end on emu-gfx950: every matmul is MX (weights="mxfp4", the head too), so prefill runs
    gemm and decode gemv_mx with X rounded to `acts`; the float64 reference rounds each matmul's
    input the same way (forge.quant.mx), so what is left is f32 arithmetic — and inputs that land
    within that of a rounding boundary, which move by one step: the 8-bit path's allowance (bound).
    One head of 256: gfx950's prefill attention keeps its exact scalar path there (the f16 MFMA path
    takes head dims 64-128 and rounds Q, K, P and V to f16, which the reference does not; through the
    activation rounding downstream that moves these logits by ~5e-2)."""
    f16 = write_tiny_gguf(tmp_path / "d256.gguf", n_embd=256, n_head=1, n_head_kv=1, n_ff=256, weight_type="F16")
    m = forge.load(f16, backend="emu-gfx950", kv_dtype="f32", max_context=64, weights="mxfp4", acts=acts)
    ex, fmt = m.executor, ACTS_FORMAT[acts]
    ref = converted_reference(f16, m.conversion, None)
    ref.mx_acts = lambda wtype, n_cols: fmt if wtype == "mxfp4" else None
    want = ref.logits(IDS)
    tol = 2e-2 * np.abs(want).max()
    got = m.logits(IDS)
    assert np.abs(got - want).max() <= tol, np.abs(got - want).max() / np.abs(want).max()
    ex.prefill(IDS[:-1])  # then the last token through gemv_mx
    dec = ex.decode_logits(int(IDS[-1]), len(IDS) - 1)
    assert np.abs(dec[0] - want[-1]).max() <= tol, np.abs(dec[0] - want[-1]).max() / np.abs(want).max()


def test_lowering_gives_mx_matmuls_to_the_scaled_mfma_kernels(f16):
    """gfx950: decode matmuls on MX weights are gemv_mx calls and a 32-token prefill's are gemm calls (gemv_mx
    takes up to 16 tokens), both with
    the model's acts; sm_90 has no such kernels and lowers the same graph without the choice."""
    graph = graph_of(f16, "mxfp4", "mxfp6")
    dec = lower(graph, get_arch("gfx950"), "decode", 1, 1).calls
    mm = [c for c in dec if c.family in ("gemv_mx", "gemv", "matmul_q8", "gemm")]
    assert len(mm) == 15 and all(c.family == "gemv_mx" and c.params["acts"] == "mxfp6" for c in mm)
    pre = [c for c in lower(graph, get_arch("gfx950"), "prefill", 32, 32).calls if c.family == "gemm"]
    assert len(pre) == 15 and all(c.params.get("acts") == "mxfp6" for c in pre)
    nv = lower(graph, get_arch("sm_90"), "prefill", 32, 32).calls
    assert not any("acts" in c.params for c in nv) and not any(c.family == "gemv_mx" for c in nv)


def test_a_pack_for_the_choice_holds_its_kernels(capsys, f16):
    """forge build --pack --model --weights --acts: the variants are those of that activation format."""
    from forge.model.packs import model_kernels
    gfx950 = get_arch("gfx950")
    six = {(v.family, v.params.get("acts")) for v in model_kernels(f16, gfx950, "f16", "mxfp4", "mxfp6")}
    assert {("gemv_mx", "mxfp6"), ("gemm", "mxfp6")} <= six and ("gemv_mx", "mxfp8") not in six
    eight = {(v.family, v.params.get("acts")) for v in model_kernels(f16, gfx950, "f16", "mxfp4")}
    assert ("gemv_mx", "mxfp8") in eight and ("gemv_mx", "mxfp6") not in eight
    code, _, err = run_cli(capsys, "build", "--arch", "gfx950", "--acts", "mxfp6")
    assert code == 1 and "--weights, --acts and --kv-dtype choose a model's kernels" in err
