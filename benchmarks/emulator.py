"""CPU emulator measurements for docs/PERFORMANCE.md: warm per-launch dispatch overhead, fiber
switch cost (hand-written switch vs ucontext), emulated RMSNorm throughput.

    python benchmarks/emulator.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from forge.arch import emu_arch
from forge.runtime.emu import EmuDevice, emulator_runtime
from forge.runtime.dispatch import Dispatcher


def best_of(fn, repeats: int) -> float:
    """Seconds of the fastest of `repeats` runs of fn() (the least disturbed by other work)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def dispatch_overhead(dev, kernels, calls: int) -> dict:
    """A one-thread barrier-free launch: what remains is the host path (geometry, argument packing,
    the ctypes call, the runtime's launch) plus one emulated thread doing one add."""
    k = kernels.get("elementwise", op="add", dtype="f32", block=256)
    bufs = [dev.alloc(4) for _ in range(3)]
    k(bufs[0], bufs[1], bufs[2], 1, n=1)  # warm: packer built, library resolved
    total = best_of(lambda: [k(bufs[0], bufs[1], bufs[2], 1, n=1) for _ in range(calls)], 5) / calls
    g = k._launch
    geometry = best_of(lambda: [g(k._params, k.arch, n=1) for _ in range(calls)], 5) / calls
    values = [bufs[0], bufs[1], bufs[2], 1]
    packing = best_of(lambda: [k.fn.packer.pack((1, 1, 1), (256, 1, 1), 0, values) for _ in range(calls)], 5) / calls
    for b in bufs:
        dev.free(b)
    return {"per_launch_us": total * 1e6, "geometry_us": geometry * 1e6, "packing_us": packing * 1e6}


def fiber_switch(iters: int) -> dict:
    out = {}
    for kind in ("asm", "ucontext"):
        rt = emulator_runtime(fibers=kind)
        rt.forge_emu_bench_switch(iters // 10)
        out[rt.forge_emu_fiber_kind().decode()] = statistics.median(rt.forge_emu_bench_switch(iters) for _ in range(5))
    return out


def rmsnorm_throughput(dev, kernels, rows: int, ncols: int) -> dict:
    k = kernels.get("rmsnorm", dtype="f32", block=256)
    x = np.random.default_rng(0).standard_normal((rows, ncols)).astype(np.float32)
    bx, bw, by = dev.alloc(x.nbytes), dev.alloc(ncols * 4), dev.alloc(x.nbytes)
    dev.upload(bx, x), dev.upload(bw, np.ones(ncols, np.float32))
    k(bx, bw, by, ncols, 1e-5, rows=rows)
    t = best_of(lambda: k(bx, bw, by, ncols, 1e-5, rows=rows), 3)
    for b in (bx, bw, by):
        dev.free(b)
    return {"rows": rows, "ncols": ncols, "seconds": t, "GB_per_s": 2 * x.nbytes / t / 1e9,
            "Melem_per_s": x.size / t / 1e6, "threads_per_s": rows * 256 / t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    a = ap.parse_args()
    dev = EmuDevice(wave_size=32)
    kernels = Dispatcher(dev, emu_arch(32))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"emulator threads {dev.threads}")
    d = dispatch_overhead(dev, kernels, 2000 if a.quick else 20000)
    print(f"dispatch: {d['per_launch_us']:.2f} us per warm launch (1 thread, barrier-free); "
          f"of which geometry {d['geometry_us']:.2f} us, argument packing {d['packing_us']:.2f} us")
    for kind, ns in fiber_switch(200_000 if a.quick else 2_000_000).items():
        print(f"fiber switch [{kind}]: {ns:.1f} ns")
    for rows, ncols in [(64, 4096), (512, 4096)]:
        r = rmsnorm_throughput(dev, kernels, rows, ncols)
        print(f"rmsnorm f32 block256 {rows}x{ncols}: {r['seconds'] * 1e3:.1f} ms, {r['GB_per_s']:.3f} GB/s, "
              f"{r['Melem_per_s']:.1f} Melem/s, {r['threads_per_s'] / 1e6:.2f} M emulated threads/s")


if __name__ == "__main__":
    main()
