"""Prefill attention (flash_attn over the paged KV cache): the arch's matrix path against the scalar
path it replaced, on the same device, same cache, same launch geometry rules.

    python3 benchmarks/flash_attn.py --backend cuda                        # 512 tokens, 32/8 heads, d 128, f16 KV
    python3 benchmarks/flash_attn.py --backend cuda --tokens 512,2048 --kv f16,q8_0 --json out.json
    python3 benchmarks/flash_attn.py --backend emu-sm90 --tokens 64 --repeats 1   # a smoke run, no GPU

"new" is the kernel flash_attn dispatches on the device's arch (mma.sync on sm_80/sm_90, WMMA on
gfx1100: specs/flash_attn.py path()); "old" is the same family rendered for the same arch with its
matrix features taken away, i.e. the scalar f32 fma tiles of common/attn.h (what ran before).
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
    for label, disp in kernels.items():
        kern = disp.get("flash_attn", head_dim=d, kv=kv)
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
    ap.add_argument("--tokens", default="512", help="comma-separated prefill lengths")
    ap.add_argument("--n-past", type=int, default=0, help="positions already in the cache before the chunk")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--kv", default="f16", help="comma-separated KV dtypes: f32, f16, fp8, q8_0")
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args(argv)
    dev, arch = make_device(a.backend, 32, a.arch)
    old_arch = replace(arch, features=frozenset(arch.features - MATRIX_FEATURES))
    kernels = {"old": Dispatcher(dev, old_arch), "new": Dispatcher(dev, arch)}
    rng = np.random.default_rng(0)
    rows = []
    print(f"{arch.name}: heads {a.heads}/{a.kv_heads}, d {a.head_dim}, n_past {a.n_past}, pages of {a.page_size}")
    for kv in a.kv.split(","):
        for n in map(int, a.tokens.split(",")):
            r = bench(dev, kernels, kv, n, a.n_past, a.heads, a.kv_heads, a.head_dim, a.page_size, a.repeats, rng)
            for label, x in r.items():
                print(f"  {kv:5} {n:6} tokens  {label} ({x['path']:8}) {x['ms_best']:9.3f} ms best "
                      f"{x['ms_median']:9.3f} median  {x['tflops']:7.2f} TFLOP/s  rel err {x['rel_err']:.1e}")
            print(f"  {kv:5} {n:6} tokens  speedup {r['old']['ms_best'] / r['new']['ms_best']:.2f}x")
            rows.append({"kv": kv, "tokens": n, **{f"{k}_{f}": v for k, x in r.items() for f, v in x.items()}})
    if a.json:
        Path(a.json).write_text(json.dumps({"arch": arch.name, "args": vars(a), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
