"""Launch one case of each hot decode kernel a few times, for a profiler to read (on the lent GPU):

    ncu --clock-control none --section SpeedOfLight --section WarpStateStats --section Occupancy \\
        python3 benchmarks/profile_kernels.py

Cases: gemv f16 and q4_k, matmul_q8 q4_0 (14336 x 4096), attn_decode + attn_combine (f16 KV,
context 4096, 32/8 heads, d 128, 32 splits). Inputs are random; nothing is timed here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.attention import build_cache  # noqa: E402
from benchmarks.gemv import make_device, random_matrix  # noqa: E402
from forge.runtime.dispatch import Dispatcher  # noqa: E402


def main() -> int:
    dev, arch = make_device("cuda", 32, None)
    k = Dispatcher(dev, arch)
    rng = np.random.default_rng(0)
    rows, cols = 14336, 4096
    x = rng.standard_normal(cols).astype(np.float32)
    bx, by = dev.alloc(x.nbytes), dev.alloc(rows * 4)
    dev.upload(bx, x)
    for wtype in ("f16", "q4_k"):
        raw = random_matrix(wtype, rows, cols, rng)
        bw = dev.alloc(raw.nbytes)
        dev.upload(bw, raw)
        g = k.get("gemv", wtype=wtype)
        for _ in range(3):
            g(bw, bx, by, rows, cols, n_rows=rows, n_cols=cols)
        dev.synchronize()
        dev.free(bw)
    raw = random_matrix("q4_0", rows, cols, rng)
    bw, bq, bd = dev.alloc(raw.nbytes), dev.alloc(cols), dev.alloc(cols // 32 * 8)
    dev.upload(bw, raw)
    kq, km = k.get("quantize_q8"), k.get("matmul_q8", wtype="q4_0")
    for _ in range(3):
        kq(bx, bq, bd, cols, rows=1, n_cols=cols)
        km(bw, bq, bd, by, rows, cols, 1, n_rows=rows, n_cols=cols, n_tokens=1)
    dev.synchronize()
    n, nh, nkv, d, ps, ns = 4096, 32, 8, 128, 16, 32
    kc, vc, table, _, _ = build_cache("f16", n, nkv, d, ps, rng)
    q = rng.standard_normal((nh, d)).astype(np.float32)
    bufs = [dev.alloc(a.nbytes) for a in (q, kc, vc, table)]
    for b, a in zip(bufs, (q, kc, vc, table)):
        dev.upload(b, a)
    po, pml, o, ln = dev.alloc(ns * nh * d * 4), dev.alloc(ns * nh * 8), dev.alloc(q.nbytes), dev.alloc(4)
    dev.upload(ln, np.array([n], np.int32))
    dec, comb = k.get("attn_decode", head_dim=d, kv="f16"), k.get("attn_combine", block=128)
    for _ in range(3):
        dec(bufs[0], bufs[1], bufs[2], bufs[3], po, pml, nh, nkv, ps, ln, float(1 / np.sqrt(d)),
            n_splits=ns, n_heads=nh, n_kv_heads=nkv)
        comb(po, pml, o, ns, nh, d, n_heads=nh)
    dev.synchronize()
    print("profiled cases ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
