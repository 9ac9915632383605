"""Render → compile → store, for one variant (`compile_variant`) or every registered variant of an
arch in parallel (`build_all`, behind `forge build`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..arch import Arch
from ..errors import ForgeError
from .render import override_source, render
from .spec import Variant, select_variants
from .store import BuildOutput, Entry, KeyInputs, Store
from .toolchain import Toolchain, kill_compilers, timed_compile, toolchain_for

ASM_FILE = "kernel.asm"


def source_for(variant: Variant, arch: Arch) -> tuple[str, bool]:
    """(source, overridden): FORGE_OVERRIDE_DIR's hand-edited file when present, else the render."""
    hand = override_source(variant.symbol)
    return (hand, True) if hand is not None else (render(variant, arch), False)


def key_inputs(variant: Variant, arch: Arch, tc: Toolchain, source: str, overridden: bool) -> KeyInputs:
    return KeyInputs(
        source_sha256=hashlib.sha256(source.encode()).hexdigest(),
        arch=arch.name, target=arch.target, toolchain=tc.identity,
        flags=tc.flags(arch), override=overridden,
    )


def _compile_in(store: Store, variant: Variant, cancel: threading.Event | None, run: Callable):
    """run(workdir) in a fresh scratch dir under the store's work/. The dir is removed afterwards,
    except after a compile error: the error names the source in it, so it stays for the reader
    (`forge cache repair` removes it later). A compile that failed because the build was cancelled
    (Ctrl-C kills the compilers too) diagnoses nothing, and its dir goes."""
    work = store.workdir(variant.symbol)
    try:
        out = run(work)
    except ForgeError as e:
        if _interrupted(e, cancel):
            shutil.rmtree(work, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return out


def _interrupted(e: ForgeError, cancel: threading.Event | None) -> bool:
    """Whether a failure is the build being stopped rather than a diagnosis: the build was cancelled,
    or the compiler died of SIGINT (a terminal's Ctrl-C reaches the compilers before Python's
    handler runs; toolchain._run reports a signal as a negative exit)."""
    return (cancel is not None and cancel.is_set()) or f"(exit -{signal.SIGINT.value})" in str(e)


def _compile(variant, arch, tc, source, store, keep_asm, cancel=None) -> BuildOutput:
    res = _compile_in(store, variant, cancel, lambda work: timed_compile(tc, source, arch, variant.symbol, work,
                                                                           keep_asm))
    files = {"source" + (".cu" if tc.vendor == "nvidia" else ".hip"): source}
    if res.asm is not None:
        files[ASM_FILE] = res.asm
    meta = {
        "family": variant.family, "params": variant.params, "symbol": variant.symbol,
        "arch": arch.name, "toolchain": tc.identity, "compile_seconds": round(res.seconds, 4),
        "resources": res.resources, "args": [[a.name, a.kind, a.dtype, a.size] for a in variant.args],
    }
    return BuildOutput(object_bytes=res.object_bytes, files=files, meta=meta)


def _add_asm(entry: Entry, variant, arch, tc, source, store, cancel=None) -> Entry:
    """A cached entry with its assembly listing added (recorded in its meta.json): the toolchain
    makes the listing alone (clang -S, g++ -S, NVRTC's PTX), no object."""
    asm = _compile_in(store, variant, cancel, lambda work: tc.assemble(source, arch, variant.symbol, work))
    return store.add_file(entry, ASM_FILE, asm)


def _compile_variant(variant, arch, store, keep_asm, tc, force, cancel) -> tuple[Entry, str, bool]:
    """(entry, status, asm_added): status is "built", "rebuilt" (it replaced a corrupt entry, or a
    valid one with `force`) or "cached"."""
    tc = tc or toolchain_for(arch)
    source, overridden = source_for(variant, arch)
    inputs = key_inputs(variant, arch, tc, source, overridden)
    entry, hit = store.get_or_build(inputs, lambda: _compile(variant, arch, tc, source, store, keep_asm, cancel),
                                    force=force)
    status = "cached" if hit else "rebuilt" if entry.replaced else "built"
    if keep_asm and entry.file(ASM_FILE) is None:
        return _add_asm(entry, variant, arch, tc, source, store, cancel), status, True
    return entry, status, False


def compile_variant(variant: Variant, arch: Arch, store: Store, keep_asm: bool = False,
                    tc: Toolchain | None = None, force: bool = False) -> tuple[Entry, bool]:
    """The store entry of `variant` for `arch`, compiling on a miss (always, with `force`).
    Returns (entry, was_hit). Raises RenderError, ToolchainError, CompileError or StoreError;
    nothing is stored on failure."""
    entry, status, _ = _compile_variant(variant, arch, store, keep_asm, tc, force, None)
    return entry, status == "cached"


@dataclass
class BuildRecord:
    """One row of `forge build`'s table."""

    variant: Variant
    status: str  # "built" | "rebuilt" | "cached" | "failed" | "interrupted"
    seconds: float = 0.0
    resources: dict = field(default_factory=dict)
    error: str = ""
    entry: Entry | None = None
    asm_added: bool = False  # a cached entry got its assembly listing (a compile)
    replaced: str = ""  # for "rebuilt": what was wrong with the entry it replaced ("forced" with force)


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C during build_all: queued compiles were cancelled and the ones in flight finished.
    `records` holds one record per variant, "interrupted" for those never built."""

    def __init__(self, records: list[BuildRecord]):
        super().__init__("build interrupted")
        self.records = records


def build_one(variant: Variant, arch: Arch, store: Store, keep_asm: bool, tc: Toolchain, force: bool = False,
              cancel: threading.Event | None = None) -> BuildRecord:
    if cancel is not None and cancel.is_set():
        return BuildRecord(variant, "interrupted")
    t0 = time.perf_counter()
    try:
        entry, status, asm = _compile_variant(variant, arch, store, keep_asm, tc, force, cancel)
    except ForgeError as e:
        status = "interrupted" if _interrupted(e, cancel) else "failed"
        return BuildRecord(variant, status, time.perf_counter() - t0, error=str(e))
    return BuildRecord(variant, status, time.perf_counter() - t0, entry.meta.get("resources") or {},
                       entry=entry, asm_added=asm, replaced=entry.replaced or "")


def _wait_in_flight(futures) -> None:
    """Wait for the compiles already running. Further Ctrl-Cs are ignored meanwhile: leaving with
    compiler threads still running (NVRTC runs inside this process) is what crashes at exit."""
    running = [f for f in futures if not f.cancelled()]  # wait() never counts a cancelled future as done
    while True:
        try:
            wait(running)
            return
        except KeyboardInterrupt:
            continue


def build_all(arch: Arch, store: Store, patterns: Iterable[str] | None = None, jobs: int | None = None,
              keep_asm: bool = False, progress: Callable[[BuildRecord], None] | None = None,
              force: bool = False) -> list[BuildRecord]:
    """Build every registered variant of `arch` matching `patterns`, `jobs` at a time (default: all
    cores; ValueError below 1). Returns one record per variant in registry order; failures are
    records, not raises (except a missing toolchain, which fails the whole build at once). On
    Ctrl-C, queued variants are cancelled, running compiles finish (a terminal's Ctrl-C stops the
    compiler processes too) and BuildInterrupted carries the records."""
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    tc = toolchain_for(arch)
    variants = select_variants(arch, patterns)
    cancel = threading.Event()
    records: list = [None] * len(variants)
    pool = ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1)
    futures: dict = {}
    try:
        for i, v in enumerate(variants):
            futures[pool.submit(build_one, v, arch, store, keep_asm, tc, force, cancel)] = i
        for f in as_completed(futures):
            records[futures[f]] = rec = f.result()
            if progress:
                progress(rec)
    except KeyboardInterrupt:
        cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        kill_compilers()  # the compiler processes in flight stop now (a Ctrl-C sent to forge alone too)
        _wait_in_flight(futures)
        for f, i in futures.items():
            if not f.cancelled() and f.exception() is None:
                records[i] = f.result()
        raise BuildInterrupted([r or BuildRecord(v, "interrupted") for r, v in zip(records, variants)]) from None
    finally:
        pool.shutdown(wait=True)
    return records
