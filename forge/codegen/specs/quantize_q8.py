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

GPU (quantize_q8.hip.j2): an 8-lane group per 32-column block, 4 consecutive values per lane (one
16-byte load, one u32 store of the 4 int8), the block's amax with its NaN flag (one integer max of
the |v| bit patterns) and sum(q) as 3-step shuffle reductions inside the group. Grid
(ceil(n_cols / 32 / bpb), T) with bpb (a parameter: 16, or 4 for one row) blocks per thread block when n_cols is given,
else one thread block per row whose groups loop. Pass n_cols (docs/PERFORMANCE.md: a thread per
block measured ~6 us for 4096 columns on the H100).

Why this shape: lowering runs it on every prefill gemm input (the int8 gemm), T = 512 rows and more.
The earlier kernel (a 32-lane segment per block, one value per lane, three 5-step reductions per
value: NaN flag, amax, sum) measured 20.5 us for 512 x 4096 and 70 us for 512 x 14336 on the H100,
against 3.7 and 14 us for x_f16's conversion of the same X, which reads as many bytes; its 480
shuffles per 32-column block are the likely cost (not measured apart). Here a block takes 48 (6 a
lane), and the loads and stores are full-width and contiguous across the wave. The output is the
same bits: the same division, rounding and integer sum, and a max of the same |v|.
"""

from ...arch import Arch
from ...errors import SpecError
from ..spec import Arg, KernelSpec, Launch, register

GROUP = 8  # lanes per 32-column block (quantize_q8.hip.j2's GROUP)
# `bpb`: 32-column blocks per thread block (GROUP lanes each). 16 (128 threads, the default): 512 x
# 4096 launches 4096 thread blocks, 512 x 14336 14336 — 5.5 and 18.1 us on the H100
# (docs/PERFORMANCE.md; the one-value-per-lane kernel before it: 20.7 and 70.4). A decode row of 4096
# columns gets only 8 thread blocks of 16, though: 2.7 us against 1.6 with 4 (32 thread blocks; a
# helper's timing script, not kept), so lowering takes bpb 4 for one row.
BPB = (16, 4)


def threads(p) -> int:
    """Threads per GPU thread block of the variant with parameters p."""
    return p["bpb"] * GROUP


class QuantizeQ8(KernelSpec):
    family = "quantize_q8"
    space = {"bpb": BPB}
    defaults = {"bpb": 16}
    host = True
    gpu = True
    barrier_free = False  # GPU: shuffle reductions inside 8-lane groups (the host kernel has none)
    doc = "xq = roundf(x / d), d = amax / 127 per 32 columns; xd = (d, d * sum(xq))"

    def args(self, p):
        return [Arg.ptr("x", "f32", const=True), Arg.ptr("xq", "i8"), Arg.ptr("xd", "f32"),
                Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, rows: int, n_cols: int | None = None) -> Launch:
        """One block per row; n_cols, when the caller passes it, is checked (a positive multiple of 32)."""
        if rows < 1 or (n_cols is not None and (n_cols < 32 or n_cols % 32)):
            raise SpecError(f"quantize_q8: rows={rows} must be at least 1 and n_cols={n_cols} a positive "
                            "multiple of 32")
        if arch.is_gpu_semantics:  # GROUP lanes per 32-column block when n_cols is given (else one block a row)
            return Launch((-(-(n_cols // 32) // p["bpb"]) if n_cols else 1, rows, 1), (threads(p), 1, 1))
        return Launch((rows, 1, 1), (1, 1, 1))

    # --- GPU kernels (quantize_q8.hip.j2) ------------------------------------------------------
    def valid(self, p, arch):
        if not arch.is_gpu_semantics:
            return p["bpb"] == 16  # the host kernel has no thread blocks: one variant
        return threads(p) <= arch.max_threads and threads(p) % arch.wave_size == 0

    def context(self, p, arch):
        return {"threads": threads(p)} if arch.is_gpu_semantics else {}


register(QuantizeQ8())
