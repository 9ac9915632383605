"""The llama-family layer graph (llama, mistral-as-llama, qwen2), built from a ModelConfig.

Per layer, as llama.cpp's llm_build_llama / llm_build_qwen2 compute it:

    h = rmsnorm(x) * attn_norm;  q, k, v = Wq h (+bq), Wk h (+bk), Wv h (+bv)
    q = rope(q);  cache <- (rope(k), v);  o = attention(q, cache);  x = x + Wo o
    h = rmsnorm(x) * ffn_norm;  x = x + Wdown (silu(Wgate h) * Wup h)

then logits = Wout rmsnorm(x) * output_norm (Wout = token_embd when the head is tied). The graph
names weights by their GGUF names and says nothing about kernels.
"""

from __future__ import annotations

from ..runtime.graph import LayerGraph
from .config import ModelConfig


def build_llama_graph(cfg: ModelConfig, wtypes: dict[str, str]) -> LayerGraph:
    """The layer graph of `cfg`; `wtypes` maps each weight name to its forge weight type (q4_1,
    f32, ...). Vectors (norms, biases) are f32."""
    E, Q, KV, F, V = cfg.n_embd, cfg.q_dim, cfg.kv_dim, cfg.n_ff, cfg.n_vocab
    g = LayerGraph(cfg.arch, {"name": cfg.name, "n_layer": cfg.n_layer, "n_embd": E, "n_head": cfg.n_head,
                              "n_head_kv": cfg.n_head_kv, "head_dim": cfg.head_dim, "n_ff": F, "n_vocab": V,
                              "rope": f"{cfg.rope_type}, base {cfg.rope_freq_base:g}, scale {cfg.rope_freq_scale:g}"})

    def weight(name: str, shape: tuple) -> str:
        return g.tensor(name, shape, wtypes[name], "weight")

    def act(name: str, *shape) -> str:
        return g.tensor(name, shape, "f32", "activation")

    rope = dict(n_rot=cfg.n_rot, mode=cfg.rope_type, base=cfg.rope_freq_base, scale=cfg.rope_freq_scale)
    tokens = g.tensor("tokens", ("T",), "i32", "input")
    pos = g.tensor("positions", ("T",), "i32", "input")
    emb = weight("token_embd.weight", (V, E))
    x = act("x.in", "T", E)
    g.node("embed", [emb, tokens], [x])
    for i in range(cfg.n_layer):
        p = f"blk.{i}."
        h = act(f"{p}attn_in", "T", E)
        g.node("rmsnorm", [x, weight(p + "attn_norm.weight", (E,))], [h], eps=cfg.rms_eps)
        qkv = {}
        for name, rows in (("q", Q), ("k", KV), ("v", KV)):
            y = act(f"{p}{name}", "T", rows)
            g.node("matmul", [weight(f"{p}attn_{name}.weight", (rows, E)), h], [y])
            if cfg.qkv_bias:
                yb = act(f"{p}{name}+b", "T", rows)
                g.node("addrow", [y, weight(f"{p}attn_{name}.bias", (rows,))], [yb])
                y = yb
            qkv[name] = y
        qr = act(f"{p}q_rope", "T", Q)
        g.node("rope", [qkv["q"], pos], [qr], n_heads=cfg.n_head, head_dim=cfg.head_dim, **rope)
        cache = g.tensor(f"{p}kv_cache", (), "kv", "state")
        g.node("kv_store", [qkv["k"], qkv["v"], pos], [cache], layer=i, n_kv_heads=cfg.n_head_kv,
               head_dim=cfg.head_dim, **rope)
        o = act(f"{p}attn_out", "T", Q)
        g.node("attention", [qr, cache], [o], layer=i, n_heads=cfg.n_head, n_kv_heads=cfg.n_head_kv,
               head_dim=cfg.head_dim, scale=cfg.head_dim ** -0.5)
        a = act(f"{p}attn_proj", "T", E)
        g.node("matmul", [weight(p + "attn_output.weight", (E, Q)), o], [a])
        x1 = act(f"{p}x.mid", "T", E)
        g.node("add", [x, a], [x1])
        h2 = act(f"{p}ffn_in", "T", E)
        g.node("rmsnorm", [x1, weight(p + "ffn_norm.weight", (E,))], [h2], eps=cfg.rms_eps)
        gate, up, s = act(f"{p}gate", "T", F), act(f"{p}up", "T", F), act(f"{p}swiglu", "T", F)
        g.node("matmul", [weight(p + "ffn_gate.weight", (F, E)), h2], [gate])
        g.node("matmul", [weight(p + "ffn_up.weight", (F, E)), h2], [up])
        g.node("swiglu", [gate, up], [s])
        d = act(f"{p}ffn_out", "T", E)
        g.node("matmul", [weight(p + "ffn_down.weight", (E, F)), s], [d])
        x2 = act(f"{p}x.out", "T", E)
        g.node("add", [x1, d], [x2])
        x = x2
    last = act("x.last", "R", E)
    g.node("last_rows", [x], [last])
    xf = act("x.final", "R", E)
    g.node("rmsnorm", [last, weight("output_norm.weight", (E,))], [xf], eps=cfg.rms_eps)
    head = "token_embd.weight" if cfg.tied_output else weight("output.weight", (V, E))
    logits = g.tensor("logits", ("R", V), "f32", "output")
    g.node("matmul", [head, xf], [logits])
    return g
