"""Row-wise RMSNorm: y = x / sqrt(mean(x^2) + eps) * w.

quant "q8" (GPU-model targets, f32): y is not stored but quantized to 8-bit blocks exactly as
quantize_q8 would quantize it (xq, xd; ncols a multiple of 32), so the decode step's norm and the
quantization its integer matmuls need are one launch (docs/PERFORMANCE.md: decode is
launch-bound)."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, register


class RMSNorm(KernelSpec):
    family = "rmsnorm"
    space = {"dtype": ("f32", "f16"), "block": (256,), "quant": ("none", "q8")}
    defaults = {"quant": "none"}
    host = True
    doc = "one row per block, block-wide sum of squares"

    def valid(self, p, arch):
        if p["quant"] == "q8" and (p["dtype"] != "f32" or not arch.is_gpu_semantics):
            return False
        if not arch.is_gpu_semantics:  # the host kernel is one row per call; block is unused
            return True
        return p["block"] <= arch.max_threads and p["block"] % arch.wave_size == 0

    def args(self, p):
        dt = p["dtype"]
        out = [Arg.ptr("xq", "i8"), Arg.ptr("xd", "f32")] if p["quant"] == "q8" else [Arg.ptr("y", dt)]
        return [Arg.ptr("x", dt, const=True), Arg.ptr("w", "f32", const=True), *out,
                Arg.scalar("ncols", "i32"), Arg.scalar("eps", "f32")]

    def launch(self, p, arch: Arch, *, rows: int) -> Launch:
        if not arch.is_gpu_semantics:
            return Launch((rows, 1, 1), (1, 1, 1))
        return Launch((rows, 1, 1), (p["block"], 1, 1))


register(RMSNorm())
