"""GEMV bandwidth per weight type: y = W x for one token, the decode hot path.

    python benchmarks/gemv.py --backend emu                      # the emulator, wave 32
    python benchmarks/gemv.py --backend emu --wave 64 --types q4_0,q8_0 --shapes 1024x2048
    python benchmarks/gemv.py --backend cuda                     # the four issue-13 shapes, every type
    python benchmarks/gemv.py --backend cuda --types q4_0 --rpb 0,1,2,4 --read-limit --json out.json

For each weight type and shape (rows x cols): a random matrix in the type's storage encoding
(256 distinct random rows, tiled) is uploaded once and copied on the device into as many buffers
as it takes to exceed --rotate-mb (launches cycle through them, so a matrix that fits in the GPU's
last-level cache — 50 MB on an H100 — is still read from memory); the gemv kernel comes through the
JIT dispatcher; the first 64 rows of y are checked against a float64 product of the forge.quant
decode (--no-check skips it). Timing on a device with events and launch lists (CUDA): --launches
launches, rotating over the copies, are captured once with Device.record (a CUDA graph) and the
graph is replayed --repeats times between two events; per-launch time = event time / launches.
Elsewhere (the emulator): batches of launches + one synchronize on the host clock. Bytes per launch
= the weight matrix + x (f32) + y (f32): what a launch must move at least, so GB/s = bytes / time;
% is of --roofline (3.12 TB/s: what one H100 kernel reads at best, issue 13).

--int: for the types matmul_q8 covers, the integer path on the same matrix: quantize_q8 (x to
8-bit blocks, once per token) then matmul_q8, timed as a pair per step (and matmul_q8 alone), with
the same bytes per step, checked against W times the quantized x; matmul_q8 with the row team a
model's decode uses for that row (forge.runtime.lower), or --team.

--read-limit (CUDA): the single-kernel read limit at each case's exact byte count, measured in the
same process the way ../shared/peer/read_limit.py does (a 16-byte-load xor-reduce kernel, grids of
4, 8 and 16 blocks per SM, the best; 200 launches in a graph over buffers past the L2), so each row
also shows the share of what any kernel reading that many bytes reaches. Nothing here is estimated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge.arch import get_arch  # noqa: E402
from forge.codegen.spec import Arg  # noqa: E402
from forge.codegen.wtypes import WTYPE_NAMES, get_wtype  # noqa: E402
from forge.errors import ForgeError  # noqa: E402
from forge.quant import ggml, mx  # noqa: E402
from forge.runtime.device import BoundLaunch  # noqa: E402
from forge.runtime.dispatch import Dispatcher  # noqa: E402

U = 2.0 ** -24
SHAPES = ((14336, 4096), (4096, 14336), (4096, 4096), (8192, 2048))
POOL_ROWS = 256  # distinct random rows per matrix (tiled to the row count)


def make_device(backend: str, wave: int, arch_name: str | None):
    """(device, arch) for a backend name, through forge.runtime.backends.open_backend (which says
    what is missing when a backend cannot be opened): "emu" at `wave`, an emulator target by its
    name (emu-sm90, ...), cuda, hip; `arch_name` where the device does not report its arch."""
    from forge.runtime.backends import open_backend
    dev, arch = open_backend("emu64" if backend == "emu" and wave == 64 else backend)
    if arch is None and arch_name:
        arch = get_arch(arch_name)
    if arch is None:
        raise ForgeError(f"the {backend} device does not report its arch: pass --arch (e.g. sm_90, gfx1100)")
    return dev, arch


def random_matrix(wtype: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Random, valid weights in the storage encoding of `wtype` (uint8 rows): POOL_ROWS distinct
    rows, tiled (bandwidth does not depend on the values; MX quantization of many rows is slow)."""
    n = min(rows, POOL_ROWS)
    codec = get_wtype(wtype).codec
    if codec in mx.MX_FORMATS:
        pool = mx.quantize_rows(rng.standard_normal((n, cols)).astype(np.float32), codec)
    else:
        pool = ggml.random_blocks(codec, n, cols, rng)
    return np.ascontiguousarray(np.tile(pool, (-(-rows // n), 1))[:rows])


def decode(wtype: str, raw: np.ndarray, cols: int) -> np.ndarray:
    codec = get_wtype(wtype).codec
    if codec in mx.MX_FORMATS:
        return mx.dequantize_rows(raw, codec, cols)
    return ggml.dequantize(raw, codec, (raw.shape[0], cols))


def has_graphs(dev) -> bool:
    return hasattr(dev, "record_event") and hasattr(dev, "elapsed")


def time_launches(dev, launches: list, repeats: int, min_time: float = 0.2) -> list[float]:
    """Seconds per launch of `launches` (BoundLaunch), one value per repeat. With events: one
    recorded launch list replayed between two events. Otherwise: host-timed batches of replays
    lasting at least min_time, each ended by a synchronize."""
    rec = dev.record(launches)
    rec.run()
    dev.synchronize()
    out = []
    if has_graphs(dev):
        for _ in range(repeats):
            e0 = dev.record_event()
            rec.run()
            e1 = dev.record_event()
            out.append(dev.elapsed(e0, e1) / len(launches))
            dev.destroy_event(e0), dev.destroy_event(e1)
        if hasattr(rec, "close"):
            rec.close()
        return out
    t0 = time.perf_counter()
    rec.run()
    dev.synchronize()
    reps = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)) + 1)
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(reps):
            rec.run()
        dev.synchronize()
        out.append((time.perf_counter() - t0) / (reps * len(launches)))
    return out


def rotation(dev, raw: np.ndarray, rotate_mb: int) -> list:
    """Device copies of `raw` totalling at least rotate_mb MB (one upload, then device copies)."""
    copies = max(1, -(-rotate_mb * 10**6 // raw.nbytes))
    bufs = [dev.alloc(raw.nbytes)]
    dev.upload(bufs[0], raw)
    for _ in range(copies - 1):
        bufs.append(dev.alloc(raw.nbytes))
        dev.copy(bufs[-1], bufs[0], raw.nbytes)
    return bufs


# ------------------------------------------------------------------------------ the read limit
READ_BODY = """
KERNEL(256) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32x4* v = (const u32x4*)p;
  u64 i = (u64)bid_x() * bdim_x() + tid_x();
  const u64 stride = (u64)gdim_x() * bdim_x(), n = (u64)n16;
  u32 acc = 0;
#pragma unroll 4
  for (; i < n; i += stride) { const u32x4 w = v[i]; acc ^= w.v[0] ^ w.v[1] ^ w.v[2] ^ w.v[3]; }
  if (acc == 0x7fffffffu) out[0] = (float)acc;
}
"""
READ_ARGS = [Arg.ptr("p", "u8", const=True), Arg.scalar("n16", "i64"), Arg.ptr("out", "f32")]
_read_fn = {}


def read_limit(dev, arch, nbytes: int, launches: int = 200, repeats: int = 5) -> tuple[float, int]:
    """(best seconds, grid) for one kernel reading nbytes (rounded down to 16), as peer/read_limit.py."""
    from forge.codegen.render import render_inline
    from forge.codegen.toolchain import toolchain_for
    if "fn" not in _read_fn:
        src = render_inline(READ_BODY, arch, "forge_readsum", READ_ARGS)
        with tempfile.TemporaryDirectory() as d:
            obj = toolchain_for(arch).compile(src, arch, "forge_readsum", Path(d), False).object_bytes
        _read_fn["fn"] = dev.load_module(obj).function("forge_readsum")
    fn = _read_fn["fn"]
    n = nbytes // 16 * 16
    copies = max(2, int(512e6 // n))
    bufs = [dev.alloc(n) for _ in range(copies)]
    out = dev.alloc(4)
    try:
        for b in bufs:
            dev.memset(b, 0x5A)
        best = (1e9, 0)
        for per_sm in (4, 8, 16):
            grid = dev.sm_count * per_sm
            ls = [BoundLaunch(fn, (grid, 1, 1), (256, 1, 1), 0, (bufs[r % copies], n // 16, out), tuple(READ_ARGS))
                  for r in range(launches)]
            t = min(time_launches(dev, ls, repeats))
            best = min(best, (t, grid))
        return best
    finally:
        for b in (*bufs, out):
            dev.free(b)


def launch_overhead(dev, kernels: Dispatcher, n: int = 2000) -> dict:
    """Host microseconds per warm launch of a tiny gemv (f32, 8 x 256): through Kernel.__call__
    (launch geometry + packing + driver), through Device.launch with the geometry given, and the
    device time per launch of 100 such launches replayed as one recorded list."""
    rows, cols = 8, 256
    w, x, y = dev.alloc(rows * cols * 4), dev.alloc(cols * 4), dev.alloc(rows * 4)
    try:
        dev.memset(w, 0), dev.memset(x, 0)
        k = kernels.get("gemv", wtype="f32")
        g = k.variant.launch(k.arch, n_rows=rows, n_cols=cols)
        vals = (w, x, y, rows, cols)
        out = {}
        for name, fn in (("call", lambda: k(*vals, n_rows=rows, n_cols=cols)),
                         ("launch", lambda: dev.launch(k.fn, g.grid, g.block, 0, vals, k.args))):
            fn()
            dev.synchronize()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            out[name] = (time.perf_counter() - t0) / n * 1e6
            dev.synchronize()
        ls = [BoundLaunch(k.fn, g.grid, g.block, 0, vals, tuple(k.args))] * 100
        out["replayed"] = min(time_launches(dev, ls, 5)) * 1e6
        return out
    finally:
        for b in (w, x, y):
            dev.free(b)


# ------------------------------------------------------------------------------------- gemv
def bench_one(dev, kernels: Dispatcher, wtype: str, rows: int, cols: int, args, rng, rpb: int | None = None) -> dict:
    raw = random_matrix(wtype, rows, cols, rng)
    x = rng.standard_normal(cols).astype(np.float32)
    bws = rotation(dev, raw, args.rotate_mb)
    bx, by = dev.alloc(x.nbytes), dev.alloc(rows * 4)
    try:
        dev.upload(bx, x)
        k = kernels.get("gemv", wtype=wtype)
        g = k.variant.launch(k.arch, n_rows=rows, n_cols=cols, rows_per_team=rpb)
        dev.memset(by, 0xFF)  # NaN: every row must be written
        k(bws[0], bx, by, rows, cols, n_rows=rows, n_cols=cols, rows_per_team=rpb)
        dev.synchronize()
        checked = "-"
        if args.check:
            n = min(rows, 64)
            y = np.frombuffer(dev.download(by, rows * 4), np.float32).astype(np.float64)
            w = decode(wtype, raw[:n], cols).astype(np.float64)
            ref, mag = w @ x.astype(np.float64), np.abs(w) @ np.abs(x.astype(np.float64))
            ok = np.all(np.abs(y[:n] - ref) <= cols * U / (1 - cols * U) * mag + cols * 2.0 ** -126)
            checked = "ok" if ok and not np.isnan(y).any() else "WRONG"
        launches = [BoundLaunch(k.fn, g.grid, g.block, g.shared_bytes, (bws[i % len(bws)], bx, by, rows, cols),
                                tuple(k.args)) for i in range(args.launches)]
        per_launch = time_launches(dev, launches, args.repeats, args.min_time)
        extra = bench_int(dev, kernels, wtype, raw, x, bws, bx, by, rows, cols, args, rpb) if args.int_path else {}
    finally:
        for b in (*bws, bx, by):
            dev.free(b)
    nbytes = raw.nbytes + x.nbytes + rows * 4
    med, best = statistics.median(per_launch), min(per_launch)
    out = {"wtype": wtype, "rows": rows, "cols": cols, "bytes": nbytes, "copies": len(bws), "grid": g.grid[0],
           "rpb": rpb or 0, "bpw": 8 * raw.nbytes / (rows * cols), "us": med * 1e6, "us_best": best * 1e6,
           "gbs": nbytes / med / 1e9, "gbs_best": nbytes / best / 1e9, "check": checked}
    if extra:
        out.update(extra, int_gbs=nbytes / (extra["int_us"] * 1e-6) / 1e9)
    return out


def quantize_x(x: np.ndarray) -> np.ndarray:
    """x as quantize_q8 leaves it, dequantized (float64): per 32 values d = amax / 127 (f32),
    q = round half away from zero of x / d (f32 division)."""
    b = x.reshape(-1, 32)
    d = (np.abs(b).max(axis=1) / np.float32(127)).astype(np.float32)
    v = (b / np.where(d > 0, d, 1)[:, None]).astype(np.float32).astype(np.float64)
    q = np.where(d[:, None] > 0, np.sign(v) * np.floor(np.abs(v) + 0.5), 0)
    return (q * d[:, None].astype(np.float64)).reshape(-1)


def bench_int(dev, kernels, wtype, raw, x, bws, bx, by, rows, cols, args, rpb) -> dict:
    """The integer path for the same matrix: quantize_q8 (x -> 8-bit blocks, once per token) then
    matmul_q8; the pair per step, and matmul_q8 alone. {} for a type without one."""
    from forge.codegen.specs.matmul_q8 import INT_WTYPES
    if wtype not in INT_WTYPES:
        return {}
    from forge.codegen.specs.matmul_q8 import team_for
    from forge.runtime.lower import TEAM_UNITS, quantize_params
    team = args.team or team_for(wtype, cols, TEAM_UNITS)  # default: the row team a model's decode runs
    kq = kernels.get("quantize_q8", **quantize_params(kernels.arch, 1))  # as lowering launches it for a token
    km = kernels.get("matmul_q8", wtype=wtype, team=team)
    bq, bd = dev.alloc(cols), dev.alloc(cols // 32 * 8)
    try:
        gq = kq.variant.launch(kq.arch, rows=1, n_cols=cols)
        gm = km.variant.launch(km.arch, n_rows=rows, n_cols=cols, n_tokens=1, rows_per_team=rpb)
        quant = BoundLaunch(kq.fn, gq.grid, gq.block, gq.shared_bytes, (bx, bq, bd, cols), tuple(kq.args))
        mm = [BoundLaunch(km.fn, gm.grid, gm.block, gm.shared_bytes, (bws[i % len(bws)], bq, bd, by, rows, cols, 1),
                          tuple(km.args)) for i in range(args.launches)]
        dev.memset(by, 0xFF)
        dev.record([quant, mm[0]]).run()
        dev.synchronize()
        checked = "-"
        if args.check:
            n = min(rows, 64)
            y = np.frombuffer(dev.download(by, rows * 4), np.float32).astype(np.float64)
            w, xh = decode(wtype, raw[:n], cols).astype(np.float64), quantize_x(x)
            ref, mag = w @ xh, np.abs(w) @ np.abs(xh)
            m = cols // 4 + cols // 32 + 4  # terms of the integer path's float sum (tests/oracles/matmul_q8.py)
            ok = np.all(np.abs(y[:n] - ref) <= m * U / (1 - m * U) * 2 * mag + m * 2.0 ** -126)
            checked = "ok" if ok and not np.isnan(y).any() else "WRONG"
        pair = [b for i in range(args.launches) for b in (quant, mm[i])]
        t_pair = statistics.median(time_launches(dev, pair, args.repeats, args.min_time)) * 2
        t_mm = statistics.median(time_launches(dev, mm, args.repeats, args.min_time))
    finally:
        dev.free(bq), dev.free(bd)
    return {"int_us": t_pair * 1e6, "int_mm_us": t_mm * 1e6, "int_check": checked, "int_team": team}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["emu", "cuda", "hip"], default="emu")
    ap.add_argument("--arch", help="arch of a GPU backend when its device does not report one (sm_90, gfx1100)")
    ap.add_argument("--wave", type=int, choices=[32, 64], default=32, help="CPU emulator wave size")
    ap.add_argument("--types", default=",".join(WTYPE_NAMES), help="comma-separated weight types")
    ap.add_argument("--shapes", help="comma-separated ROWSxCOLS (default: the four issue-13 shapes on a GPU, "
                    "1024x1024 on the emulator)")
    ap.add_argument("--rpb", default="0", help="comma-separated rows per team to try (0: the launch default)")
    ap.add_argument("--rotate-mb", type=int, help="weight copies launches cycle through, in MB at least "
                    "(default: 0 on the emulator, 256 on a GPU: 5x an H100's L2)")
    ap.add_argument("--launches", type=int, help="launches per timed list (default 100 on a GPU, 4 on the emulator)")
    ap.add_argument("--repeats", type=int, default=5, help="timed replays per case")
    ap.add_argument("--min-time", type=float, default=0.2, help="host timing: seconds a batch lasts at least")
    ap.add_argument("--roofline", type=float, default=3120.0, help="GB/s the %% column is of")
    ap.add_argument("--read-limit", action="store_true", help="measure the single-kernel read limit per case (CUDA)")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the correctness check")
    ap.add_argument("--overhead", action="store_true", help="also measure the per-launch host and replay cost")
    ap.add_argument("--int", dest="int_path", action="store_true",
                    help="also time the integer path (quantize_q8 + matmul_q8) of the types that have one")
    ap.add_argument("--team", type=int, choices=[0, 32, 64, 128], default=0,
                    help="--int: matmul_q8's row team (0: the one lowering picks for the row, forge.runtime.lower)")
    ap.add_argument("--json", help="write every row to this file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    gpu = args.backend != "emu"
    shapes = ([tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")] if args.shapes
              else (list(SHAPES) if gpu else [(1024, 1024)]))
    rpbs = [int(v) or None for v in args.rpb.split(",")]
    args.rotate_mb = (256 if gpu else 0) if args.rotate_mb is None else args.rotate_mb
    args.launches = args.launches or (100 if gpu else 4)
    rows_out, limits = [], {}
    try:
        for t in types:
            for r, c in shapes:
                get_wtype(t).check_shape(c, rows=r)
        dev, arch = make_device(args.backend, args.wave, args.arch)
        kernels = Dispatcher(dev, arch)
        rng = np.random.default_rng(args.seed)
        print(f"gemv y = W x on {dev!r} ({arch.name}, wave {arch.wave_size}); "
              f"{'graphs of ' + str(args.launches) + ' launches timed with events' if has_graphs(dev) else 'host-timed batches'}, "
              f"median of {args.repeats}; % of {args.roofline:.0f} GB/s", flush=True)
        if args.overhead:
            o = launch_overhead(dev, kernels)
            print(f"launch cost, tiny gemv: Kernel.__call__ {o['call']:.1f} us host, Device.launch {o['launch']:.1f} us "
                  f"host, replayed in a recorded list {o['replayed']:.2f} us each (device)", flush=True)
        head = (f"{'wtype':<11} {'shape':>11} {'rpb':>3} {'grid':>6} {'MB':>7} {'us':>8} {'GB/s':>7} {'%roof':>6} "
                f"{'limit%':>6} {'%limit':>6}  check")
        print(head)
        print("-" * len(head), flush=True)
        for r, c in shapes:
            for t in types:
                for rpb in rpbs:
                    row = bench_one(dev, kernels, t, r, c, args, rng, rpb)
                    if args.read_limit and has_graphs(dev):
                        if row["bytes"] not in limits:
                            limits[row["bytes"]] = read_limit(dev, arch, row["bytes"])
                        lt, lg = limits[row["bytes"]]
                        row["limit_gbs"], row["limit_grid"] = row["bytes"] // 16 * 16 / lt / 1e9, lg
                    row["pct_roof"] = 100 * row["gbs"] / args.roofline
                    lim = row.get("limit_gbs")
                    rows_out.append(row)
                    shape = f"{r}x{c}"
                    lim_roof = f"{100 * lim / args.roofline:5.1f}%" if lim else "-"
                    of_lim = f"{100 * row['gbs'] / lim:5.1f}%" if lim else "-"
                    ints = ""
                    if "int_us" in row:
                        int_lim = f"{100 * row['int_gbs'] / lim:5.1f}% of limit " if lim else ""
                        ints = (f"  | int: {row['int_us']:7.2f} us (matmul {row['int_mm_us']:6.2f}) {row['int_gbs']:5.0f} GB/s "
                                f"{100 * row['int_gbs'] / args.roofline:5.1f}% {int_lim}team {row['int_team']} {row['int_check']}")
                    print(f"{t:<11} {shape:>11} {row['rpb'] or '-':>3} {row['grid']:>6} {row['bytes'] / 1e6:>7.2f} "
                          f"{row['us']:>8.2f} {row['gbs']:>7.0f} {row['pct_roof']:>5.1f}% {lim_roof:>6} {of_lim:>6}  "
                          f"{row['check']}{ints}", flush=True)
    except ForgeError as e:
        print(f"gemv bench: error: {e}", file=sys.stderr)
        return 1
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps({"device": repr(locals().get("dev")), "rows": rows_out}, indent=1))
    return 0 if all(r["check"] != "WRONG" and r.get("int_check") != "WRONG" for r in rows_out) else 2


if __name__ == "__main__":
    sys.exit(main())
