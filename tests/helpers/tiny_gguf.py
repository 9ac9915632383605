"""Tiny but valid llama-family GGUF files, written with gguf.GGUFWriter, for tests.

    from tests.helpers.tiny_gguf import write_tiny_gguf
    path = write_tiny_gguf(tmp_path / "m.gguf", arch="qwen2", weight_type="Q8_0", tied=True)

The weights are seeded random numbers (deterministic per seed), so a numpy reference forward pass
can read them back from the file (forge.model.gguf + gguf.quants.dequantize) and compare.
The tokenizer is a small gpt2-style byte-level BPE: 3 special tokens, the 256 byte tokens, then the
results of a few merges, optionally padded with unused tokens up to n_vocab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as QT

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]   # ids 0, 1, 2
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("Ġ", "a"), ("o", "r"),
          ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "w"), ("or", "ld"), ("Ġw", "orld"),
          ("o", "ld"), ("Ġ", "hello")]
_QUANTIZABLE = {QT.F32, QT.F16, QT.BF16, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0, QT.MXFP4}
# K-quants cannot be quantized by gguf.quants; write random blocks whose fp16 scale fields (at these
# byte offsets of a block) hold small positive values, so they dequantize to finite numbers.
_KQUANT_SCALES = {QT.Q2_K: (80, 82), QT.Q3_K: (108,), QT.Q4_K: (0, 2), QT.Q5_K: (0, 2),
                  QT.Q6_K: (208,)}


def byte_tokens() -> list[str]:
    """The 256 gpt2 byte-level tokens in byte order (printable bytes map to themselves)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def tiny_vocab(n_vocab: int | None = None) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of the tiny tokenizer; refuses n_vocab below its natural size."""
    tokens = SPECIAL_TOKENS + byte_tokens()
    for a, b in MERGES:
        if a + b not in tokens:
            tokens.append(a + b)
    n = len(tokens) if n_vocab is None else n_vocab
    if n < len(tokens):
        raise ValueError(f"n_vocab {n} is below the tiny tokenizer's {len(tokens)} tokens")
    tokens += [f"<|unused{i}|>" for i in range(n - len(tokens))]
    types = [int(gguf.TokenType.CONTROL)] * 3 + [int(gguf.TokenType.NORMAL)] * (len(tokens) - 3)
    return tokens, types, [f"{a} {b}" for a, b in MERGES]


def _qtype(t: str | QT) -> QT:
    """A GGML type from a name or enum; refuses types this helper cannot write."""
    q = QT[t] if isinstance(t, str) else QT(t)
    if q not in _QUANTIZABLE and q not in _KQUANT_SCALES:
        raise ValueError(f"tiny_gguf cannot write {q.name} tensors")
    return q


def _encode(w: np.ndarray, q: QT, rng: np.random.Generator) -> np.ndarray:
    """w (numpy shape, float32) encoded as type q: a typed array or uint8 block rows."""
    if w.shape[-1] % GGML_QUANT_SIZES[q][0]:
        raise ValueError(f"row length {w.shape[-1]} is not a multiple of {q.name}'s block size")
    if q in _QUANTIZABLE:
        return gguf.quants.quantize(w, q)
    block, size = GGML_QUANT_SIZES[q]
    n_blocks = w.size // block
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in _KQUANT_SCALES[q]:
        scales = rng.uniform(1e-3, 1e-2, n_blocks).astype(np.float16)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(*w.shape[:-1], w.shape[-1] // block * size)


def _weights(arch, n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, tied, rng):
    """name -> (numpy-order float32 array, is_matrix) in convert_hf_to_gguf's order."""
    hd = n_embd // n_head
    q, kv = n_head * hd, n_head_kv * hd

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32), True

    def vec(n, base=0.0):
        return (base + 0.1 * rng.standard_normal(n)).astype(np.float32), False

    out = {"token_embd.weight": mat(n_vocab, n_embd), "output_norm.weight": vec(n_embd, 1.0)}
    if not tied:
        out["output.weight"] = mat(n_vocab, n_embd)
    for i in range(n_layer):
        p = f"blk.{i}."
        out.update({p + "attn_norm.weight": vec(n_embd, 1.0), p + "attn_q.weight": mat(q, n_embd),
                    p + "attn_k.weight": mat(kv, n_embd), p + "attn_v.weight": mat(kv, n_embd)})
        if arch == "qwen2":
            out.update({p + "attn_q.bias": vec(q), p + "attn_k.bias": vec(kv),
                        p + "attn_v.bias": vec(kv)})
        out.update({p + "attn_output.weight": mat(n_embd, q), p + "ffn_norm.weight": vec(n_embd, 1.0),
                    p + "ffn_gate.weight": mat(n_ff, n_embd), p + "ffn_up.weight": mat(n_ff, n_embd),
                    p + "ffn_down.weight": mat(n_embd, n_ff)})
    return out


def _metadata(w: gguf.GGUFWriter, *, name, n_ctx, n_embd, n_layer, n_ff, n_head, n_head_kv,
              rope_base, rms_eps, n_vocab, pre, add_bos) -> None:
    """Hyper-parameters and tokenizer keys, as convert_hf_to_gguf.py names them."""
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(rope_base)
    w.add_layer_norm_rms_eps(rms_eps)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_vocab_size(n_vocab)
    tokens, types, merges = tiny_vocab(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(add_bos)


def _override(w: gguf.GGUFWriter, override: dict[str, Any]) -> None:
    """Replaces or deletes metadata keys already added to the writer."""
    for key, val in override.items():
        w.kv_data[0].pop(key, None)
        if val is None:
            continue
        val, vtype = val if isinstance(val, tuple) else (val, gguf.GGUFValueType.get_type(val))
        sub = gguf.GGUFValueType.get_type(val[0]) if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, val, vtype, sub_type=sub)


def write_tiny_gguf(path: str | Path, *, arch: str = "llama", n_layer: int = 2, n_embd: int = 64,
                    n_head: int = 4, n_head_kv: int = 2, n_ff: int = 96, n_ctx: int = 128,
                    n_vocab: int | None = None, weight_type: str | QT = "F32",
                    embd_type: str | QT | None = None, output_type: str | QT | None = None,
                    tied: bool = False, rope_base: float = 10000.0, rms_eps: float = 1e-5,
                    add_bos: bool = False, pre: str | None = None, name: str = "forge-tiny",
                    seed: int = 0, drop_tensors: tuple[str, ...] = (),
                    rename_tensors: dict[str, str] | None = None,
                    override_kv: dict[str, Any] | None = None) -> Path:
    """Writes a small valid GGUF of the llama family to path and returns path (a Path).

    arch: "llama" or "qwen2" (adds the QKV biases); any other name is written with the llama
    layout (for unsupported-architecture tests). GQA when n_head_kv < n_head.
    tied: no output.weight (logits use token_embd). weight_type: type of the 2-D projection
    matrices; embd_type / output_type default to it. Norms and biases are always F32. Types:
    F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4 (through gguf.quants.quantize) and
    Q2_K..Q6_K (random blocks with small scales; n_embd and n_ff must be multiples of 256).
    n_vocab: None for the tiny tokenizer's natural size (274), larger pads with unused tokens.
    pre: tokenizer.ggml.pre, default "gpt-2" ("qwen2" for qwen2). Refuses (ValueError) types it
    cannot write and row lengths that are not a multiple of a type's block size.
    For negative tests: drop_tensors / rename_tensors edit the tensor list; override_kv maps a key
    to a new value (None deletes the key; a (value, GGUFValueType) pair forces the type).
    """
    path = Path(path)
    n_vocab = len(tiny_vocab(n_vocab)[0])
    rng = np.random.default_rng(seed)
    mtype, etype = _qtype(weight_type), _qtype(embd_type or weight_type)
    otype = _qtype(output_type or weight_type)
    w = gguf.GGUFWriter(path, arch)
    _metadata(w, name=name, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, n_ff=n_ff, n_head=n_head,
              n_head_kv=n_head_kv, rope_base=rope_base, rms_eps=rms_eps, n_vocab=n_vocab,
              pre=pre or ("qwen2" if arch == "qwen2" else "gpt-2"), add_bos=add_bos)
    _override(w, override_kv or {})
    for tname, (arr, is_matrix) in _weights(arch, n_layer, n_embd, n_head, n_head_kv, n_ff,
                                             n_vocab, tied, rng).items():
        if tname in drop_tensors:
            continue
        q = (etype if tname == "token_embd.weight" else otype if tname == "output.weight"
             else mtype) if is_matrix else QT.F32
        data = _encode(arr, q, rng)
        w.add_tensor((rename_tensors or {}).get(tname, tname), data, raw_dtype=q if q not in (QT.F32, QT.F16) else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
