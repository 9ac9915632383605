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
from forge.model.gguf import load_gguf
from tests.helpers.tiny_gguf import write_tiny_gguf
from tests.test_cli import run_cli


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
