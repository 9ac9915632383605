"""`forge bench`: prefill and decode speed of a model on a backend, where a decode step's time
goes, and how close it comes to reading the weights at the device's bandwidth.

    r = bench(model, n_prompt=512, n_gen=128, depth=0)

Prefill: n_prompt random token ids from an empty cache, timed whole (best of `reps`). Decode:
after `depth` tokens of context, n_gen greedy steps of the recorded decode step, timed whole.
The per-kernel tables time each launch of one decode step, and of the prompt's last prefill
chunk, separately (device events on a GPU), so their totals are above a replayed step's time by
the launch overheads a graph removes (prefill: small next to its kernels). Bytes per
token: every matrix once (the token embedding: one row, unless it is also the output head), the
vectors, and the KV cache read at `depth`. The roofline rate is the measured copy bandwidth over
those bytes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..runtime.device import time_launches
from ..runtime.executor import SamplingSettings


@dataclass
class BenchResult:
    backend: str
    arch: str
    model: str
    n_prompt: int
    n_gen: int
    depth: int
    prefill_tps: float
    decode_tps: float
    bytes_per_token: int
    copy_gbps: float
    kernels: list = field(default_factory=list)  # (family, launches, seconds per step)
    prefill_kernels: list = field(default_factory=list)  # the same for the prompt's last chunk
    prefill_chunk: int = 0  # that chunk's tokens

    @property
    def achieved_gbps(self) -> float:
        return self.bytes_per_token * self.decode_tps / 1e9

    @property
    def roofline_tps(self) -> float:
        return self.copy_gbps * 1e9 / self.bytes_per_token

    def table(self) -> str:
        lines = [f"{self.model} on {self.backend} ({self.arch})",
                 f"prefill pp{self.n_prompt}: {self.prefill_tps:10.1f} t/s",
                 f"decode  tg{self.n_gen} at depth {self.depth}: {self.decode_tps:10.1f} t/s  "
                 f"({1e3 / self.decode_tps:.3f} ms/token)",
                 f"bytes per token {self.bytes_per_token / 1e6:.1f} MB -> {self.achieved_gbps:.1f} GB/s achieved; "
                 f"copy bandwidth {self.copy_gbps:.1f} GB/s -> roofline {self.roofline_tps:.1f} t/s "
                 f"({100 * self.decode_tps / self.roofline_tps:.0f} % of it)",
                 "", f"{'kernel':<16}{'launches':>9}{'us/step':>12}{'share':>8}", *_rows(self.kernels)]
        if self.prefill_kernels:
            lines += ["", f"prefill, the last chunk of {self.prefill_chunk} tokens:",
                      f"{'kernel':<16}{'launches':>9}{'us/chunk':>12}{'share':>8}", *_rows(self.prefill_kernels)]
        return "\n".join(lines)


def _rows(kernels: list) -> list[str]:
    """Table rows per family, largest first, and the one-by-one total."""
    total = sum(s for _, _, s in kernels)
    rows = [f"{fam:<16}{n:>9}{s * 1e6:>12.1f}{100 * s / total:>7.1f}%" for fam, n, s in sorted(kernels, key=lambda k: -k[2])]
    return rows + [f"{'(one by one)':<16}{sum(n for _, n, _ in kernels):>9}{total * 1e6:>12.1f}"]


def bytes_per_token(model, depth: int) -> int:
    """Bytes a decode step reads: weights (the embedding table only one row unless it is the head
    too) and the KV cache at `depth`."""
    g, ex = model.graph, model.executor
    total = 0
    head = g.nodes[-1].inputs[0]
    for t in g.of_kind("weight"):
        nbytes = ex.weights[t.name].nbytes
        if t.name == "token_embd.weight" and head != t.name:
            nbytes //= t.shape[0]
        total += nbytes
    return total + depth * ex.cache.bytes_per_token


def copy_bandwidth(device, nbytes: int, reps: int = 5) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written), best of `reps`."""
    a, b = device.alloc(nbytes), device.alloc(nbytes)
    try:
        device.memset(a, 1)
        best = float("inf")
        for _ in range(reps):
            device.synchronize()
            t0 = time.perf_counter()
            device.copy(b, a, nbytes)
            device.synchronize()
            best = min(best, time.perf_counter() - t0)
    finally:
        device.free(a), device.free(b)
    return 2 * nbytes / best / 1e9


def bench(model, n_prompt: int = 512, n_gen: int = 128, depth: int = 0, reps: int = 3, seed: int = 0) -> BenchResult:
    """Measure `model` (a forge Model whose max_context holds depth + max(n_prompt, n_gen) + 1)."""
    ex = model.executor
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, model.config.n_vocab, n_prompt, dtype=np.int32)
    ex.prefill(ids[: min(8, n_prompt)])  # warm: compile/load every kernel before timing
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        ex.prefill(ids)
        best = min(best, time.perf_counter() - t0)
    prefill_tps = n_prompt / best
    # the last chunk's launches one by one: the device state (positions, cache) is that chunk's now
    last = (n_prompt - 1) // ex.chunk * ex.chunk
    pre = _per_family(ex, ex._bind("prefill", n_prompt - last, 1, last, False),
                      _families(ex, "prefill", n_prompt - last))
    ctx = rng.integers(0, model.config.n_vocab, max(depth, 1), dtype=np.int32)
    ex.set_sampling(SamplingSettings(temperature=0.0), ctx)
    dec_best = float("inf")
    for _ in range(reps):
        ex.prefill(ctx, sample=True)
        pos = len(ctx)
        ex.decode_step(pos)  # the first replay records the step
        t0 = time.perf_counter()
        for i in range(n_gen):
            ex.decode_step(pos + 1 + i)
        dec_best = min(dec_best, time.perf_counter() - t0)
    per = _per_family(ex, ex._bind("decode", 1, 1, 0, True), _families(ex, "decode", 1) + ["sample"])
    dev = ex.device
    copy = copy_bandwidth(dev, (256 if ex.arch.is_gpu_semantics and dev.name != "emu" else 64) << 20)
    return BenchResult(model.backend, ex.arch.name, model.path.name, n_prompt, n_gen, depth, prefill_tps,
                       n_gen / dec_best, bytes_per_token(model, depth), copy, per, pre, n_prompt - last)


def _per_family(ex, launches, families: list[str]) -> list:
    """[(family, launches, seconds)]: each launch timed alone, summed per kernel family."""
    per = defaultdict(lambda: [0, 0.0])
    for c, t in zip(families, time_launches(ex.device, launches), strict=True):
        per[c][0] += 1
        per[c][1] += t
    return [(f, n, s) for f, (n, s) in per.items()]


def _families(ex, phase: str, T: int) -> list[str]:
    from ..runtime.lower import lower
    return [c.family for c in lower(ex.graph, ex.arch, phase, T, 1, ex.opts).calls]
