"""Decode attention bandwidth: attn_decode (split-K partials over the paged KV cache) + attn_combine
for one new token, per KV-cache dtype.

    python benchmarks/attention.py --backend cuda                    # context 4096, 32/8 heads, d 128
    python benchmarks/attention.py --backend cuda --splits 16,32,64 --read-limit --json out.json
    python benchmarks/attention.py --backend emu --context 256 --splits 4

The cache holds random valid rows of the dtype (f32, f16, fp8 E4M3 with a row scale, q8_0, mxfp6) for one
sequence of --context tokens in pages of --page-size, the pages in shuffled order; as many
(K, V, block table) copies as exceed --rotate-mb, so the timed steps read from memory, not the L2.
The output of one step is checked against a float64 attention of the decoded rows (relative error
under 1e-4). A step is the decode launch then the combine launch; --launches steps rotating over
the copies are recorded once (Device.record: a CUDA graph) and replayed between events (host-timed
batches where there are no events). Bytes per step = K and V rows of the context + q + o + the block
table: what a step must move at least (the split partials are extra traffic, reported apart). The
decode launch alone is timed the same way. --read-limit: the single-kernel read limit at the step's
byte count, measured as benchmarks/gemv.py does (../shared/peer/read_limit.py's method).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gemv import has_graphs, make_device, read_limit, time_launches  # noqa: E402
from forge.errors import ForgeError  # noqa: E402
from forge.runtime.device import BoundLaunch  # noqa: E402
from forge.runtime.dispatch import Dispatcher  # noqa: E402

KV_DTYPES = ("f32", "f16", "fp8", "q8_0", "mxfp6")


def row_bytes(kv: str, d: int) -> int:
    return {"f32": 4 * d, "f16": 2 * d, "fp8": d + 4, "q8_0": d // 32 * 34,
            "mxfp6": 3 * d // 4 + (-(-d // 32) + 3) // 4 * 4}[kv]


def fp8_values() -> np.ndarray:
    """The 256 E4M3 (OCP, bias 7) code values; 0x7F/0xFF are NaN."""
    c = np.arange(256)
    e, m = (c >> 3) & 15, c & 7
    mag = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8) * 2.0 ** (e - 7))
    mag[(c & 0x7F) == 0x7F] = np.nan
    return np.where(c & 0x80, -mag, mag)


def random_rows(kv: str, n: int, d: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(raw rows uint8 [n][row_bytes], decoded float64 [n][d]) of random valid `kv` rows."""
    if kv == "f32":
        v = rng.standard_normal((n, d)).astype(np.float32)
        return v.view(np.uint8).reshape(n, -1), v.astype(np.float64)
    if kv == "f16":
        v = rng.standard_normal((n, d)).astype(np.float16)
        return v.view(np.uint8).reshape(n, -1), v.astype(np.float64)
    if kv == "fp8":
        codes = rng.integers(0, 0x7F, (n, d), dtype=np.uint8) | (rng.integers(0, 2, (n, d), dtype=np.uint8) << 7)
        scale = np.full((n, 1), 1 / 64, np.float32)
        raw = np.concatenate([codes, scale.view(np.uint8)], axis=1)
        return raw, fp8_values()[codes] * np.float64(scale)
    if kv == "mxfp6":
        return mxfp6_rows(n, d, rng)
    blocks = d // 32
    dq = np.full((n, blocks), 0.01, np.float16)
    q = rng.integers(-127, 128, (n, blocks, 32), dtype=np.int8)
    raw = np.concatenate([dq[..., None].view(np.uint8).reshape(n, blocks, 2), q.view(np.uint8)], axis=2)
    return raw.reshape(n, -1), (dq.astype(np.float64)[..., None] * q).reshape(n, d)


def mxfp6_rows(n: int, d: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Random mxfp6 rows (d % 16 == 0; docs/KVCACHE.md's layout): 6-bit E2M3 codes as a little-endian
    stream, then one E8M0 scale a block of 32 (2^-2 here), zero-padded to 4 bytes; values through
    forge.quant.mx's dequantize_mx."""
    from forge.quant import mx
    nb = -(-d // 32)
    codes = rng.integers(0, 64, (n, d), dtype=np.uint32)
    scales = np.full((n, nb), 125, np.uint8)
    vals = mx.dequantize_mx(scales, np.pad(codes, ((0, 0), (0, 32 * nb - d))).astype(np.uint8), mx.MXFP6_E2M3)
    g = codes.reshape(n, d // 4, 4)
    w = g[..., 0] | (g[..., 1] << 6) | (g[..., 2] << 12) | (g[..., 3] << 18)
    raw = np.zeros((n, row_bytes("mxfp6", d)), np.uint8)
    raw[:, :3 * d // 4] = np.stack([w & 0xFF, (w >> 8) & 0xFF, w >> 16], axis=-1).reshape(n, -1)
    raw[:, 3 * d // 4:3 * d // 4 + nb] = scales
    return raw, vals[:, :d].astype(np.float64)


def build_cache(kv, n, nkv, d, ps, rng):
    """Paged K and V storage [pages][nkv][ps][row] for one sequence of n tokens (pages shuffled),
    its block table, and the decoded K, V as [n][nkv][d] float64."""
    pages = -(-n // ps)
    table = rng.permutation(pages).astype(np.int32)
    rb = row_bytes(kv, d)
    out, dec = [], []
    for _ in "kv":
        raw, val = random_rows(kv, pages * nkv * ps, d, rng)
        store = raw.reshape(pages, nkv, ps, rb)
        vals = val.reshape(pages, nkv, ps, d)
        pos = np.arange(n)
        dec.append(vals[table[pos // ps], :, pos % ps, :])  # [n][nkv][d]
        out.append(np.ascontiguousarray(store))
    return out[0], out[1], table, dec[0], dec[1]


def bench(dev, arch, kernels, kv, args, rng) -> list[dict]:
    n, nh, nkv, d, ps = args.context, args.heads, args.kv_heads, args.head_dim, args.page_size
    kc, vc, table, kd, vd = build_cache(kv, n, nkv, d, ps, rng)
    q = rng.standard_normal((nh, d)).astype(np.float32)
    scale = float(np.float32(1 / np.sqrt(d)))
    per_copy = kc.nbytes + vc.nbytes
    copies = max(1, -(-args.rotate_mb * 10**6 // per_copy))
    msplit = max(args.splits)
    bufs = {"q": dev.alloc(q.nbytes), "o": dev.alloc(q.nbytes), "len": dev.alloc(4),
            "po": dev.alloc(msplit * nh * d * 4), "pml": dev.alloc(msplit * nh * 8)}
    caches = []
    try:
        dev.upload(bufs["q"], q)
        dev.upload(bufs["len"], np.array([n], np.int32))
        first = [dev.alloc(kc.nbytes), dev.alloc(vc.nbytes), dev.alloc(table.nbytes)]
        for b, a in zip(first, (kc, vc, table)):
            dev.upload(b, a)
        caches.append(first)
        for _ in range(copies - 1):
            c = [dev.alloc(b.nbytes) for b in first]
            for dst, src in zip(c, first):
                dev.copy(dst, src, src.nbytes)
            caches.append(c)
        dec = kernels.get("attn_decode", head_dim=d, kv=kv)
        comb = kernels.get("attn_combine", block=128)
        # float64 reference of the step
        group = nh // nkv
        ref = np.empty((nh, d))
        for h in range(nh):
            s = kd[:, h // group, :] @ q[h].astype(np.float64) * scale
            p = np.exp(s - s.max())
            ref[h] = p @ vd[:, h // group, :] / p.sum()
        out = []
        for ns in args.splits:
            gd = dec.variant.launch(arch, n_splits=ns, n_heads=nh, n_kv_heads=nkv)
            gc = comb.variant.launch(arch, n_heads=nh)

            def step(c):
                return [BoundLaunch(dec.fn, gd.grid, gd.block, gd.shared_bytes,
                                    (bufs["q"], c[0], c[1], c[2], bufs["po"], bufs["pml"], nh, nkv, ps, bufs["len"], scale),
                                    tuple(dec.args)),
                        BoundLaunch(comb.fn, gc.grid, gc.block, gc.shared_bytes,
                                    (bufs["po"], bufs["pml"], bufs["o"], ns, nh, d), tuple(comb.args))]
            dev.memset(bufs["o"], 0xFF)
            dev.record(step(caches[0])).run()
            dev.synchronize()
            got = np.frombuffer(dev.download(bufs["o"]), np.float32).reshape(nh, d).astype(np.float64)
            rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
            steps = [lb for i in range(args.launches) for lb in step(caches[i % copies])]
            t_step = time_launches(dev, steps, args.repeats) 
            t_dec = time_launches(dev, steps[0::2], args.repeats)
            nbytes = per_copy + table.nbytes + 2 * q.nbytes
            med = statistics.median(t_step) * 2  # time_launches divides by launches: 2 per step
            row = {"kv": kv, "context": n, "splits": ns, "bytes": nbytes, "copies": copies,
                   "us": med * 1e6, "us_decode": statistics.median(t_dec) * 1e6, "gbs": nbytes / med / 1e9,
                   "partial_bytes": ns * nh * (d + 2) * 4 * 2, "rel_err": rel,
                   "check": "ok" if rel < 1e-4 else "WRONG"}
            out.append(row)
        return out
    finally:
        for b in bufs.values():
            dev.free(b)
        for c in caches:
            for b in c:
                dev.free(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["emu", "cuda", "hip"], default="emu")
    ap.add_argument("--arch")
    ap.add_argument("--wave", type=int, choices=[32, 64], default=32)
    ap.add_argument("--kv", default=",".join(KV_DTYPES))
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--splits", default="16,32,64", help="comma-separated split counts to try")
    ap.add_argument("--rotate-mb", type=int, help="cache copies in MB at least (default 256 on a GPU, 0 on the emulator)")
    ap.add_argument("--launches", type=int, help="steps per timed list (default 100 on a GPU, 2 on the emulator)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--roofline", type=float, default=3120.0)
    ap.add_argument("--read-limit", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    gpu = args.backend != "emu"
    args.splits = [int(v) for v in args.splits.split(",")]
    args.rotate_mb = (256 if gpu else 0) if args.rotate_mb is None else args.rotate_mb
    args.launches = args.launches or (100 if gpu else 2)
    rows = []
    try:
        dev, arch = make_device(args.backend, args.wave, args.arch)
        kernels = Dispatcher(dev, arch)
        rng = np.random.default_rng(args.seed)
        print(f"decode attention, context {args.context}, {args.heads} heads / {args.kv_heads} KV heads, d {args.head_dim}, "
              f"pages of {args.page_size}, on {dev!r}; attn_decode + attn_combine per step; "
              f"{'graphs timed with events' if has_graphs(dev) else 'host-timed'}; % of {args.roofline:.0f} GB/s", flush=True)
        head = (f"{'kv':<5} {'splits':>6} {'MB':>6} {'step us':>8} {'decode us':>9} {'GB/s':>6} {'%roof':>6} "
                f"{'limit%':>6} {'%limit':>6} {'rel err':>8}  check")
        print(head)
        print("-" * len(head), flush=True)
        for kv in [k.strip() for k in args.kv.split(",") if k.strip()]:
            for r in bench(dev, arch, kernels, kv, args, rng):
                if args.read_limit and has_graphs(dev):
                    t, _ = read_limit(dev, arch, r["bytes"])
                    r["limit_gbs"] = r["bytes"] // 16 * 16 / t / 1e9
                r["pct_roof"] = 100 * r["gbs"] / args.roofline
                lim = r.get("limit_gbs")
                lim_roof = f"{100 * lim / args.roofline:5.1f}%" if lim else "-"
                of_lim = f"{100 * r['gbs'] / lim:5.1f}%" if lim else "-"
                rows.append(r)
                print(f"{kv:<5} {r['splits']:>6} {r['bytes'] / 1e6:>6.2f} {r['us']:>8.2f} {r['us_decode']:>9.2f} "
                      f"{r['gbs']:>6.0f} {r['pct_roof']:>5.1f}% {lim_roof:>6} {of_lim:>6} {r['rel_err']:>8.1e}  {r['check']}",
                      flush=True)
    except ForgeError as e:
        print(f"attention bench: error: {e}", file=sys.stderr)
        return 1
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps({"device": repr(locals().get("dev")), "rows": rows}, indent=1))
    return 0 if all(r["check"] != "WRONG" for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
