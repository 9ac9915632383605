"""Elementwise scale / add / mul over f32 or f16 vectors, and addrow: a row vector added to every
row of a matrix (a bias)."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register

HOST_CHUNK = 16384  # elements per block on the host target (a memory-bound loop: large blocks)


class Elementwise(KernelSpec):
    family = "elementwise"
    space = {"op": ("scale", "add", "mul", "addrow"), "dtype": ("f32", "f16"), "block": (256,)}
    barrier_free = True
    host = True
    doc = "y = x*s | a+b | a*b | a+b[i % ncols] (addrow: b is one row of ncols)"

    def args(self, p):
        dt = p["dtype"]
        if p["op"] == "scale":
            ins = [Arg.ptr("x", dt, const=True)]
            tail = [Arg.scalar("s", "f32")]
        else:
            ins = [Arg.ptr("a", dt, const=True), Arg.ptr("b", dt, const=True)]
            tail = [Arg.scalar("ncols", "i32")] if p["op"] == "addrow" else []
        return ins + [Arg.ptr("y", dt)] + [Arg.scalar("n", "i32")] + tail

    def launch(self, p, arch: Arch, *, n: int) -> Launch:
        if not arch.is_gpu_semantics:
            return Launch((max(1, ceil_div(n, HOST_CHUNK)), 1, 1), (1, 1, 1))
        return Launch((max(1, ceil_div(n, p["block"])), 1, 1), (p["block"], 1, 1))

    def context(self, p, arch):
        return {"chunk": HOST_CHUNK}


register(Elementwise())
