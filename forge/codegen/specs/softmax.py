"""Row-wise softmax of scale*x, optionally with a causal mask."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, register


class Softmax(KernelSpec):
    family = "softmax"
    space = {"dtype": ("f32", "f16"), "causal": (False, True), "block": (256,)}
    doc = "one row per block; causal rows see columns <= (row % rows_per_seq) + kv_offset"

    def valid(self, p, arch):
        return p["block"] <= arch.max_threads and p["block"] % arch.wave_size == 0

    def args(self, p):
        dt = p["dtype"]
        return [Arg.ptr("x", dt, const=True), Arg.ptr("y", dt), Arg.scalar("ncols", "i32"),
                Arg.scalar("rows_per_seq", "i32"), Arg.scalar("kv_offset", "i32"),
                Arg.scalar("scale", "f32")]

    def launch(self, p, arch: Arch, *, rows: int) -> Launch:
        return Launch((rows, 1, 1), (p["block"], 1, 1))


register(Softmax())
