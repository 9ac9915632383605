"""forge's public model API: load a GGUF file onto a backend, then logits() and generate().

    m = forge.load("SmolLM2-135M-Instruct.Q4_1.gguf")            # backend="auto": GPU, else CPU
    print(m.generate("The capital of France is", max_new_tokens=20, temperature=0).text)
    for piece in m.generate("Once upon a time", stream=True):
        print(piece, end="", flush=True)

The model layer reads the file (validation, config, tokenizer, weights as memory maps), builds the
layer graph and hands graph and weight bytes to the runtime's Executor; the runtime never reads a
model file. Bad input — an empty prompt, ids outside the vocabulary, a prompt longer than the
context, bad sampling settings — is refused with a ForgeError before anything runs, and the model
stays usable.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import ForgeError
from ..runtime.backends import open_backend
from ..runtime.dispatch import Dispatcher
from ..runtime.executor import Executor, SamplingSettings
from ..runtime.kvcache import KV_DTYPES
from .config import ModelConfig, config_from_gguf
from .convert import Conversion, WeightsKept, convert_weights, model_graph
from .gguf import load_gguf
from .tokenizer import Tokenizer
from .weights import weight_arrays

DEFAULT_CONTEXT = 4096  # max_context when not given: the file's training context, capped here


@dataclass
class Generation:
    """What generate() produced: the new text and ids, the prompt's ids, and timings (prefill and
    decode tokens per second, seconds, counts), and why it stopped ("eog", "stop", "length")."""

    text: str
    tokens: list[int]
    prompt_tokens: list[int]
    stats: dict = field(default_factory=dict)
    finish_reason: str = ""


class _Stream:
    """generate(stream=True): iterate for text pieces; `.generation` holds the result afterwards."""

    def __init__(self, pieces: Iterator[str], holder: list):
        self._pieces, self._holder = pieces, holder

    def __iter__(self):
        return self._pieces

    @property
    def generation(self) -> Generation | None:
        return self._holder[0] if self._holder else None


class Model:
    """A loaded model on one device. Construct with forge.load()."""

    def __init__(self, path: Path, cfg: ModelConfig, tokenizer: Tokenizer, executor: Executor, backend: str,
                 conversion: Conversion | None = None):
        self.path, self.config, self.tokenizer, self.executor = path, cfg, tokenizer, executor
        self.backend = backend
        self.conversion = conversion  # what load(weights=...) converted and kept; None without it

    def __repr__(self) -> str:
        c = self.config
        return (f"<forge.Model {self.path.name}: {c.arch} {c.n_layer} layers, n_embd {c.n_embd}, "
                f"on {self.backend} ({self.executor.arch.name}), context {self.max_context}>")

    @property
    def max_context(self) -> int:
        return self.executor.max_context

    @property
    def graph(self):
        return self.executor.graph

    # ---- input checks ----------------------------------------------------------------------------
    def _ids(self, prompt_or_ids) -> list[int]:
        if isinstance(prompt_or_ids, str):
            ids = self.tokenizer.encode(prompt_or_ids)
        else:
            try:
                ids = [int(t) for t in prompt_or_ids]
            except (TypeError, ValueError):
                raise ForgeError("the prompt must be a string or a sequence of token ids") from None
        if not ids:
            raise ForgeError("the prompt is empty (no tokens to run)")
        bad = [t for t in ids if not 0 <= t < self.config.n_vocab]
        if bad:
            raise ForgeError(f"token id {bad[0]} is outside the vocabulary [0, {self.config.n_vocab})")
        if len(ids) > self.max_context:
            raise ForgeError(f"the prompt has {len(ids)} tokens, more than the context of {self.max_context} "
                             f"(forge.load(..., max_context=N) sets it; the model was trained on "
                             f"{self.config.n_ctx_train})")
        return ids

    # ---- forward ---------------------------------------------------------------------------------
    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """float32 logits (n_tokens, n_vocab) of a fresh forward pass over `token_ids` (positions
        0..n-1; no BOS is added). ForgeError for empty input, ids outside the vocabulary, or more
        tokens than the context."""
        ids = self._ids(token_ids)
        return self.executor.prefill(np.asarray(ids, np.int32), 0, all_rows=True)

    def generate(self, prompt_or_ids, max_new_tokens: int = 128, *, temperature: float = 0.8, top_k: int = 40,
                 top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0, seed: int | None = None,
                 stop: Sequence[str] | str | None = None, stream: bool = False):
        """Continue a prompt (text, tokenized with the file's rules, or ids) by up to
        `max_new_tokens` tokens, sampled on the device (temperature 0: greedy). Stops at the file's
        end-of-generation tokens, at any `stop` string (not included in the text), or when the
        context is full. Returns a Generation, or with stream=True an iterable of text pieces whose
        `.generation` is set once it is exhausted. ForgeError for bad input, before anything runs."""
        ids = self._ids(prompt_or_ids)
        settings = self._settings(max_new_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed)
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if s]
        holder: list = []
        pieces = self._run(ids, max_new_tokens, settings, stops, holder)
        if stream:
            return _Stream(pieces, holder)
        for _ in pieces:
            pass
        return holder[0]

    def _settings(self, n, temperature, top_k, top_p, min_p, repeat_penalty, seed) -> SamplingSettings:
        checks = [(n >= 0, f"max_new_tokens must be >= 0, got {n}"),
                  (np.isfinite(temperature), f"temperature must be finite, got {temperature}"),
                  (top_k >= 0, f"top_k must be >= 0 (0: off), got {top_k}"),
                  (0.0 < top_p <= 1.0, f"top_p must be in (0, 1], got {top_p}"),
                  (0.0 <= min_p <= 1.0, f"min_p must be in [0, 1], got {min_p}"),
                  (repeat_penalty > 0 and np.isfinite(repeat_penalty),
                   f"repeat_penalty must be positive, got {repeat_penalty}")]
        for ok, msg in checks:
            if not ok:
                raise ForgeError(msg)
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        return SamplingSettings(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                                min_p=float(min_p), repeat_penalty=float(repeat_penalty), seed=int(seed))

    def _run(self, ids: list[int], max_new: int, settings: SamplingSettings, stops: list[str],
             holder: list) -> Iterator[str]:
        ex, tok = self.executor, self.tokenizer
        eog = set(tok.eog_ids)
        out: list[int] = []
        text, emitted, reason = "", 0, "length"
        hold = max((len(s) for s in stops), default=1) - 1  # text that may start a stop string
        decoder = tok.stream_decoder()
        t0 = time.perf_counter()
        ex.set_sampling(settings, ids)
        nxt = ex.prefill(np.asarray(ids, np.int32), 0, sample=True) if max_new > 0 else None
        t1 = time.perf_counter()
        pos = len(ids)
        while max_new > 0:
            if nxt in eog:
                reason = "eog"
                break
            out.append(nxt)
            text += decoder.feed(nxt)
            cut = min((text.find(s) for s in stops if s in text), default=-1)
            if cut >= 0:
                text, reason = text[:cut], "stop"
                break
            ready = len(text) - hold
            if ready > emitted:
                yield text[emitted:ready]
                emitted = ready
            if len(out) >= max_new or pos >= self.max_context:
                break
            nxt = ex.decode_step(pos)
            pos += 1
        if reason == "length":
            text += decoder.flush()
        t2 = time.perf_counter()
        if len(text) > emitted:
            yield text[emitted:]
        n_dec = max(len(out) - 1, 0)  # the first new token came out of the prefill
        stats = {"prompt_tokens": len(ids), "prefill_s": t1 - t0, "prefill_tps": len(ids) / max(t1 - t0, 1e-9),
                 "new_tokens": len(out), "decode_s": t2 - t1, "decode_tps": n_dec / (t2 - t1) if n_dec else 0.0,
                 "seed": settings.seed}
        holder.append(Generation(text, out, list(ids), stats, reason))


def load(path, *, backend: str = "auto", arch=None, kv_dtype: str = "f16", max_context: int | None = None,
         kernels=None, weights: str | None = None, acts: str | None = None) -> Model:
    """Load a llama-family GGUF file onto `backend` ("auto": a GPU when one is present, else
    "cpu"; also "cuda", "hip", and "emu"/"emu64", the slow GPU-model emulator). `arch` overrides
    the arch kernels are built for; kv_dtype is the KV cache's storage (f16, f32, fp8, q8_0, mxfp6);
    max_context the tokens the cache holds (default: the file's training context, at most 4096);
    `kernels` a kernel pack (`forge build --pack`): its kernels are used and nothing is compiled,
    so no compiler is needed (with backend "auto", the pack's arch picks the backend).
    `weights` ("mxfp4", "mxfp6", "mxfp8", or an explicit element type such as "mxfp8_e5m2":
    forge.model.convert.WEIGHT_FORMATS) converts the F32/F16/BF16/Q8_0 matrices the matmuls read
    to that MX type now, with forge.quant.mx's rounding; the token embedding (and a head tied to
    it) and matrices already quantized keep their types (a WeightsKept warning names the latter;
    `Model.conversion.summary()` says what happened in one line).
    `acts` ("mxfp8" or "mxfp6": forge.model.convert.ACT_FORMATS; None: mxfp8) is the format the
    matmuls on MX weights quantize their activations to where the arch multiplies MX natively
    (gfx950's scaled MFMA); elsewhere it changes nothing. ForgeError when no matmul has MX weights.
    Raises GGUFError for a file forge cannot run, DeviceError for a backend that cannot open,
    PackError for a pack of another arch, CPU or toolchain, a tampered one, or one that lacks a
    kernel this model needs (all before anything runs)."""
    path = Path(path)
    g = load_gguf(path)
    cfg = config_from_gguf(g)
    _refuse_unsupported(g, cfg)
    tokenizer = Tokenizer.from_gguf(g, cfg.tokenizer)
    ctx = int(max_context) if max_context is not None else min(cfg.n_ctx_train, DEFAULT_CONTEXT)
    if ctx < 1:
        raise ForgeError(f"max_context must be at least 1, got {ctx}")
    if kv_dtype not in KV_DTYPES:
        raise ForgeError(f"unknown kv_dtype {kv_dtype!r}; choose one of {', '.join(KV_DTYPES)}")
    graph, conv = model_graph(g, cfg, weights, acts)  # refuses a bad `weights` / `acts` before anything runs
    store = toolchain = None
    if kernels is not None:
        backend, arch, store, toolchain = _use_pack(kernels, graph, backend, arch, kv_dtype)
    device, a = open_backend(backend, arch, store=store, toolchain=toolchain)
    dispatcher = Dispatcher(device, a, store, toolchain=toolchain) if toolchain is not None else None
    arrays = weight_arrays(g)
    if conv is not None:
        arrays.update(convert_weights(g, conv))
        if conv.kept:
            warnings.warn(conv.summary(), WeightsKept, stacklevel=2)
    ex = Executor(graph, arrays, device, a, max_context=ctx, kv_dtype=kv_dtype, dispatcher=dispatcher)
    ex.warm()  # every kernel compiled (in parallel) and loaded now, not inside the first timed step
    return Model(path, cfg, tokenizer, ex, backend if backend != "auto" else device.name, conv)


def _use_pack(kernels, graph, backend: str, arch, kv_dtype: str):
    """(backend, arch, store, toolchain) to run `graph` from the kernel pack `kernels`: the pack is
    verified and imported into the store, and must hold every kernel the model needs."""
    from ..arch import get_arch
    from ..codegen.pack import import_pack, pack_arch
    from ..codegen.store import Store, default_root
    from ..runtime.backends import backend_for
    from ..runtime.lower import LowerOptions, kernel_set
    a = get_arch(arch if arch is not None else pack_arch(kernels))
    store = Store(default_root())
    manifest = import_pack(kernels, store, a)
    manifest.require(kernel_set(graph, a, LowerOptions(kv_dtype=kv_dtype)))
    return (backend_for(a) if backend == "auto" else backend), a, store, manifest.pack_toolchain()


def _refuse_unsupported(g, cfg: ModelConfig) -> None:
    """GGUFError for model features the kernels do not implement (rather than wrong output)."""
    from ..errors import GGUFError
    if cfg.has_rope_freqs:
        raise GGUFError(f"{g.path}: per-dimension RoPE frequency factors (rope_freqs.weight, llama 3 "
                        f"rope scaling) are not supported yet")
    if cfg.rope_scaling == "yarn":
        raise GGUFError(f"{g.path}: YaRN RoPE scaling is not supported yet")
    from ..codegen.specs.flash_attn import HEAD_DIMS
    if cfg.head_dim not in HEAD_DIMS:
        raise GGUFError(f"{g.path}: head_dim {cfg.head_dim} has no attention kernels; forge has "
                        f"{', '.join(map(str, HEAD_DIMS))}")
