"""The layer graph: what a model computes, declared as data, with no kernel chosen.

A model builder (forge/model/<family>.py) describes its forward pass as named tensors with symbolic
shapes and nodes of semantic ops (`matmul`, `rmsnorm`, `attention`, ...); the executor
(forge/runtime/executor.py) lowers each op to kernels for its device and phase (prefill or
decode). The graph names its weights, and the runtime is handed their bytes separately: the runtime
never reads a model file.

Symbolic dimensions: "T" is the number of tokens in a step (the prompt chunk in prefill, 1 in
decode); "R" is the number of rows whose logits are wanted (1 when generating, T for
`Model.logits`). Everything else is an integer.

    g = LayerGraph("llama")
    g.tensor("tokens", ("T",), "i32", "input")
    g.node("embed", ["token_embd.weight", "tokens"], ["x0"])
    print(g.to_json())
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import ForgeError


class GraphError(ForgeError):
    """A layer graph is malformed (an unknown tensor, a tensor defined twice, a bad op)."""


# Tensor kinds: weights come from the model file; inputs are written by the runtime each step
# (token ids, positions); state persists across steps (the KV cache of a layer); activations are
# produced and consumed inside a step; outputs are activations the caller reads back.
KINDS = ("weight", "input", "state", "activation", "output")

# Semantic ops and their attributes (what lowering needs; checked when a node is added).
OPS = {
    "embed": (),                        # (table, tokens) -> x [T, n]
    "rmsnorm": ("eps",),                # (x, w) -> y
    "matmul": (),                       # (w [n_out, n_in], x [T|R, n_in]) -> y [T|R, n_out]
    "addrow": (),                       # (x [T, n], b [n]) -> x + b (a bias)
    "add": (),                          # (a, b) -> a + b
    "rope": ("n_heads", "head_dim", "n_rot", "mode", "base", "scale"),  # (x, pos) -> rotated x
    "kv_store": ("layer", "n_kv_heads", "head_dim", "n_rot", "mode", "base", "scale"),  # (k, v, pos) -> cache
    "attention": ("layer", "n_heads", "n_kv_heads", "head_dim", "scale"),  # (q, cache) -> o [T, n_heads*hd]
    "swiglu": (),                       # (gate, up) -> silu(gate) * up
    "last_rows": (),                    # (x [T, n]) -> x [R, n]: the rows whose logits are wanted
}


@dataclass(frozen=True)
class Tensor:
    """A named tensor: shape (ints and symbols), dtype (f32, i32, or a weight type), kind."""

    name: str
    shape: tuple
    dtype: str
    kind: str

    def numel(self, dims: dict[str, int]) -> int:
        """Element count with the symbols bound by `dims`."""
        n = 1
        for d in self.shape:
            n *= dims[d] if isinstance(d, str) else d
        return n


@dataclass(frozen=True)
class Node:
    """One op: inputs and outputs are tensor names; attrs are plain data."""

    op: str
    inputs: tuple
    outputs: tuple
    attrs: dict = field(default_factory=dict, hash=False)

    def describe(self) -> str:
        a = ", ".join(f"{k}={v}" for k, v in self.attrs.items())
        return f"{', '.join(self.outputs)} = {self.op}({', '.join(self.inputs)}{'; ' + a if a else ''})"


class LayerGraph:
    """Tensors and nodes in execution order, built by a model builder and read by the executor."""

    def __init__(self, name: str, meta: dict | None = None):
        self.name = name
        self.meta = dict(meta or {})
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []

    # ---- building ---------------------------------------------------------------------------
    def tensor(self, name: str, shape: Iterable, dtype: str, kind: str) -> str:
        """Declare a tensor; returns its name. GraphError for a duplicate or an unknown kind."""
        if kind not in KINDS:
            raise GraphError(f"tensor {name!r}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        if name in self.tensors:
            raise GraphError(f"tensor {name!r} declared twice")
        self.tensors[name] = Tensor(name, tuple(shape), dtype, kind)
        return name

    def node(self, op: str, inputs: Iterable[str], outputs: Iterable[str], **attrs: Any) -> Node:
        """Append a node. GraphError for an unknown op, missing or extra attributes, or an input
        that is neither declared nor produced by an earlier node."""
        if op not in OPS:
            raise GraphError(f"unknown op {op!r}; ops: {', '.join(OPS)}")
        want = set(OPS[op])
        if set(attrs) != want:
            raise GraphError(f"op {op}: attributes must be {sorted(want)}, got {sorted(attrs)}")
        ins, outs = tuple(inputs), tuple(outputs)
        for t in ins + outs:
            if t not in self.tensors:
                raise GraphError(f"op {op}: tensor {t!r} is not declared")
        produced = {o for n in self.nodes for o in n.outputs}
        for t in ins:
            if self.tensors[t].kind in ("activation", "output") and t not in produced:
                raise GraphError(f"op {op}: input {t!r} is used before any node produces it")
        for t in outs:
            if t in produced and self.tensors[t].kind != "state":
                raise GraphError(f"op {op}: tensor {t!r} is produced twice")
        n = Node(op, ins, outs, dict(attrs))
        self.nodes.append(n)
        return n

    # ---- reading ------------------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[Tensor]:
        return [t for t in self.tensors.values() if t.kind == kind]

    def to_dict(self) -> dict:
        """The graph as JSON-ready data (from_dict reads it back)."""
        return {"name": self.name, "meta": self.meta,
                "tensors": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "kind": t.kind}
                            for t in self.tensors.values()],
                "nodes": [{"op": n.op, "inputs": list(n.inputs), "outputs": list(n.outputs), "attrs": n.attrs}
                          for n in self.nodes]}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "LayerGraph":
        """The graph of to_dict's output; GraphError where it does not describe a valid graph."""
        try:
            g = cls(d["name"], d.get("meta"))
            for t in d["tensors"]:
                g.tensor(t["name"], t["shape"], t["dtype"], t["kind"])
            for n in d["nodes"]:
                g.node(n["op"], n["inputs"], n["outputs"], **n["attrs"])
        except (KeyError, TypeError) as e:
            raise GraphError(f"not a layer graph: {e!r}") from None
        return g

    def summary(self) -> str:
        """Human-readable listing: one line per tensor kind count, then one line per node."""
        counts = ", ".join(f"{len(self.of_kind(k))} {k}" for k in KINDS)
        head = [f"graph {self.name}: {len(self.nodes)} nodes; tensors: {counts}"]
        head += [f"  {k} = {v}" for k, v in self.meta.items()]
        shape = lambda t: "[" + ", ".join(str(d) for d in t.shape) + "]"
        body = []
        for n in self.nodes:
            outs = ", ".join(f"{o}{shape(self.tensors[o])}" for o in n.outputs)
            a = ", ".join(f"{k}={v}" for k, v in n.attrs.items())
            body.append(f"  {outs} = {n.op}({', '.join(n.inputs)}){'  # ' + a if a else ''}")
        return "\n".join(head + body)
