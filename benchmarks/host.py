"""Host-CPU kernels at SmolLM2-135M decode shapes, against the CPU emulator, and one whole decode
step replayed as a launch list.

    python benchmarks/host.py                 # per-kernel table (host and emulator) + decode step
    python benchmarks/host.py --no-emu        # host only (the emulator's output head takes ~0.1 s)
    python benchmarks/host.py --ctx 512 --threads 1

SmolLM2-135M: n_embd 576, 9 heads / 3 KV heads of 64, n_ff 1536, vocab 49152, 30 layers; matrices
Q4_1, token embedding = tied output head Q8_0 (49152 x 576); KV cache f16, pages of 16.

Per kernel: each host row is the best of --repeats replays of a launch list of the same kernel
(one C call per list: no Python per launch), the list cycling through enough copies of the weight
matrix to exceed --rotate-mb (so weights come from memory, as in a real step, not from the 32 MiB
last-level cache); us = list time / launches. The emulator column runs the same operation with the
GPU-model kernels (matrix products: gemv with f32 activations, since matmul_q8 and quantize_q8 have
no emulator variants), launched one by one, best of a few. GB/s = bytes the operation must move
(weights + activations read and written) / time. "per step" multiplies by the launches per decode
step; the sum approximates a step. The decode-step row is a measurement too: all ~600 launches of
one token (30 layers' norms, quantizations, 7 matrix products, RoPE, KV append, split-K attention,
residual adds, SwiGLU; then the final norm, the head and the sampler) recorded once and replayed,
with 30 distinct layers of weights (~96 MB). Nothing is estimated: every number is measured in this
run; the load average before and after is printed, since other work on the machine slows it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge.arch import emu_arch, get_arch  # noqa: E402
from forge.codegen.specs.rope import freq_log2  # noqa: E402
from forge.codegen.wtypes import get_wtype  # noqa: E402
from forge.quant import ggml  # noqa: E402
from forge.runtime.device import BoundLaunch  # noqa: E402
from forge.runtime.dispatch import Dispatcher  # noqa: E402

E, H, KV, HD, FF, VOCAB, LAYERS, PAGE = 576, 9, 3, 64, 1536, 49152, 30, 16
MATS = {"q": (E, E), "k": (KV * HD, E), "v": (KV * HD, E), "o": (E, E), "gate": (FF, E), "up": (FF, E),
        "down": (E, FF)}


def random_matrix(wtype: str, rows: int, cols: int, rng) -> np.ndarray:
    return ggml.random_blocks(get_wtype(wtype).codec, rows, cols, rng)


class Arena:
    """Device buffers of one benchmark, freed together."""

    def __init__(self, dev):
        self.dev, self.bufs = dev, []

    def put(self, arr: np.ndarray):
        b = self.dev.alloc(max(1, arr.nbytes))
        if arr.nbytes:
            self.dev.upload(b, np.ascontiguousarray(arr))
        self.bufs.append(b)
        return b

    def zeros(self, nbytes: int):
        return self.put(np.zeros(nbytes, np.uint8))

    def free(self):
        for b in self.bufs:
            self.dev.free(b)
        self.bufs = []


@dataclass
class Op:
    """One operation of a decode step: how to launch it on a device (host or emulator)."""

    name: str
    per_step: int
    nbytes: int  # bytes it must move at least
    weight: tuple | None = None  # (wtype, rows, cols): rotated over copies
    host: tuple | None = None  # (family, params, args(bufs, w) -> values, shapes)
    emu: tuple | None = None
    extra: dict = field(default_factory=dict)


def kv_setup(arena: Arena, ctx: int, rng):
    """A KV cache of one layer holding `ctx` tokens (f16, pages of 16, identity page table)."""
    pages = -(-(ctx + 1) // PAGE)
    k = arena.put((rng.standard_normal((pages, KV, PAGE, HD)) * 0.5).astype(np.float16))
    v = arena.put((rng.standard_normal((pages, KV, PAGE, HD)) * 0.5).astype(np.float16))
    return k, v, arena.put(np.arange(pages, dtype=np.int32))


def ops(ctx: int, splits: int) -> list[Op]:
    """The operations of one decode step at SmolLM2 shapes, with their launches per step."""
    f32 = 4
    fl = freq_log2(1e5, HD)
    out = [Op("embed (q8_0 row)", 1, 34 * E // 32 + f32 * E,
              host=("embed", {"wtype": "q8_0"}, lambda b, w: (b["emb"], b["ids"], b["x"], 1, VOCAB, E),
                    {"n_tokens": 1, "n_cols": E})),
           Op("rmsnorm 576", 2 * LAYERS + 1, 3 * f32 * E,
              host=("rmsnorm", {"dtype": "f32", "block": 256}, lambda b, w: (b["x"], b["nw"], b["xn"], E, 1e-5),
                    {"rows": 1})),
           Op("quantize_q8 576", 3 * LAYERS + 1, f32 * E + E + E // 4,
              host=("quantize_q8", {}, lambda b, w: (b["x"], b["xq"], b["xd"], E), {"rows": 1})),
           Op("quantize_q8 1536", LAYERS, f32 * FF + FF + FF // 4,
              host=("quantize_q8", {}, lambda b, w: (b["h"], b["xq"], b["xd"], FF), {"rows": 1}))]
    for name, count in (("q", 2), ("k", 2), ("gate", 2), ("down", 1)):
        rows, cols = MATS[name]
        label = {"q": "Q, O", "k": "K, V", "gate": "gate, up", "down": "down"}[name]
        out.append(Op(f"matmul_q8 q4_1 {rows}x{cols} ({label})", count * LAYERS,
                      20 * rows * cols // 32 + cols + cols // 4 + f32 * rows, ("q4_1", rows, cols),
                      host=("matmul_q8", {"wtype": "q4_1"},
                            lambda b, w, r=rows, c=cols: (w, b["xq"], b["xd"], b["y"], r, c, 1),
                            {"n_rows": rows, "n_cols": cols, "n_tokens": 1}),
                      emu=("gemv", {"wtype": "q4_1"}, lambda b, w, r=rows, c=cols: (w, b["x"], b["y"], r, c),
                           {"n_rows": rows, "n_cols": cols})))
    out += [Op("rope Q (9 heads)", LAYERS, 2 * f32 * E,
               host=("rope", {"mode": "normal", "dtype": "f32", "block": 128},
                     lambda b, w: (b["x"], b["pos"], H, HD, HD, fl, 1.0), {"n_tokens": 1, "n_heads": H, "n_rot": HD})),
            Op("kv_append f16 + RoPE", LAYERS, 2 * f32 * KV * HD + 2 * 2 * KV * HD,
               host=("kv_append", {"kv": "f16", "block": 128},
                     lambda b, w: (b["kn"], b["vn"], b["pos"], b["table"], b["kc"], b["vc"], 1, KV, HD, PAGE, HD, 0,
                                   fl, 1.0), {"n_tokens": 1, "n_kv_heads": KV})),
            Op(f"attn_decode f16 ctx {ctx} ({splits} splits)", LAYERS, 2 * 2 * ctx * KV * HD + f32 * E,
               host=("attn_decode", {"head_dim": HD, "kv": "f16"},
                     lambda b, w: (b["x"], b["kc"], b["vc"], b["table"], b["po"], b["pml"], H, KV, PAGE, b["kvlen"],
                                   0.125), {"n_splits": splits, "n_heads": H, "n_kv_heads": KV})),
            Op("attn_combine", LAYERS, f32 * (splits * H * (HD + 2) + E),
               host=("attn_combine", {"block": 128}, lambda b, w: (b["po"], b["pml"], b["y"], splits, H, HD),
                     {"n_heads": H})),
            Op("add 576 (residual)", 2 * LAYERS, 3 * f32 * E,
               host=("elementwise", {"op": "add", "dtype": "f32", "block": 256},
                     lambda b, w: (b["x"], b["xn"], b["y"], E), {"n": E})),
            Op("swiglu 1536", LAYERS, 3 * f32 * FF,
               host=("swiglu", {"dtype": "f32", "block": 256}, lambda b, w: (b["g"], b["h"], b["gy"], FF), {"n": FF})),
            Op("matmul_q8 q8_0 49152x576 (head)", 1, 34 * VOCAB * E // 32 + E + E // 4 + f32 * VOCAB,
               ("q8_0", VOCAB, E),
               host=("matmul_q8", {"wtype": "q8_0"}, lambda b, w: (w, b["xq"], b["xd"], b["logits"], VOCAB, E, 1),
                     {"n_rows": VOCAB, "n_cols": E, "n_tokens": 1}),
               emu=("gemv", {"wtype": "q8_0"}, lambda b, w: (w, b["x"], b["logits"], VOCAB, E),
                    {"n_rows": VOCAB, "n_cols": E})),
            Op("sample (top-k 40, p 0.95)", 1, f32 * VOCAB,
               host=("sample", {"block": 256}, lambda b, w: (b["logits"], b["state"], b["tok"], VOCAB), {}))]
    for o in out:  # the GPU-model kernels share the host kernels' arguments unless they differ
        if o.emu is None and o.host[0] not in ("quantize_q8", "matmul_q8"):
            o.emu = o.host
    return out


def sample_state() -> np.ndarray:
    """The sampler's state buffer (forge/codegen/specs/sample.py): temperature 0.8, top-k 40,
    top-p 0.95, min-p 0.05, no penalty, seed 1."""
    from forge.codegen.specs.sample import STATE_WORDS
    st = np.zeros(STATE_WORDS, np.uint32)
    f = lambda v: np.float32(v).view(np.uint32)
    st[0], st[1], st[2], st[3], st[4], st[5], st[6] = f(0.8), 40, f(0.95), f(0.05), f(1.0), 64, 1
    return st


def activations(arena: Arena, ctx: int, splits: int, rng) -> dict:
    """Every activation buffer a decode step uses (random contents, the right sizes)."""
    a = lambda *shape: arena.put(rng.standard_normal(shape).astype(np.float32))
    b = {"x": a(E), "xn": a(E), "y": a(VOCAB), "nw": a(E), "h": a(FF), "g": a(FF), "gy": a(FF),
         "kn": a(KV * HD), "vn": a(KV * HD), "logits": a(VOCAB),
         "xq": arena.put(rng.integers(-127, 128, FF).astype(np.int8)),
         "xd": arena.put(np.abs(rng.standard_normal((FF // 32, 2))).astype(np.float32) * 0.01),
         "ids": arena.put(np.array([123], np.int32)), "pos": arena.put(np.array([ctx], np.int32)),
         "kvlen": arena.put(np.array([ctx + 1], np.int32)), "state": arena.put(sample_state()),
         "tok": arena.put(np.zeros(1, np.int32)),
         "po": arena.zeros(4 * splits * H * HD), "pml": arena.zeros(4 * splits * H * 2),
         "emb": arena.put(random_matrix("q8_0", VOCAB, E, rng))}
    b["kc"], b["vc"], b["table"] = kv_setup(arena, ctx, rng)
    return b


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def time_host(dev, kernels, op: Op, bufs: dict, arena: Arena, args, rng) -> float:
    """Seconds per launch: a recorded list cycling through weight copies, best of args.repeats."""
    fam, params, make, shapes = op.host
    k = kernels.get(fam, **params)
    g = k.variant.launch(k.arch, **shapes)
    ws = [None]
    if op.weight:
        raw = random_matrix(*op.weight, rng)
        ws = [arena.put(raw) for _ in range(max(1, -(-args.rotate_mb * 10**6 // raw.nbytes)))]
    n = max(len(ws), 64)
    lst = dev.record([BoundLaunch(k.fn, g.grid, g.block, g.shared_bytes, make(bufs, ws[i % len(ws)]), tuple(k.args))
                      for i in range(n)])
    lst.run()
    t = best(lst.run, args.repeats) / n
    lst.close()
    return t


def time_emu(dev, kernels, op: Op, bufs: dict, arena: Arena, rng) -> float | None:
    if op.emu is None:
        return None
    fam, params, make, shapes = op.emu
    k = kernels.get(fam, **params)
    w = arena.put(random_matrix(*op.weight, rng)) if op.weight else None
    vals = make(bufs, w)
    k(*vals, **shapes)
    t0 = time.perf_counter()
    k(*vals, **shapes)
    one = time.perf_counter() - t0
    reps = max(1, min(20, int(0.3 / max(one, 1e-6))))
    return best(lambda: [k(*vals, **shapes) for _ in range(reps)], 3) / reps


def decode_step(dev, kernels, ctx: int, splits: int, rng) -> tuple[int, float, float]:
    """(launches, best seconds, median seconds) of one whole decode step replayed as a list."""
    arena = Arena(dev)
    try:
        b = activations(arena, ctx, splits, rng)
        b["x2"], b["o"] = arena.put(np.zeros(E, np.float32)), arena.put(np.zeros(E, np.float32))
        get = lambda fam, **p: kernels.get(fam, **p)
        lst = []

        def add(fam, params, values, **shapes):
            k = get(fam, **params)
            g = k.variant.launch(k.arch, **shapes)
            lst.append(BoundLaunch(k.fn, g.grid, g.block, g.shared_bytes, tuple(values), tuple(k.args)))

        fl = freq_log2(1e5, HD)
        add("embed", {"wtype": "q8_0"}, (b["emb"], b["ids"], b["x"], 1, VOCAB, E), n_tokens=1, n_cols=E)

        def quant(src, n):
            add("quantize_q8", {}, (src, b["xq"], b["xd"], n), rows=1)

        def norm_quant(src):
            add("rmsnorm", {"dtype": "f32", "block": 256}, (src, b["nw"], b["xn"], E, 1e-5), rows=1)
            quant(b["xn"], E)

        def mm(w, dst, rows, cols, wtype="q4_1"):
            add("matmul_q8", {"wtype": wtype}, (w, b["xq"], b["xd"], dst, rows, cols, 1),
                n_rows=rows, n_cols=cols, n_tokens=1)

        for _ in range(LAYERS):
            w = {m: arena.put(random_matrix("q4_1", *MATS[m], rng)) for m in MATS}
            kc, vc, table = kv_setup(arena, ctx, rng)
            norm_quant(b["x"])
            mm(w["q"], b["g"], E, E)
            mm(w["k"], b["kn"], KV * HD, E)
            mm(w["v"], b["vn"], KV * HD, E)
            add("rope", {"mode": "normal", "dtype": "f32", "block": 128}, (b["g"], b["pos"], H, HD, HD, fl, 1.0),
                n_tokens=1, n_heads=H, n_rot=HD)
            add("kv_append", {"kv": "f16", "block": 128},
                (b["kn"], b["vn"], b["pos"], table, kc, vc, 1, KV, HD, PAGE, HD, 0, fl, 1.0), n_tokens=1, n_kv_heads=KV)
            add("attn_decode", {"head_dim": HD, "kv": "f16"},
                (b["g"], kc, vc, table, b["po"], b["pml"], H, KV, PAGE, b["kvlen"], 0.125),
                n_splits=splits, n_heads=H, n_kv_heads=KV)
            add("attn_combine", {"block": 128}, (b["po"], b["pml"], b["o"], splits, H, HD), n_heads=H)
            quant(b["o"], E)  # the attention output feeds the O projection as is
            mm(w["o"], b["y"], E, E)
            add("elementwise", {"op": "add", "dtype": "f32", "block": 256}, (b["x"], b["y"], b["x2"], E), n=E)
            norm_quant(b["x2"])
            mm(w["gate"], b["g"], FF, E)
            mm(w["up"], b["h"], FF, E)
            add("swiglu", {"dtype": "f32", "block": 256}, (b["g"], b["h"], b["gy"], FF), n=FF)
            quant(b["gy"], FF)
            mm(w["down"], b["y"], E, FF)
            add("elementwise", {"op": "add", "dtype": "f32", "block": 256}, (b["x2"], b["y"], b["x"], E), n=E)
        norm_quant(b["x"])
        mm(b["emb"], b["logits"], VOCAB, E, "q8_0")
        add("sample", {"block": 256}, (b["logits"], b["state"], b["tok"], VOCAB))
        step = dev.record(lst)
        step.run()
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            step.run()
            times.append(time.perf_counter() - t0)
        step.close()
        return len(lst), min(times), float(np.median(times))
    finally:
        arena.free()


def launch_overhead(dev, kernels) -> dict:
    """Per-launch cost of dispatch itself, with kernels that do next to nothing: a one-block launch
    from Python (Kernel.__call__ -> HostDevice.launch), the same inside a replayed list, and a
    launch of `threads` blocks inside a replayed list (the pool's hand-off and join)."""
    arena = Arena(dev)
    try:
        x = arena.put(np.ones(64, np.float32))
        pos = arena.put(np.zeros(64, np.int32))
        add = kernels.get("elementwise", op="add", dtype="f32", block=256)
        rope = kernels.get("rope", mode="normal", dtype="f32", block=128)
        add(x, x, x, 1, n=1)
        n = 20000
        py = best(lambda: [add(x, x, x, 1, n=1) for _ in range(n)], 5) / n
        out = {"python_us": py * 1e6}
        for name, k, vals, shapes in (("list_1_block_us", add, (x, x, x, 1), {"n": 1}),
                                      ("list_pool_us", rope, (x, pos, 1, 2, 2, 0.0, 1.0),
                                       {"n_tokens": dev.threads, "n_heads": 1, "n_rot": 2})):
            g = k.variant.launch(k.arch, **shapes)
            lst = dev.record([BoundLaunch(k.fn, g.grid, g.block, 0, vals, tuple(k.args))] * 1000)
            lst.run()
            out[name] = best(lst.run, 20) / 1000 * 1e6
            lst.close()
        return out
    finally:
        arena.free()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ctx", type=int, default=256, help="tokens already in the KV cache (default 256)")
    ap.add_argument("--splits", type=int, help="attn_decode splits (default: the host's threads)")
    ap.add_argument("--no-emu", dest="emu", action="store_false", help="skip the emulator column")
    ap.add_argument("--rotate-mb", type=int, default=128, help="weight copies a list cycles through, in MB")
    ap.add_argument("--repeats", type=int, default=15, help="timed replays per kernel (best is reported)")
    ap.add_argument("--threads", type=int, help="FORGE_HOST_THREADS for this run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        os.environ["FORGE_HOST_THREADS"] = str(args.threads)
    from forge.runtime.host import HostDevice
    rng = np.random.default_rng(args.seed)
    host = HostDevice()
    splits = args.splits or host.threads
    hk = Dispatcher(host, get_arch("host"))
    load0 = os.getloadavg()
    print(f"SmolLM2-135M decode shapes, KV context {args.ctx}; host: {host!r}; load average {load0[0]:.2f} "
          f"{load0[1]:.2f} {load0[2]:.2f} (1/5/15 min) on {os.cpu_count()} CPUs")
    emu = emu_kernels = None
    if args.emu:
        from forge.runtime.emu import EmuDevice
        emu = EmuDevice(wave_size=32)
        emu_kernels = Dispatcher(emu, emu_arch(32))
    lo = launch_overhead(host, hk)
    print(f"launch overhead: {lo['python_us']:.2f} us from Python (1 block); in a replayed list "
          f"{lo['list_1_block_us']:.3f} us (1 block), {lo['list_pool_us']:.2f} us ({host.threads} blocks over the pool)")
    head = f"{'operation':<40} {'/step':>5} {'host us':>9} {'GB/s':>6} {'emu us':>10} {'GB/s':>6} {'x':>6} {'host us/step':>12}"
    print(head)
    print("-" * len(head))
    total_host = total_emu = 0.0
    emu_complete = True
    for op in ops(args.ctx, splits):
        ha, ea = Arena(host), Arena(emu) if emu else None
        try:
            th = time_host(host, hk, op, activations(ha, args.ctx, splits, rng), ha, args, rng)
            te = time_emu(emu, emu_kernels, op, activations(ea, args.ctx, splits, rng), ea, rng) if emu else None
        finally:
            ha.free()
            if ea:
                ea.free()
        total_host += th * op.per_step
        if te is None:
            emu_complete = False
        else:
            total_emu += te * op.per_step
        es = f"{te * 1e6:>10.1f} {op.nbytes / te / 1e9:>6.2f} {te / th:>6.0f}" if te else f"{'-':>10} {'-':>6} {'-':>6}"
        print(f"{op.name:<40} {op.per_step:>5} {th * 1e6:>9.2f} {op.nbytes / th / 1e9:>6.2f} {es} "
              f"{th * op.per_step * 1e6:>12.0f}", flush=True)
    print(f"sum over a decode step: host {total_host * 1e3:.2f} ms ({1 / total_host:.0f} tokens/s)"
          + (f"; emulator {total_emu * 1e3:.0f} ms" + ("" if emu_complete else " (without quantize_q8, whose work "
             "the emulator's gemv does in f32)") if emu else ""))
    n, t_best, t_med = decode_step(host, hk, args.ctx, splits, rng)
    print(f"decode step replayed ({n} launches, 30 layers of distinct weights): best {t_best * 1e3:.2f} ms "
          f"({1 / t_best:.0f} tokens/s), median {t_med * 1e3:.2f} ms ({1 / t_med:.0f} tokens/s)")
    load1 = os.getloadavg()
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
