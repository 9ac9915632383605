"""SwiGLU gate: y = silu(g) * u."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register


class SwiGLU(KernelSpec):
    family = "swiglu"
    space = {"dtype": ("f32", "f16"), "block": (256,)}
    barrier_free = True

    def args(self, p):
        dt = p["dtype"]
        return [Arg.ptr("g", dt, const=True), Arg.ptr("u", dt, const=True), Arg.ptr("y", dt),
                Arg.scalar("n", "i32")]

    def launch(self, p, arch: Arch, *, n: int) -> Launch:
        return Launch((max(1, ceil_div(n, p["block"])), 1, 1), (p["block"], 1, 1))


register(SwiGLU())
