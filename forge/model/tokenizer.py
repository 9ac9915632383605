r"""The tokenizer of a GGUF file, with llama.cpp's token ids for the same file.

    tok = Tokenizer.from_gguf(load_gguf(path))
    ids = tok.encode("Hello")          # llama_tokenize(text, add_special=True, parse_special=False)
    text = tok.decode(ids)             # llama.cpp's common_detokenize(ids, special=False)
    for piece in tok.stream(ids): ...  # or tok.stream_decoder().feed(id) while generating

Everything here follows llama.cpp's src/llama-vocab.cpp and src/unicode.cpp (read, not copied):
- Vocabulary rules (`_Vocab`): token attributes from `tokenizer.ggml.token_type`, then llama.cpp's
  fix-ups by token text (EOT/EOM/FIM auto-detection, the end-of-generation set, "unused" control
  tokens, the gpt-oss and phi-3 rules); default special ids per vocabulary type; BOS/EOS rules.
- Special-token splitting (`_partition`): llama.cpp's tokenizer_st_partition, by hand: every
  occurrence of each special token, longest token first, user-defined tokens always, control and
  unknown tokens only when parse_special. HF's added-token matcher is leftmost-longest, which
  differs when two special tokens overlap, so it is not used.
- Byte-level BPE ("gpt2"): HF `tokenizers` does the work: the regexes llama.cpp picks for
  `tokenizer.ggml.pre` become a Sequence of Split(isolated) steps (llama.cpp splits the same way:
  matches and the gaps between them, each regex inside the pieces of the one before), then
  ByteLevel without its own regex, then BPE with the file's merges (lowest rank first, leftmost on
  ties: the same algorithm). What HF does differently is patched around it, not rewritten:
  llama.cpp keeps a character that is not a token as a symbol that blocks merges across it
  (SmolLM2 lacks 21 of the 256 byte characters), and merges whose parts or result are not tokens
  still merge; HF drops such characters and refuses such merges. Both become extra vocabulary
  entries past n_vocab whose ids are then replaced by llama.cpp's byte fallback (usually nothing).
  The regexes are adjusted to what llama.cpp's regex engine sees (see PRE_TOKENIZERS), and
  \p{..} to llama.cpp's Unicode 15.1 tables (`_unicode_15_1`).
- SentencePiece ("llama"): by hand. llama.cpp merges the adjacent pair whose concatenation is a
  token of highest score, leftmost on equal scores, across different pairs; HF's BPE orders pairs
  by a per-pair rank and so cannot express the tie rule. Byte fallback to <0xXX>, the space
  prefix at the start and after each special token, and ▁ escaping, as llama.cpp.
- Decoding: llama.cpp's token_to_piece and detokenize (control tokens dropped unless special, the
  leading space of an SPM text dropped, clean_spaces for the pre-tokenizers that set it).

Known differences from llama.cpp (documented, not hidden): special tokens of equal byte length
are tried in id order (llama.cpp's std::sort leaves that order unspecified); auto-detected
EOT/FIM tokens take the lowest id when a vocabulary has several candidates (llama.cpp: hash
order); text must be valid Unicode (lone surrogates are refused, llama.cpp never sees them); with
ignore_merges (llama3 and kin), a pre-token equal to a merge result that is not a token falls
back to bytes whole, where llama.cpp merges it (no real vocabulary has such merges).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Iterable, Iterator

import numpy as np
from gguf.constants import GGUFValueType

from forge.errors import GGUFError
from forge.model.config import TokenizerConfig, tokenizer_config
from forge.model.gguf import GGUFFile


class TokenizerError(GGUFError):
    """A vocabulary forge cannot reproduce llama.cpp's tokenization for, or bad input to it."""


# llama_token_attr bits (llama.h); a token's attributes start from its GGUF token type.
ATTR_UNDEFINED, ATTR_UNKNOWN, ATTR_UNUSED, ATTR_NORMAL = 0, 1, 2, 4
ATTR_CONTROL, ATTR_USER_DEFINED, ATTR_BYTE = 8, 16, 32
ATTR_LSTRIP, ATTR_RSTRIP = 128, 256
_ATTR_OF_TYPE = {1: ATTR_NORMAL, 2: ATTR_UNKNOWN, 3: ATTR_CONTROL, 4: ATTR_USER_DEFINED,
                 5: ATTR_UNUSED, 6: ATTR_BYTE}
_SPECIAL = ATTR_UNKNOWN | ATTR_CONTROL            # dropped from decoded text unless special
_PARTITIONED = ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN   # matched before tokenizing
_C_SPACE = " \t\n\v\f\r"                          # C isspace(): what lstrip/rstrip remove

# ---------------------------------------------------------------------------------------------
# Pre-tokenizers: llama.cpp's regex lists per tokenizer.ggml.pre, written for Oniguruma (HF).
# llama.cpp runs some of them through hand-written matchers (gpt2, llama3, qwen2, qwen35) and the
# rest through std::regex on a copy of the text where each non-ASCII character is replaced by a
# stand-in for its category (\p{Lu}, \p{Ll}... all mean "letter" there: they become \p{L} here)
# and non-ASCII whitespace by \v. `$` is ECMAScript's end of input: \z here. The peer tests
# compare every listed name with llama.cpp.
# ---------------------------------------------------------------------------------------------
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
_QWEN35 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+"
           r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_UPPER_THEN_LOWER = r"((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
_UPPER_ONLY = r"((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
_TEKKEN = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER_THEN_LOWER}|[^\r\n\p{{L}}\p{{N}}]?{_UPPER_ONLY}"
           r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT4O = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER_THEN_LOWER}{_CONTRACTIONS}?"
          rf"|[^\r\n\p{{L}}\p{{N}}]?{_UPPER_ONLY}{_CONTRACTIONS}?"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GRANITE_EMB = _GPT4O.replace(r"(?=[\p{L}])", r"(?=[\p{L}\p{M}])")
_ASCII_PUNCT_WORD = r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+"""
_CJK_KANA = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
# llama.cpp matches the regexes without \p{..} against a copy of the text in which non-ASCII
# whitespace became \v, so a class with non-ASCII ranges never matches, say, U+2000 or U+3000:
# here such classes say so (&&[^\s]; they hold no ASCII whitespace).
_CJK_HANGUL = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff&&[^\\s]]+"
_DEEPSEEK3 = (r"\p{N}{1,3}", _CJK_KANA,
              _ASCII_PUNCT_WORD + r"|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Its third class starts at U+3000 in llama.cpp, but llama.cpp matches it against a copy of the
# text in which U+3000 (whitespace) became \v, so only U+3001.. can match: written so here.
# Non-ASCII characters are written as escapes: an editor's Unicode normalization would otherwise
# silently turn U+2126 OHM SIGN into U+03A9 and change what the class matches.
_DEEPSEEK_LLM = (
    r"[\r\n]",
    "\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1"
    "\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5"
    "\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a"
    "\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d"
    "\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3"
    "\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115"
    "\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf"
    "\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
    "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943]+",
    "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002&&[^\\s]]+",
    r"\s+\z",
    _CJK_HANGUL,
    r"\p{N}+",
)
_YOUTU = ("[\uac00-\ud7a3\u3131-\u318e]+|[\uff01\u2026\u201c\u201d\u2018\u2019\u2014\uff1a"
          "\uff1b\uff0c\u3001-\u303f\ufe30-\ufe4f]+|[\u3105-\u312f]+|" + _CJK_KANA,
          r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]*[\p{L}\p{M}]+" + _CONTRACTIONS +
          r"?|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+[\p{L}\p{M}]*" + _CONTRACTIONS +
          r"?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# llama.cpp 0.3.36's character tables are Unicode 15.1; the Oniguruma inside `tokenizers` knows
# Unicode 16.0, whose new letters, digits, marks, punctuation and symbols llama.cpp sees as
# unassigned (no category). Every \p{..} is therefore matched without them: these are the 16.0
# additions in those categories (5185 code points), as hexadecimal ranges.
_UNICODE_16_NEW = (
    "897 1B4E-1B4F 1B7F 1C89-1C8A 2427-2429 31E4-31E5 A7CB-A7CD A7DA-A7DC 105C0-105F3 "
    "10D40-10D65 10D69-10D85 10D8E-10D8F 10EC2-10EC4 10EFC 11380-11389 1138B 1138E "
    "11390-113B5 113B7-113C0 113C2 113C5 113C7-113CA 113CC-113D5 113D7-113D8 "
    "113E1-113E2 116D0-116E3 11BC0-11BE1 11BF0-11BF9 11F5A 13460-143FA 16100-16139 "
    "16D40-16D79 18CFF 1CC00-1CCF9 1CD00-1CEB3 1E5D0-1E5FA 1E5FF 1F8B2-1F8BB "
    "1F8C0-1F8C1 1FA89 1FA8F 1FABE 1FAC6 1FADC 1FADF 1FAE9 1FBCB-1FBEF "
).split()


def _unicode_15_1(regex: str) -> str:
    r"""regex with each \p{L}, \p{N}, \p{P}, \p{S}, \p{M} reduced to llama.cpp's Unicode 15.1
    (a nested class with &&: valid inside and outside brackets in Oniguruma)."""
    return re.sub(r"\\p\{([LNPSM])\}", lambda m: f"[\\p{{{m.group(1)}}}&&[^{_NEW_CLASS}]]", regex)


def _range_class(ranges: list[str]) -> str:
    """'1B4E-1B4F' style hexadecimal ranges as the inside of a regex character class."""
    out = []
    for r in ranges:
        lo, _, hi = r.partition("-")
        out.append(chr(int(lo, 16)) + ("-" + chr(int(hi, 16)) if hi else ""))
    return "".join(out)


_NEW_CLASS = _range_class(_UNICODE_16_NEW)
_POOR = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"


@dataclass(frozen=True)
class PreTokenizer:
    """What llama.cpp does for one tokenizer.ggml.pre value: its regexes and flags."""
    regexes: tuple[str, ...]
    clean_spaces: bool = True     # detokenize removes " ?", " 's"... (llama.cpp's default for BPE)
    ignore_merges: bool = False   # a whole pre-token that is a token is taken as it is
    add_bos: bool = False         # llama.cpp's default when tokenizer.ggml.add_bos_token is absent
    no_bos: bool = False          # the BOS id is cleared (chatglm)


def _pre(names: str, regexes, **flags) -> dict[str, PreTokenizer]:
    spec = PreTokenizer(tuple([regexes] if isinstance(regexes, str) else regexes), **flags)
    return {n: spec for n in names.split()}


# Every name llama.cpp 0.3.36's llama-vocab.cpp accepts for a gpt2 vocabulary, except those whose
# split llama.cpp does with its own code and no regex expresses (kimi-k2, afmoe, tiny_aya,
# cohere2moe, superbpe) and the SPM-style BPE ones that do not byte-encode (gemma4, sarvam-moe,
# granite-embed-multi-311m, whitespace): those are refused by name.
PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    **_pre("default", (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]")),
    **_pre("llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano",
           _LLAMA3, ignore_merges=True, add_bos=True),
    **_pre("dbrx smaug-bpe", _LLAMA3),
    **_pre("jais-2", _LLAMA3.replace(r"\s+(?!\S)|\s+", "|".join(
        rf"\s{{{n}}}(?!\S)" for n in (512, 256, 128, 64, 32, 16, 8, 4)) + r"|\s{1,2}(?!\S)|\s{1}")),
    **_pre("deepseek-llm", _DEEPSEEK_LLM, clean_spaces=False),
    **_pre("deepseek-v3 hunyuan-dense joyai-llm hy_v4", _DEEPSEEK3, clean_spaces=False),
    **_pre("spark2_5", (*_DEEPSEEK3[:2], _DEEPSEEK3[2].replace(
        r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+", r"| ?[\p{P}\p{S}]+|[\r\n]"), r"\p{N}"),
        clean_spaces=False),
    **_pre("youtu", _YOUTU, clean_spaces=False, ignore_merges=True),
    **_pre("deepseek-coder", (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK_HANGUL, r"\p{N}"),
           clean_spaces=False),
    **_pre("falcon", (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, "[0-9][0-9][0-9]")),
    **_pre("starcoder refact codeshell exaone minerva-7b mellum2", (r"\p{N}", _GPT2)),
    **_pre("command-r smollm", (r"\p{N}", _GPT2), clean_spaces=False),
    **_pre("gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert "
           "jina-v1-en jina-v2-code roberta-bpe mpt olmo jais exaone4", _GPT2),
    **_pre("trillion granite-docling", _GPT2, clean_spaces=False),
    **_pre("stablelm2 megrez", _QWEN2),
    **_pre("qwen2 deepseek-r1-qwen kormo f2llmv2 hunyuan solar-open", _QWEN2, clean_spaces=False),
    **_pre("qwen35", _QWEN35, clean_spaces=False),
    **_pre("poro-chat", _POOR, clean_spaces=False),
    **_pre("bloom gpt3-finnish", _POOR),
    **_pre("viking", (_POOR, r"\p{N}"), clean_spaces=False),
    **_pre("chatglm-bpe", _LLAMA3, no_bos=True),
    **_pre("glm4 glm5", _LLAMA3, no_bos=True, ignore_merges=True),
    **_pre("tekken", _TEKKEN, clean_spaces=False, ignore_merges=True, add_bos=True),
    **_pre("chameleon", ("<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                         r"([\t\n]|    |  )", r"\p{N}", r"[\p{P}!-/:-@\[-`{-~]", _GPT2),
           clean_spaces=False, add_bos=True),
    **_pre("gpt-4o llama4 kanana2 talkie minimax-m2", _GPT4O, clean_spaces=False),
    **_pre("granite-embed-multi-97m", _GRANITE_EMB, clean_spaces=False, ignore_merges=True),
    **_pre("bailingmoe bailingmoe2 llada-moe",
           r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+", clean_spaces=False),
    **_pre("seed-coder", _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}"
           r"| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+", clean_spaces=False),
    **_pre("ufakzeka", _QWEN2[len(_CONTRACTIONS) + 1:], clean_spaces=False),
    **_pre("grok-2", _QWEN2, clean_spaces=False),
    **_pre("laguna", ("[^\\n]+|[\\n]+", _QWEN2), clean_spaces=False),
    **_pre("exaone-moe", _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+"
           r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"),
    **_pre("minicpm5", (r"\p{N}{1,3}", _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}+")),
           ignore_merges=True),
}
UNSUPPORTED_PRE = ("kimi-k2", "afmoe", "tiny_aya", "cohere2moe", "superbpe", "gemma4",
                   "granite-embed-multi-311m", "sarvam-moe", "whitespace")

# Token texts llama.cpp treats as end of generation (and forces to CONTROL), and the texts it
# auto-detects as EOT / EOM / FIM tokens when the file does not name them (llama-vocab.cpp).
_EOG_TEXTS = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~["))
_AUTO_IDS = {
    "eot": ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
            "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
            "<end_of_utterance>"),
    "eom": ("<|eom_id|>",),
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                "▁<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                "▁<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                "▁<MID>", "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
# Special-id metadata keys in llama.cpp's order (the deprecated prefix/suffix/middle keys last).
_ID_KEYS = (("bos", "bos"), ("eos", "eos"), ("eot", "eot"), ("eom", "eom"), ("unk", "unknown"),
            ("sep", "seperator"), ("pad", "padding"), ("mask", "mask"), ("fim_pre", "fim_pre"),
            ("fim_suf", "fim_suf"), ("fim_mid", "fim_mid"), ("fim_pad", "fim_pad"),
            ("fim_rep", "fim_rep"), ("fim_sep", "fim_sep"), ("fim_pre", "prefix"),
            ("fim_suf", "suffix"), ("fim_mid", "middle"))
_GPT_OSS_RENDERED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")


def _gpt2_byte_chars() -> list[str]:
    """The 256 characters byte-level BPE writes bytes as (GPT-2's bytes_to_unicode)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


BYTE_CHARS = _gpt2_byte_chars()
_CHAR_TO_BYTE = {c: b for b, c in enumerate(BYTE_CHARS)}


def _raw(text: str) -> bytes:
    """The exact bytes of a token text read from GGUF (invalid UTF-8 survives as surrogates)."""
    return text.encode("utf-8", "surrogateescape")


def _one_byte_text(b: int) -> str:
    """The token text a one-byte std::string has in forge's decoding of GGUF strings."""
    return chr(b) if b < 0x80 else bytes([b]).decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------------
# The vocabulary, with llama.cpp's rules applied
# ---------------------------------------------------------------------------------------------

class _Vocab:
    """Token texts, scores, attributes and special ids as llama.cpp's llama_vocab::load makes them.

    Refuses (TokenizerError naming the file) what llama.cpp refuses or aborts on: a missing token
    list, arrays of the wrong type or too short, duplicate tokens, a gpt2 vocabulary without
    merges, unknown model or pre-tokenizer types, BYTE tokens whose text is not <0xXX>.
    """

    def __init__(self, g: GGUFFile, cfg: TokenizerConfig):
        self.path = g.path
        if cfg.model not in ("gpt2", "llama"):
            raise self.fail(f"tokenizer model {cfg.model!r} is not supported; forge reads 'gpt2' "
                            "(byte-level BPE) and 'llama' (SentencePiece) vocabularies")
        self.spm = cfg.model == "llama"
        self.texts = self._tokens(g)
        self.n = len(self.texts)
        self.scores = self._array(g, "tokenizer.ggml.scores", (GGUFValueType.FLOAT32,
                                                               GGUFValueType.INT32), np.float64)
        types = self._array(g, "tokenizer.ggml.token_type", (GGUFValueType.INT32,), np.int64)
        self.attrs = [ATTR_NORMAL] * self.n if types is None else \
            [_ATTR_OF_TYPE.get(int(t), ATTR_UNDEFINED) for t in types]
        self.ids = {t: i for i, t in enumerate(self.texts)}
        if len(self.ids) != self.n:
            dup = next(t for i, t in enumerate(self.texts) if self.ids[t] != i)
            raise self.fail(f"token {dup!r} appears more than once in tokenizer.ggml.tokens "
                            "(llama.cpp aborts on such a vocabulary)")
        self.pre = self._pre_tokenizer(cfg.pre) if not self.spm else None
        self.pre_name = None if self.spm else (cfg.pre or "default")
        self.add_space_prefix = self._flag(g, "tokenizer.ggml.add_space_prefix", self.spm)
        self.clean_spaces = self.pre.clean_spaces if self.pre else False
        self.add_bos, self.add_eos = cfg.add_bos, cfg.add_eos
        self.special = self._special_ids(g)
        self.eog = self._fix_attributes()
        self._name_rules(g)
        self._check_byte_tokens()

    def fail(self, msg: str) -> TokenizerError:
        """A TokenizerError naming the file."""
        return TokenizerError(f"{self.path}: {msg}")

    def _tokens(self, g: GGUFFile) -> list[str]:
        kv = g.kv.get("tokenizer.ggml.tokens")
        if kv is None or kv.type != GGUFValueType.ARRAY or kv.elem_type != GGUFValueType.STRING:
            raise self.fail("tokenizer.ggml.tokens is missing or not an array of strings")
        # llama.cpp renames empty tokens rather than refuse them.
        return [t if t else f"[EMPTY_{i}]" for i, t in enumerate(kv.value)]

    def _array(self, g: GGUFFile, key: str, types: tuple, dtype) -> np.ndarray | None:
        """A numeric per-token array (n values), None when absent; refuses bad types, lengths."""
        kv = g.kv.get(key)
        if kv is None:
            return None
        if kv.type != GGUFValueType.ARRAY or kv.elem_type not in types:
            want = " or ".join(t.name for t in types)
            raise self.fail(f"{key} must be an array of {want}")
        if len(kv.value) < self.n:
            raise self.fail(f"{key} has {len(kv.value)} entries for {self.n} tokens")
        arr = np.asarray(kv.value[:self.n], dtype=dtype)
        if np.isnan(arr).any():
            raise self.fail(f"{key} contains NaN (token {int(np.argmax(np.isnan(arr)))})")
        return arr

    def _flag(self, g: GGUFFile, key: str, default: bool) -> bool:
        kv = g.kv.get(key)
        if kv is None:
            return default
        if kv.type != GGUFValueType.BOOL:
            raise self.fail(f"{key} must be a BOOL, found {kv.type.name}")
        return bool(kv.value)

    def _pre_tokenizer(self, pre: str | None) -> PreTokenizer:
        """llama.cpp's pre-tokenizer for pre (None: 'default', as llama.cpp with a warning)."""
        if pre in UNSUPPORTED_PRE:
            raise self.fail(f"pre-tokenizer {pre!r} is split by llama.cpp's own code, which forge "
                            "does not reproduce; it is not supported")
        spec = PRE_TOKENIZERS.get(pre or "default")
        if spec is None:
            raise self.fail(f"unknown pre-tokenizer tokenizer.ggml.pre = {pre!r} (llama.cpp "
                            "refuses it too); forge knows: " + ", ".join(sorted(PRE_TOKENIZERS)))
        return spec

    def _special_ids(self, g: GGUFFile) -> dict[str, int | None]:
        """Special ids: llama.cpp's defaults per model type, then metadata (ids in range only)."""
        ids: dict[str, int | None] = {k: None for k, _ in _ID_KEYS}
        ids.update(dict(bos=1, eos=2, unk=0) if self.spm else dict(bos=11, eos=11))
        if self.pre is not None and self.pre.no_bos:
            ids["bos"] = None
        for name in ids:   # a default outside the vocabulary is disabled
            if ids[name] is not None and ids[name] >= self.n:
                ids[name] = None
        for name, key in _ID_KEYS:
            kv = g.kv.get(f"tokenizer.ggml.{key}_token_id")
            if kv is None or isinstance(kv.value, bool) or not isinstance(kv.value, int):
                continue
            if 0 <= kv.value < self.n:   # llama.cpp keeps the default for an id out of range
                ids[name] = int(kv.value)
        return ids

    def _force_control(self, tid: int) -> None:
        self.attrs[tid] |= ATTR_CONTROL

    def _fix_attributes(self) -> frozenset[int]:
        """llama.cpp's fix-ups by token text; returns the end-of-generation id set."""
        ids, by_text = self.special, self.ids
        for name, texts in _AUTO_IDS.items():
            if ids[name] is None:
                found = sorted(by_text[t] for t in texts if t in by_text)
                if found:
                    ids[name] = found[0]
                    self._force_control(found[0])
        for tid, attr in enumerate(self.attrs):
            if attr & ATTR_CONTROL and "unused" in self.texts[tid]:
                self.attrs[tid] |= ATTR_UNUSED
        eog = {ids[k] for k in ("fim_pad", "fim_rep", "fim_sep") if ids[k] is not None}
        for text in _EOG_TEXTS:
            if text in by_text:
                eog.add(by_text[text])
                self._force_control(by_text[text])
        for text in _GPT_OSS_RENDERED:
            if text in by_text:
                self.attrs[by_text[text]] = ATTR_USER_DEFINED
        eog |= {ids[k] for k in ("eos", "eot", "eom") if ids[k] is not None}
        return frozenset(self._drop_eog_exceptions(eog))

    def _drop_eog_exceptions(self, eog: set[int]) -> set[int]:
        """gpt-oss / solar-open: <|end|> is not EOG; gemma4 / plamo: </s> is a normal token."""
        text = {self.texts[i]: i for i in eog}
        has_call = "<|call|>" in text or "<|calls|>" in text
        if "<|end|>" in text and has_call and ("<|return|>" in text or "<|flush|>" in text):
            eog.discard(text["<|end|>"])
            self.attrs[text["<|end|>"]] = ATTR_USER_DEFINED
        if "</s>" in text and ("<|tool_response>" in text or "<|plamo:eos|>" in text):
            eog.discard(text["</s>"])
            self.attrs[text["</s>"]] = ATTR_NORMAL
        return eog

    def _name_rules(self, g: GGUFFile) -> None:
        """llama.cpp's per-model lstrip/rstrip attributes, chosen by name, pre and architecture."""
        name = str(g.get("general.name", "") or "").lower()
        pre = str(g.get("tokenizer.ggml.pre", "") or "")
        arch = str(g.get("general.architecture", "") or "")
        if any(s in pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or \
                any(s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
            if "<mask>" in self.ids:
                self.attrs[self.ids["<mask>"]] |= ATTR_LSTRIP
        elif "phi-3" in name or "phi3" in name:
            for tid in self.partition_order():
                self.attrs[tid] |= ATTR_RSTRIP
            for text, on in (("</s>", True), ("<unk>", False), ("<s>", False),
                             ("<|endoftext|>", False)):
                if text not in self.ids:
                    raise self.fail(f"a phi-3 vocabulary without {text!r} (llama.cpp aborts)")
                tid = self.ids[text]
                self.attrs[tid] = (self.attrs[tid] | ATTR_RSTRIP) if on else \
                    (self.attrs[tid] & ~ATTR_RSTRIP)
        elif "modern-bert" in name and "[MASK]" in self.ids:
            self.attrs[self.ids["[MASK]"]] |= ATTR_LSTRIP

    def _check_byte_tokens(self) -> None:
        """BYTE tokens decode from text[3:5]: llama.cpp fails to load when that is missing."""
        for tid, attr in enumerate(self.attrs):
            if attr & ATTR_BYTE and not attr & (_SPECIAL | ATTR_USER_DEFINED | ATTR_NORMAL) \
                    and len(_raw(self.texts[tid])) < 3:
                raise self.fail(f"BYTE token {tid} is {self.texts[tid]!r}, not <0xXX>")

    def partition_order(self) -> list[int]:
        """Control, user-defined and unknown tokens, longest (in bytes) first, then by id."""
        ids = [i for i, a in enumerate(self.attrs) if a & _PARTITIONED]
        return sorted(ids, key=lambda i: (-len(_raw(self.texts[i])), i))


# ---------------------------------------------------------------------------------------------
# Encoding models: byte-level BPE on HF tokenizers, SentencePiece by hand
# ---------------------------------------------------------------------------------------------

class _ByteLevelBPE:
    """gpt2 vocabularies: HF tokenizers with the fix-ups the module docstring describes."""

    def __init__(self, v: _Vocab, merges: list[str]):
        from tokenizers import Regex, Tokenizer, models, pre_tokenizers

        vocab = v.ids if _all_encodable(v.texts) else \
            {t: i for t, i in v.ids.items() if _encodable(t)}
        pairs = _merge_pairs(merges)
        # Characters and merge parts that are not tokens get ids past n_vocab, so that they stay
        # symbols (a missing character blocks merges across it in llama.cpp, HF would drop it).
        needed = set(BYTE_CHARS).union(*(p for p in pairs), (a + b for a, b in pairs))
        extra = {t: v.n + k for k, t in enumerate(sorted(needed.difference(vocab)))}
        vocab = {**vocab, **extra}
        # llama.cpp's fallback for a final symbol that is not a token: the token of each single
        # byte of its UTF-8 text, where one exists (for byte-level text: almost never).
        self.fallback = {i: [v.ids[s] for s in map(_one_byte_text, _raw(t)) if s in v.ids]
                         for t, i in extra.items()}
        model = models.BPE(vocab=vocab, merges=pairs, ignore_merges=v.pre.ignore_merges)
        tk = Tokenizer(model)
        splits = [pre_tokenizers.Split(Regex(_unicode_15_1(r)), "isolated") for r in v.pre.regexes]
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        self.tk, self.n = tk, v.n

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text fragment (no special-token handling here)."""
        out = []
        for enc in self.tk.encode_batch(texts, add_special_tokens=False):
            ids = enc.ids
            if any(i >= self.n for i in ids):
                ids = [j for i in ids for j in (self.fallback[i] if i >= self.n else (i,))]
            out.append(ids)
        return out


def _encodable(text: str) -> bool:
    """Whether text is valid Unicode (tokens with invalid UTF-8 cannot go to the Rust library)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _all_encodable(texts: list[str]) -> bool:
    """Whether every text is valid Unicode (one encode of them all: the common case, fast)."""
    return _encodable("".join(texts))


def _merge_pairs(merges: list[str]) -> list[tuple[str, str]]:
    """Merge rules as llama.cpp reads them: split at the first space after the first character;
    the first of duplicate rules keeps its rank; rules that can never apply (no space, a space in
    a part, invalid UTF-8) are dropped, which keeps the relative order of the others."""
    seen, out = set(), []
    check = not _all_encodable(merges)
    for m in merges:
        pos = m.find(" ", 1)
        if pos < 0:
            continue
        pair = (m[:pos], m[pos + 1:])
        if pair in seen or " " in pair[1] or (check and not _encodable(m)):
            continue
        seen.add(pair)
        out.append(pair)
    return out


_INNER_SPACE = re.compile("[^\u2581]\u2581")
_SPM_CHUNK = re.compile("\u2581*[^\u2581]+|\u2581+")
_SPM_CACHE_SIZE = 1 << 16


class _SentencePiece:
    """llama vocabularies: llama.cpp's llm_tokenizer_spm_session, by hand (see module docstring)."""

    def __init__(self, v: _Vocab):
        scores = v.scores if v.scores is not None else np.zeros(v.n)
        self.ids = v.ids
        self.score = {t: float(scores[i]) for t, i in v.ids.items()}
        self.byte_ids = [self._byte_id(b) for b in range(256)]
        self.path = v.path
        # When no token has a ▁ after another character, no merge can join a character to a
        # following ▁: the text then splits into independent "▁*word" chunks, which repeat and
        # are cached (the result is the same; 1 MB of text goes from seconds to a fraction).
        self.chunked = not any(_INNER_SPACE.search(t) for t in v.texts)
        self.cache: dict[str, list[int]] = {}

    def _byte_id(self, b: int) -> int | None:
        tid = self.ids.get(f"<0x{b:02X}>")
        return tid if tid is not None else self.ids.get(_one_byte_text(b))

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each already ▁-escaped text fragment."""
        return [self._encode_chunks(t) if self.chunked else self._encode_one(t) for t in texts]

    def _encode_chunks(self, text: str) -> list[int]:
        out, cache = [], self.cache
        for chunk in _SPM_CHUNK.findall(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_one(chunk)
                if len(cache) < _SPM_CACHE_SIZE:
                    cache[chunk] = ids
            out.extend(ids)
        return out

    def _encode_one(self, text: str) -> list[int]:
        n = len(text)
        if n == 0:
            return []
        sym = list(text)          # one symbol per character; merged symbols grow to the right
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        heap: list = []
        score = self.score

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            s = score.get(sym[left] + sym[right])
            if s is not None:   # highest score first, then leftmost: llama.cpp's comparator
                heappush(heap, (-s, left, right, len(sym[left]) + len(sym[right])))

        for i in range(1, n):
            push(i - 1, i)
        while heap:
            _, left, right, size = heappop(heap)
            if not sym[left] or not sym[right] or len(sym[left]) + len(sym[right]) != size:
                continue          # one side changed since this pair was queued
            sym[left] += sym[right]
            sym[right] = ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prv[nxt[right]] = left
            push(prv[left], left)
            push(left, nxt[left])
        return self._emit(sym, nxt)

    def _emit(self, sym: list[str], nxt: list[int]) -> list[int]:
        """Each final symbol's token, or its bytes' tokens (merged symbols are always tokens)."""
        out, i = [], 0
        while i != -1:
            tid = self.ids.get(sym[i])
            if tid is not None:
                out.append(tid)
            else:
                for b in sym[i].encode("utf-8"):
                    bid = self.byte_ids[b]
                    if bid is None:
                        raise TokenizerError(f"{self.path}: no token for byte 0x{b:02X} of "
                                             f"{sym[i]!r} (no <0x{b:02X}> token; llama.cpp aborts)")
                    out.append(bid)
            i = nxt[i]
        return out


# ---------------------------------------------------------------------------------------------
# Decoding helpers
# ---------------------------------------------------------------------------------------------

_CLEAN = ((re.compile(rb" (?=[?!.,])"), b""), (re.compile(rb" ' "), b"'"),
          (re.compile(rb" (?='[sm]|'re|'ve)"), b""))
# Bytes that can be followed by more of a clean_spaces pattern (" ?", " ' ", " 's", " 're"...):
# a text cut after any other byte cleans the same in two parts as in one.
_HOLD_AFTER = frozenset(b" 'rv")


def _clean_spaces(text: bytes) -> bytes:
    """llama.cpp's three clean-up passes (" ?" -> "?", " ' " -> "'", " 's" -> "'s"...)."""
    for pattern, repl in _CLEAN:
        text = pattern.sub(repl, text)
    return text


def _strtol_hex(s: str) -> int:
    """C strtol(s, NULL, 16) for the two characters llama.cpp reads from a BYTE token."""
    s = s.lstrip(_C_SPACE)
    sign = -1 if s[:1] == "-" else 1
    s = s[1:] if s[:1] in "+-" else s
    digits = re.match(r"[0-9a-fA-F]*", s).group(0)
    return (sign * int(digits, 16) if digits else 0) & 0xFF


def _bpe_decode_text(text: str) -> bytes:
    """llama_decode_text: each character back to its byte; unknown ones as llama.cpp marks them."""
    out = bytearray()
    for c in text:
        b = _CHAR_TO_BYTE.get(c)
        if b is not None:
            out.append(b)
        else:
            cp = "\ufffd" if 0xD800 <= ord(c) < 0xE000 else c   # invalid UTF-8 reads as U+FFFD
            out += b"[UNK_BYTE_0x" + cp.encode().hex().encode() + _raw(text) + b"]"
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------

class Tokenizer:
    """Encodes and decodes text with llama.cpp's ids for a GGUF file. Build with from_gguf."""

    def __init__(self, vocab: _Vocab, model, chat_template: str | None):
        self._v, self._model, self.chat_template = vocab, model, chat_template
        self._order = vocab.partition_order()
        self._pieces: list[bytes | None] = [None] * vocab.n

    @classmethod
    def from_gguf(cls, g: GGUFFile, cfg: TokenizerConfig | None = None) -> "Tokenizer":
        """The tokenizer of a loaded file (cfg: its TokenizerConfig, computed when None).

        Refuses (TokenizerError, a GGUFError naming the file): tokenizer models other than gpt2
        and llama, pre-tokenizers llama.cpp does not know or splits with its own code, a gpt2
        vocabulary without tokenizer.ggml.merges, scores or token types of the wrong type or
        shorter than the token list, duplicate tokens, and malformed BYTE tokens.
        """
        cfg = cfg if cfg is not None else tokenizer_config(g)
        v = _Vocab(g, cfg)
        if v.spm:
            model = _SentencePiece(v)
        else:
            kv = g.kv.get("tokenizer.ggml.merges")
            if kv is None or kv.type != GGUFValueType.ARRAY or kv.elem_type != GGUFValueType.STRING:
                raise v.fail("a gpt2 (BPE) vocabulary needs tokenizer.ggml.merges, an array of "
                             "strings; it is missing or of another type")
            model = _ByteLevelBPE(v, kv.value)
        template = g.get("tokenizer.chat_template")
        return cls(v, model, template if isinstance(template, str) else None)

    def __repr__(self) -> str:
        kind = "SentencePiece" if self._v.spm else f"byte-level BPE, pre {self.pre!r}"
        return f"<Tokenizer {kind}, {self.n_vocab} tokens>"

    # -- facts ------------------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """Number of tokens."""
        return self._v.n

    @property
    def pre(self) -> str | None:
        """The pre-tokenizer name (None for SentencePiece)."""
        return self._v.pre_name

    @property
    def bos_id(self) -> int | None:
        """The BOS id llama.cpp uses (its per-type default when the file names none)."""
        return self._v.special["bos"]

    @property
    def eos_id(self) -> int | None:
        """The EOS id llama.cpp uses (its per-type default when the file names none)."""
        return self._v.special["eos"]

    @property
    def add_bos(self) -> bool:
        """Whether encode() prepends BOS by default (llama.cpp's rule for this file)."""
        return self._v.add_bos

    @property
    def eog_ids(self) -> frozenset[int]:
        """Ids that end generation: llama.cpp's EOG set (EOS, EOT, EOM, FIM pad/repo/sep and the
        tokens whose text marks an end of turn, such as <|im_end|> or <|endoftext|>)."""
        return self._v.eog

    def token_text(self, token_id: int) -> str:
        """The raw vocabulary text of a token; refuses an id outside the vocabulary."""
        return self._v.texts[self._check_id(token_id)]

    def is_control(self, token_id: int) -> bool:
        """llama_vocab_is_control: the token has the control attribute (after llama.cpp's fix-ups).
        decode() hides control and unknown tokens unless special."""
        return bool(self._v.attrs[self._check_id(token_id)] & ATTR_CONTROL)

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, text: str, *, add_bos: bool | None = None, add_eos: bool | None = None,
               special: bool = False) -> list[int]:
        """The token ids llama.cpp's llama_tokenize(text, add_special, parse_special=special)
        returns for this file.

        add_bos / add_eos: None follows the file (llama.cpp's add_special=True); True or False
        forces it. special: control tokens written in the text (e.g. "<|im_start|>") become
        their ids; user-defined tokens are matched either way. Refuses (TokenizerError) text
        that is not valid Unicode (lone surrogates) and a BOS/EOS request the vocabulary has no
        token for.
        """
        if not isinstance(text, str):
            raise TokenizerError(f"encode() takes a str, not {type(text).__name__}")
        if not _encodable(text):
            raise TokenizerError("text contains a lone surrogate, which is not valid Unicode")
        v = self._v
        out = [self._special_id("bos")] if (v.add_bos if add_bos is None else add_bos) else []
        parts = self._partition(text, special)
        raw = [p for p in parts if isinstance(p, str)]
        if v.spm:
            raw = self._spm_texts(parts)
        encoded = iter(self._model.encode(raw))
        for p in parts:
            out.extend(next(encoded) if isinstance(p, str) else (p,))
        if v.add_eos if add_eos is None else add_eos:
            out.append(self._special_id("eos"))
        return out

    def _special_id(self, name: str) -> int:
        tid = self._v.special[name]
        if tid is None:
            raise TokenizerError(f"{self._v.path}: {name.upper()} requested but the vocabulary "
                                 f"has no {name.upper()} token")
        return tid

    def _spm_texts(self, parts: list) -> list[str]:
        """SPM fragments as llama.cpp tokenizes them: a space before the first fragment and after
        each special token (when add_space_prefix), then every space written as ▁."""
        out, prev_special = [], True
        for p in parts:
            if isinstance(p, str):
                prefix = " " if self._v.add_space_prefix and prev_special else ""
                out.append((prefix + p).replace(" ", "\u2581"))
            prev_special = not isinstance(p, str)
        return out

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Text split around special tokens (llama.cpp's tokenizer_st_partition): raw strings and
        token ids, in order. Empty text gives no fragment at all."""
        parts: list[str | int] = [text] if text else []
        attrs, texts = self._v.attrs, self._v.texts
        for tid in self._order:
            attr = attrs[tid]
            if not parse_special and attr & (ATTR_CONTROL | ATTR_UNKNOWN):
                continue
            tok = texts[tid]
            if not any(isinstance(p, str) and tok in p for p in parts):
                continue
            parts = [q for p in parts for q in
                     (_split_on(p, tok, tid, attr) if isinstance(p, str) else (p,))]
        return parts

    # -- decoding ---------------------------------------------------------------------------

    def _check_id(self, token_id: int) -> int:
        if not isinstance(token_id, (int, np.integer)) or not 0 <= token_id < self._v.n:
            raise TokenizerError(f"token id {token_id!r} is outside the vocabulary of "
                                 f"{self._v.n} tokens")
        return int(token_id)

    def token_to_piece(self, token_id: int, *, special: bool = False) -> bytes:
        """The bytes llama.cpp's token_to_piece gives for one token (b"" for control tokens
        unless special); refuses an id outside the vocabulary."""
        tid = self._check_id(token_id)
        if not special and self._v.attrs[tid] & _SPECIAL:
            return b""
        piece = self._pieces[tid]
        if piece is None:
            piece = self._pieces[tid] = self._make_piece(tid)
        return piece

    def _make_piece(self, tid: int) -> bytes:
        v = self._v
        attr, text = v.attrs[tid], v.texts[tid]
        if attr & (_SPECIAL | ATTR_USER_DEFINED):
            return _raw(text)
        if attr & ATTR_NORMAL:
            return _raw(text.replace("\u2581", " ")) if v.spm else _bpe_decode_text(text)
        if attr & ATTR_BYTE:
            return bytes([_strtol_hex(text[3:5])])
        return b""   # unused and undefined tokens print nothing

    def _raw_text(self, ids: Iterable[int], special: bool, at_start: bool) -> bytes:
        """Pieces joined, without the clean-up; the first piece loses one leading space when the
        ids begin a text of a vocabulary with add_space_prefix (llama.cpp's remove_space)."""
        pieces = [self.token_to_piece(i, special=special) for i in ids]
        if at_start and pieces and self._v.add_space_prefix and pieces[0][:1] == b" ":
            pieces[0] = pieces[0][1:]
        return b"".join(pieces)

    def decode_bytes(self, ids: Iterable[int], *, special: bool = False) -> bytes:
        """The bytes of llama.cpp's common_detokenize(ids, special): llama_detokenize with
        remove_special=False, unparse_special=special. Refuses ids outside the vocabulary."""
        raw = self._raw_text(ids, special, at_start=True)
        return _clean_spaces(raw) if self._v.clean_spaces else raw

    def decode(self, ids: Iterable[int], *, special: bool = False) -> str:
        """decode_bytes as text; byte sequences that are not UTF-8 become U+FFFD."""
        return self.decode_bytes(ids, special=special).decode("utf-8", "replace")

    def stream_decoder(self, *, special: bool = False, at_start: bool = False) -> "StreamDecoder":
        """A StreamDecoder for ids that arrive one at a time (at_start: see StreamDecoder)."""
        return StreamDecoder(self, special=special, at_start=at_start)

    def stream(self, ids: Iterable[int], *, special: bool = False,
               at_start: bool = True) -> Iterator[str]:
        """The text of ids in pieces, each yielded once its UTF-8 is complete; they join to
        decode(ids) (with at_start=True, the default here)."""
        d = self.stream_decoder(special=special, at_start=at_start)
        for i in ids:
            piece = d.feed(i)
            if piece:
                yield piece
        rest = d.flush()
        if rest:
            yield rest

    # -- chat -------------------------------------------------------------------------------

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt the file's tokenizer.chat_template makes of messages, rendered in a
        sandbox (forge.model.chat.render_chat: what it refuses). Encode the result with
        special=True; a template that writes bos_token itself wants add_bos=False."""
        from forge.model.chat import ChatTemplateError, render_chat
        if self.chat_template is None:
            raise ChatTemplateError(f"{self._v.path}: the file has no chat template "
                                    "(tokenizer.chat_template is missing)")
        names = {"bos_token": self._v.special["bos"], "eos_token": self._v.special["eos"],
                 "unk_token": self._v.special["unk"], "pad_token": self._v.special["pad"]}
        tokens = {k: self._v.texts[i] if i is not None else "" for k, i in names.items()}
        return render_chat(self.chat_template, messages, source=str(self._v.path),
                           add_generation_prompt=add_generation_prompt, **tokens)


def _split_on(text: str, tok: str, tid: int, attr: int) -> list[str | int]:
    """text cut at every occurrence of tok, left to right; lstrip/rstrip tokens eat the ASCII
    whitespace beside them (C isspace, as llama.cpp)."""
    out: list[str | int] = []
    start = 0
    while True:
        hit = text.find(tok, start)
        if hit < 0:
            break
        left = text[start:hit]
        if attr & ATTR_LSTRIP:
            left = left.rstrip(_C_SPACE)
        if left:
            out.append(left)
        out.append(tid)
        start = hit + len(tok)
        if attr & ATTR_RSTRIP:
            while start < len(text) and text[start] in _C_SPACE:
                start += 1
    if start < len(text):
        out.append(text[start:])
    return out


class StreamDecoder:
    """Incremental decoding for streaming: feed(id) returns the text that became final.

    Text is returned only when its UTF-8 is complete (a character split over several byte tokens
    comes out whole, with the last of them), and, for vocabularies with llama.cpp's
    clean_spaces, only once the clean-up can no longer change it (a space before a possible "?"
    waits for the next token). The pieces and flush() join to tokenizer.decode(ids) when
    at_start (the ids begin the text); otherwise (a continuation, the default) an SPM text keeps
    the leading space of its first token, as llama.cpp prints generated tokens.
    """

    def __init__(self, tok: Tokenizer, *, special: bool = False, at_start: bool = False):
        self._tok, self._special, self._at_start = tok, special, at_start
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = b""
        self._clean = tok._v.clean_spaces

    def feed(self, token_id: int) -> str:
        """The text completed by this token ('' when none yet); refuses an out-of-range id."""
        raw = self._tok._raw_text((token_id,), self._special, self._at_start)
        self._at_start = False
        if not self._clean:
            return self._utf8.decode(raw)
        self._pending += raw
        cut = len(self._pending)
        while cut and self._pending[cut - 1] in _HOLD_AFTER:
            cut -= 1
        if not cut:
            return ""
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._utf8.decode(_clean_spaces(ready))

    def flush(self) -> str:
        """Whatever is left at the end (an incomplete UTF-8 sequence becomes U+FFFD)."""
        rest = _clean_spaces(self._pending) if self._clean else self._pending
        self._pending = b""
        return self._utf8.decode(rest, final=True)
