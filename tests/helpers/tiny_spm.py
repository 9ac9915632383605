"""A tiny SentencePiece ("llama") vocabulary, and tiny llama GGUF files that carry it, for tests.

    from tests.helpers.tiny_spm import write_tiny_spm_gguf
    path = write_tiny_spm_gguf(tmp_path / "spm.gguf", add_space_prefix=True)

Layout, as llama.cpp's convert scripts write a llama vocabulary: <unk> (UNKNOWN), <s> and </s>
(CONTROL), the 256 byte tokens <0x00>..<0xFF> (BYTE), then scored pieces with ▁ for a space
(NORMAL), then chat tokens: <|im_start|> and <|im_end|> (CONTROL) and <|tool|> (USER_DEFINED).
Digits, most punctuation and emoji are not pieces, so they take the byte fallback. Some pieces
share a score on purpose ("xy" and "yz"; "ab" and "bc"): llama.cpp then merges the leftmost pair
first, which an implementation with a per-pair rank gets wrong. The model weights are
write_tiny_gguf's (a small random llama), so the file also runs end to end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf

from tests.helpers.tiny_gguf import write_tiny_gguf

SPM_SPECIALS = ["<unk>", "<s>", "</s>"]                  # ids 0, 1, 2
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]              # CONTROL
USER_TOKENS = ["<|tool|>"]                                # USER_DEFINED
# (piece, score): higher scores merge first.
PIECES = [
    ("▁t", -1.0), ("he", -2.0), ("▁the", -3.0), ("▁a", -4.0), ("in", -5.0), ("er", -6.0),
    ("▁w", -7.0), ("or", -8.0), ("ld", -9.0), ("▁wor", -10.0), ("▁world", -11.0), ("ll", -12.0),
    ("▁h", -13.0), ("▁he", -14.0), ("▁hell", -15.0), ("▁hello", -16.0), ("▁▁", -17.0),
    ("▁▁▁▁", -18.0), ("xy", -19.0), ("yz", -19.0), ("ab", -20.0), ("bc", -20.0), ("abc", -21.0),
    ("你好", -22.0), ("▁is", -23.0), ("ing", -24.0), ("▁th", -25.0), ("\n\n", -26.0),
    ("é", -27.0), ("▁", -30.0),
    *((c, -40.0 - i) for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")),
    ("你", -70.0), ("好", -71.0), ("中", -72.0),
]


def tiny_spm_vocab(pieces: list[tuple[str, float]] | None = None
                   ) -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) of the tiny SentencePiece vocabulary (pieces: other scored
    pieces instead of PIECES)."""
    T = gguf.TokenType
    tokens = SPM_SPECIALS + [f"<0x{b:02X}>" for b in range(256)]
    types = [int(T.UNKNOWN), int(T.CONTROL), int(T.CONTROL)] + [int(T.BYTE)] * 256
    scores = [0.0] * len(tokens)
    for piece, score in PIECES if pieces is None else pieces:
        tokens.append(piece)
        scores.append(score)
        types.append(int(T.NORMAL))
    chat = [(t, T.CONTROL) for t in CHAT_TOKENS] + [(t, T.USER_DEFINED) for t in USER_TOKENS]
    for text, kind in chat:
        tokens.append(text)
        scores.append(0.0)
        types.append(int(kind))
    return tokens, scores, types


def write_tiny_spm_gguf(path: str | Path, *, add_space_prefix: bool | None = True,
                        add_bos: bool | None = None, chat_template: str | None = None,
                        pieces: list[tuple[str, float]] | None = None,
                        override_kv: dict[str, Any] | None = None, **model: Any) -> Path:
    """A tiny llama GGUF (write_tiny_gguf's weights, its keyword arguments in **model) whose
    vocabulary is tiny_spm_vocab(); returns path.

    add_space_prefix / add_bos: the tokenizer.ggml keys, None leaves the key out (llama.cpp's
    defaults: both true for SentencePiece). chat_template: tokenizer.chat_template when given.
    pieces: scored pieces instead of PIECES (the file keeps at least 274 tokens: the tiny model's
    minimum).
    override_kv: applied last, as write_tiny_gguf's (None deletes a key).
    """
    tokens, scores, types = tiny_spm_vocab(pieces)
    U32 = gguf.GGUFValueType.UINT32   # llama.cpp refuses special ids of any other type
    kv: dict[str, Any] = {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": None, "tokenizer.ggml.merges": None,
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": (1, U32),
        "tokenizer.ggml.eos_token_id": (2, U32), "tokenizer.ggml.unknown_token_id": (0, U32),
        "tokenizer.ggml.add_bos_token": add_bos,
        "tokenizer.ggml.add_space_prefix": add_space_prefix,
        "tokenizer.chat_template": chat_template,
    }
    kv.update(override_kv or {})
    return write_tiny_gguf(path, n_vocab=len(tokens), override_kv=kv, **model)
