"""Perplexity of a text, the way llama.cpp's llama-perplexity computes it: the text is tokenized
once (with the file's BOS rule), cut into non-overlapping windows of n_ctx tokens; each window
starts with BOS when the file adds one (replacing its first token), is run from an empty cache,
and the second half of it is scored: the log-probability of token i + 1 from the logits at i, for
i from n_ctx/2 to n_ctx - 2. PPL = exp(mean negative log-likelihood)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ForgeError


@dataclass
class PerplexityResult:
    ppl: float
    nll: float  # mean negative log-likelihood (nats)
    n_scored: int
    n_windows: int
    per_window: list  # running perplexity after each window, as llama.cpp prints it


def windows(tokens: list[int], n_ctx: int, bos: int | None, n_windows: int | None = None) -> list[list[int]]:
    """The windows llama-perplexity evaluates (the first token of each replaced by `bos` if set).
    ForgeError when the text has fewer than 2 * n_ctx tokens, as llama.cpp refuses."""
    if n_ctx < 4:
        raise ForgeError(f"--ctx must be at least 4, got {n_ctx}")
    if len(tokens) < 2 * n_ctx:
        raise ForgeError(f"the text has {len(tokens)} tokens; perplexity with a context of {n_ctx} needs "
                         f"at least {2 * n_ctx}")
    n = len(tokens) // n_ctx if n_windows is None else min(n_windows, len(tokens) // n_ctx)
    out = []
    for i in range(n):
        w = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if bos is not None:
            w[0] = bos
        out.append(w)
    return out


def score_window(logits: np.ndarray, window: list[int]) -> np.ndarray:
    """Negative log-likelihoods (float64) of window[first + 1:] from logits[first:-1]."""
    n_ctx = len(window)
    first = n_ctx // 2
    lg = logits[first:n_ctx - 1].astype(np.float64)
    lg -= lg.max(-1, keepdims=True)
    lse = np.log(np.exp(lg).sum(-1))
    target = np.asarray(window[first + 1:], np.int64)
    return lse - lg[np.arange(len(target)), target]


def perplexity(logits_of: Callable[[list[int]], np.ndarray], tokens: list[int], n_ctx: int, bos: int | None,
               n_windows: int | None = None, progress: Callable[[int, int, float], None] | None = None
               ) -> PerplexityResult:
    """Perplexity of `tokens` where logits_of(window) returns [n_ctx, vocab] logits of a fresh
    forward pass. `progress(i, n, ppl_so_far)` is called after each window."""
    ws = windows(tokens, n_ctx, bos, n_windows)
    total, count, running = 0.0, 0, []
    for i, w in enumerate(ws):
        nll = score_window(logits_of(w), w)
        total += float(nll.sum())
        count += len(nll)
        running.append(float(np.exp(total / count)))
        if progress:
            progress(i + 1, len(ws), running[-1])
    return PerplexityResult(float(np.exp(total / count)), total / count, count, len(ws), running)
