"""The GGUF tokenizer: llama.cpp's rules on tiny vocabularies the tests write (CI), and the same
ids as llama.cpp itself on SmolLM2 and on the tiny files (`peer` marker, needs llama_cpp)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random

import gguf
import pytest
from gguf import GGUFValueType as VT
from hypothesis import assume, example, given
from hypothesis import strategies as st

from forge.errors import ForgeError, GGUFError
from forge.model.gguf import load_gguf
from forge.model.tokenizer import (BYTE_CHARS, PRE_TOKENIZERS, Tokenizer, TokenizerError,
                                   UNSUPPORTED_PRE)
from tests.helpers.tiny_gguf import tiny_vocab, write_tiny_gguf
from tests.helpers.tiny_spm import tiny_spm_vocab, write_tiny_spm_gguf

T = gguf.TokenType


def tok_of(path) -> Tokenizer:
    return Tokenizer.from_gguf(load_gguf(path))


def bpe_file(path, *, extra=(), merges_first=(), rename=None, override_kv=None, **kw):
    """The tiny BPE file with extra (text, token type) tokens appended, merge rules ranked before
    the tiny vocabulary's, and tokens renamed (old text -> new text)."""
    tokens, types, merges = tiny_vocab()
    tokens = [(rename or {}).get(t, t) for t in tokens]
    tokens, types = tokens + [t for t, _ in extra], types + [int(k) for _, k in extra]
    kv = {"tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
          "tokenizer.ggml.merges": list(merges_first) + merges, **(override_kv or {})}
    return write_tiny_gguf(path, n_vocab=len(tokens), override_kv=kv, **kw)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    return {"bpe": bpe_file(d / "bpe.gguf", pre="smollm"),           # no clean_spaces
            "gpt2": bpe_file(d / "gpt2.gguf", pre="gpt-2"),          # clean_spaces
            "spm": write_tiny_spm_gguf(d / "spm.gguf")}


@pytest.fixture(scope="module")
def bpe(files):
    return tok_of(files["bpe"])


@pytest.fixture(scope="module")
def gpt2(files):
    return tok_of(files["gpt2"])


@pytest.fixture(scope="module")
def spm(files):
    return tok_of(files["spm"])


def texts(tok, ids):
    return [tok.token_text(i) for i in ids]


# -- byte-level BPE ---------------------------------------------------------------------------

def test_bpe_merges_by_rank_within_pre_tokens(bpe):
    # "hello": he, ll, hell, hello by rank; " world": (o r) outranks (Ġ w); "ld" is never made
    assert texts(bpe, bpe.encode("hello world")) == ["hello", "Ġw", "or", "l", "d"]
    assert texts(bpe, bpe.encode(" the")) == ["Ġthe"]
    assert bpe.encode("") == []


def test_bpe_pre_tokenizer_splits_digits_and_spaces(bpe):
    # smollm: every digit alone, then GPT-2's split (a run of spaces keeps its last one apart)
    assert texts(bpe, bpe.encode("12 a  b")) == ["1", "2", "Ġa", "Ġ", "Ġ", "b"]


MISSING_BYTE = dict(rename={BYTE_CHARS[0xC3]: "[gone]"}, merges_first=["© ©"],
                    extra=[("©©", T.NORMAL)])


def test_missing_byte_character_blocks_merges_as_in_llama_cpp(tmp_path):
    # SmolLM2 lacks 21 of the 256 byte characters. llama.cpp keeps such a character as a symbol
    # (dropped at the end), so the pieces around it never merge; HF alone would drop it first.
    # "éé" is C3 A9 C3 A9 as bytes, Ã © Ã © as byte characters; here Ã (C3) is no token.
    tok = tok_of(bpe_file(tmp_path / "m.gguf", **MISSING_BYTE))
    assert texts(tok, tok.encode("éé")) == ["©", "©"]
    assert texts(tok, tok.encode("\u2a69")) == ["â", "©©"]     # E2 A9 A9: the merge exists


def test_merge_whose_result_is_not_a_token_still_merges(tmp_path):
    # ("h", "i") ranks first but "hi" is no token: llama.cpp merges, then falls back to the
    # bytes "h", "i"; the merged symbol kept "i" from merging with "n" ("in" is a token).
    tok = tok_of(bpe_file(tmp_path / "m.gguf", merges_first=["h i"]))
    assert texts(tok, tok.encode("hin")) == ["h", "i", "n"]
    assert texts(tok, tok.encode("in")) == ["in"]


def test_unicode_16_letters_are_unassigned_as_in_llama_cpp(tmp_path):
    # llama.cpp's tables are Unicode 15.1: U+1C89 (new in 16.0) is no letter there, so "a" and it
    # are separate pre-tokens and the merge "a á" (á: its first UTF-8 byte) cannot apply
    tok = tok_of(bpe_file(tmp_path / "m.gguf", pre="gpt-2", merges_first=["a á"],
                          extra=[("aá", T.NORMAL)]))
    assert texts(tok, tok.encode("a\u1c89"))[:2] == ["a", "á"]
    assert texts(tok, tok.encode("a\u1c80"))[:1] == ["aá"]       # U+1C80: a letter in both


def test_non_ascii_whitespace_never_matches_explicit_ranges(tmp_path):
    # llama.cpp runs deepseek-llm's CJK range (which spans U+0800..U+4E00) on a copy of the text
    # where U+2000 became \v: so " \u2000" stays one piece (its \s+$ rule) and "Ġ â" merges
    tok = tok_of(bpe_file(tmp_path / "m.gguf", pre="deepseek-llm", merges_first=["Ġ â"],
                          extra=[("Ġâ", T.NORMAL)]))
    assert texts(tok, tok.encode("x \u2000"))[:2] == ["x", "Ġâ"]


def test_bpe_ignore_merges_takes_whole_tokens(tmp_path):
    # llama3 sets ignore_merges: a pre-token that is a token is taken whole, even when the
    # merges could not build it ("Ġworld" is a token, but "ld" is never made)
    tok = tok_of(bpe_file(tmp_path / "m.gguf", pre="llama-bpe"))
    plain = tok_of(bpe_file(tmp_path / "p.gguf", pre="dbrx"))
    assert texts(tok, tok.encode(" world", add_bos=False)) == ["Ġworld"]
    assert texts(plain, plain.encode(" world")) == ["Ġw", "or", "l", "d"]


# -- special tokens ---------------------------------------------------------------------------

def test_control_tokens_only_with_special(bpe):
    assert bpe.encode("<|im_start|>hi", special=True)[0] == 1
    plain = bpe.encode("<|im_start|>hi")
    assert 1 not in plain and bpe.decode(plain) == "<|im_start|>hi"


def test_user_defined_tokens_match_without_special(tmp_path):
    tok = tok_of(bpe_file(tmp_path / "m.gguf", extra=[("<tool>", T.USER_DEFINED)]))
    tid = tok.n_vocab - 1
    assert tok.encode("a<tool>b") == [tok.encode("a")[0], tid, tok.encode("b")[0]]
    assert tok.decode([tid]) == "<tool>"        # user-defined tokens print without special


def test_longest_special_token_is_split_out_first(tmp_path):
    # llama.cpp splits the text at the longest special token first, wherever it is: "bcd" wins
    # over the earlier "ab" (a leftmost-longest matcher would take "ab")
    tok = tok_of(bpe_file(tmp_path / "m.gguf", extra=[("ab", T.USER_DEFINED),
                                                      ("bcd", T.USER_DEFINED)]))
    assert texts(tok, tok.encode("abcd")) == ["a", "bcd"]
    assert texts(tok, tok.encode("abab")) == ["ab", "ab"]


def test_phi3_control_tokens_eat_following_whitespace(tmp_path):
    # llama.cpp gives phi-3 vocabularies' special tokens rstrip (by general.name)
    tok = tok_of(bpe_file(tmp_path / "m.gguf", name="Phi-3 tiny",
                          extra=[("</s>", T.CONTROL), ("<unk>", T.UNKNOWN), ("<s>", T.CONTROL)]))
    plain = tok_of(bpe_file(tmp_path / "p.gguf", extra=[("</s>", T.CONTROL)]))
    assert texts(tok, tok.encode("<|im_end|> \n x", special=True)) == ["<|im_end|>", "x"]
    assert texts(plain, plain.encode("<|im_end|> x", special=True)) == ["<|im_end|>", "Ġ", "x"]


def test_eog_set_and_forced_control(tmp_path):
    tok = tok_of(bpe_file(tmp_path / "m.gguf", extra=[("<|fim_pad|>", T.NORMAL),
                                                      ("<|eot_id|>", T.NORMAL)]))
    fim, eot = tok.n_vocab - 2, tok.n_vocab - 1
    # <|endoftext|> (0) and <|im_end|> (2, also EOS) by text, FIM pad, <|eot_id|>
    assert tok.eog_ids == {0, 2, fim, eot}
    # typed NORMAL in the file, llama.cpp makes them control: hidden and not parsed as text
    assert tok.is_control(eot) and tok.decode([eot]) == ""
    assert tok.decode([eot], special=True) == "<|eot_id|>"
    assert eot not in tok.encode("<|eot_id|>") and tok.encode("<|eot_id|>", special=True) == [eot]


def test_spm_eog(spm):
    assert spm.eog_ids == {2, spm.encode("<|im_end|>", special=True, add_bos=False)[0]}


# -- BOS / EOS rules --------------------------------------------------------------------------

@pytest.mark.parametrize("pre, key, bos", [
    ("gpt-2", None, False), ("smollm", None, False), ("llama-bpe", None, True),
    ("tekken", None, True), ("chameleon", None, True), ("llama-bpe", False, False),
    ("gpt-2", True, True)])
def test_bpe_bos_rule(tmp_path, pre, key, bos):
    tok = tok_of(bpe_file(tmp_path / "m.gguf", pre=pre,
                          override_kv={"tokenizer.ggml.add_bos_token": key}))
    assert tok.add_bos is bos and (tok.encode("a")[0] == 1) is bos
    assert tok.encode("a", add_bos=True)[0] == 1 and tok.encode("a", add_bos=False)[0] != 1


def test_bpe_default_bos_id_is_llama_cpps(tmp_path):
    # without bos_token_id, llama.cpp's BPE default is id 11 (here a byte token), EOS too
    tok = tok_of(bpe_file(tmp_path / "m.gguf", pre="llama-bpe", override_kv={
        "tokenizer.ggml.bos_token_id": None, "tokenizer.ggml.eos_token_id": None,
        "tokenizer.ggml.add_bos_token": None}))
    assert tok.bos_id == tok.eos_id == 11 and tok.encode("a")[0] == 11 and 11 in tok.eog_ids


def test_no_bos_token_refuses_bos(tmp_path):
    # chatglm: llama.cpp clears the default BOS id (a bos_token_id key would still set one)
    tok = tok_of(bpe_file(tmp_path / "m.gguf", pre="chatglm-bpe",
                          override_kv={"tokenizer.ggml.bos_token_id": None}))
    assert tok.bos_id is None and tok.encode("a")
    with pytest.raises(TokenizerError, match="BOS requested but the vocabulary has no BOS"):
        tok.encode("a", add_bos=True)


def test_add_eos(tmp_path):
    tok = tok_of(bpe_file(tmp_path / "m.gguf", override_kv={"tokenizer.ggml.add_eos_token": True}))
    assert tok.encode("a")[-1] == 2 and tok.encode("a", add_eos=False)[-1] != 2


def test_spm_bos_and_space_prefix(tmp_path, spm):
    assert spm.add_bos and spm.encode("the")[:1] == [1]
    assert texts(spm, spm.encode("the", add_bos=False)) == ["▁the"]
    no_prefix = tok_of(write_tiny_spm_gguf(tmp_path / "n.gguf", add_space_prefix=False,
                                           add_bos=False))
    assert texts(no_prefix, no_prefix.encode("the")) == ["t", "he"]


# -- SentencePiece ----------------------------------------------------------------------------

def test_spm_merges_by_score_leftmost_on_ties(spm):
    # "xy" and "yz" share a score: the leftmost pair merges first (llama.cpp's comparator)
    assert texts(spm, spm.encode("xyz", add_bos=False)) == ["▁", "xy", "z"]
    assert texts(spm, spm.encode("abc", add_bos=False)) == ["▁a", "bc"]   # "▁a" scores higher
    assert texts(spm, spm.encode("hello world", add_bos=False)) == ["▁hello", "▁world"]


def test_spm_byte_fallback(spm):
    ids = spm.encode("7😀", add_bos=False)
    assert texts(spm, ids) == ["▁", "<0x37>", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert spm.decode(ids) == "7😀"


def test_spm_space_prefix_after_special_tokens(spm):
    # llama.cpp adds the space prefix again after every special token
    ids = spm.encode("a<|im_start|>the", special=True, add_bos=False)
    assert texts(spm, ids) == ["▁a", "<|im_start|>", "▁the"]


def test_spm_chunk_cache_gives_the_same_ids(tmp_path):
    # with a token that has a ▁ inside, the text cannot be cut into words: the whole-text path
    inner = tok_of(write_tiny_spm_gguf(tmp_path / "m.gguf", pieces=[
        ("a▁b", -1.0), ("a▁", -1.5), *[(c, -2.0) for c in "abcdefghijklmnopqrstuvwxyz"],
        ("▁", -3.0)]))
    assert not inner._model.chunked
    assert texts(inner, inner.encode("a b a", add_bos=False)) == ["▁", "a▁b", "▁", "a"]


@given(st.text(max_size=40))
@example("  the  world ")
def test_spm_chunked_equals_whole_text(spm, s):
    model = spm._model
    escaped = ("▁" + s).replace(" ", "▁")
    assert model._encode_chunks(escaped) == model._encode_one(escaped)


# -- decoding ---------------------------------------------------------------------------------

@given(st.text(max_size=60))
def test_bpe_round_trip(bpe, s):
    assert bpe.decode(bpe.encode(s)) == s
    assert bpe.decode(bpe.encode(s, special=True), special=True) == s


@given(st.text(max_size=60))
def test_spm_round_trip_as_llama_cpp_defines_it(spm, s):
    # spaces travel as ▁, so a ▁ in the text comes back as a space; the prefix space goes,
    # except after BOS, which llama.cpp's detokenize keeps
    assume("<|tool|>" not in s)
    want = s.replace("▁", " ")
    assert spm.decode(spm.encode(s, add_bos=False)) == want
    assert spm.decode(spm.encode(s)) == (" " + want if s else "")


def test_decode_hides_control_tokens_unless_special(bpe):
    assert bpe.decode([1, 2]) == "" and bpe.decode([1], special=True) == "<|im_start|>"
    with pytest.raises(TokenizerError, match="token id 9999 is outside the vocabulary of 274"):
        bpe.decode([9999])


def test_clean_spaces(gpt2, bpe):
    s = "a ? b ' c 's d 't"
    assert gpt2.decode(gpt2.encode(s)) == "a? b'c's d 't"      # llama.cpp's clean-up
    assert bpe.decode(bpe.encode(s)) == s                       # smollm: clean_spaces off


def test_invalid_utf8_decodes_with_replacement(bpe):
    lone = bpe.encode("é")[:1]          # the first byte of a two-byte character
    assert bpe.decode_bytes(lone) == b"\xc3" and bpe.decode(lone) == "\ufffd"


# -- streaming --------------------------------------------------------------------------------

def test_stream_waits_for_complete_utf8(bpe, spm):
    for tok in (bpe, spm):          # the emoji is four byte tokens in both vocabularies
        ids = tok.encode("😀中", add_bos=False)
        d = tok.stream_decoder(at_start=True)
        pieces = [d.feed(i) for i in ids]
        assert [p for p in pieces if p] == ["😀", "中"] and d.flush() == ""


def test_stream_of_emoji_bytes(bpe):
    ids = bpe.encode("a😀")
    assert len(ids) == 5        # "a" and the four byte tokens of the emoji
    d = bpe.stream_decoder()
    assert [d.feed(i) for i in ids] == ["a", "", "", "", "😀"] and d.flush() == ""


def test_stream_keeps_spm_leading_space_in_continuations(spm):
    ids = spm.encode("the world", add_bos=False)
    cont = spm.stream_decoder()
    assert "".join(cont.feed(i) for i in ids) == " the world"
    assert "".join(spm.stream(ids)) == spm.decode(ids) == "the world"


def test_stream_holds_spaces_clean_up_may_remove(gpt2):
    ids = gpt2.encode("a ?")
    d = gpt2.stream_decoder()
    assert [d.feed(i) for i in ids] == ["a", "", "?"] and d.flush() == ""


@given(st.lists(st.integers(0, 273), max_size=30), st.booleans())
def test_stream_joins_to_decode(gpt2, bpe, spm, ids, special):
    for tok in (gpt2, bpe, spm):
        ids = [i % tok.n_vocab for i in ids]
        assert "".join(tok.stream(ids, special=special)) == tok.decode(ids, special=special)


def test_flush_completes_a_cut_character(bpe):
    d = bpe.stream_decoder()
    assert d.feed(bpe.encode("é")[0]) == "" and d.flush() == "\ufffd"


# -- errors -----------------------------------------------------------------------------------

def _refuse(path, match):
    with pytest.raises(TokenizerError, match=match) as e:
        tok_of(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg and isinstance(e.value, GGUFError)


@pytest.mark.parametrize("kv, match", [
    ({"tokenizer.ggml.model": "bert"}, "tokenizer model 'bert' is not supported"),
    ({"tokenizer.ggml.merges": None}, "needs tokenizer.ggml.merges"),
    ({"tokenizer.ggml.pre": "nonesuch"}, "unknown pre-tokenizer tokenizer.ggml.pre = 'nonesuch'"),
    ({"tokenizer.ggml.pre": "kimi-k2"}, "pre-tokenizer 'kimi-k2' is split by llama.cpp's own code"),
    ({"tokenizer.ggml.scores": [0.5, 1.0]}, "tokenizer.ggml.scores has 2 entries for 274 tokens"),
    ({"tokenizer.ggml.token_type": [1.0] * 274}, "token_type must be an array of INT32"),
    ({"tokenizer.ggml.scores": [float("nan")] * 274}, "scores contains NaN"),
])
def test_bad_vocabularies_are_refused(tmp_path, kv, match):
    _refuse(bpe_file(tmp_path / "m.gguf", override_kv=kv), match)


def test_duplicate_tokens_are_refused(tmp_path):
    tokens, _, _ = tiny_vocab()
    dup = bpe_file(tmp_path / "m.gguf", override_kv={"tokenizer.ggml.tokens": tokens[:-1] + ["he"]})
    _refuse(dup, "token 'he' appears more than once")


def test_spm_without_a_byte_token_refuses_text_needing_it(tmp_path):
    # llama.cpp looks for <0x37>, then for the one-character token "7", then aborts
    tokens = tiny_spm_vocab()[0]
    gone = tok_of(write_tiny_spm_gguf(tmp_path / "g.gguf", override_kv={"tokenizer.ggml.tokens": [
        "[x]" if t == "<0x37>" else t for t in tokens]}))
    assert gone.encode("8", add_bos=False)
    with pytest.raises(TokenizerError, match="no token for byte 0x37 of '7'"):
        gone.encode("7")
    types = tiny_spm_vocab()[2]
    i = tokens.index("<0x37>")
    seven = tok_of(write_tiny_spm_gguf(tmp_path / "s.gguf", override_kv={
        "tokenizer.ggml.tokens": tokens[:i] + ["7"] + tokens[i + 1:],
        "tokenizer.ggml.token_type": types[:i] + [int(T.NORMAL)] + types[i + 1:]}))
    assert texts(seven, seven.encode("7", add_bos=False)) == ["▁", "7"]


def test_bad_input_text(bpe):
    with pytest.raises(TokenizerError, match="lone surrogate"):
        bpe.encode("a\ud800b")
    with pytest.raises(TokenizerError, match="takes a str"):
        bpe.encode(b"bytes")


def test_supported_pre_names_compile(bpe):
    # every regex in the table is valid Oniguruma (HF compiles them when the tokenizer is built)
    from tokenizers import Regex
    for spec in set(PRE_TOKENIZERS.values()):
        for r in spec.regexes:
            Regex(r)
    assert not set(UNSUPPORTED_PRE) & set(PRE_TOKENIZERS)


def test_errors_are_forge_errors():
    assert issubclass(TokenizerError, ForgeError)


# =============================================================================================
# peer: the same ids as llama.cpp (llama-cpp-python), when it is installed
# =============================================================================================

try:
    import llama_cpp
except ImportError:
    llama_cpp = None

peer = pytest.mark.skipif(llama_cpp is None, reason="llama_cpp (llama-cpp-python) is not installed")


class Peer:
    """llama.cpp's tokenizer for one file, through llama-cpp-python's low-level API."""

    def __init__(self, path):
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            self.llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        self.vocab = self.llm._model.vocab

    def tokenize(self, text: str, add_special: bool, special: bool) -> list[int]:
        data = text.encode()
        n = len(data) + 8
        buf = (llama_cpp.llama_token * n)()
        k = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, n, add_special, special)
        assert k >= 0
        return list(buf[:k])

    def detokenize(self, ids: list[int], special: bool) -> bytes:
        """llama.cpp's common_detokenize: llama_detokenize(remove_special=False)."""
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        n = 64 + 64 * len(ids)
        buf = ctypes.create_string_buffer(n)
        k = llama_cpp.llama_detokenize(self.vocab, arr, len(ids), buf, n, False, special)
        assert k >= 0
        return buf.raw[:k]

    def eog(self, n: int) -> set[int]:
        return {i for i in range(n) if llama_cpp.llama_vocab_is_eog(self.vocab, i)}

    def control(self, n: int) -> list[bool]:
        return [bool(llama_cpp.llama_vocab_is_control(self.vocab, i)) for i in range(n)]


PEER_TEXTS = [
    "Hello world", "  multiple   spaces  and trailing   ", "a\n\nb\t\tc\r\n", "\n", " ", "",
    "12345 67.89 1,000,000 3.14159", "héllo wörld ñ Ärger ß", "emoji 😀👍🏽 done 👨‍👩‍👧 🇫🇷",
    "中文测试，你好。日本語のテキスト、カタカナ", "한국어 텍스트", "Ελληνικά Кириллица עברית العربية हिन्दी ไทย",
    "def f(x):\n    return x**2  # comment\n\tpass\n", "I'm you're they'll it's we've I'd DON'T",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>x<|endoftext|>",
    "<|im_start|", "<reponame>repo<file_sep>", " ?!., ' 's 're", "Ω≈ç√∫˜µ≤≥÷ Ω K",
    "\u00a0\u2003\u3000x\u200b\u0085y", "$100 + <tag> ^~| `code` {a: [1, 2]}",
    "camelCaseWords ALLCAPS HTTPServer", "a" * 300, "    indented\n        more\n",
]


def _random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = list("abcXYZ 019'\n\t.,?!<|>") + ["é", "中", "😀", "\u3000", "\u0301", "ß", "Ω",
                                                 "<|im_end|>", "  ", "'s", "١", "²", "▁", "\r"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(n)]


def assert_same_as_llama_cpp(path, texts):
    """encode with add_bos True and False, special True and False; detokenize; EOG; control."""
    p, tok = Peer(path), tok_of(path)
    for s in texts:
        for special in (False, True):
            want = p.tokenize(s, True, special)
            assert tok.encode(s, special=special) == want, (path, s, special)
            assert tok.encode(s, add_bos=False, add_eos=False, special=special) == \
                p.tokenize(s, False, special), (path, s, special)
            for unparse in (False, True):
                got = tok.decode_bytes(want, special=unparse)
                assert got == p.detokenize(want, unparse), (path, s)
    assert set(tok.eog_ids) == p.eog(tok.n_vocab)
    assert [tok.is_control(i) for i in range(tok.n_vocab)] == p.control(tok.n_vocab)


@pytest.fixture(scope="module")
def smollm2():
    from forge.model.fetch import cached_path
    path = cached_path("smollm2-135m-instruct-q4_1")
    if path is None:
        pytest.skip("SmolLM2-135M-Instruct is not in the cache (forge fetch)")
    return path


@pytest.mark.peer
@peer
def test_peer_smollm2(smollm2):
    assert_same_as_llama_cpp(smollm2, PEER_TEXTS + _random_texts(300, 1))


@pytest.mark.peer
@peer
def test_peer_smollm2_random_ids_detokenize(smollm2):
    p, tok = Peer(smollm2), tok_of(smollm2)
    rng = random.Random(2)
    for _ in range(200):
        ids = [rng.randrange(tok.n_vocab) if rng.random() < 0.9 else rng.randrange(20)
               for _ in range(rng.randint(0, 20))]
        for special in (False, True):
            assert tok.decode_bytes(ids, special=special) == p.detokenize(ids, special)


def _vocab_copy(src, dst, override):
    """A vocabulary-only GGUF: src's metadata with override applied, no tensors."""
    g = load_gguf(src)
    w = gguf.GGUFWriter(dst, g.architecture)
    for k, kv in g.kv.items():
        if k == "general.architecture" or k in override:
            continue
        v = kv.value
        if kv.type == VT.ARRAY:
            v = list(v) if kv.elem_type == VT.STRING else [x.item() for x in v]
            w.add_key_value(k, v, VT.ARRAY, sub_type=kv.elem_type)
        else:
            w.add_key_value(k, v, kv.type)
    for k, v in override.items():
        if v is not None:
            w.add_key_value(k, v, VT.get_type(v))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


# Every 997th code point, all of Unicode's non-ASCII whitespace, and characters new in Unicode
# 16.0 (a letter, digit, mark, punctuation and symbol each: llama.cpp's tables are 15.1). Sparse
# because llama.cpp's std::regex makes some pre-tokenizers slow; every 5th code point of all
# the pre-tokenizers has been compared once, off CI (see the commit that added this line).
SWEEP = sorted({*(c for c in range(0x80, 0x110000, 997) if not 0xD800 <= c < 0xE000),
                0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
                0x1C89, 0x105C0, 0x13460, 0x116D0, 0x897, 0x1B4E, 0x2427, 0x1CC00})


def _one_name_per_spec():
    seen = {}
    for name, spec in PRE_TOKENIZERS.items():
        seen.setdefault(spec, name)
    return sorted(seen.values())


@pytest.mark.peer
@peer
@pytest.mark.parametrize("pre", _one_name_per_spec())
def test_peer_pre_tokenizers_on_smollm2_vocabulary(smollm2, tmp_path, pre):
    # SmolLM2's vocabulary under every pre-tokenizer forge knows (one name per distinct rule
    # set), add_bos left to the default, against llama.cpp: texts, then the SWEEP characters in
    # contexts that exercise each regex branch
    path = _vocab_copy(smollm2, tmp_path / f"{pre}.gguf", {"tokenizer.ggml.pre": pre,
                                                         "tokenizer.ggml.add_bos_token": None})
    assert_same_as_llama_cpp(path, PEER_TEXTS + _random_texts(100, 3))
    p, tok = Peer(path), tok_of(path)
    for c in SWEEP:
        ch = chr(c)
        s = f"a{ch}a 1{ch}1 {ch}{ch} .{ch}. \u3000{ch}\u0301 A{ch}b'{ch}s {ch}\n"
        assert tok.encode(s) == p.tokenize(s, True, False), (pre, hex(c))


@pytest.fixture(scope="module")
def tiny_variants(tmp_path_factory):
    d = tmp_path_factory.mktemp("peer")
    return {
        "bpe": bpe_file(d / "bpe.gguf", pre="smollm"),
        "gpt2": bpe_file(d / "gpt2.gguf", pre="gpt-2"),
        "llama-bpe-default-bos": bpe_file(d / "l3.gguf", pre="llama-bpe", override_kv={
            "tokenizer.ggml.add_bos_token": None}),
        "missing-byte": bpe_file(d / "mb.gguf", **MISSING_BYTE),
        "bad-merge": bpe_file(d / "bm.gguf", merges_first=["h i"]),
        "user-overlap": bpe_file(d / "uo.gguf", extra=[("ab", T.USER_DEFINED),
                                                       ("bcd", T.USER_DEFINED)]),
        "eog": bpe_file(d / "eog.gguf", extra=[("<|fim_pad|>", T.NORMAL),
                                               ("<|eot_id|>", T.NORMAL)]),
        "phi3": bpe_file(d / "phi3.gguf", name="Phi-3 tiny", extra=[
            ("</s>", T.CONTROL), ("<unk>", T.UNKNOWN), ("<s>", T.CONTROL)]),
        "add-eos": bpe_file(d / "eos.gguf", override_kv={"tokenizer.ggml.add_eos_token": True}),
        "spm": write_tiny_spm_gguf(d / "spm.gguf"),
        "spm-no-prefix": write_tiny_spm_gguf(d / "spmn.gguf", add_space_prefix=False,
                                             add_bos=False),
        "spm-inner-space": write_tiny_spm_gguf(d / "spmi.gguf", pieces=[
            ("a▁b", -1.0), ("▁▁", -1.5), *[(c, -2.0) for c in "abcdefghijklmnopqrstuvwxyz"],
            ("▁", -3.0), ("ab", -2.0), ("bc", -2.0)]),
    }


@pytest.mark.peer
@peer
@pytest.mark.parametrize("name", ["bpe", "gpt2", "llama-bpe-default-bos", "missing-byte",
                                  "bad-merge", "user-overlap", "eog", "phi3", "add-eos", "spm",
                                  "spm-no-prefix", "spm-inner-space"])
def test_peer_tiny_files(tiny_variants, name):
    extra = ["xyz abc hello the world", "éé ©© hin abcd abab", "<|im_end|> \n x <tool> </s>  y",
             "a b a▁b  ab bc abc", "<|eot_id|><|fim_pad|>"]
    assert_same_as_llama_cpp(tiny_variants[name], PEER_TEXTS + extra + _random_texts(300, 4))
