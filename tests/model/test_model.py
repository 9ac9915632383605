"""forge.load / Model / Generation on tiny GGUF files the tests write (BPE and SentencePiece
vocabularies), on the host CPU path and the emulator: greedy generation equals the argmax of the
float64 reference step by step, seeds reproduce, streaming yields the same text, stop strings and
end-of-generation tokens stop, and bad input is refused with one line while the model stays
usable."""

import numpy as np
import pytest

import forge
from forge.errors import DeviceError, ForgeError
from forge.runtime.lower import uses_q8
from tests.helpers.tiny_gguf import write_tiny_gguf
from tests.helpers.tiny_spm import write_tiny_spm_gguf
from tests.oracles.llama import Reference

SHAPE = dict(n_embd=128, n_head=2, n_head_kv=1, n_ff=256)


@pytest.fixture(scope="module")
def bpe_path(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "bpe.gguf", weight_type="Q8_0", **SHAPE)


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory):
    return write_tiny_spm_gguf(tmp_path_factory.mktemp("m") / "spm.gguf", weight_type="Q4_0", **SHAPE)


@pytest.mark.parametrize("vocab", ["bpe", "spm"])
def test_greedy_generation_follows_the_reference_argmax(backend, vocab, bpe_path, spm_path):
    path = bpe_path if vocab == "bpe" else spm_path
    m = forge.load(path, backend=backend, max_context=64)
    ref = Reference(path, q8=lambda t, c: uses_q8(m.executor.arch, t, c, 2))
    g = m.generate("hello world", 8, temperature=0)
    ids = list(g.prompt_tokens)
    assert ids == m.tokenizer.encode("hello world") and (ids[0] == 1) == (vocab == "spm")  # SPM adds BOS
    for i, tok in enumerate(g.tokens):  # the first from the prefill, the rest from decode steps
        want = ref.logits(ids, q8_last=lambda t, c: uses_q8(m.executor.arch, t, c, 1 if i else 2))[-1]
        top2 = np.sort(want)[-2:]
        if top2[1] - top2[0] > 2e-2 * np.abs(want).max():  # the path's tolerance (tests/runtime/test_executor.py)
            assert tok == int(np.argmax(want))
        ids.append(tok)
    assert g.text == m.tokenizer.decode(g.tokens) and g.finish_reason in ("length", "eog")
    assert g.stats["new_tokens"] == len(g.tokens) and g.stats["prompt_tokens"] == len(g.prompt_tokens)


def test_logits_are_a_fresh_forward(backend, bpe_path):
    m = forge.load(bpe_path, backend=backend, max_context=32)
    ids = m.tokenizer.encode("the world")
    a = m.logits(ids)
    m.generate("hello", 5, temperature=0.7, seed=1)  # fills the cache with something else
    b = m.logits(ids)
    assert a.shape == (len(ids), m.config.n_vocab) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_seed_reproduces_and_stream_matches(bpe_path):
    m = forge.load(bpe_path, backend="cpu", max_context=64)
    a = m.generate("the", 12, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    b = m.generate("the", 12, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    assert a.tokens == b.tokens and a.stats["seed"] == 7
    s = m.generate("the", 12, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7, stream=True)
    assert "".join(s) == a.text and s.generation.tokens == a.tokens


def test_stop_strings_end_generation(bpe_path):
    m = forge.load(bpe_path, backend="cpu", max_context=64)
    full = m.generate("hello", 20, temperature=0).text
    if len(full) < 3:
        pytest.skip("the tiny model stopped at once")
    stop = full[1:3]
    g = m.generate("hello", 20, temperature=0, stop=[stop])
    assert g.finish_reason == "stop" and g.text == full[:full.find(stop)]


def test_end_of_generation_token_stops(bpe_path):
    """Make the tiny model's greedy choice an EOG token by asking for it: the token after the prompt
    is the argmax, so pick a prompt, find its argmax, and declare that id the EOS of a copy."""
    m = forge.load(bpe_path, backend="cpu", max_context=64)
    first = m.generate("hello", 1, temperature=0).tokens[0]
    p2 = write_tiny_gguf(bpe_path.parent / "eos.gguf", weight_type="Q8_0", override_kv={
        "tokenizer.ggml.eos_token_id": (first, forge.model.gguf.GGUFValueType.UINT32)}, **SHAPE)
    m2 = forge.load(p2, backend="cpu", max_context=64)
    g = m2.generate("hello", 10, temperature=0)
    assert g.tokens == [] and g.finish_reason == "eog" and g.text == ""


@pytest.mark.parametrize("call, match", [
    (lambda m: m.generate(""), "prompt is empty"),
    (lambda m: m.generate([]), "prompt is empty"),
    (lambda m: m.generate([5, 10**6]), "outside the vocabulary"),
    (lambda m: m.generate([-1]), "outside the vocabulary"),
    (lambda m: m.logits(list(range(40))), "more than the context"),
    (lambda m: m.generate("hello", top_p=0.0), "top_p"),
    (lambda m: m.generate("hello", temperature=float("nan")), "temperature"),
    (lambda m: m.generate("hello", -1), "max_new_tokens"),
])
def test_bad_input_is_one_line_and_the_model_stays_usable(bpe_path, call, match):
    m = forge.load(bpe_path, backend="cpu", max_context=32)
    with pytest.raises(ForgeError, match=match) as e:
        call(m)
    assert "\n" not in str(e.value)
    assert m.generate("hello", 3, temperature=0).stats["new_tokens"] >= 0
    assert m.logits([5, 6]).shape == (2, m.config.n_vocab)


def test_generation_stops_when_the_context_is_full(bpe_path):
    m = forge.load(bpe_path, backend="cpu", max_context=8)
    ids = m.tokenizer.encode("hello world")
    g = m.generate(ids, 100, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=3)
    assert len(g.prompt_tokens) + len(g.tokens) <= 8 + 1 and g.finish_reason in ("length", "eog")


def test_unknown_backend_and_unsupported_files(bpe_path, tmp_path):
    with pytest.raises(DeviceError, match="unknown backend 'tpu'"):
        forge.load(bpe_path, backend="tpu")
    p = write_tiny_gguf(tmp_path / "hd16.gguf", n_embd=64, n_head=4, n_head_kv=2)  # head_dim 16
    with pytest.raises(ForgeError, match="head_dim 16 has no attention kernels"):
        forge.load(p, backend="cpu")


def test_hostile_chat_template_is_refused_and_the_model_stays_usable(tmp_path):
    p = write_tiny_spm_gguf(tmp_path / "chat.gguf", chat_template="{{ ''.__class__.__mro__ }}", **SHAPE)
    m = forge.load(p, backend="cpu", max_context=32)
    with pytest.raises(ForgeError) as e:
        m.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])
    assert "\n" not in str(e.value)
    assert len(m.generate("hello", 2, temperature=0).prompt_tokens) > 0
