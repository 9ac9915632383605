"""Oracle of the `sample` family (forge/codegen/specs/sample.py has the semantics): the same steps
in numpy. Thresholds compare float32 logits exactly as the kernel does; the masses and the running
sum of the draw are float64 here and float32 sums in the kernel, so where a threshold or the draw
falls within `slack` (relative) of a boundary the oracle reports the whole set of acceptable
tokens rather than one."""

from __future__ import annotations

import numpy as np

from forge.codegen.specs.sample import HISTORY, STATE_WORDS


def make_state(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, penalty=1.0, last_n=64, seed=0,
               draws=0, history=()) -> np.ndarray:
    """The u32 state buffer for these settings, with `history` (oldest first) in the ring."""
    st = np.zeros(STATE_WORDS, np.uint32)
    f = lambda v: np.float32(v).view(np.uint32)
    st[0], st[1], st[2], st[3], st[4] = f(temperature), top_k, f(top_p), f(min_p), f(penalty)
    st[5], st[6], st[7] = min(last_n, HISTORY), seed, draws
    hist = list(history)[-HISTORY:]
    st[16:16 + len(hist)] = np.array(hist, np.int64) & 0xFFFFFFFF  # ids outside the vocabulary too
    st[8], st[9] = len(hist), len(hist) % HISTORY
    return st


def uniform(seed: int, n: int) -> float:
    """The kernel's smp_uniform in u32 arithmetic."""
    m = 0xFFFFFFFF
    x = (seed * 0x9E3779B9 + n * 0x85EBCA6B) & m
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    x ^= x >> 16
    return (x >> 8) * 2.0 ** -24


def penalized(logits: np.ndarray, state: np.ndarray) -> np.ndarray:
    """float32 logits after the repetition penalty of `state`'s history window."""
    out = logits.astype(np.float32).copy()
    pen = state[4:5].view(np.float32)[0]
    if pen == 1.0:
        return out
    n = min(int(state[5]), int(state[8]))
    ring, nxt = state[16:], int(state[9])
    window = [int(ring[(nxt - 1 - j) % HISTORY].astype(np.int32)) for j in range(n)]
    for tok in dict.fromkeys(window):
        if 0 <= tok < len(out):
            v = out[tok]
            out[tok] = v / pen if v > 0 else v * pen
    return out


def _kept(l: np.ndarray, m: float, top_k: int, top_p: float, min_p: float, slack: float) -> list:
    """Boolean masks of kept ids: with the top-p cut at top_p, and at top_p (1 -+ slack) (the
    kernel's float32 mass sums may land its cut at either)."""
    ok = ~np.isnan(l)
    keep = ok.copy()
    if 0 < top_k < len(l):
        kth = np.sort(l[ok])[::-1][min(top_k, int(ok.sum())) - 1]
        keep &= l >= kth
    masks = [keep.copy() for _ in range(3)]
    if top_p < 1.0:
        p = np.where(keep, np.exp(l.astype(np.float64) - m), 0.0)
        order = np.argsort(-np.where(keep, l, -np.inf), kind="stable")
        vals, cum = l[order], np.cumsum(p[order])

        def cut(frac):  # the smallest logit t whose ids >= t carry frac of the mass
            i = int(np.searchsorted(cum, min(frac, 1.0) * cum[-1], side="left"))
            return vals[min(i, len(vals) - 1)]
        for mask, frac in zip(masks, (top_p, top_p * (1 - slack), top_p * (1 + slack))):
            mask &= l >= cut(frac)
    if min_p > 0:
        t = np.float32(np.float32(m) + np.float32(np.log(np.float32(min_p))))
        for mask in masks:
            mask &= l >= t
    return masks


def sample(logits: np.ndarray, state: np.ndarray, slack: float = 1e-4) -> set[int]:
    """The set of acceptable tokens (one token unless a boundary is within `slack`)."""
    l = penalized(logits, state)
    temp = float(state[0:1].view(np.float32)[0])
    top_k, top_p, min_p = int(state[1]), float(state[2:3].view(np.float32)[0]), float(state[3:4].view(np.float32)[0])
    ok = ~np.isnan(l)
    if not ok.any():
        return {0}
    m = float(np.max(l[ok]))
    if temp <= 0 or m == -np.inf:
        return {int(np.flatnonzero(ok & (l == m))[0])}
    u = uniform(int(state[6]), int(state[7]))
    out = set()
    for mask in _kept(l, m, top_k, top_p, min_p, slack):
        # float32 weights, as the kernel's: one that underflows to 0 there can never be drawn
        w = np.where(mask, np.exp(((l - np.float32(m)) * np.float32(1 / np.float32(temp))).astype(np.float32)), 0.0)
        cum = np.cumsum(w)
        total = cum[-1]
        if total == 0:
            continue
        lo = int(np.searchsorted(cum, u * total * (1 - slack), side="right"))
        hi = int(np.searchsorted(cum, u * total * (1 + slack), side="right"))
        out.update(int(i) for i in range(lo, min(hi, len(l) - 1) + 1) if mask[i])
    return out
