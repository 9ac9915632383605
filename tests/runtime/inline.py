"""Compile a kernel written inline against the vocabulary and launch it on a device: the
emulator's own tests use this to exercise barriers, waves and faults directly."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from forge.codegen.render import render_inline
from forge.codegen.spec import Arg
from forge.codegen.toolchain import toolchain_for

_cache: dict = {}


def compile_inline(ctx, body: str, args: list[Arg], barrier_free: bool = False, **params):
    """The loaded function of `body` (a template string) for ctx's arch, compiled once per process."""
    key = (ctx.arch.name, body, tuple(args), barrier_free, tuple(sorted(params.items())))
    if key not in _cache:
        symbol = f"inline{len(_cache)}"
        source = render_inline(body, ctx.arch, symbol, args, barrier_free, **params)
        with tempfile.TemporaryDirectory() as work:
            obj = toolchain_for(ctx.arch).compile(source, ctx.arch, symbol, Path(work), False).object_bytes
        _cache[key] = ctx.device.load_module(obj).function(symbol)
    return _cache[key]


def launch(ctx, fn, args: list[Arg], values: dict, grid, block, shared: int = 0, outs=(), device=None):
    """Upload numpy values, launch, download `outs` (same dtype and shape as passed)."""
    dev = device or ctx.device
    packed, bufs = [], {}
    for a in args:
        v = values[a.name]
        if a.is_ptr:
            arr = np.ascontiguousarray(v)
            buf = dev.alloc(arr.nbytes)
            dev.upload(buf, arr)
            bufs[a.name] = (buf, arr)
            packed.append(buf)
        else:
            packed.append(v)
    try:
        dev.launch(fn, tuple(grid), tuple(block), shared, packed, args)
        return {n: np.frombuffer(dev.download(bufs[n][0]), bufs[n][1].dtype).reshape(bufs[n][1].shape).copy()
                for n in outs}
    finally:
        for buf, _ in bufs.values():
            dev.free(buf)
