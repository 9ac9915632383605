"""Prefill GEMM throughput: Y = X W^T for a batch of tokens, per weight type, on llama-8B's shapes.

    python benchmarks/gemm.py --backend cuda                      # m = 512, the four 8B shapes, f16 q8_0 q4_0 q4_k
    python benchmarks/gemm.py --backend cuda --types q4_0 --m 128,512 --json out.json
    python benchmarks/gemm.py --backend emu-sm90 --small          # the mma.sync path on the emulator (CI-sized)
    python benchmarks/gemm.py --backend emu --small               # the scalar path on the emulator
    python benchmarks/gemm.py --backend cuda --types q4_0,f16 --variants old,ldm,ldm_t64   # per lever
    python benchmarks/gemm.py --backend cuda --variants ldm,ldm_t64,f16x                   # X as f16 once a batch
    python benchmarks/gemm.py --backend cuda --types q4_0,q4_k --variants f16x,q8x         # f16 X against int8 X

Variants (--variants; the mma.sync path's gemm parameters, each timed and checked on the same data):
old = the 32-bit fragment loads on 128 x 128 tiles (the kernel before issue 15's levers), ldm =
ldmatrix fragments on 128 x 128 tiles, ldm_t64 = ldmatrix on 64 x 64 tiles (these three with f32 X
and one K group: two need converted X), f16x = X converted to f16 once by x_f16 and read by the gemm xin=f16 (lowering's
GEMM_F16_X) on the tile and K groups lowering picks: three rows, f16x (conversion + gemm, launched in
pairs), f16x_gemm (the gemm alone, on converted X) and f16x_conv (the conversion alone); f16x_kg1 the
same with one K group; q8x = X quantized once by quantize_q8 and read by the int8 gemm
xin=q8 (lowering's GEMM_Q8_X; matmul_q8's types but q6_k) on the tile and K groups lowering picks,
likewise three rows: q8x (quantization + gemm), q8x_gemm and q8x_quant; q8x_kg1 the same with one K
group. q8x is checked against X as quantize_q8
left it (the dequantized xq * d_x: its quantization error is no part of the gemm's). The 'auto' column marks
the variant lowering picks for the shape (specs/gemm.py gemm_params; f16x_gemm where lowering's
GEMM_F16_X is on), and the 8B estimate is printed per variant and for 'auto' (each shape at its
picked variant, with a layer's conversions where they are f16x or q8x). Paths other than mma.sync have only
their default parameters ('default').

For each weight type and shape (rows x cols: rows of W = outputs, cols = the reduction): random valid
weights in the type's storage encoding (benchmarks/gemv.py's random_matrix), as many device copies as
exceed --rotate-mb (launches cycle through them, so a matrix is not served from the previous
launch's L2 the way one layer's weights never are in a real prefill), X f32 [m, cols] standard
normal; the gemm kernel comes through the JIT dispatcher, so it is whatever path the arch takes
(mma.sync on sm_80/sm_90 and emu-sm90, WMMA on gfx1100, scalar elsewhere). Timing as
benchmarks/gemv.py: on a device with events (CUDA) --launches launches are recorded once as a graph
and replayed --repeats times between two events; elsewhere host-timed batches. TFLOP/s = 2 m rows
cols / time.

Check (--no-check skips it): the first 64 tokens x 64 rows against a float64 product of the decoded
weights, within (n 2^-21 / (1 - n 2^-21) + 2^-9) sum_k |x_k w_k| + 2^-20 (sum|x| + sum|w|): the f16
paths' bound (tests/kernels/test_gemm.py derives the exact one) with room; the scalar path is far
inside it. A sanity check for a benchmark, not the property test.

The 8B estimate: llama-3-8B's 32 layers each run q, o (4096x4096), k, v (1024x4096), gate, up
(14336x4096) and down (4096x14336) on the same m tokens; the sum of the measured times per layer x
32 is the projections' share of one prefill batch (attention, norms, RoPE and the output head are
not in it). For f16x the estimate counts the conversions a layer really makes (lowering shares one
per distinct input: q/k/v's, o's, gate/up's of 4096 columns and down's of 14336) beside f16x_gemm's
times, instead of one per projection; q8x likewise with quantize_q8's. For scale: llama.cpp's pp512 on an H100 with a llama-8B Q4_0 is ~10.8k tokens/s, i.e.
~47 ms per 512-token batch for the whole model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemv import decode, has_graphs, make_device, random_matrix, rotation, time_launches  # noqa: E402
from forge.codegen.specs.gemm import Q8_WTYPES, gemm_params, path, rounds_to_f16, tiles  # noqa: E402
from forge.codegen.wtypes import get_wtype  # noqa: E402
from forge.errors import ForgeError  # noqa: E402
from forge.runtime.device import BoundLaunch  # noqa: E402
from forge.runtime.dispatch import Dispatcher  # noqa: E402
from forge.runtime.lower import GEMM_F16_X, GEMM_Q8_X  # noqa: E402

# llama-3-8B's projections (rows x cols) and how often each runs per layer.
LAYER = {(4096, 4096): 2, (1024, 4096): 2, (14336, 4096): 2, (4096, 14336): 1}
N_LAYERS = 32
SMALL = ((136, 256), (40, 512))  # --small: tails on both sides of a 128 x 128 tile, K-quant-sized columns
LLAMA_CPP_PP512 = 10.8e3  # tokens/s, H100, llama-8B Q4_0 (the comparison the issue names)
U_A, U_H, E_ABS = 2.0 ** -21, 2.0 ** -9, 2.0 ** -20


def check(y: np.ndarray, raw: np.ndarray, x: np.ndarray, wtype: str, cols: int) -> str:
    """'ok' or 'WRONG': the first 64 x 64 outputs against float64, within the module docstring's bound."""
    n = min(64, raw.shape[0])
    w = decode(wtype, raw[:n], cols).astype(np.float64)
    xs = x[:64].astype(np.float64)
    ref, mag = xs @ w.T, np.abs(xs) @ np.abs(w).T
    g = cols * U_A / (1 - cols * U_A)
    tol = (g + U_H) * mag + E_ABS * (np.abs(xs).sum(1)[:, None] + np.abs(w).sum(1)[None, :])
    got = y[:xs.shape[0], :n]
    return "ok" if np.all(np.abs(got - ref) <= tol) else "WRONG"


def verdict(dev, args, by, raw, wtype: str, shape, x_ref) -> str:
    """After the launches just made: Y in `by` against float64 with X = x_ref() ("ok" / "WRONG"; a
    NaN means an output was not written over the NaN fill), or "-" without --check."""
    m, rows, cols = shape
    dev.synchronize()
    if not args.check:
        return "-"
    y = np.frombuffer(dev.download(by, m * rows * 4), np.float32).reshape(m, rows)
    return check(y, raw, x_ref(), wtype, cols) if not np.isnan(y).any() else "WRONG"


# The mma.sync path's variants by lever (module docstring); params beyond wtype.
MMA_VARIANTS = {"old": {"ldmatrix": False}, "ldm": {}, "ldm_t64": {"tile": 64},
                "f16x": {"xin": "f16"}, "f16x_kg1": {"xin": "f16", "kgroups": 1}, "q8x": {"xin": "q8", "ldmatrix": False},
                "q8x_kg1": {"xin": "q8", "ldmatrix": False, "kgroups": 1}}
CONVERSIONS = {4096: 3, 14336: 1}  # x_f16 / quantize_q8 launches per 8B layer by column count (lowering shares them)
X_PASSES = {"f16x": "f16x_conv", "f16x_kg1": "f16x_kg1_conv", "q8x": "q8x_quant", "q8x_kg1": "q8x_kg1_quant"}  # the X pass each converted-X variant's estimate adds


def q8_auto(wtype: str) -> bool:
    """Whether lowering takes the int8 gemm for wtype (GEMM_Q8_X on and the variant exists)."""
    return GEMM_Q8_X and wtype in Q8_WTYPES


def variants_for(arch, wtype: str, names: list[str]) -> dict[str, dict]:
    """{name: params} to time for wtype on arch: the named mma.sync variants on that path, else the default."""
    if arch.is_gpu_semantics and path(arch, wtype) == "mma_sync":  # (q8x* only for the types it has)
        return {n: MMA_VARIANTS[n] for n in names if MMA_VARIANTS[n].get("xin") != "q8" or wtype in Q8_WTYPES}
    return {"default": {}}


def bench_one(dev, kernels: Dispatcher, wtype: str, m: int, rows: int, cols: int, args, rng,
              variants: dict[str, dict]) -> list[dict]:
    """One row per variant, all on the same weights and X, each checked against float64."""
    raw = random_matrix(wtype, rows, cols, rng)
    x = rng.standard_normal((m, cols)).astype(np.float32)
    bws = rotation(dev, raw, args.rotate_mb)
    bx, by = dev.alloc(x.nbytes), dev.alloc(m * rows * 4)
    bxh, bxe = dev.alloc(m * cols * 2), dev.alloc(m * 4)  # x_f16's output, for f16x (quantize_q8's: xq, xd)
    auto = {k: v for k, v in gemm_params(kernels.arch, wtype, m, rows).items() if k != "wtype"}
    out = []
    try:
        dev.upload(bx, x)
        for name, params in variants.items():
            if params.get("xin") == "f16":  # on lowering's tile and K groups unless the variant names them
                out += bench_f16x(dev, kernels, wtype, m, rows, cols, args, raw, x, bws, (bx, bxh, bxe, by),
                                  {**{k: v for k, v in auto.items() if k in ("tile", "kgroups")}, **params}, name)
                continue
            if params.get("xin") == "q8":  # likewise
                out += bench_q8x(dev, kernels, wtype, m, rows, cols, args, raw, bws, (bx, bxh, bxe, by),
                                 {**{k: v for k, v in auto.items() if k in ("tile", "kgroups")}, **params}, name)
                continue
            k = kernels.get("gemm", wtype=wtype, **params)
            g = k.variant.launch(k.arch, m=m, n_rows=rows, n_cols=cols)
            dev.memset(by, 0xFF)  # NaN: every output must be written
            k(bws[0], bx, by, m, rows, cols, m=m, n_rows=rows, n_cols=cols)
            ok = verdict(dev, args, by, raw, wtype, (m, rows, cols), lambda: x)
            launches = [BoundLaunch(k.fn, g.grid, g.block, g.shared_bytes, (bws[i % len(bws)], bx, by, m, rows, cols),
                                    tuple(k.args)) for i in range(args.launches)]
            t = statistics.median(time_launches(dev, launches, args.repeats, args.min_time))
            full = k.variant.params
            out.append({"wtype": wtype, "m": m, "rows": rows, "cols": cols, "variant": name, "params": full,
                        "auto": name == "default" or (not GEMM_F16_X and not q8_auto(wtype) and all(
                            full.get(p) == v for p, v in {"tile": 128, "ldmatrix": True, "xin": "f32", **auto}.items())),
                        "grid": list(g.grid), "shared": g.shared_bytes, "us": t * 1e6,
                        "tflops": 2.0 * m * rows * cols / t / 1e12, "check": ok})
    finally:
        for b in (*bws, bx, by, bxh, bxe):
            dev.free(b)
    return out


def bench_f16x(dev, kernels: Dispatcher, wtype: str, m: int, rows: int, cols: int, args, raw, x, bws, bufs,
               params: dict, name: str = "f16x") -> list[dict]:
    """Rows NAME (x_f16 then the gemm xin=f16, launched in pairs), NAME_gemm (the gemm alone) and
    NAME_conv (x_f16 alone), on the same data as the other variants; the gemm's output checked."""
    bx, bxh, bxe, by = bufs
    conv, k = kernels.get("x_f16"), kernels.get("gemm", wtype=wtype, **params)
    gc, g = conv.variant.launch(conv.arch, rows=m, n_cols=cols), k.variant.launch(k.arch, m=m, n_rows=rows, n_cols=cols)
    dev.memset(by, 0xFF)
    conv(bx, bxh, bxe, cols, rows=m, n_cols=cols)
    k(bws[0], bxh, bxe, by, m, rows, cols, m=m, n_rows=rows, n_cols=cols)
    ok = verdict(dev, args, by, raw, wtype, (m, rows, cols), lambda: x)

    def conv_launch():
        return BoundLaunch(conv.fn, gc.grid, gc.block, gc.shared_bytes, (bx, bxh, bxe, cols), tuple(conv.args))

    def gemm_launch(i):
        return BoundLaunch(k.fn, g.grid, g.block, g.shared_bytes, (bws[i % len(bws)], bxh, bxe, by, m, rows, cols),
                           tuple(k.args))

    auto = "f16x_gemm" if GEMM_F16_X and not q8_auto(wtype) else None
    return pass_rows(dev, args, (wtype, m, rows, cols), name, "conv", conv_launch, gemm_launch, k, (g, gc), auto, ok)


def pass_rows(dev, args, shape, name: str, suffix: str, pass_launch, gemm_launch, k, grids, auto: str | None,
              ok: str) -> list[dict]:
    """The timed rows of a converted-X variant: NAME (the X pass then the gemm, launched in pairs),
    NAME_gemm (the gemm alone) and NAME_<suffix> (the pass alone); `auto` names lowering's row."""
    wtype, m, rows, cols = shape
    g, gp = grids
    lists = {name: [L for i in range(args.launches) for L in (pass_launch(), gemm_launch(i))],
             f"{name}_gemm": [gemm_launch(i) for i in range(args.launches)],
             f"{name}_{suffix}": [pass_launch() for _ in range(args.launches)]}
    out = []
    for row, launches in lists.items():
        # time_launches gives seconds per launch; a NAME step is a pair of them
        t = statistics.median(time_launches(dev, launches, args.repeats, args.min_time)) * (2 if row == name else 1)
        alone = row.endswith("_" + suffix)
        out.append({"wtype": wtype, "m": m, "rows": rows, "cols": cols, "variant": row, "params": k.variant.params,
                    "auto": row == auto, "grid": list(gp.grid if alone else g.grid), "shared": g.shared_bytes,
                    "us": t * 1e6, "tflops": 0.0 if alone else 2.0 * m * rows * cols / t / 1e12, "check": ok})
    return out


def bench_q8x(dev, kernels: Dispatcher, wtype: str, m: int, rows: int, cols: int, args, raw, bws, bufs,
              params: dict, name: str = "q8x") -> list[dict]:
    """Rows NAME (quantize_q8 then the gemm xin=q8, launched in pairs), NAME_gemm (the gemm alone) and
    NAME_quant (quantize_q8 alone), on the same data as the other variants; the gemm's output checked
    against the X quantize_q8 made (xq * d_x, downloaded)."""
    bx, bxq, bxd, by = bufs  # bxq (m * cols * 2 bytes) holds xq's m * cols, bxd (m * 4) too little: its own
    bxd = dev.alloc(m * (cols // 32) * 8)
    quant, k = kernels.get("quantize_q8"), kernels.get("gemm", wtype=wtype, **params)
    gq, g = quant.variant.launch(quant.arch, rows=m, n_cols=cols), k.variant.launch(k.arch, m=m, n_rows=rows, n_cols=cols)
    try:
        dev.memset(by, 0xFF)
        quant(bx, bxq, bxd, cols, rows=m, n_cols=cols)
        k(bws[0], bxq, bxd, by, m, rows, cols, m=m, n_rows=rows, n_cols=cols)

        def quantized_x():  # X as quantize_q8 left it: xq * d_x
            xq = np.frombuffer(dev.download(bxq, m * cols), np.int8).reshape(m, cols // 32, 32)
            xd = np.frombuffer(dev.download(bxd, m * (cols // 32) * 8), np.float32).reshape(m, cols // 32, 2)
            return (xq * xd[..., :1]).reshape(m, cols).astype(np.float32)
        ok = verdict(dev, args, by, raw, wtype, (m, rows, cols), quantized_x)

        def quant_launch():
            return BoundLaunch(quant.fn, gq.grid, gq.block, gq.shared_bytes, (bx, bxq, bxd, cols), tuple(quant.args))

        def gemm_launch(i):
            return BoundLaunch(k.fn, g.grid, g.block, g.shared_bytes, (bws[i % len(bws)], bxq, bxd, by, m, rows, cols),
                               tuple(k.args))

        auto = "q8x_gemm" if q8_auto(wtype) else None
        return pass_rows(dev, args, (wtype, m, rows, cols), name, "quant", quant_launch, gemm_launch, k, (g, gq),
                         auto, ok)
    finally:
        dev.free(bxd)


def estimate(rows_out: list[dict], wtype: str, m: int, variant: str) -> float | None:
    """Seconds of the 8B layer stack's projections for m tokens, from the measured shapes of `variant`
    ('auto': each shape's picked variant); None when a shape of LAYER was not measured."""
    if variant == "auto" and (q8_auto(wtype) or GEMM_F16_X):
        variant = "q8x" if q8_auto(wtype) else "f16x"
    if variant in X_PASSES:  # the gemms plus a layer's X passes (conversions or quantizations)
        gemm, conv = estimate(rows_out, wtype, m, variant + "_gemm"), {}
        for r in rows_out:
            if r["wtype"] == wtype and r["m"] == m and r["variant"] == X_PASSES[variant]:
                conv[r["cols"]] = r["us"] * 1e-6
        if gemm is None or not all(c in conv for c in CONVERSIONS):
            return None
        return gemm + N_LAYERS * sum(n * conv[c] for c, n in CONVERSIONS.items())
    if variant in X_PASSES.values():
        return None
    t = {(r["rows"], r["cols"]): r["us"] * 1e-6 for r in rows_out if r["wtype"] == wtype and r["m"] == m
         and (r["auto"] if variant == "auto" else r["variant"] == variant)}
    if not all(s in t for s in LAYER):
        return None
    return N_LAYERS * sum(n * t[s] for s, n in LAYER.items())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="emu-sm90",
                    help="cuda, hip, emu (scalar path), or an emulator target: emu-sm90, emu-gfx1100")
    ap.add_argument("--arch", help="arch of a GPU backend when its device does not report one (sm_90, gfx1100)")
    ap.add_argument("--types", default="f16,q8_0,q4_0,q4_k", help="comma-separated weight types")
    ap.add_argument("--shapes", help="comma-separated ROWSxCOLS (default: llama-8B's four; --small: two tiny ones)")
    ap.add_argument("--m", default=None, help="comma-separated token counts (default 512; --small: 37)")
    ap.add_argument("--small", action="store_true", help="emulator-sized shapes (checks the script and the kernel)")
    ap.add_argument("--rotate-mb", type=int, help="weight copies launches cycle through, in MB at least "
                    "(default: 256 on a GPU, 0 on the emulator)")
    ap.add_argument("--launches", type=int, help="launches per timed list (default 20 on a GPU, 1 on the emulator)")
    ap.add_argument("--repeats", type=int, help="timed replays per case (default 5 on a GPU, 1 on the emulator)")
    ap.add_argument("--min-time", type=float, default=0.2, help="host timing: seconds a batch lasts at least")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the correctness check")
    ap.add_argument("--json", help="write every row to this file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="old,ldm,ldm_t64,f16x,q8x",
                    help=f"mma.sync variants to time per case, of {', '.join(MMA_VARIANTS)} (module docstring)")
    args = ap.parse_args(argv)
    gpu = args.backend in ("cuda", "hip")
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    shapes = ([tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")] if args.shapes
              else list(SMALL if args.small else LAYER))
    ms = [int(v) for v in args.m.split(",")] if args.m else [37 if args.small else 512]
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not names or any(n not in MMA_VARIANTS for n in names):
        ap.error(f"--variants: names of {', '.join(MMA_VARIANTS)}")
    args.rotate_mb = (256 if gpu else 0) if args.rotate_mb is None else args.rotate_mb
    args.launches = args.launches or (20 if gpu else 1)
    args.repeats = args.repeats or (5 if gpu else 1)
    rows_out = []
    try:
        for t in types:
            for r, c in shapes:
                get_wtype(t).check_shape(c, rows=r)
        dev, arch = make_device(args.backend, 32, args.arch)  # emu-sm90 etc. by name
        kernels = Dispatcher(dev, arch)
        rng = np.random.default_rng(args.seed)
        print(f"gemm Y = X W^T on {dev!r} ({arch.name}); "
              f"{'graphs of ' + str(args.launches) + ' launches timed with events' if has_graphs(dev) else 'host-timed batches'}, "
              f"median of {args.repeats}", flush=True)
        head = (f"{'wtype':<6} {'m':>5} {'shape':>11} {'variant':>9} {'auto':>4} {'tile':>9} {'f16':>3} {'grid':>9} "
                f"{'us':>10} {'TFLOP/s':>8}  check")
        print(head)
        print("-" * len(head), flush=True)
        for m in ms:
            for t in types:
                for r, c in shapes:
                    for row in bench_one(dev, kernels, t, m, r, c, args, rng, variants_for(arch, t, names)):
                        rows_out.append(row)
                        bm, bn, _ = (tiles(arch, t, row["params"].get("tile", 128)) if arch.is_gpu_semantics
                                     else (0, 0, 0))
                        print(f"{t:<6} {m:>5} {f'{r}x{c}':>11} {row['variant']:>9} {'*' if row['auto'] else '':>4} "
                              f"{f'{bm}x{bn}':>9} {'yes' if rounds_to_f16(arch, t) and row['params'].get('xin') != 'q8' else 'no':>3} "
                              f"{'x'.join(map(str, row['grid'][:2])):>9} {row['us']:>10.1f} {row['tflops']:>8.2f}  "
                              f"{row['check']}", flush=True)
        for m in ms:
            for t in types:
                for v in dict.fromkeys([*(r["variant"] for r in rows_out if r["wtype"] == t), "auto"]):
                    est = estimate(rows_out, t, m, v)
                    if est is not None:
                        print(f"8B projections, {t}, m={m}, {v}: {est * 1e3:.2f} ms per batch = {m / est:,.0f} "
                              f"tokens/s (gemm only; llama.cpp pp512 whole model ~{LLAMA_CPP_PP512:,.0f} tokens/s = "
                              f"{512 / LLAMA_CPP_PP512 * 1e3:.1f} ms per 512)", flush=True)
    except ForgeError as e:
        print(f"gemm bench: error: {e}", file=sys.stderr)
        return 1
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps({"device": repr(locals().get("dev")), "rows": rows_out}, indent=1))
    return 0 if all(r["check"] != "WRONG" for r in rows_out) else 2


if __name__ == "__main__":
    sys.exit(main())
