"""The layer graph: declared as data, round-trips through JSON, refuses malformed graphs; the
llama builder names exactly the file's tensors and no kernel."""

import json

import pytest

from forge.model.config import load_config
from forge.model.gguf import load_gguf
from forge.model.llama import build_llama_graph
from forge.model.weights import weight_types
from forge.runtime.graph import GraphError, LayerGraph
from tests.helpers.tiny_gguf import write_tiny_gguf


def small_graph() -> LayerGraph:
    g = LayerGraph("toy", {"n": 4})
    g.tensor("tokens", ("T",), "i32", "input")
    g.tensor("emb", (10, 4), "f32", "weight")
    g.tensor("x", ("T", 4), "f32", "activation")
    g.tensor("y", ("T", 4), "f32", "output")
    g.tensor("w", (4,), "f32", "weight")
    g.node("embed", ["emb", "tokens"], ["x"])
    g.node("rmsnorm", ["x", "w"], ["y"], eps=1e-5)
    return g


def test_json_round_trip():
    g = small_graph()
    g2 = LayerGraph.from_dict(json.loads(g.to_json()))
    assert g2.to_dict() == g.to_dict()
    assert "y[T, 4] = rmsnorm(x, w)" in g.summary()


@pytest.mark.parametrize("build, match", [
    (lambda g: g.node("conv2d", ["x"], ["y"]), "unknown op"),
    (lambda g: g.node("rmsnorm", ["x", "w"], ["y"]), "attributes"),
    (lambda g: g.node("rmsnorm", ["nope", "w"], ["y"], eps=1.0), "not declared"),
    (lambda g: g.tensor("x", (1,), "f32", "activation"), "declared twice"),
    (lambda g: g.tensor("z", (1,), "f32", "scratch"), "unknown kind"),
])
def test_malformed_graphs_are_refused(build, match):
    g = LayerGraph("toy")
    g.tensor("x", ("T", 4), "f32", "activation")
    g.tensor("y", ("T", 4), "f32", "activation")
    g.tensor("w", (4,), "f32", "weight")
    with pytest.raises(GraphError, match=match):
        build(g)


def test_use_before_definition_is_refused():
    g = LayerGraph("toy")
    g.tensor("x", ("T", 4), "f32", "activation")
    g.tensor("y", ("T", 4), "f32", "activation")
    g.tensor("w", (4,), "f32", "weight")
    with pytest.raises(GraphError, match="before any node produces it"):
        g.node("rmsnorm", ["x", "w"], ["y"], eps=1e-5)


@pytest.mark.parametrize("arch, tied", [("llama", False), ("qwen2", True)])
def test_llama_graph_names_every_tensor_of_the_file(tmp_path, arch, tied):
    p = write_tiny_gguf(tmp_path / "m.gguf", arch=arch, tied=tied, n_embd=128, n_head=2, n_head_kv=1)
    g = load_gguf(p)
    graph = build_llama_graph(load_config(p), weight_types(g))
    assert {t.name for t in graph.of_kind("weight")} == set(g.tensors)
    ops = [n.op for n in graph.nodes]
    assert ops.count("attention") == 2 and ops.count("addrow") == (6 if arch == "qwen2" else 0)
    head = graph.nodes[-1]
    assert head.op == "matmul" and head.inputs[0] == ("token_embd.weight" if tied else "output.weight")
    assert not any(k in graph.to_json() for k in ("gemv", "gemm", "flash_attn"))  # no kernel named
