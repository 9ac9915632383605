"""The executor: runs a layer graph on a device, step by step, against a paged KV cache.

    ex = Executor(graph, weights, device, arch, max_context=4096)
    logits = ex.prefill(ids, n_past=0, all_rows=True)     # [T, vocab] f32, downloaded
    ex.set_sampling(SamplingSettings(...), history=ids)
    tok = ex.sample_after_prefill(...) ; tok = ex.decode_step(pos)   # sampled on the device

Each phase is lowered once (forge/runtime/lower.py), its activation buffers planned by liveness
(a tensor's storage is reused once its last reader has run), and each call bound to a dispatched
kernel once. Decode is a fixed launch list recorded by the device (a CUDA/HIP graph, a C loop on
the host) and replayed per token: what changes per token — the position, the context length, the
token id — lives in small device buffers the kernels read, so a step is one 8-byte upload, one
replay and one 4-byte download. Everything else stays on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..arch import Arch
from ..codegen.specs.sample import STATE_WORDS
from ..errors import ForgeError
from .device import BoundLaunch
from .dispatch import Dispatcher
from .graph import GraphError, LayerGraph
from .kvcache import PagedKVCache
from .lower import SAMPLE_PARAMS, Call, LowerOptions, lower

SEQ = 0  # the executor runs one sequence


@dataclass(frozen=True)
class SamplingSettings:
    """What the device sampler does (forge/codegen/specs/sample.py): temperature <= 0 is greedy."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    penalty_last_n: int = 64
    seed: int = 0

    def state(self, history) -> np.ndarray:
        """The sampler's u32 state buffer, with the last 64 ids of `history` in its ring."""
        st = np.zeros(STATE_WORDS, np.uint32)
        f = lambda v: int(np.float32(v).view(np.uint32))
        st[:7] = [f(self.temperature), max(0, self.top_k), f(self.top_p), f(self.min_p), f(self.repeat_penalty),
                  min(max(0, self.penalty_last_n), STATE_WORDS - 16), self.seed & 0xFFFFFFFF]
        hist = [int(t) for t in history][-(STATE_WORDS - 16):]
        st[16:16 + len(hist)] = hist
        st[8], st[9] = len(hist), len(hist) % (STATE_WORDS - 16)
        return st


# ------------------------------------------------------------------------------- buffer planning
def _buffers(arg) -> list[str]:
    """Tensor names an argument reads or writes (a view counts as its base)."""
    if isinstance(arg, str):
        return [arg]
    if isinstance(arg, tuple) and arg and arg[0] == "view":
        return [arg[1]]
    return []


def plan_buffers(calls: list[Call], sizes: Mapping[str, int], keep: set[str]) -> tuple[dict[str, int], list[int]]:
    """(tensor -> slot, slot sizes): tensors whose lifetimes (first to last call that touches them)
    do not overlap share a slot; `keep` tensors live to the end. Best fit: a tensor takes the
    smallest free slot that holds it, else grows the largest free one, else a new slot."""
    first, last = {}, {}
    for i, c in enumerate(calls):
        for a in c.args.values():
            for name in _buffers(a):
                if name in sizes:
                    first.setdefault(name, i)
                    last[name] = i
    for name in keep:
        if name in first:
            last[name] = len(calls)
    slot_of: dict[str, int] = {}
    slot_size: list[int] = []
    free: list[int] = []
    ending: dict[int, list[str]] = {}
    for name, i in last.items():
        ending.setdefault(i, []).append(name)
    order = sorted(first, key=lambda n: (first[n], n))
    j = 0
    for i in range(len(calls) + 1):
        while j < len(order) and first[order[j]] == i:
            name, need = order[j], sizes[order[j]]
            fits = [s for s in free if slot_size[s] >= need]
            if fits:
                s = min(fits, key=lambda s: slot_size[s])
            elif free:
                s = max(free, key=lambda s: slot_size[s])
                slot_size[s] = need
            else:
                s = len(slot_size)
                slot_size.append(need)
            if s in free:
                free.remove(s)
            slot_of[name] = s
            j += 1
        for name in ending.get(i, []):
            free.append(slot_of[name])
    return slot_of, slot_size


# ------------------------------------------------------------------------------------ executor
class Executor:
    """Runs `graph` on `device` (arch `arch`) with `weights` (name -> numpy array of the tensor's
    raw bytes in its weight type, or f32 values for vectors). Raises ForgeError subclasses for
    shapes the kernels refuse, a missing weight, or a context the cache cannot hold."""

    def __init__(self, graph: LayerGraph, weights: Mapping[str, np.ndarray], device, arch: Arch, *,
                 max_context: int, kv_dtype: str = "f16", prefill_chunk: int = 512,
                 dispatcher: Dispatcher | None = None, page_size: int = 16, splits: int | None = None):
        self.graph, self.device, self.arch = graph, device, arch
        self.max_context = int(max_context)
        self.chunk = max(1, min(prefill_chunk, self.max_context))
        self.kernels = dispatcher or Dispatcher(device, arch)
        self.opts = LowerOptions(kv_dtype=kv_dtype, page_size=page_size, splits=splits or self._default_splits())
        attn = [n for n in graph.nodes if n.op == "attention"]
        if not attn:
            raise GraphError(f"graph {graph.name} has no attention node")
        a = attn[0].attrs
        self._owned: list = []
        self.weights = {name: self._upload(arr) for name, arr in self._weight_arrays(weights).items()}
        self.cache = PagedKVCache(device, n_layers=len(attn), n_kv_heads=a["n_kv_heads"], head_dim=a["head_dim"],
                                  n_pages=-(-self.max_context // page_size), page_size=page_size, dtype=kv_dtype)
        self.cache.allocate(SEQ, self.max_context)  # one fixed block table: captured steps never change
        self.ctrl = self._alloc(4 * (1 + self.chunk))  # [0] context length, [1..] positions
        self.tokens = self._alloc(4 * self.chunk)
        self.state = self._alloc(4 * STATE_WORDS)
        self.n_vocab = graph.tensors[graph.of_kind("output")[0].name].shape[-1]
        self._phases: dict[tuple, "_Phase"] = {}
        self._bound: dict[tuple, list[BoundLaunch]] = {}
        self._decode = None

    def _default_splits(self) -> int:
        """attn_decode chunks on the host: one per pool thread (the split is its parallelism);
        elsewhere 0, so lowering sizes them from the arch (lower.decode_splits)."""
        return max(1, getattr(self.device, "threads", 2)) if not self.arch.is_gpu_semantics else 0

    # ---- memory ---------------------------------------------------------------------------------
    def _alloc(self, nbytes: int):
        buf = self.device.alloc(max(nbytes, 4))
        self._owned.append(buf)
        return buf

    def _upload(self, arr: np.ndarray):
        wrap = getattr(self.device, "wrap", None)  # host memory: use the file mapping, no copy
        if wrap is not None and arr.flags.c_contiguous:
            return wrap(arr)
        buf = self._alloc(arr.nbytes)
        self.device.upload(buf, np.ascontiguousarray(arr).view(np.uint8).reshape(-1))
        return buf

    def _weight_arrays(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for t in self.graph.of_kind("weight"):
            if t.name not in weights:
                raise GraphError(f"graph {self.graph.name} needs weight {t.name!r}, which was not given")
            out[t.name] = weights[t.name]
        return out

    def close(self) -> None:
        """Free every device buffer the executor owns (the weights included)."""
        if self._decode is not None and hasattr(self._decode, "close"):
            self._decode.close()
        self._decode = None
        self.cache.close()
        for b in self._owned:
            self.device.free(b)
        self._owned = []
        self._phases.clear()
        self._bound.clear()

    # ---- phases ---------------------------------------------------------------------------------
    def _phase(self, phase: str, T: int = 1, R: int = 1) -> "_Phase":
        """The buffer plan for a phase's steps of T tokens and R output rows. Lowering may choose
        other kernels (and scratch) for one token or one row, so a plan covers one class of steps:
        decode; prefill of one token; prefill of many, all rows or the last one."""
        key = (phase, T == 1, R == 1)
        p = self._phases.get(key)
        if p is None:
            Tp = 1 if phase == "decode" or T == 1 else self.chunk
            lowered = lower(self.graph, self.arch, phase, Tp, 1 if R == 1 else Tp, self.opts)
            slot_of, slot_size = plan_buffers(lowered.calls, lowered.sizes, set(lowered.outputs))
            slots = [self._alloc(n) for n in slot_size]
            p = self._phases[key] = _Phase(phase, slot_of, slots, sum(slot_size))
        return p

    def _bind(self, phase: str, T: int, R: int, n_past: int, sample: bool) -> list[BoundLaunch]:
        key = (phase, T, R, n_past if phase == "prefill" else 0, sample)
        got = self._bound.get(key)
        if got is not None:
            return got
        ph = self._phase(phase, T, R)
        lowered = lower(self.graph, self.arch, phase, T, R, self.opts)
        host = {"kv_len_host": n_past + T, "n_past_host": n_past}
        launches = [self._bind_call(c, ph, host) for c in lowered.calls]
        if sample:
            logits = lowered.outputs[0]
            launches.append(self._bind_call(
                Call("sample", SAMPLE_PARAMS,
                     {"logits": ("view", logits, (R - 1) * self.n_vocab * 4), "state": ("state",),
                      "token": ("tokens",), "n_vocab": self.n_vocab}, {}, "sample"), ph, host))
        if len(self._bound) > 64:  # prefill bindings differ by chunk length and past: keep a few
            self._bound.clear()
        self._bound[key] = launches
        return launches

    def _resolve(self, arg, ph: "_Phase", host: dict):
        if isinstance(arg, str):
            if arg in ph.slot_of:
                return ph.slots[ph.slot_of[arg]]
            if arg in self.weights:
                return self.weights[arg]
            if arg == "tokens":
                return self.tokens
            if arg == "positions":
                return self.device.view(self.ctrl, 4, 4 * self.chunk)
            raise GraphError(f"tensor {arg!r} has no storage")
        if not isinstance(arg, tuple):
            return arg  # a scalar
        kind = arg[0]
        if kind == "view":
            base = self._resolve(arg[1], ph, host)
            return self.device.view(base, arg[2], base.nbytes - arg[2])
        if kind == "kv":
            k, v = self.cache.layer(arg[1])
            return k if arg[2] == "k" else v
        if kind == "table":
            return self.cache.block_table(SEQ)
        if kind == "kv_len":
            return self.device.view(self.ctrl, 0, 4)
        if kind == "state":
            return self.state
        if kind == "tokens":
            return self.tokens
        if kind in host:
            return host[kind]
        raise GraphError(f"unknown argument reference {arg!r}")

    def _bind_call(self, c: Call, ph: "_Phase", host: dict) -> BoundLaunch:
        try:
            k = self.kernels.get(c.family, **c.params)
            values = tuple(self._resolve(c.args[a.name], ph, host) for a in k.args)
            g = k.variant.launch(self.arch, **c.shapes)
        except KeyError as e:
            raise GraphError(f"{c.node}: {c.family} has no argument {e}") from None
        return BoundLaunch(k.fn, g.grid, g.block, g.shared_bytes, values, tuple(k.args))

    # ---- running --------------------------------------------------------------------------------
    def _set_ctrl(self, n_past: int, T: int) -> None:
        ctrl = np.arange(n_past - 1, n_past + T, dtype=np.int32)
        ctrl[0] = n_past + T
        self.device.upload(self.ctrl, ctrl)

    def _check_context(self, n_past: int, T: int) -> None:
        if n_past < 0 or T < 1 or n_past + T > self.max_context:
            raise ForgeError(f"context overflow: {n_past} tokens in the cache + {T} new is more than the "
                             f"context of {self.max_context} tokens (forge.load(..., max_context=N) sets it)")

    def prefill(self, ids: np.ndarray, n_past: int = 0, all_rows: bool = False, sample: bool = False):
        """Run the prompt `ids` (int32) at positions n_past.. through the model in chunks. Returns
        the logits of every row ([T, vocab], all_rows) or of the last one ([1, vocab]); with
        `sample`, the token the device sampler drew after the last row instead."""
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        self._check_context(n_past, len(ids))
        out = []
        for s in range(0, len(ids), self.chunk):
            part = ids[s:s + self.chunk]
            T = len(part)
            last = s + T == len(ids)
            R = T if all_rows else 1
            self._set_ctrl(n_past + s, T)
            self.device.upload(self.tokens, part)
            ph = self._phase("prefill", T, R)
            launches = self._bind("prefill", T, R, n_past + s, sample and last)
            for b in launches:
                self.device.launch(b.fn, b.grid, b.block, b.shared_bytes, b.values, b.args)
            if sample and last:
                return self._read_token()
            if all_rows or last:
                out.append(self._read_logits(ph, R))
        return np.concatenate(out) if out else np.zeros((0, self.n_vocab), np.float32)

    def _read_logits(self, ph: "_Phase", R: int) -> np.ndarray:
        name = self.graph.of_kind("output")[0].name
        raw = self.device.download(ph.slots[ph.slot_of[name]], R * self.n_vocab * 4)
        return np.frombuffer(raw, np.float32).reshape(R, self.n_vocab).copy()

    def _read_token(self) -> int:
        return int(np.frombuffer(self.device.download(self.tokens, 4), np.int32)[0])

    def set_sampling(self, settings: SamplingSettings, history) -> None:
        """Upload the sampler's settings and the ids the repetition penalty looks back on."""
        self.device.upload(self.state, settings.state(history))

    def decode_step(self, pos: int) -> int:
        """One token at position `pos`: the id in tokens[0] (the last one sampled) goes through the
        model, and the device samples the next, which is returned (and left in tokens[0])."""
        self._check_context(pos, 1)
        if self._decode is None:
            self._decode = self.device.record(self._bind("decode", 1, 1, 0, True))
        self.device.upload(self.ctrl, np.array([pos + 1, pos], np.int32))
        self._decode.run()
        return self._read_token()

    def decode_logits(self, token: int, pos: int) -> np.ndarray:
        """The logits [1, vocab] of one token at `pos` through the decode path (no sampling)."""
        self._check_context(pos, 1)
        self.device.upload(self.ctrl, np.array([pos + 1, pos], np.int32))
        self.device.upload(self.tokens, np.array([token], np.int32))
        for b in self._bind("decode", 1, 1, 0, False):
            self.device.launch(b.fn, b.grid, b.block, b.shared_bytes, b.values, b.args)
        return self._read_logits(self._phase("decode"), 1)

    def warm(self, jobs: int | None = None) -> int:
        """Compile (in parallel, into the store; a pack's toolchain only finds entries) and load
        every kernel this model runs, so the first prefill and decode step time only themselves.
        Returns how many kernels. CompileError/ToolchainError/PackError as the dispatcher's."""
        import os
        from concurrent.futures import ThreadPoolExecutor

        from ..codegen.build import compile_variant
        from .lower import kernel_set
        variants = kernel_set(self.graph, self.arch, self.opts, self.chunk)
        d = self.kernels
        with ThreadPoolExecutor(max(1, jobs or os.cpu_count() or 1)) as pool:
            list(pool.map(lambda v: compile_variant(v, self.arch, d.store, tc=d.toolchain), variants))
        for v in variants:
            d.get(v.family, **v.params)
        return len(variants)


@dataclass
class _Phase:
    name: str
    slot_of: dict
    slots: list
    nbytes: int
