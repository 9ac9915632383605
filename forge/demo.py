"""`forge demo`: run a few kernels on the CPU emulator (wave 32 and 64) against inline numpy
references, and print what ran, the largest error against its tolerance, the time and a verdict
(exit 1 when any result is off). A newcomer's first proof that the render → compile → store → load
→ launch path works on their machine.

Tolerances are about ten times what correct float32 kernels show on these inputs: RMSNorm 1e-5
(outputs up to ~10, sums of 576 squares), softmax 2e-6 (probabilities, sums of 1000 exps), RoPE
2e-4 (its angle reaches 115 rad, whose float32 ulp is 7.6e-6, times |x| up to ~4)."""

from __future__ import annotations

import time

import numpy as np

from .arch import emu_arch
from .codegen.specs.rope import freq_log2
from .runtime.emu import EmuDevice
from .runtime.dispatch import Dispatcher


def _rmsnorm(kern, dev, rng):
    x = rng.standard_normal((64, 576)).astype(np.float32)
    w = rng.standard_normal(576).astype(np.float32)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(1, keepdims=True) + 1e-5) * w
    bx, bw, by = dev.alloc(x.nbytes), dev.alloc(w.nbytes), dev.alloc(x.nbytes)
    dev.upload(bx, x), dev.upload(bw, w)
    kern.get("rmsnorm", dtype="f32", block=256)(bx, bw, by, 576, 1e-5, rows=64)
    got = np.frombuffer(dev.download(by), np.float32).reshape(x.shape)
    return "rmsnorm 64x576 f32", float(np.max(np.abs(got - ref))), 1e-5


def _softmax(kern, dev, rng):
    x = rng.standard_normal((32, 1000)).astype(np.float32) * 4
    vis = np.arange(1000)[None, :] <= np.arange(32)[:, None] + 968
    z = np.where(vis, x.astype(np.float64), -np.inf)
    e = np.exp(z - z.max(1, keepdims=True))
    ref = e / e.sum(1, keepdims=True)
    bx, by = dev.alloc(x.nbytes), dev.alloc(x.nbytes)
    dev.upload(bx, x)
    kern.get("softmax", dtype="f32", causal=True, block=256)(bx, by, 1000, 32, 968, 1.0, rows=32)
    got = np.frombuffer(dev.download(by), np.float32).reshape(x.shape)
    return "causal softmax 32x1000 f32", float(np.max(np.abs(got - ref))), 2e-6


def _rope(kern, dev, rng):
    x = rng.standard_normal((16, 9, 64)).astype(np.float32)
    pos = np.arange(100, 116, dtype=np.int32)
    theta = pos[:, None].astype(np.float64) * 1e5 ** (-np.arange(32) / 32.0)
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    ref = x.astype(np.float64).copy()
    ref[..., :32], ref[..., 32:] = x[..., :32] * c - x[..., 32:] * s, x[..., :32] * s + x[..., 32:] * c
    bx, bp = dev.alloc(x.nbytes), dev.alloc(pos.nbytes)
    dev.upload(bx, x), dev.upload(bp, pos)
    kern.get("rope", mode="neox", dtype="f32", block=128)(bx, bp, 9, 64, 64, freq_log2(1e5, 64), 1.0,
                                                         n_tokens=16, n_heads=9, n_rot=64)
    got = np.frombuffer(dev.download(bx), np.float32).reshape(x.shape)
    return "rope neox 16 tokens x 9 heads x 64", float(np.max(np.abs(got - ref))), 2e-4


def main(store=None) -> int:
    """Run the cases at wave 32 and 64 (kernels from `store`, default: forge's store); 0 when every
    result is within its tolerance, else 1."""
    rng = np.random.default_rng(0)
    print("forge demo: kernels on the CPU emulator vs numpy (first run compiles with the host C++ compiler)")
    results = []
    for wave in (32, 64):
        arch = emu_arch(wave)
        dev = EmuDevice(wave_size=wave, store=store)
        kern = Dispatcher(dev, arch, store)
        for case in (_rmsnorm, _softmax, _rope):
            t0 = time.perf_counter()
            name, err, tol = case(kern, dev, rng)
            ok = err <= tol  # a NaN error is not
            results.append(ok)
            print(f"  {arch.name:6} wave{wave}  {name:36} max |error| {err:.2e} (tolerance {tol:.0e})  "
                  f"{'ok' if ok else 'FAIL'}  ({time.perf_counter() - t0:.2f} s)")
    bad = results.count(False)
    if bad:
        print(f"forge demo: FAILED: {bad} of {len(results)} results are off numpy by more than their tolerance")
        return 1
    print(f"forge demo: all {len(results)} results match numpy")
    return 0
