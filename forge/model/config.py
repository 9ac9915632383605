"""Typed, frozen model configuration for the llama family, read from a validated GGUF file.

forge reads the standard GGUF names that llama.cpp's convert_hf_to_gguf.py writes and nothing else:
it does not invent per-model name mappings. A family is a small FamilySpec (rope style, bias
tensors); adding an architecture with the same block layout is one entry in FAMILIES.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from gguf.constants import GGUFValueType

from forge.errors import GGUFError
from forge.model.gguf import GGUFFile, load_gguf

_INT_TYPES = {GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16,
              GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64}
_FLOAT_TYPES = {GGUFValueType.FLOAT32, GGUFValueType.FLOAT64} | _INT_TYPES
_CONVERT_HINT = ("forge reads only the standard GGUF tensor names and does not invent per-model "
                 "name mappings; convert the original model with llama.cpp's convert_hf_to_gguf.py")


@dataclass(frozen=True)
class FamilySpec:
    """What distinguishes one architecture of the llama block layout from another.

    rope_type: "normal" (adjacent pairs rotate: llama.cpp's permuted Q/K for llama) or "neox"
    (first half with second half). qkv_bias: blk.N.attn_{q,k,v}.bias are required.
    """
    rope_type: str
    qkv_bias: bool


# Keys are general.architecture values as gguf.constants.MODEL_ARCH_NAMES spells them. Mistral 7B
# and its kin have no entry of their own: convert_hf_to_gguf.py writes MistralForCausalLM (and
# Mistral's own format) as "llama"; GGUF has no "mistral" architecture ("mistral3" and "mistral4"
# are other ones, not supported yet).
FAMILIES: dict[str, FamilySpec] = {
    "llama": FamilySpec(rope_type="normal", qkv_bias=False),
    "qwen2": FamilySpec(rope_type="neox", qkv_bias=True),
}


# gpt2 pre-tokenizers for which llama.cpp (llama-vocab.cpp) adds BOS unless the file says otherwise.
BOS_BY_DEFAULT_PRE = frozenset(("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1",
                                "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", "tekken",
                                "chameleon"))


@dataclass(frozen=True)
class TokenizerConfig:
    """Tokenizer summary: model ("gpt2" BPE, "llama" SPM, ...), pre-tokenizer, special ids.

    Special ids are None when the file does not name them.
    """
    model: str
    pre: str | None
    n_tokens: int
    n_merges: int
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a llama-family model; every field validated against the tensors."""
    arch: str
    name: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_rot: int
    n_ff: int
    rope_freq_base: float
    rope_freq_scale: float
    rope_scaling: str
    rope_type: str
    rms_eps: float
    tied_output: bool
    qkv_bias: bool
    has_rope_freqs: bool
    tokenizer: TokenizerConfig

    @property
    def n_gqa(self) -> int:
        """Query heads per KV head."""
        return self.n_head // self.n_head_kv

    @property
    def q_dim(self) -> int:
        """Width of the query projection."""
        return self.n_head * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the key and value projections."""
        return self.n_head_kv * self.head_dim


class _Meta:
    """Typed reads of metadata keys, with errors that name the file and the key."""

    def __init__(self, g: GGUFFile):
        self.g = g

    def fail(self, msg: str) -> GGUFError:
        return GGUFError(f"{self.g.path}: {msg}")

    def integer(self, key: str, default: int | None = None, lo: int = 1) -> int | None:
        """An integer key >= lo; refuses other types; default when absent (required if None)."""
        kv = self.g.kv.get(key)
        if kv is None:
            if default is None:
                raise self.fail(f"required metadata key {key!r} is missing")
            return default
        if kv.type not in _INT_TYPES:
            raise self.fail(f"{key!r} must be an integer, found {kv.type.name}")
        if kv.value < lo:
            raise self.fail(f"{key!r} is {kv.value}, expected at least {lo}")
        return int(kv.value)

    def opt_id(self, key: str) -> int | None:
        """An optional token id, None when absent or negative; refuses non-integer types."""
        if key not in self.g.kv:
            return None
        v = self.integer(key, default=-1, lo=-(1 << 63))
        return v if v >= 0 else None

    def number(self, key: str, default: float | None = None, positive: bool = True) -> float:
        """A finite number (float or int type); refuses <= 0 when positive."""
        kv = self.g.kv.get(key)
        if kv is None:
            if default is None:
                raise self.fail(f"required metadata key {key!r} is missing")
            return default
        if kv.type not in _FLOAT_TYPES:
            raise self.fail(f"{key!r} must be a number, found {kv.type.name}")
        v = float(kv.value)
        if not math.isfinite(v) or (positive and v <= 0):
            raise self.fail(f"{key!r} is {v}, expected a finite positive number")
        return v

    def text(self, key: str, default: str | None = None) -> str | None:
        """A string key; refuses other types; default when absent."""
        kv = self.g.kv.get(key)
        if kv is None:
            return default
        if kv.type != GGUFValueType.STRING:
            raise self.fail(f"{key!r} must be a string, found {kv.type.name}")
        return kv.value

    def flag(self, key: str, default: bool) -> bool:
        """A BOOL key; refuses other types."""
        kv = self.g.kv.get(key)
        if kv is None:
            return default
        if kv.type != GGUFValueType.BOOL:
            raise self.fail(f"{key!r} must be a BOOL, found {kv.type.name}")
        return bool(kv.value)

    def str_array_len(self, key: str) -> int | None:
        """Length of a string-array key, None when absent; refuses other types."""
        kv = self.g.kv.get(key)
        if kv is None:
            return None
        if kv.type != GGUFValueType.ARRAY or kv.elem_type != GGUFValueType.STRING:
            raise self.fail(f"{key!r} must be an array of strings")
        return len(kv.value)


def _tokenizer(m: _Meta, n_vocab: int) -> TokenizerConfig:
    """The tokenizer summary; refuses a missing vocabulary or one that disagrees with n_vocab."""
    model = m.text("tokenizer.ggml.model")
    n_tokens = m.str_array_len("tokenizer.ggml.tokens")
    if model is None or n_tokens is None:
        raise m.fail("no tokenizer: tokenizer.ggml.model and tokenizer.ggml.tokens are required")
    if n_tokens != n_vocab:
        raise m.fail(f"tokenizer.ggml.tokens has {n_tokens} tokens but the model's vocabulary "
                     f"is {n_vocab}")
    ids = {k: m.opt_id(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding")}
    # llama.cpp ignores (with a warning) a special id outside the vocabulary, and real files carry
    # such ids (a pad id equal to n_vocab): forge drops them too rather than refuse the model.
    ids = {k: v if v is not None and v < n_vocab else None for k, v in ids.items()}
    pre = m.text("tokenizer.ggml.pre")
    # llama.cpp's default: SentencePiece ("llama") vocabularies add BOS, BPE ones only for the
    # pre-tokenizers in BOS_BY_DEFAULT_PRE.
    add_bos = m.flag("tokenizer.ggml.add_bos_token",
                     default=(model == "llama" or (model == "gpt2" and pre in BOS_BY_DEFAULT_PRE)))
    return TokenizerConfig(model=model, pre=pre, n_tokens=n_tokens,
                           n_merges=m.str_array_len("tokenizer.ggml.merges") or 0,
                           bos_id=ids["bos"], eos_id=ids["eos"], unk_id=ids["unknown"],
                           pad_id=ids["padding"], add_bos=add_bos,
                           add_eos=m.flag("tokenizer.ggml.add_eos_token", default=False))


def tokenizer_config(g: GGUFFile) -> TokenizerConfig:
    """The TokenizerConfig of a file on its own (no model checks: vocabulary-only files too).

    Refuses (GGUFError) a missing tokenizer.ggml.model or tokenizer.ggml.tokens and mistyped keys.
    """
    m = _Meta(g)
    return _tokenizer(m, m.str_array_len("tokenizer.ggml.tokens") or 0)


def _heads(m: _Meta, arch: str, n_embd: int) -> tuple[int, int, int, int]:
    """(n_head, n_head_kv, head_dim, n_rot); refuses shapes that do not divide."""
    n_head = m.integer(f"{arch}.attention.head_count")
    n_head_kv = m.integer(f"{arch}.attention.head_count_kv", default=n_head)
    if n_head % n_head_kv:
        raise m.fail(f"{n_head} query heads are not a multiple of {n_head_kv} KV heads")
    if f"{arch}.attention.key_length" not in m.g.kv and n_embd % n_head:
        raise m.fail(f"n_embd {n_embd} is not a multiple of {n_head} heads")
    head_dim = m.integer(f"{arch}.attention.key_length", default=n_embd // n_head or 1)
    v_dim = m.integer(f"{arch}.attention.value_length", default=head_dim)
    if v_dim != head_dim:
        raise m.fail(f"value_length {v_dim} differs from key_length {head_dim}: not a llama layout")
    n_rot = m.integer(f"{arch}.rope.dimension_count", default=head_dim)
    if n_rot > head_dim or n_rot % 2:
        raise m.fail(f"rope.dimension_count {n_rot} must be even and at most head_dim {head_dim}")
    return n_head, n_head_kv, head_dim, n_rot


def _rope(m: _Meta, arch: str) -> tuple[float, float, str]:
    """(freq_base, freq_scale, scaling type); linear scaling turns a factor into 1/factor."""
    base = m.number(f"{arch}.rope.freq_base", default=10000.0)
    scaling = m.text(f"{arch}.rope.scaling.type", default="none")
    factor = m.number(f"{arch}.rope.scaling.factor", default=1.0)
    if scaling not in ("none", "linear", "yarn"):
        raise m.fail(f"{arch}.rope.scaling.type {scaling!r} is not one of none, linear, yarn")
    return base, (1.0 / factor if scaling != "none" else 1.0), scaling


def _n_vocab(m: _Meta, arch: str) -> int:
    """vocab_size from metadata, else the token embedding's row count; the two must agree."""
    g = m.g
    if "token_embd.weight" not in g.tensors:
        # check_tensors names it missing, with every other naming problem of the file.
        return m.integer(f"{arch}.vocab_size", default=m.str_array_len("tokenizer.ggml.tokens") or 1)
    emb = g.tensors["token_embd.weight"].ggml_shape
    n = m.integer(f"{arch}.vocab_size", default=emb[-1])
    if len(emb) != 2 or emb[1] != n:
        raise m.fail(f"token_embd.weight has shape {list(emb)}, expected [n_embd, {n}]")
    return n


def config_from_gguf(g: GGUFFile) -> ModelConfig:
    """The ModelConfig of a loaded file, after checking every tensor name and shape.

    Refuses (GGUFError): an architecture outside FAMILIES, missing or mistyped metadata, shapes
    that do not divide into heads, a tokenizer that disagrees with the vocabulary, and missing,
    unknown or mis-shaped tensors.
    """
    arch = g.architecture
    fam = FAMILIES.get(arch)
    if fam is None:
        raise GGUFError(f"{g.path}: architecture {arch!r} is not supported; forge runs "
                        f"{', '.join(sorted(FAMILIES))}")
    m = _Meta(g)
    if m.integer(f"{arch}.expert_count", default=0, lo=0):
        raise m.fail(f"{arch}.expert_count is set: mixture-of-experts models are not supported")
    n_embd = m.integer(f"{arch}.embedding_length")
    n_head, n_head_kv, head_dim, n_rot = _heads(m, arch, n_embd)
    base, scale, scaling = _rope(m, arch)
    n_vocab = _n_vocab(m, arch)
    cfg = ModelConfig(
        arch=arch, name=m.text("general.name", default="") or "", n_vocab=n_vocab,
        n_ctx_train=m.integer(f"{arch}.context_length"), n_embd=n_embd,
        n_layer=m.integer(f"{arch}.block_count"), n_head=n_head, n_head_kv=n_head_kv,
        head_dim=head_dim, n_rot=n_rot, n_ff=m.integer(f"{arch}.feed_forward_length"),
        rope_freq_base=base, rope_freq_scale=scale, rope_scaling=scaling, rope_type=fam.rope_type,
        rms_eps=m.number(f"{arch}.attention.layer_norm_rms_epsilon"),
        tied_output="output.weight" not in g.tensors, qkv_bias=fam.qkv_bias,
        has_rope_freqs="rope_freqs.weight" in g.tensors, tokenizer=_tokenizer(m, n_vocab))
    check_tensors(g, cfg)
    return cfg


def expected_tensors(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name the config implies, with its shape in GGML order (ne0 first)."""
    e, q, kv, ff = cfg.n_embd, cfg.q_dim, cfg.kv_dim, cfg.n_ff
    out = {"token_embd.weight": (e, cfg.n_vocab), "output_norm.weight": (e,)}
    if not cfg.tied_output:
        out["output.weight"] = (e, cfg.n_vocab)
    if cfg.has_rope_freqs:
        out["rope_freqs.weight"] = (cfg.n_rot // 2,)
    layer = {"attn_norm.weight": (e,), "attn_q.weight": (e, q), "attn_k.weight": (e, kv),
             "attn_v.weight": (e, kv), "attn_output.weight": (q, e), "ffn_norm.weight": (e,),
             "ffn_gate.weight": (e, ff), "ffn_up.weight": (e, ff), "ffn_down.weight": (ff, e)}
    if cfg.qkv_bias:
        layer.update({"attn_q.bias": (q,), "attn_k.bias": (kv,), "attn_v.bias": (kv,)})
    for i in range(cfg.n_layer):
        out.update({f"blk.{i}.{k}": s for k, s in layer.items()})
    return out


def _listing(names: list[str], limit: int = 8) -> str:
    """A short, sorted listing of names, with a count of the rest."""
    names = sorted(names, key=lambda n: [(0, int(p), "") if p.isdigit() else (1, 0, p)
                                         for p in re.split(r"(\d+)", n)])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more   # repr: one line, whatever the name


def check_tensors(g: GGUFFile, cfg: ModelConfig) -> None:
    """Refuses (GGUFError) missing, unknown or mis-shaped tensors; returns None when all match."""
    if cfg.n_layer > len(g.tensors):
        # Checked before building the expected-name table, whose size n_layer decides.
        raise GGUFError(f"{g.path}: block_count {cfg.n_layer} is more than the file's "
                        f"{len(g.tensors)} tensors could hold")
    want = expected_tensors(cfg)
    missing = [n for n in want if n not in g.tensors]
    unknown = [n for n in g.tensors if n not in want]
    if missing or unknown:
        parts = ([f"missing tensors: {_listing(missing)}"] if missing else []) + \
                ([f"unknown tensors: {_listing(unknown)}"] if unknown else [])
        raise GGUFError(f"{g.path}: not a standard {cfg.arch} GGUF with {cfg.n_layer} layers; "
                        f"{'; '.join(parts)}. {_CONVERT_HINT}")
    for name, shape in want.items():
        got = g.tensors[name].ggml_shape
        if got != shape:
            raise GGUFError(f"{g.path}: tensor {name!r} has shape {list(got)} (GGML order), "
                            f"expected {list(shape)} from the metadata")


def load_config(path: str | os.PathLike) -> ModelConfig:
    """load_gguf + config_from_gguf for a path; refuses what either refuses."""
    return config_from_gguf(load_gguf(path))
