"""Y[m, n_rows] = X W^T for many tokens, W in any weight type: a shared-memory tiled kernel that
decodes a BN x BK tile of W per K step (fused dequant) next to a BM x BK tile of X."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from ..wtypes import WTYPE_NAMES, get_wtype

BM, BN = 32, 32  # tokens and weight rows per block tile
THREADS = 256  # each thread owns a 2 x 2 patch of the tile
HOST_TOKENS = 32  # host target: tokens per block (each decoded weight chunk serves 4 at a time)


def host_rows_per_block(n_rows: int) -> int:
    """Host target: weight rows per block (the kernel derives its share from the grid size)."""
    return 16 if n_rows <= 8192 else 64


def k_step(span: int) -> int:
    """Columns per K step: a whole number of the type's group spans, at least 32."""
    return max(32, span)


class Gemm(KernelSpec):
    family = "gemm"
    space = {"wtype": WTYPE_NAMES}
    host = True
    doc = "grid (n_rows/BN, m/BM); W 16-byte aligned, X f32 [m, n_cols] row-major, Y f32 [m, n_rows]"

    def valid(self, p, arch):
        if not arch.is_gpu_semantics:
            return True
        return THREADS <= arch.max_threads

    def args(self, p):
        return [Arg.ptr("w", "u8", const=True), Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32"),
                Arg.scalar("m", "i32"), Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, m: int, n_rows: int, n_cols: int) -> Launch:
        get_wtype(p["wtype"]).check_shape(n_cols, m=m, n_rows=n_rows)
        if not arch.is_gpu_semantics:  # row chunks x token chunks, one call each
            return Launch((ceil_div(n_rows, host_rows_per_block(n_rows)), ceil_div(m, HOST_TOKENS), 1), (1, 1, 1))
        return Launch((ceil_div(n_rows, BN), ceil_div(m, BM), 1), (THREADS, 1, 1))

    def context(self, p, arch):
        wt = get_wtype(p["wtype"])
        return {"wt": wt, "bm": BM, "bn": BN, "bk": k_step(wt.span), "threads": THREADS}


register(Gemm())
