"""A plain float64 numpy forward pass of a llama-family GGUF (llama or qwen2): the reference that
forge's logits are compared with end to end. Weights are dequantized with gguf.quants (an
independent implementation); everything else is the textbook computation, as llama.cpp defines
it: RMSNorm, RoPE (normal: adjacent pairs; neox: halves), causal GQA attention, SwiGLU, tied or
separate output head.

With `q8` (a predicate of (forge weight type, n_cols)), the input of each matmul whose weight
passes it is first quantized to 8-bit blocks of 32 exactly as forge's quantize_q8 does (d =
amax/127, q = round half away from zero), the integer path's one deliberate approximation, so
that path can be checked as tightly as the float one. With `mx_acts` (a forge.quant.mx format name or
None per (forge weight type, n_cols)), the input is instead rounded to that MX format per block of
32 by forge.quant.mx, as the scaled-MFMA kernels (gfx950; forge.load(acts=...)) quantize it. With
`kv_round` (a function of K or V [T, kv heads, head_dim]), attention reads what it returns: the values
a quantized KV cache holds."""

from __future__ import annotations

import numpy as np
from gguf.quants import dequantize

from forge.model.config import load_config
from forge.quant import mx
from forge.model.gguf import load_gguf
from forge.model.weights import weight_types


class Reference:
    """The float64 model of one GGUF file."""

    def __init__(self, path, q8=None, mx_acts=None, kv_round=None):
        self.g = load_gguf(path)
        self.kv_round = kv_round or (lambda a: a)  # what the KV cache stores of K (after RoPE) and V
        self.mx_acts = mx_acts or (lambda wtype, n_cols: None)
        self.cfg = load_config(path)
        self.wtypes = weight_types(self.g)
        self.q8 = q8 or (lambda wtype, n_cols: False)
        self._q8_last = None
        self._w: dict[str, np.ndarray] = {}

    def w(self, name: str) -> np.ndarray:
        if name not in self._w:
            t = self.g.tensors[name]
            arr = dequantize(np.asarray(t.rows() if t.block_size > 1 or t.type_name == "BF16" else t.data),
                             t.ggml_type) if t.type_name not in ("F32", "F16") else t.array()
            self._w[name] = np.asarray(arr, np.float64).reshape(t.shape)
        return self._w[name]

    def mm(self, x, name):
        """x @ W^T, the rows of x first quantized to 8-bit blocks where the kernel does (self.q8;
        the last row by self._q8_last when a call sets it: a decode step after a prefill)."""
        w = self.w(name)
        preds = [self.q8] * len(x)
        if self._q8_last is not None:
            preds[-1] = self._q8_last
        mask = np.array([p(self.wtypes[name], w.shape[1]) for p in preds], bool)
        if mask.any():
            x = x.copy()
            x[mask] = quantize_q8(x[mask])
        fmt = self.mx_acts(self.wtypes[name], w.shape[1])
        if fmt is not None:
            x = mx.dequantize_mx(*mx.quantize_mx(x.astype(np.float32), fmt), fmt).astype(np.float64)
        return x @ w.T

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.cfg.rms_eps) * w

    def rope(self, x, pos):
        """x [T, heads, hd], rotated in its first n_rot dims."""
        c = self.cfg
        half = c.n_rot // 2
        inv = c.rope_freq_base ** (-2.0 * np.arange(half) / c.n_rot)
        ang = (pos[:, None] * c.rope_freq_scale) * inv[None, :]  # [T, half]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        out = x.copy()
        if c.rope_type == "neox":
            a, b = x[..., :half], x[..., half:c.n_rot]
            out[..., :half], out[..., half:c.n_rot] = a * cos - b * sin, a * sin + b * cos
        else:
            a, b = x[..., 0:c.n_rot:2], x[..., 1:c.n_rot:2]
            out[..., 0:c.n_rot:2], out[..., 1:c.n_rot:2] = a * cos - b * sin, a * sin + b * cos
        return out

    def logits(self, ids, q8_last=None) -> np.ndarray:
        """float64 logits [T, vocab] of the token ids at positions 0..T-1; `q8_last`, a predicate
        like the constructor's `q8`, replaces it for the last row."""
        self._q8_last = q8_last
        try:
            return self._logits(ids)
        finally:
            self._q8_last = None

    def _logits(self, ids) -> np.ndarray:
        c = self.cfg
        ids = np.asarray(ids)
        T, hd = len(ids), c.head_dim
        pos = np.arange(T, dtype=np.float64)
        x = self.w("token_embd.weight")[ids]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for i in range(c.n_layer):
            p = f"blk.{i}."
            h = self.rms(x, self.w(p + "attn_norm.weight"))
            q, k, v = (self.mm(h, f"{p}attn_{n}.weight") for n in "qkv")
            if c.qkv_bias:
                q, k, v = (y + self.w(f"{p}attn_{n}.bias") for y, n in zip((q, k, v), "qkv"))
            q = self.rope(q.reshape(T, c.n_head, hd), pos)
            k = self.rope(k.reshape(T, c.n_head_kv, hd), pos)
            v = v.reshape(T, c.n_head_kv, hd)
            k, v = self.kv_round(k), self.kv_round(v)
            o = np.empty((T, c.n_head, hd))
            for hq in range(c.n_head):
                hk = hq // c.n_gqa
                s = q[:, hq] @ k[:, hk].T / np.sqrt(hd) + mask
                s = np.exp(s - s.max(-1, keepdims=True))
                o[:, hq] = (s / s.sum(-1, keepdims=True)) @ v[:, hk]
            x = x + self.mm(o.reshape(T, -1), p + "attn_output.weight")
            h = self.rms(x, self.w(p + "ffn_norm.weight"))
            gate, up = self.mm(h, p + "ffn_gate.weight"), self.mm(h, p + "ffn_up.weight")
            x = x + self.mm(gate / (1 + np.exp(-gate)) * up, p + "ffn_down.weight")
        head = "token_embd.weight" if c.tied_output else "output.weight"
        return self.mm(self.rms(x, self.w("output_norm.weight")), head)


def quantize_q8(x: np.ndarray) -> np.ndarray:
    """x [rows, n] (n a multiple of 32) rounded through 8-bit blocks of 32: d = amax/127 (float32),
    q = round half away from zero of x/d, value q*d."""
    b = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    d = (np.abs(b).max(-1, keepdims=True) / np.float32(127)).astype(np.float32)
    inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, 1), 0).astype(np.float32)
    v = b * inv
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return (q * d).astype(np.float64).reshape(x.shape)
