"""ModelConfig from GGUF metadata, and the strict check of the standard tensor names."""

from __future__ import annotations

import dataclasses

import pytest
from gguf import GGUFValueType as VT

from forge.errors import GGUFError
from forge.model.config import FAMILIES, expected_tensors, load_config
from tests.helpers.tiny_gguf import tiny_vocab, write_tiny_gguf

HINT = "convert_hf_to_gguf.py"


def cfg_of(tmp_path, **kw):
    return load_config(write_tiny_gguf(tmp_path / "m.gguf", **kw))


def test_llama_config_matches_what_was_written(tmp_path):
    c = cfg_of(tmp_path, n_layer=3, n_embd=64, n_head=4, n_head_kv=2, n_ff=96, n_ctx=256,
               rope_base=5e5, rms_eps=1e-6, name="tiny llama")
    assert (c.arch, c.name, c.n_layer, c.n_embd, c.n_head, c.n_head_kv) == \
        ("llama", "tiny llama", 3, 64, 4, 2)
    assert (c.head_dim, c.n_rot, c.n_ff, c.n_ctx_train, c.n_gqa, c.q_dim, c.kv_dim) == \
        (16, 16, 96, 256, 2, 64, 32)
    assert c.n_vocab == len(tiny_vocab()[0]) == 274
    assert c.rope_freq_base == 5e5 and c.rope_type == "normal" and c.rope_scaling == "none"
    assert c.rope_freq_scale == 1.0 and c.rms_eps == pytest.approx(1e-6)
    assert not c.tied_output and not c.qkv_bias and not c.has_rope_freqs
    t = c.tokenizer
    assert (t.model, t.pre, t.n_tokens, t.n_merges, t.bos_id, t.eos_id) == \
        ("gpt2", "gpt-2", 274, 15, 1, 2)
    assert t.add_bos is False and t.unk_id is None and t.pad_id is None


def test_qwen2_has_qkv_biases_and_neox_rope(tmp_path):
    c = cfg_of(tmp_path, arch="qwen2", weight_type="Q8_0", tied=True, n_head_kv=1)
    assert c.arch == "qwen2" and c.qkv_bias and c.rope_type == "neox" and c.tied_output
    assert c.n_gqa == 4 and c.tokenizer.pre == "qwen2"
    assert "blk.1.attn_v.bias" in expected_tensors(c)


@pytest.mark.parametrize("kw", [dict(weight_type="Q4_1", embd_type="Q8_0"),
                                dict(weight_type="Q4_K", n_embd=256, n_ff=512, n_layer=1),
                                dict(weight_type="MXFP4", tied=True)])
def test_quantized_files_give_the_same_kind_of_config(tmp_path, kw):
    c = cfg_of(tmp_path, **kw)
    assert c.n_layer == kw.get("n_layer", 2) and c.n_vocab == 274


def test_vocab_size_is_inferred_from_token_embd_when_missing(tmp_path):
    c = cfg_of(tmp_path, n_vocab=300, override_kv={"llama.vocab_size": None})
    assert c.n_vocab == 300 and c.tokenizer.n_tokens == 300


def test_vocab_size_disagreeing_with_token_embd(tmp_path):
    with pytest.raises(GGUFError, match=r"token_embd.weight has shape \[64, 274\], expected "
                                        r"\[n_embd, 500\]"):
        cfg_of(tmp_path, override_kv={"llama.vocab_size": 500})


def test_token_list_disagreeing_with_vocab(tmp_path):
    with pytest.raises(GGUFError, match="tokenizer.ggml.tokens has 3 tokens but the model's "
                                        "vocabulary is 274"):
        cfg_of(tmp_path, override_kv={"tokenizer.ggml.tokens": ["a", "b", "c"]})


def test_missing_tensor_is_named_with_the_convert_hint(tmp_path):
    with pytest.raises(GGUFError) as e:
        cfg_of(tmp_path, drop_tensors=("blk.1.ffn_up.weight",))
    msg = str(e.value)
    assert "missing tensors: 'blk.1.ffn_up.weight'" in msg and "unknown" not in msg
    assert HINT in msg and "\n" not in msg


def test_hf_style_names_are_refused_not_mapped(tmp_path):
    hf = {"blk.0.attn_q.weight": "model.layers.0.self_attn.q_proj.weight",
          "token_embd.weight": "model.embed_tokens.weight"}
    with pytest.raises(GGUFError) as e:
        cfg_of(tmp_path, rename_tensors=hf)
    msg = str(e.value)
    assert "missing tensors: 'blk.0.attn_q.weight', 'token_embd.weight'" in msg
    assert "unknown tensors: 'model.embed_tokens.weight', 'model.layers.0.self_attn" in msg
    with pytest.raises(GGUFError) as e:
        cfg_of(tmp_path, rename_tensors={"blk.0.attn_q.weight": hf["blk.0.attn_q.weight"]})
    msg = str(e.value)
    assert "missing tensors: 'blk.0.attn_q.weight'" in msg
    assert "unknown tensors: 'model.layers.0.self_attn.q_proj.weight'" in msg and HINT in msg


def test_many_missing_tensors_are_listed_briefly_in_layer_order(tmp_path):
    drop = tuple(f"blk.{i}.ffn_down.weight" for i in range(12))
    with pytest.raises(GGUFError, match=r"'blk.0.ffn_down.weight', 'blk.1.ffn_down.weight', "
                                        r"'blk.2.ffn_down.weight'.* and 4 more"):
        cfg_of(tmp_path, n_layer=12, n_embd=32, n_head=2, n_head_kv=1, n_ff=32, drop_tensors=drop)


def test_qwen2_without_biases_is_refused(tmp_path):
    with pytest.raises(GGUFError, match="missing tensors: 'blk.0.attn_k.bias'"):
        cfg_of(tmp_path, arch="qwen2", drop_tensors=("blk.0.attn_k.bias",))


def test_unsupported_architecture(tmp_path):
    with pytest.raises(GGUFError, match="architecture 'gemma3' is not supported; forge runs "
                                        + ", ".join(sorted(FAMILIES))):
        cfg_of(tmp_path, arch="gemma3")


def test_mixture_of_experts_is_refused(tmp_path):
    with pytest.raises(GGUFError, match="mixture-of-experts"):
        cfg_of(tmp_path, override_kv={"llama.expert_count": 8})


@pytest.mark.parametrize("override, message", [
    ({"llama.context_length": None}, "required metadata key 'llama.context_length' is missing"),
    ({"llama.attention.layer_norm_rms_epsilon": None}, "layer_norm_rms_epsilon' is missing"),
    ({"llama.block_count": ("2", VT.STRING)}, "'llama.block_count' must be an integer, found STRING"),
    ({"llama.embedding_length": (0, VT.UINT32)}, "is 0, expected at least 1"),
    ({"llama.attention.head_count_kv": (3, VT.UINT32)}, "4 query heads are not a multiple of 3"),
    ({"llama.attention.head_count": (6, VT.UINT32)}, "n_embd 64 is not a multiple of 6 heads"),
    ({"llama.rope.dimension_count": (15, VT.UINT32)}, "must be even"),
    ({"llama.rope.freq_base": (float("nan"), VT.FLOAT32)}, "expected a finite positive number"),
    ({"llama.rope.scaling.type": "dynamic"}, "'dynamic' is not one of none, linear, yarn"),
    ({"tokenizer.ggml.model": None}, "no tokenizer"),
    ({"tokenizer.ggml.tokens": None}, "no tokenizer"),
    ({"tokenizer.ggml.add_bos_token": (1, VT.UINT8)}, "must be a BOOL"),
    ({"general.architecture": (7, VT.UINT32)}, "general.architecture is missing or not a string"),
])
def test_bad_metadata(tmp_path, override, message):
    with pytest.raises(GGUFError, match=message):
        cfg_of(tmp_path, override_kv=override)


def test_metadata_that_changes_shapes_is_caught_by_the_tensor_check(tmp_path):
    with pytest.raises(GGUFError, match=r"'blk.0.attn_k.weight' has shape \[64, 32\] .*expected "
                                        r"\[64, 16\]"):
        cfg_of(tmp_path, override_kv={"llama.attention.head_count_kv": (1, VT.UINT32)})
    with pytest.raises(GGUFError, match=r"'blk.0.ffn_gate.weight' has shape \[64, 96\]"):
        cfg_of(tmp_path, override_kv={"llama.feed_forward_length": (128, VT.UINT32)})


def test_absurd_block_count_is_refused_before_listing_names(tmp_path):
    with pytest.raises(GGUFError, match="block_count 4294967295 is more than the file's 21 tensors"):
        cfg_of(tmp_path, override_kv={"llama.block_count": (2**32 - 1, VT.UINT32)})


def test_linear_rope_scaling(tmp_path):
    c = cfg_of(tmp_path, override_kv={"llama.rope.scaling.type": "linear",
                                      "llama.rope.scaling.factor": (4.0, VT.FLOAT32)})
    assert c.rope_scaling == "linear" and c.rope_freq_scale == 0.25


def test_special_ids_outside_the_vocabulary_are_dropped_like_llama_cpp(tmp_path):
    c = cfg_of(tmp_path, override_kv={"tokenizer.ggml.padding_token_id": (274, VT.UINT32),
                                      "tokenizer.ggml.unknown_token_id": (-1, VT.INT32)})
    assert c.tokenizer.pad_id is None and c.tokenizer.unk_id is None
    assert c.tokenizer.bos_id == 1


def test_config_is_frozen(tmp_path):
    c = cfg_of(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.n_layer = 3
