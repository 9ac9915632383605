"""Dequantize raw weight rows (any weight type) into f32 or f16, bit-exactly as gguf.quants."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from ..wtypes import WTYPE_NAMES, get_wtype

BLOCK = 256  # threads per block; one decoded group (8 or 16 values) per thread


class Dequant(KernelSpec):
    family = "dequant"
    space = {"wtype": WTYPE_NAMES, "out": ("f32", "f16")}
    barrier_free = True
    doc = "y[r, :] = decode(w row r), w 16-byte aligned; grid x = rows, grid y = groups of the row / 256"

    def args(self, p):
        return [Arg.ptr("w", "u8", const=True), Arg.ptr("y", p["out"]),
                Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, n_rows: int, n_cols: int) -> Launch:
        wt = get_wtype(p["wtype"])
        wt.check_shape(n_cols, n_rows=n_rows)
        groups = wt.groups(n_cols)
        return Launch((n_rows, ceil_div(groups, BLOCK), 1), (BLOCK, 1, 1))

    def context(self, p, arch):
        return {"wt": get_wtype(p["wtype"]), "block": BLOCK}


register(Dequant())
