"""One harness for every kernel family: upload numpy inputs, launch the variant through JIT
dispatch on the test backend, download the outputs. A family's test adds an oracle
(tests/oracles/<family>.py) and hypothesis strategies, not a new harness.

    out = run_kernel(ctx, "rmsnorm", {"dtype": "f32", "block": 256},
                     {"x": x, "w": w, "y": np.zeros_like(x), "ncols": n, "eps": 1e-5},
                     outs=["y"], rows=x.shape[0])
    np.testing.assert_allclose(out["y"], oracle(x, w, 1e-5), rtol=..., atol=...)

`args` maps every kernel argument name to a numpy array (pointer arguments: uploaded to a fresh
device buffer; the array's dtype must have the pointee's item size) or a Python number (scalars).
`outs` names the pointer arguments to read back: each comes back as an array of the same dtype
and shape as the one passed in. Extra keyword arguments are the launch shapes of the family's
`launch()` (rows=, n=, ...). `ctx` is the `kctx` fixture of tests/conftest.py: a backend device,
its arch and a dispatcher, parametrized over wave sizes 32 and 64 on the CPU emulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from forge.codegen.spec import CTYPES, get_spec

_ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4,
             "u64": 8, "i64": 8}
assert set(_ITEMSIZE) == set(CTYPES)


def run_kernel(ctx, family: str, params: dict, args: dict, outs: list[str] = (), **shapes) -> dict:
    """Launch one variant with `args` on ctx's device; returns {name: array} for `outs`. Skips the
    test when the family has no kernel for ctx's target (the host target has only the hot families)."""
    if not get_spec(family).targets(ctx.arch):
        pytest.skip(f"{family} has no kernel for {ctx.arch.name}")
    kernel = ctx.dispatcher.get(family, **params)
    dev = ctx.device
    values, buffers = [], {}
    for a in kernel.args:
        if a.name not in args:
            raise KeyError(f"{family}: missing argument {a.name!r}")
        v = args[a.name]
        if a.is_ptr:
            arr = np.ascontiguousarray(v)
            if arr.dtype.itemsize != _ITEMSIZE[a.dtype] and arr.size:
                raise TypeError(f"{family}.{a.name}: expects {a.dtype} elements, got {arr.dtype}")
            buf = dev.alloc(max(arr.nbytes, 1))
            if arr.nbytes:
                dev.upload(buf, arr)
            buffers[a.name] = (buf, arr)
            values.append(buf)
        else:
            values.append(v)
    kernel(*values, **shapes)
    dev.synchronize()
    result = {}
    for name in outs:
        buf, arr = buffers[name]
        raw = dev.download(buf, arr.nbytes) if arr.nbytes else b""
        result[name] = np.frombuffer(raw, dtype=arr.dtype).reshape(arr.shape).copy()
    for buf, _ in buffers.values():
        dev.free(buf)
    return result
