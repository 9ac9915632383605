"""GEMV bandwidth per weight type: y = W x for one token, the decode hot path.

    python benchmarks/gemv.py --backend cpu                      # the emulator, wave 32
    python benchmarks/gemv.py --backend cpu --wave 64 --types q4_0,q8_0 --rows 1024 --cols 2048
    python benchmarks/gemv.py --backend cuda --arch sm_90        # once forge.runtime.cuda exists

For each weight type: the matrix is uploaded in its storage encoding into as many buffers as
it takes to exceed --rotate-mb (launches cycle through them, so a matrix that fits in the GPU's
last-level cache — 50 MB on an H100, 256 MB on an MI300X — is still read from memory), the gemv
kernel is fetched through the JIT dispatcher (compiled into the store on a miss), checked once
against a float64 product of the forge.quant decode (--no-check skips it), then launched in
batches; each batch is `iters` back-to-back launches followed by one synchronize, timed on the
host clock, and `iters` is chosen so that a batch lasts at least --min-time seconds. The table
reports the median and the best batch. Bytes per launch = the weight matrix + x (f32) + y (f32):
what a launch must move at least, so GB/s = bytes / (seconds per launch). The "launch floor" line
is the same measurement for a tiny matrix: the per-launch cost of dispatch itself (Python, driver),
below which no kernel can be timed this way; keep the matrix large enough that us/launch is well
above it. Nothing here is estimated: every number is a measurement of this run on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge.arch import emu_arch, get_arch  # noqa: E402
from forge.codegen.wtypes import WTYPE_NAMES, get_wtype  # noqa: E402
from forge.errors import ForgeError  # noqa: E402
from forge.quant import ggml, mx  # noqa: E402
from forge.runtime.dispatch import Dispatcher  # noqa: E402

U = 2.0 ** -24


def make_device(backend: str, wave: int, arch_name: str | None):
    """(device, arch) for a backend name. The GPU backends are imported on demand: a build
    without one says so instead of failing at import."""
    if backend == "emu":
        from forge.runtime.emu import EmuDevice
        return EmuDevice(wave_size=wave), emu_arch(wave)
    module, cls = {"cuda": ("forge.runtime.cuda", "CudaDevice"), "hip": ("forge.runtime.hip", "HipDevice")}[backend]
    try:
        mod = __import__(module, fromlist=[cls])
        dev = getattr(mod, cls)()
    except (ImportError, AttributeError) as e:
        raise ForgeError(f"backend {backend} is not available in this build ({module}.{cls}: {e})") from None
    arch = getattr(dev, "arch", None) or (get_arch(arch_name) if arch_name else None)
    if arch is None:
        raise ForgeError(f"the {backend} device does not report its arch: pass --arch (e.g. sm_90, gfx1100)")
    return dev, get_arch(arch)


def random_matrix(wtype: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Random, valid weights in the storage encoding of `wtype` (uint8 rows)."""
    codec = get_wtype(wtype).codec
    if codec in mx.MX_FORMATS:
        return mx.quantize_rows(rng.standard_normal((rows, cols)).astype(np.float32), codec)
    return ggml.random_blocks(codec, rows, cols, rng)


def decode(wtype: str, raw: np.ndarray, cols: int) -> np.ndarray:
    codec = get_wtype(wtype).codec
    if codec in mx.MX_FORMATS:
        return mx.dequantize_rows(raw, codec, cols)
    return ggml.dequantize(raw, codec, (raw.shape[0], cols))


def bench_one(dev, kernels: Dispatcher, wtype: str, rows: int, cols: int, args, rng) -> dict:
    raw = random_matrix(wtype, rows, cols, rng)
    x = rng.standard_normal(cols).astype(np.float32)
    copies = max(1, -(-args.rotate_mb * 10**6 // raw.nbytes))
    bws, bx, by = [], dev.alloc(x.nbytes), dev.alloc(rows * 4)
    try:
        for _ in range(copies):
            bws.append(dev.alloc(raw.nbytes))
            dev.upload(bws[-1], raw)
        dev.upload(bx, x)
        k = kernels.get("gemv", wtype=wtype)
        turn = [0]

        def launch():
            turn[0] = (turn[0] + 1) % copies
            k(bws[turn[0]], bx, by, rows, cols, n_rows=rows, n_cols=cols)

        launch()
        dev.synchronize()
        checked = "-"
        if args.check:
            y = np.frombuffer(dev.download(by, rows * 4), np.float32).astype(np.float64)
            w = decode(wtype, raw, cols).astype(np.float64)
            ref, mag = w @ x.astype(np.float64), np.abs(w) @ np.abs(x.astype(np.float64))
            ok = np.all(np.abs(y - ref) <= cols * U / (1 - cols * U) * mag + cols * 2.0 ** -126)
            checked = "ok" if ok else "WRONG"
        for _ in range(args.warmup):
            launch()
        dev.synchronize()
        t0 = time.perf_counter()
        launch()
        dev.synchronize()
        one = max(time.perf_counter() - t0, 1e-7)
        iters = max(1, min(args.max_iters, int(args.min_time / one) + 1))
        per_launch = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(iters):
                launch()
            dev.synchronize()
            per_launch.append((time.perf_counter() - t0) / iters)
    finally:
        for b in (*bws, bx, by):
            dev.free(b)
    nbytes = raw.nbytes + x.nbytes + rows * 4
    med, best = statistics.median(per_launch), min(per_launch)
    return {"wtype": wtype, "bytes": nbytes, "copies": copies, "bpw": 8 * raw.nbytes / (rows * cols), "iters": iters,
            "us": med * 1e6, "gbs": nbytes / med / 1e9, "gbs_best": nbytes / best / 1e9, "check": checked}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["emu", "cuda", "hip"], default="emu")
    ap.add_argument("--arch", help="arch of a GPU backend when its device does not report one (sm_90, gfx1100)")
    ap.add_argument("--wave", type=int, choices=[32, 64], default=32, help="CPU emulator wave size")
    ap.add_argument("--types", default=",".join(WTYPE_NAMES), help="comma-separated weight types")
    ap.add_argument("--rows", type=int, help="matrix rows (default: 1024 on cpu, 16384 on a GPU)")
    ap.add_argument("--cols", type=int, help="matrix columns, a multiple of 256 suits every type (same defaults)")
    ap.add_argument("--rotate-mb", type=int, help="weight copies launches cycle through, in MB at least "
                    "(default: 0 on cpu, 1024 on a GPU: beyond any last-level cache)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="timed batches per type")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds a timed batch lasts at least")
    ap.add_argument("--max-iters", type=int, default=10000, help="launches per batch at most")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the correctness check")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    gpu = args.backend != "emu"
    args.rows = args.rows or (16384 if gpu else 1024)
    args.cols = args.cols or (16384 if gpu else 1024)
    args.rotate_mb = (1024 if gpu else 0) if args.rotate_mb is None else args.rotate_mb
    try:
        for t in types:
            get_wtype(t).check_shape(args.cols, rows=args.rows)
        dev, arch = make_device(args.backend, args.wave, args.arch)
        kernels = Dispatcher(dev, arch)
        rng = np.random.default_rng(args.seed)
        print(f"gemv y = W x, W {args.rows} x {args.cols}, on {dev!r} ({arch.name}, wave {arch.wave_size}); "
              f"batches of launches + one synchronize, median of {args.repeats}")
        floor = bench_one(dev, kernels, "f32", 8, 256, argparse.Namespace(**{**vars(args), "check": False}), rng)
        print(f"launch floor (f32 8 x 256): {floor['us']:.1f} us/launch")
        head = (f"{'wtype':<12} {'bits/w':>6} {'MB':>8} {'copies':>6} {'launches':>8} {'us/launch':>10} "
                f"{'GB/s':>8} {'best':>8}  check")
        print(head)
        print("-" * len(head))
        rows = []
        for t in types:
            r = bench_one(dev, kernels, t, args.rows, args.cols, args, rng)
            rows.append(r)
            print(f"{r['wtype']:<12} {r['bpw']:>6.2f} {r['bytes'] / 1e6:>8.2f} {r['copies']:>6} {r['iters']:>8} {r['us']:>10.1f} "
                  f"{r['gbs']:>8.3f} {r['gbs_best']:>8.3f}  {r['check']}", flush=True)
    except ForgeError as e:
        print(f"gemv bench: error: {e}", file=sys.stderr)
        return 1
    return 0 if all(r["check"] != "WRONG" for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
