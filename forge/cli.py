"""The `forge` command. Errors print as one line `forge: error: ...` (exit 1; argparse's usage errors
exit 2); `--debug` or FORGE_DEBUG=1 shows the traceback instead.

A subcommand is a `cmd_<name>(args) -> int` function and a few lines in build_parser(); its parser
takes `parents=[sub_common]` so that the global options work after the subcommand as well as
before it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
import threading
import time
from collections import Counter

from .errors import ForgeError

# Without a terminal (CI logs, pipes) `forge build` prints a progress line this often.
PROGRESS_EVERY_S = 5.0


def _store(args):
    from .codegen.store import Store, default_root
    return Store(default_root(args.cache_dir))


def _fmt(v) -> str:
    return "-" if v is None else str(v)


def _plural(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _quoted(items) -> str:
    return ", ".join(f"'{i}'" for i in items)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 or a negative job count is a usage error, not a guess)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


# ------------------------------------------------------------------------------------ commands
def cmd_archs(args) -> int:
    from .arch import ARCHS
    rows = [[a.name, a.vendor, a.family, a.wave_size, a.lds_bytes // 1024, a.max_threads,
             ",".join(sorted(a.features)) or "-", a.description] for a in ARCHS.values()]
    print(_table(rows, ["arch", "vendor", "family", "wave", "LDS KiB", "threads", "features", "description"]))
    return 0


class _Progress:
    """Build progress on stderr: a tqdm bar on a terminal; elsewhere one line every
    PROGRESS_EVERY_S seconds, so that a long build is never silent in a log."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.done, self.counts = total, 0, Counter()
        self.bar, self.lines, self.last = None, False, time.monotonic()
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="kernel", file=sys.stderr)
        else:
            self.lines = not quiet

    def __call__(self, record) -> None:
        self.done += 1
        self.counts[record.status] += 1
        if self.bar is not None:
            self.bar.update()
        elif self.lines and self.done < self.total and time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self.last = time.monotonic()
            counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
            print(f"forge build: {self.done}/{self.total} done ({counts})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _select(arch, patterns):
    """The variants of `arch` matching `patterns`; ForgeError naming every pattern that matches
    nothing (a typo next to a good pattern must not pass unnoticed)."""
    from .codegen.spec import select_variants
    variants = select_variants(arch, patterns)
    missing = [p for p in patterns or [] if not select_variants(arch, [p])]
    if missing or not variants:
        families = sorted({v.family for v in select_variants(arch)})
        raise ForgeError(f"no kernel variant for {arch.name} matches {_quoted(missing or patterns or ['*'])} "
                         f"(patterns match a family or a symbol; families: {', '.join(families) or 'none'})")
    return variants


def _summary(records, arch, wall: float, root) -> str:
    c = Counter(r.status for r in records)
    shown = [s for s in ("built", "rebuilt", "cached", "failed", "interrupted") if c[s] or s in ("built", "cached", "failed")]
    text = f"{_plural(len(records), 'variant')} for {arch.name}: " + ", ".join(f"{c[s]} {s}" for s in shown)
    asm = sum(r.asm_added for r in records)
    if asm:
        text += f" ({asm} assembly {'listing' if asm == 1 else 'listings'} compiled for cached entries)"
    return text + f" in {wall:.1f} s ({root})"


def _report_failures(records) -> None:
    """One paragraph per distinct error (a read-only store fails every miss the same way)."""
    by_error: dict[str, list[str]] = {}
    for r in records:
        if r.status == "failed":
            by_error.setdefault(r.error, []).append(r.variant.symbol)
        elif r.status == "rebuilt" and r.replaced != "forced":
            print(f"{r.variant.symbol}: rebuilt; the stored entry was corrupt ({r.replaced})", file=sys.stderr)
    for error, symbols in by_error.items():
        names = ", ".join(symbols[:3]) + (f" and {len(symbols) - 3} more" if len(symbols) > 3 else "")
        print(f"\n{names}: {error}", file=sys.stderr)


def _occupancy_cell(record, arch) -> str:
    """Waves per SIMD (AMD) / warps per SM (NVIDIA) of the most, e.g. "8/16 regs"; "-" where a
    number is missing (no facts for the arch, no ptxas report, dynamic shared memory)."""
    from .codegen.occupancy import block_occupancy
    occ = block_occupancy(record.entry, arch, record.variant.symbol, record.resources)
    return "-" if occ is None else occ.text(arch.occupancy_per)


def cmd_build(args) -> int:
    from .arch import get_arch
    from .codegen.build import BuildInterrupted, build_all
    from .codegen.toolchain import toolchain_for

    arch = get_arch(args.arch)
    if args.model is None and (args.weights or args.kv_dtype or args.acts):  # a usage error before any toolchain's
        raise ForgeError("--weights, --acts and --kv-dtype choose a model's kernels: use them with --pack FILE "
                         "--model M.gguf")
    store = _store(args)
    tc = toolchain_for(arch)
    if args.model is not None:
        if args.pack is None or args.kernels:
            raise ForgeError("--model selects the kernels of a pack: use it with --pack FILE, without --kernels")
        from .model.packs import model_kernels
        args.kv_dtype = args.kv_dtype or "f16"
        args.kernels = [v.symbol for v in model_kernels(args.model, arch, args.kv_dtype, args.weights, args.acts)]
    n = len(_select(arch, args.kernels))
    print(f"forge build: {_plural(n, 'variant')} for {arch.name} with {tc.identity} into {store.root}"
          + (" (forced rebuild)" if args.force else ""), file=sys.stderr)
    t0 = time.perf_counter()
    progress = _Progress(n, args.quiet)
    try:
        records = build_all(arch, store, args.kernels, args.jobs, args.asm, progress=progress, force=args.force)
    except BuildInterrupted as stop:
        _leaving_on_interrupt()
        progress.close()
        print(f"\nforge: interrupted; stopped after the compiles in flight: "
              f"{_summary(stop.records, arch, time.perf_counter() - t0, store.root)}", file=sys.stderr)
        return 130
    progress.close()
    rows = []
    for r in records:
        res = r.resources
        rows.append([r.variant.family, r.variant.symbol, r.status + ("+asm" if r.asm_added else ""),
                     f"{r.seconds:.2f}", _fmt(res.get("vgpr")), _fmt(res.get("sgpr")), _fmt(res.get("lds")),
                     _fmt(res.get("scratch")), _occupancy_cell(r, arch)])
    print(_table(rows, ["kernel", "variant", "status", "seconds", "VGPR", "SGPR", "LDS", "scratch", "occupancy"]))
    _report_failures(records)
    print("\n" + _summary(records, arch, time.perf_counter() - t0, store.root))
    failed = any(r.status == "failed" for r in records)
    if args.pack is not None and not failed:
        from .model.packs import build_pack
        m = build_pack(store, arch, args.pack, args.model, args.kv_dtype or "f16", args.weights, args.acts)
        libs = len(m.entries) - len(m.kernels)
        print(f"{args.pack}: {_plural(len(m.kernels), 'kernel')}{f' and the runtime library' if libs else ''} "
              f"for {arch.name} ({m.toolchain}){f', what {args.model} needs' if args.model else ''}")
    return 1 if failed else 0


CACHE_ACTIONS = {
    "ls": "list every entry: key, kernel, arch, toolchain, flags, size and its directory",
    "stats": "count entries, corrupt entries and bytes, by arch and by toolchain",
    "verify": "check every entry (object, meta.json, source and assembly against their sha256) and "
              "report corrupt entries and stray files; changes nothing; exit 1 if any",
    "repair": "remove only what verify reports, plus leftovers no build is using (failed compiles' "
              "scratch dirs and temp files older than an hour); valid entries stay",
    "clear": "remove every entry and leftover (do not run it while a build uses the store)",
}


def cmd_cache(args) -> int:
    store = _store(args)
    if args.action == "ls":
        rows = []
        for e in store.entries():
            m, k = e.meta or {}, (e.meta or {}).get("key_inputs", {})
            rows.append([e.key[:16], m.get("symbol", "?"), k.get("arch", "?"), k.get("toolchain", "?"),
                         " ".join(k.get("flags", []))[-40:], m.get("object_bytes", "?"),
                         str(e.path) + ("" if e.valid else "  (corrupt)")])
        print(_table(rows, ["key", "symbol", "arch", "toolchain", "flags (tail)", "bytes", "path"]) if rows
              else f"(empty store at {store.root})")
    elif args.action == "stats":
        for k, v in store.stats().items():
            print(f"{k}: {v}")
        print(f"root: {store.root}")
    elif args.action == "verify":
        bad = store.verify()
        for name, problem in bad:
            print(f"{name}: {problem}")
        if bad:
            print(f"{_plural(len(bad), 'problem')} in {store.root}; `forge cache repair` removes only those "
                  f"(each entry is rebuilt when next needed)")
            return 1
        print(f"all entries verified ({store.root})")
    elif args.action == "repair":
        removed = store.repair()
        for path in removed:
            print(f"removed: {path}")
        print(f"removed {_plural(len(removed), 'item')} from {store.root}; {store.stats()['entries']} valid "
              f"entries kept")
    elif args.action == "clear":
        print(f"removed {_plural(store.clear(), 'entry', 'entries')} from {store.root}")
    return 0


def cmd_doctor(args) -> int:
    from .arch import ARCHS
    from .codegen.toolchain import toolchain_for
    problems = 0
    for a in ARCHS.values():
        try:
            print(f"{a.name:8} {toolchain_for(a).identity}")
        except ForgeError as e:
            problems += 1
            print(f"{a.name:8} unavailable: {e}")
    from .runtime.hip import hip_status
    print(hip_status())  # informative: a machine without an AMD GPU is not a problem
    try:
        store = _store(args)
        note = "" if store.writable() else " (read-only: serves what it holds, cannot store new builds)"
        print(f"store    {store.root}{note}")
    except ForgeError as e:
        problems += 1
        print(f"store    unusable: {e}")
    print(f"\nforge doctor: {_plural(problems, 'problem')} found" if problems else "\nforge doctor: all good")
    return 1 if problems else 0


def cmd_demo(args) -> int:
    from .demo import main as demo
    return demo(_store(args))


def cmd_info(args) -> int:
    from .model.info import describe
    text, problem = describe(args.model)
    print(text)
    if problem is not None:
        raise problem   # described, but forge cannot run it: say why and exit non-zero
    return 0


# -------------------------------------------------------------------------------------- parser
def _global_options(suppress: bool) -> argparse.ArgumentParser:
    """The options every command takes. The top-level parser holds their defaults; each
    subcommand's copy defaults to SUPPRESS, so that given after the subcommand they win and, not
    given there, they leave what was given before the subcommand alone."""
    common = argparse.ArgumentParser(add_help=False)
    default = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    common.add_argument("--cache-dir", default=default(None),
                        help="code-object store (default: FORGE_CACHE_DIR, else build_cache/ in a checkout, "
                             "else the user cache dir)")
    common.add_argument("--debug", action="store_true", default=default(False),
                        help="show tracebacks (also FORGE_DEBUG=1)")
    return common


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    sub_common = _global_options(suppress=True)
    p = argparse.ArgumentParser(prog="forge", description="AOT-compiled, JIT-dispatched LLM kernels for AMD GPUs",
                                parents=[_global_options(suppress=False)],
                                epilog="Errors exit 1 with one line `forge: error: ...`; usage errors exit 2.")
    p.add_argument("--version", action="version", version=f"forge {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("archs", parents=[sub_common], help="list the known architectures").set_defaults(fn=cmd_archs)

    b = sub.add_parser("build", parents=[sub_common], help="compile every kernel variant for an arch into the store")
    b.add_argument("--arch", required=True, help="target, e.g. gfx1100, gfx950, sm_90, emu (see `forge archs`)")
    b.add_argument("--kernels", action="append", metavar="GLOB",
                   help="only variants whose family or symbol matches (repeatable; each must match), e.g. 'rmsnorm*'")
    b.add_argument("--jobs", "-j", type=_positive_int, default=None, metavar="N",
                   help="parallel compiles, at least 1 (default: all cores)")
    b.add_argument("--asm", action="store_true",
                   help="keep the assembly (AMD, host) or PTX (NVIDIA) beside each object; for entries already "
                        "stored without one, the listing alone is made (no object, no link)")
    b.add_argument("--force", action="store_true", help="rebuild the selected variants even when stored")
    b.add_argument("--pack", metavar="FILE.tar",
                   help="also write a kernel pack: the built kernels (and a CPU backend's runtime) for machines "
                        "with no compiler (`forge run --kernels FILE.tar`)")
    b.add_argument("--model", metavar="MODEL.gguf", help="with --pack: only the kernels this model needs")
    from .cli_model import acts_option, kv_dtype_choices, weights_option
    b.add_argument("--kv-dtype", choices=kv_dtype_choices(), default=None,
                   help="with --model: the KV cache storage the pack is for (as `forge run --kv-dtype`; default f16)")
    weights_option(b)  # a pack for a model run with --weights needs the converted types' kernels
    acts_option(b)  # ... and with --acts, the scaled-MFMA kernels of that activation format
    b.add_argument("--quiet", "-q", action="store_true", help="no progress")
    b.set_defaults(fn=cmd_build)

    c = sub.add_parser("cache", parents=[sub_common], help="inspect, check, repair or clear the code-object store",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="actions:\n" + "\n".join(textwrap.fill(v, 92, initial_indent=f"  {k:8}",
                                                                           subsequent_indent=" " * 10)
                                                             for k, v in CACHE_ACTIONS.items()))
    c.add_argument("action", choices=list(CACHE_ACTIONS), metavar="ACTION", help=", ".join(CACHE_ACTIONS))
    c.set_defaults(fn=cmd_cache)

    sub.add_parser("doctor", parents=[sub_common],
                   help="show which toolchain serves each arch and where the store is (exit 1 on a problem)"
                   ).set_defaults(fn=cmd_doctor)

    sub.add_parser("demo", parents=[sub_common],
                   help="run kernels on the CPU emulator against numpy (exit 1 on a mismatch)").set_defaults(fn=cmd_demo)

    i = sub.add_parser("info", parents=[sub_common], help="describe a GGUF model file")
    i.add_argument("model")
    i.set_defaults(fn=cmd_info)

    from .cli_model import register
    register(sub, sub_common)  # run, fetch, graph, perplexity, bench
    return p


def _debug(args) -> bool:
    return bool(getattr(args, "debug", False) or os.environ.get("FORGE_DEBUG", "") not in ("", "0"))


def _leaving_on_interrupt() -> None:
    """forge is on its way out after a Ctrl-C: further ones (a held key, a terminal's repeats) are
    ignored, so that one arriving while the exit is printed or the interpreter shuts down cannot
    turn the orderly exit 130 into death by SIGINT. The main thread only (where signals land)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return code
    except ForgeError as e:
        if _debug(args):
            raise
        print(f"forge: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _leaving_on_interrupt()
        print("\nforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`forge archs | head -1`): stop quietly, with the status of a tool
        # killed by SIGPIPE. Point stdout at /dev/null so that the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
