"""Token embedding: gather rows of a weight matrix (any weight type) by int32 ids, dequantized to f32."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from ..wtypes import WTYPE_NAMES, get_wtype

BLOCK = 256  # threads per block; one decoded group per thread


class Embed(KernelSpec):
    family = "embed"
    space = {"wtype": WTYPE_NAMES}
    barrier_free = True
    host = True
    doc = "y[t, :] = decode(w row ids[t]), w 16-byte aligned; an id outside [0, n_rows) gives a NaN row"

    def args(self, p):
        return [Arg.ptr("w", "u8", const=True), Arg.ptr("ids", "i32", const=True), Arg.ptr("y", "f32"),
                Arg.scalar("n_tokens", "i32"), Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, n_tokens: int, n_cols: int) -> Launch:
        wt = get_wtype(p["wtype"])
        wt.check_shape(n_cols, n_tokens=n_tokens)
        if not arch.is_gpu_semantics:  # one token row per block
            return Launch((n_tokens, 1, 1), (1, 1, 1))
        groups = wt.groups(n_cols)
        return Launch((n_tokens, ceil_div(groups, BLOCK), 1), (BLOCK, 1, 1))

    def context(self, p, arch):
        return {"wt": get_wtype(p["wtype"]), "block": BLOCK}


register(Embed())
