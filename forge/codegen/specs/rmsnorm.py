"""Row-wise RMSNorm: y = x / sqrt(mean(x^2) + eps) * w."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, register


class RMSNorm(KernelSpec):
    family = "rmsnorm"
    space = {"dtype": ("f32", "f16"), "block": (256,)}
    host = True
    doc = "one row per block, block-wide sum of squares"

    def valid(self, p, arch):
        if not arch.is_gpu_semantics:  # the host kernel is one row per call; block is unused
            return True
        return p["block"] <= arch.max_threads and p["block"] % arch.wave_size == 0

    def args(self, p):
        dt = p["dtype"]
        return [Arg.ptr("x", dt, const=True), Arg.ptr("w", "f32", const=True), Arg.ptr("y", dt),
                Arg.scalar("ncols", "i32"), Arg.scalar("eps", "f32")]

    def launch(self, p, arch: Arch, *, rows: int) -> Launch:
        if not arch.is_gpu_semantics:
            return Launch((rows, 1, 1), (1, 1, 1))
        return Launch((rows, 1, 1), (p["block"], 1, 1))


register(RMSNorm())
