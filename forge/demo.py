"""`forge demo`: run a few kernels on the CPU emulator (wave 32 and 64) against inline numpy
references, and print what ran, the largest error and the time. A newcomer's first proof that the
render → compile → store → load → launch path works on their machine."""

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
    return "rmsnorm 64x576 f32", float(np.max(np.abs(got - ref)))


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
    return "causal softmax 32x1000 f32", float(np.max(np.abs(got - ref)))


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
    return "rope neox 16 tokens x 9 heads x 64", float(np.max(np.abs(got - ref)))


def main() -> int:
    rng = np.random.default_rng(0)
    print("forge demo: kernels on the CPU emulator vs numpy (first run compiles with the host C++ compiler)")
    for wave in (32, 64):
        arch = emu_arch(wave)
        dev = EmuDevice(wave_size=wave)
        kern = Dispatcher(dev, arch)
        for case in (_rmsnorm, _softmax, _rope):
            t0 = time.perf_counter()
            name, err = case(kern, dev, rng)
            print(f"  {arch.name:6} wave{wave}  {name:36} max |error| {err:.2e}  ({time.perf_counter() - t0:.2f} s)")
    return 0
