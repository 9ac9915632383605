"""Prefill attention (flash_attn over the paged KV cache): the arch's matrix path, in each version it
has, against the scalar path it replaced, on the same device, same cache, same launch geometry rules.

    python3 benchmarks/flash_attn.py --backend cuda        # 8B and 1B shapes, 512 and 2048 tokens, f16 KV
    python3 benchmarks/flash_attn.py --backend cuda --shapes 8b --tokens 512 --kv f16,q8_0 --json out.json
    python3 benchmarks/flash_attn.py --backend emu-sm90 --shapes 8b,1b --tokens 64 --repeats 1  # smoke run, no GPU

Shapes (--shapes): 8b = 32 query heads / 8 KV heads of 128 (Llama 3 8B), 1b = 32 / 8 of 64 (Llama
3.2 1B); --heads/--kv-heads/--head-dim give one custom shape instead. Kernels, all in one process on
the same data: "scalar" is the family rendered for the device's arch with its matrix features taken
away (the f32 fma tiles of common/attn.h, what ran before); "v1", "v2" are the matrix path that
flash_attn dispatches on the arch (mma.sync on sm_80/sm_90, WMMA on gfx1100, the f16 MFMA on
gfx942/gfx950: specs/flash_attn.py path()) in each version (the spec's v) the arch has: v1 scores through shared memory, v2 (mma.sync
only) S in registers, ldmatrix, double-buffered K/V tiles.
One sequence of --tokens tokens prefilled causally from position --n-past over a cache of
n_past + tokens positions in shuffled pages of --page-size; both outputs are checked against a
float64 attention of the decoded cache (relative error, printed; the matrix path's f16 inputs give
~1e-3). Time: the best/median of --repeats timings of one launch (device events where the backend
has them). TFLOP/s counts 4 d flops per visible (query head, key) pair: QK^T and PV, no masked work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.attention import build_cache  # noqa: E402
from benchmarks.gemv import make_device, time_launches  # noqa: E402
from forge.codegen.specs.flash_attn import path  # noqa: E402
from forge.runtime.device import BoundLaunch  # noqa: E402
from forge.runtime.dispatch import Dispatcher  # noqa: E402

MATRIX_FEATURES = {"mma_sync", "wmma_f16", "wmma_bf16", "mfma"}


def reference(q, k, v, scale, n_past, heads):
    """float64 causal attention of query heads `heads` (k, v: [n_kv, n_kv_heads, d] decoded)."""
    n, nh, d = q.shape
    group = nh // k.shape[1]
    vis = np.arange(k.shape[0])[None, :] <= (n_past + np.arange(n))[:, None]
    out = {}
    for h in heads:
        s = q[:, h].astype(np.float64) @ k[:, h // group].T * scale
        s = np.where(vis, s, -np.inf)
        p = np.exp(s - s.max(1, keepdims=True))
        out[h] = (p / p.sum(1, keepdims=True)) @ v[:, h // group]
    return out


# Largest relative error (max |o - ref| / max |ref| over the checked heads) counted as correct: the
# f16 paths give ~1e-3 (Q, K, P, V rounded to f16), the scalar f32 path ~1e-6; a wrong kernel, O(1).
MAX_REL_ERR = 1e-2
SHAPES = {"8b": (32, 8, 128), "1b": (32, 8, 64)}  # (query heads, KV heads, head dim)


def kernels_for(dev, arch, d, kv):
    """{label: (dispatcher, params)}: scalar, then each version of the matrix path on `arch`."""
    from forge.codegen.spec import get_spec
    spec = get_spec("flash_attn")
    old_arch = replace(arch, features=frozenset(arch.features - MATRIX_FEATURES))
    out = {"scalar": (Dispatcher(dev, old_arch), {"head_dim": d, "kv": kv})}
    if path(arch, d) != "scalar":
        new = Dispatcher(dev, arch)
        for v in spec.space["v"]:
            if spec.valid({"head_dim": d, "kv": kv, "v": v}, arch):
                out[f"v{v}"] = (new, {"head_dim": d, "kv": kv, "v": v})
    return out


def bench(dev, kernels, kv, n, n_past, nh, nkv, d, ps, repeats, rng):
    kv_len = n_past + n
    kst, vst, table, kdec, vdec = build_cache(kv, kv_len, nkv, d, ps, rng)
    q = rng.standard_normal((n, nh, d)).astype(np.float32)
    scale = float(np.float32(1 / np.sqrt(d)))
    bufs = {name: dev.alloc(a.nbytes) for name, a in (("q", q), ("k", kst), ("v", vst), ("t", table))}
    for name, a in (("q", q), ("k", kst), ("v", vst), ("t", table)):
        dev.upload(bufs[name], a)
    o = dev.alloc(q.nbytes)
    heads = sorted({0, nh // 2, nh - 1})
    ref = reference(q, kdec, vdec, scale, n_past, heads)
    out = {}
    for label, (disp, params) in kernels.items():
        kern = disp.get("flash_attn", **params)
        g = kern.variant.spec.launch(kern.variant.params, disp.arch, n_q=n, n_heads=nh, n_kv_heads=nkv)
        values = (bufs["q"], bufs["k"], bufs["v"], bufs["t"], o, n, nh, nkv, ps, kv_len, n_past, 1, scale)
        b = BoundLaunch(kern.fn, g.grid, g.block, g.shared_bytes, values, tuple(kern.args))
        times = time_launches(dev, [b], repeats)
        got = np.frombuffer(dev.download(o, q.nbytes), np.float32).reshape(q.shape)
        err = max(float(np.abs(got[:, h] - ref[h]).max() / np.abs(ref[h]).max()) for h in heads)
        pairs = nh * sum(min(kv_len, n_past + i + 1) for i in range(n))
        best = min(times)
        out[label] = {"path": path(disp.arch, d), "symbol": kern.symbol, "ms_best": best * 1e3,
                      "ms_median": statistics.median(times) * 1e3, "tflops": 4 * d * pairs / best / 1e12,
                      "rel_err": err}
    for buf in list(bufs.values()) + [o]:
        dev.free(buf)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="cuda", help="cuda, hip, or an emulator target (emu-sm90, emu-gfx1100)")
    ap.add_argument("--arch", help="the arch where the device does not report one")
    ap.add_argument("--tokens", default="512,2048", help="comma-separated prefill lengths")
    ap.add_argument("--n-past", type=int, default=0, help="positions already in the cache before the chunk")
    ap.add_argument("--shapes", default="8b,1b", help="comma-separated: " + ", ".join(SHAPES))
    ap.add_argument("--heads", type=int, help="a custom shape (with --kv-heads, --head-dim) instead of --shapes")
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--kv", default="f16", help="comma-separated KV dtypes: f32, f16, fp8, q8_0, mxfp6")
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args(argv)
    dev, arch = make_device(a.backend, 32, a.arch)
    shapes = {"custom": (a.heads, a.kv_heads, a.head_dim)} if a.heads else {k: SHAPES[k] for k in a.shapes.split(",")}
    rng = np.random.default_rng(0)
    rows, bad = [], []
    print(f"{arch.name}: n_past {a.n_past}, pages of {a.page_size}")
    for shape, (nh, nkv, d) in shapes.items():
        for kv in a.kv.split(","):
            kernels = kernels_for(dev, arch, d, kv)
            for n in map(int, a.tokens.split(",")):
                r = bench(dev, kernels, kv, n, a.n_past, nh, nkv, d, a.page_size, a.repeats, rng)
                for label, x in r.items():
                    ok = x["rel_err"] <= MAX_REL_ERR  # NaN fails too
                    bad += [] if ok else [f"{shape} {kv} {n} {label}"]
                    print(f"  {shape} ({nh}/{nkv} x {d}) {kv:5} {n:6} tokens  {label:6} ({x['path']:8}) "
                          f"{x['ms_best']:9.3f} ms best {x['ms_median']:9.3f} median  {x['tflops']:7.2f} TFLOP/s  "
                          f"rel err {x['rel_err']:.1e} {'ok' if ok else 'WRONG'}")
                base = r["scalar"]["ms_best"]
                print(f"  {shape} {kv:5} {n:6} tokens  speedup over scalar: "
                      + ", ".join(f"{k} {base / x['ms_best']:.2f}x" for k, x in r.items() if k != "scalar"))
                rows.append({"shape": shape, "heads": nh, "kv_heads": nkv, "head_dim": d, "kv": kv, "tokens": n,
                             **{f"{k}_{f}": v for k, x in r.items() for f, v in x.items()}})
    if a.json:
        Path(a.json).write_text(json.dumps({"arch": arch.name, "args": vars(a), "rows": rows}, indent=1))
    if bad:
        print(f"outputs off the float64 reference by more than {MAX_REL_ERR:g}: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
