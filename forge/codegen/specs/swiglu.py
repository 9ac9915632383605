"""SwiGLU gate: y = silu(g) * u."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register

HOST_CHUNK = 16384  # elements per block on the host target


class SwiGLU(KernelSpec):
    family = "swiglu"
    space = {"dtype": ("f32", "f16"), "block": (256,)}
    barrier_free = True
    host = True

    def args(self, p):
        dt = p["dtype"]
        return [Arg.ptr("g", dt, const=True), Arg.ptr("u", dt, const=True), Arg.ptr("y", dt),
                Arg.scalar("n", "i32")]

    def launch(self, p, arch: Arch, *, n: int) -> Launch:
        if not arch.is_gpu_semantics:
            return Launch((max(1, ceil_div(n, HOST_CHUNK)), 1, 1), (1, 1, 1))
        return Launch((max(1, ceil_div(n, p["block"])), 1, 1), (p["block"], 1, 1))

    def context(self, p, arch):
        return {"chunk": HOST_CHUNK}


register(SwiGLU())
