"""Render → compile → store, for one variant (`compile_variant`) or every registered variant of an
arch in parallel (`build_all`, behind `forge build`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..arch import Arch
from ..errors import ForgeError
from .render import override_source, render
from .spec import Variant, select_variants
from .store import BuildOutput, Entry, KeyInputs, Store
from .toolchain import Toolchain, timed_compile, toolchain_for

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


def _workdir(store: Store, symbol: str) -> Path:
    base = store.root / "work"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{symbol}-", dir=base))


def _compile(variant, arch, tc, source, store, keep_asm) -> BuildOutput:
    """Compile in a scratch dir; on failure the dir stays so the error's source path is readable."""
    work = _workdir(store, variant.symbol)
    res = timed_compile(tc, source, arch, variant.symbol, work, keep_asm)
    shutil.rmtree(work, ignore_errors=True)
    files = {"source" + (".cu" if tc.vendor == "nvidia" else ".hip"): source}
    if res.asm is not None:
        files[ASM_FILE] = res.asm
    meta = {
        "family": variant.family, "params": variant.params, "symbol": variant.symbol,
        "arch": arch.name, "toolchain": tc.identity, "compile_seconds": round(res.seconds, 4),
        "resources": res.resources, "args": [[a.name, a.kind, a.dtype, a.size] for a in variant.args],
    }
    return BuildOutput(object_bytes=res.object_bytes, files=files, meta=meta)


def _add_asm(entry: Entry, variant, arch, tc, source, store) -> None:
    """Give a cached entry its assembly listing (kept beside the object; not part of its hash)."""
    if entry.file(ASM_FILE) is not None:
        return
    out = _compile(variant, arch, tc, source, store, keep_asm=True)
    tmp = entry.path / f".{ASM_FILE}.{os.getpid()}.tmp"
    tmp.write_text(out.files[ASM_FILE])
    os.replace(tmp, entry.path / ASM_FILE)


def compile_variant(variant: Variant, arch: Arch, store: Store, keep_asm: bool = False,
                    tc: Toolchain | None = None) -> tuple[Entry, bool]:
    """The store entry of `variant` for `arch`, compiling on a miss. Returns (entry, was_hit).
    Raises RenderError, ToolchainError or CompileError; nothing is stored on failure."""
    tc = tc or toolchain_for(arch)
    source, overridden = source_for(variant, arch)
    inputs = key_inputs(variant, arch, tc, source, overridden)
    entry, hit = store.get_or_build(inputs, lambda: _compile(variant, arch, tc, source, store, keep_asm))
    if keep_asm and hit:
        _add_asm(entry, variant, arch, tc, source, store)
    return entry, hit


@dataclass
class BuildRecord:
    """One row of `forge build`'s table."""

    variant: Variant
    status: str  # "built" | "cached" | "failed"
    seconds: float = 0.0
    resources: dict = field(default_factory=dict)
    error: str = ""
    entry: Entry | None = None


def build_one(variant: Variant, arch: Arch, store: Store, keep_asm: bool, tc: Toolchain) -> BuildRecord:
    t0 = time.perf_counter()
    try:
        entry, hit = compile_variant(variant, arch, store, keep_asm, tc)
    except ForgeError as e:
        return BuildRecord(variant, "failed", time.perf_counter() - t0, error=str(e))
    return BuildRecord(variant, "cached" if hit else "built", time.perf_counter() - t0,
                       entry.meta.get("resources") or {}, entry=entry)


def build_all(arch: Arch, store: Store, patterns: Iterable[str] | None = None, jobs: int | None = None,
              keep_asm: bool = False, progress: Callable[[BuildRecord], None] | None = None) -> list[BuildRecord]:
    """Build every registered variant of `arch` matching `patterns`, `jobs` at a time (default: all
    cores). Returns one record per variant in registry order; failures are records, not raises
    (except a missing toolchain, which fails the whole build at once)."""
    tc = toolchain_for(arch)
    variants = select_variants(arch, patterns)
    jobs = max(1, jobs or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(build_one, v, arch, store, keep_asm, tc): i for i, v in enumerate(variants)}
        records: list = [None] * len(variants)
        for f in as_completed(futures):
            records[futures[f]] = rec = f.result()
            if progress:
                progress(rec)
    return records
