"""The `forge` command. Errors print as one line `forge: error: ...` (exit 1); `--debug` shows the
traceback instead."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import ForgeError


def _store(args):
    from .codegen.store import Store, default_root
    return Store(default_root(args.cache_dir))


def _fmt(v) -> str:
    return "-" if v is None else str(v)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


# ------------------------------------------------------------------------------------ commands
def cmd_archs(args) -> int:
    from .arch import ARCHS
    rows = [[a.name, a.vendor, a.family, a.wave_size, a.lds_bytes // 1024, a.max_threads,
             ",".join(sorted(a.features)) or "-", a.description] for a in ARCHS.values()]
    print(_table(rows, ["arch", "vendor", "family", "wave", "LDS KiB", "threads", "features", "description"]))
    return 0


def cmd_build(args) -> int:
    from tqdm import tqdm

    from .arch import get_arch
    from .codegen.build import build_all
    from .codegen.spec import select_variants
    from .codegen.toolchain import toolchain_for

    arch = get_arch(args.arch)
    store = _store(args)
    tc = toolchain_for(arch)
    n = len(select_variants(arch, args.kernels))
    if n == 0:
        raise ForgeError(f"no kernel variant matches {args.kernels} for {arch.name}")
    print(f"forge build: {n} variants for {arch.name} with {tc.identity} into {store.root}", file=sys.stderr)
    t0 = time.perf_counter()
    with tqdm(total=n, unit="kernel", file=sys.stderr, disable=args.quiet or None) as bar:
        records = build_all(arch, store, args.kernels, args.jobs, args.asm, progress=lambda r: bar.update())
    wall = time.perf_counter() - t0
    rows = []
    for r in records:
        res = r.resources
        rows.append([r.variant.family, r.variant.symbol, r.status, f"{r.seconds:.2f}", _fmt(res.get("vgpr")),
                     _fmt(res.get("sgpr")), _fmt(res.get("lds")), _fmt(res.get("scratch"))])
    print(_table(rows, ["kernel", "variant", "status", "seconds", "VGPR", "SGPR", "LDS", "scratch"]))
    failed = [r for r in records if r.status == "failed"]
    for r in failed:
        print(f"\n{r.variant.symbol}: {r.error}", file=sys.stderr)
    count = lambda s: sum(r.status == s for r in records)
    print(f"\n{len(records)} variants for {arch.name}: {count('built')} built, {count('cached')} cached, "
          f"{len(failed)} failed in {wall:.1f} s ({store.root})")
    return 1 if failed else 0


def cmd_cache(args) -> int:
    store = _store(args)
    if args.action == "ls":
        rows = []
        for e in store.entries():
            m, k = e.meta or {}, (e.meta or {}).get("key_inputs", {})
            rows.append([e.key[:16], m.get("symbol", "?"), k.get("arch", "?"), k.get("toolchain", "?"),
                         " ".join(k.get("flags", []))[-40:], m.get("object_bytes", "?")])
        print(_table(rows, ["key", "symbol", "arch", "toolchain", "flags (tail)", "bytes"]) if rows
              else f"(empty store at {store.root})")
    elif args.action == "stats":
        for k, v in store.stats().items():
            print(f"{k}: {v}")
        print(f"root: {store.root}")
    elif args.action == "verify":
        bad = store.verify()
        for key, problem in bad:
            print(f"corrupt: {key}: {problem}")
        print(f"{len(bad)} corrupt entries" if bad else "all entries verified")
        return 1 if bad else 0
    elif args.action == "clear":
        print(f"removed {store.clear()} entries from {store.root}")
    return 0


def cmd_doctor(args) -> int:
    from .arch import ARCHS
    from .codegen.toolchain import toolchain_for
    for a in ARCHS.values():
        try:
            print(f"{a.name:8} {toolchain_for(a).identity}")
        except ForgeError as e:
            print(f"{a.name:8} unavailable: {e}")
    try:
        print(f"store    {_store(args).root}")
    except ForgeError as e:
        print(f"store    unusable: {e}")
    return 0


def cmd_demo(args) -> int:
    from .demo import main as demo
    return demo()


def cmd_info(args) -> int:
    from .model.info import describe
    text, problem = describe(args.model)
    print(text)
    if problem is not None:
        raise problem   # described, but forge cannot run it: say why and exit non-zero
    return 0


# -------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", help="code-object store (default: FORGE_CACHE_DIR, a checkout's "
                                            "build_cache/, or the user cache dir)")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    p = argparse.ArgumentParser(prog="forge", description="AOT-compiled, JIT-dispatched LLM kernels for AMD GPUs",
                                parents=[common])
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("archs", parents=[common], help="list the known architectures").set_defaults(fn=cmd_archs)

    b = sub.add_parser("build", parents=[common], help="compile every kernel variant for an arch into the store")
    b.add_argument("--arch", required=True, help="target, e.g. gfx1100, gfx950, sm_90, cpu (see `forge archs`)")
    b.add_argument("--kernels", action="append", metavar="GLOB",
                   help="only variants whose family or symbol matches (repeatable), e.g. 'rmsnorm*'")
    b.add_argument("--jobs", "-j", type=int, default=None, help="parallel compiles (default: all cores)")
    b.add_argument("--asm", action="store_true", help="keep the assembly (AMD) or PTX (NVIDIA) beside each object")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    b.set_defaults(fn=cmd_build)

    c = sub.add_parser("cache", parents=[common], help="inspect or clear the code-object store")
    c.add_argument("action", choices=["ls", "stats", "verify", "clear"])
    c.set_defaults(fn=cmd_cache)

    sub.add_parser("doctor", parents=[common], help="show which toolchain serves each arch").set_defaults(fn=cmd_doctor)

    sub.add_parser("demo", parents=[common], help="run kernels on the CPU emulator against numpy").set_defaults(fn=cmd_demo)

    i = sub.add_parser("info", parents=[common], help="describe a GGUF model file")
    i.add_argument("model")
    i.set_defaults(fn=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ForgeError as e:
        if args.debug or os.environ.get("FORGE_DEBUG"):
            raise
        print(f"forge: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("forge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
