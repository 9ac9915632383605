"""Quantize f32 activations to 8-bit blocks for matmul_q8: per 32 columns, d = amax / 127 and
q = roundf(x / d) (half away from zero, as llama.cpp's quantize_row_q8_1_ref; d = 0 gives q = 0),
and xd = (d, d * sum(q)) per block.

Why: the integer matrix product (matmul_q8) needs its activations as int8 with one scale per
block; quantizing once per token and reusing the result for every matrix that reads the same
input (Q, K and V; gate and up) costs n_cols divisions per token, next to n_rows * n_cols
multiply-adds of the products. d * sum(q) is precomputed because the min terms of the q4_1 /
q5_1 / K types multiply it (see matmul_q8). The division x / d (rather than x * (1/d), which
GGML's q8_0 reference uses) is correctly rounded, so an exact half (x = (k + 1/2) d) is a tie
that must round away from zero: tests check such ties exactly.

Non-finite input is loud, not silently clipped: a block with a NaN gets d = NaN, a block with an
infinity d = inf; either way its q are 0 and d * sum(q) is NaN, so every product that reads the
block is NaN.

Arguments: x f32 [T][n_cols], xq i8 [T][n_cols], xd f32 [T][n_cols / 32][2]; n_cols a positive
multiple of 32 (the kernel writes floor(n_cols / 32) blocks). Launch shape rows = T (one block
per token row on the host), and optionally n_cols, which the launch then checks.

GPU (quantize_q8.hip.j2): a 32-lane segment per 32-column block, one element per lane, the block's
amax / NaN flag / sum(q) as shuffle reductions inside the segment; grid (ceil(n_cols / 32 /
(GPU_THREADS / 32)), T) when n_cols is given, else one block per row whose segments loop. Pass
n_cols (docs/PERFORMANCE.md: a thread per block measured ~6 us for 4096 columns on the H100).
"""

from ...arch import Arch
from ...errors import SpecError
from ..spec import Arg, KernelSpec, Launch, register

GPU_THREADS = 128  # GPU kernel: threads per block (one token row per block)


class QuantizeQ8(KernelSpec):
    family = "quantize_q8"
    space: dict = {}
    host = True
    gpu = True
    barrier_free = False  # GPU: shuffle reductions inside 32-lane segments (the host kernel has none)
    doc = "xq = roundf(x / d), d = amax / 127 per 32 columns; xd = (d, d * sum(xq))"

    def args(self, p):
        return [Arg.ptr("x", "f32", const=True), Arg.ptr("xq", "i8"), Arg.ptr("xd", "f32"),
                Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, rows: int, n_cols: int | None = None) -> Launch:
        """One block per row; n_cols, when the caller passes it, is checked (a positive multiple of 32)."""
        if rows < 1 or (n_cols is not None and (n_cols < 32 or n_cols % 32)):
            raise SpecError(f"quantize_q8: rows={rows} must be at least 1 and n_cols={n_cols} a positive "
                            "multiple of 32")
        if arch.is_gpu_semantics:  # 32 lanes per 32-column block when n_cols is given (else one block a row)
            return Launch((-(-(n_cols // 32) // (GPU_THREADS // 32)) if n_cols else 1, rows, 1), (GPU_THREADS, 1, 1))
        return Launch((rows, 1, 1), (1, 1, 1))

    # --- GPU kernels (quantize_q8.hip.j2) ------------------------------------------------------
    def valid(self, p, arch):
        return not arch.is_gpu_semantics or GPU_THREADS <= arch.max_threads

    def context(self, p, arch):
        return {"threads": GPU_THREADS} if arch.is_gpu_semantics else {}


register(QuantizeQ8())
