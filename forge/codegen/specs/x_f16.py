"""X rounded to f16 once per batch, for the mma.sync gemm's f16-X variant (gemm xin="f16"): each row
r of x (f32 [m, n_cols]) is scaled by one power of two 2^-e_r and rounded to f16 (nearest even) into
xh (f16 [m, n_cols], row stride n_cols), and e_r goes to xe (i32 [m]).

The rule (common/x_f16.h, the same code as the gemm's f32-X path): e_r > 0 only where the row's
largest finite |x| reaches 2^15, then that max times 2^-e_r lies in [2^14, 2^15), so no finite value
overflows f16's 65504 (activations of 1e5 occur in a tiny random model's FFN). Inf and NaN are not
counted in the max and stay Inf and NaN. e_r is at most 113 (f32's largest finite value); the gemm
multiplies its f32 sums of row r by 2^e_r at the end (exact).

Why: the f32-X gemm reads every X row once per block column of its grid (32 times for 4096 output
rows on 128-row tiles) and rounds it to f16 each time; for Q4_0 weights X's f32 bytes are 4x a W
tile's. Converted once, the gemm reads half the bytes, in 16-byte loads, and skips the per-step max,
shuffles and conversions. Lowering (forge/runtime/lower.py, GEMM_F16_X) converts each distinct x once
and shares it between the gemms reading it (Q/K/V, gate/up).

Exactness against the f32-X path: the f32-X kernel scales per K-step chunk of a row, this per row.
Where a chunk's exponent equals its row's (no scaling at all, the common case, or the row's max in
every chunk's range) the f16 values, products and sums are the same bits; where a chunk's is smaller,
its values are 2^(e_c - e_r) times the f32-X path's (rounding commutes with powers of two) unless they
fall below f16's normal range (2^-14), where the absolute error e_h 2^e_r of the gemm's bound applies
(tests/kernels/test_gemm.py: its e_x term already uses the row's max).

GPU only (no host kernel: the host gemm reads f32 X). Grid (1, m): a block of THREADS threads per row,
16-byte loads and stores where n_cols % 8 == 0 (rows 32-byte aligned in x, 16 in xh), else one
element per thread and step; the row's max is a block reduction (common/reduce.h)."""

from ...arch import Arch
from ...errors import SpecError
from ..spec import Arg, KernelSpec, Launch, register

THREADS = 256  # one row per block: 4096 columns are 2 steps of 8 per thread


class XF16(KernelSpec):
    family = "x_f16"
    space: dict = {}
    host = False
    gpu = True
    doc = "xh = f16(x 2^-e_r), xe[r] = e_r per row; e_r > 0 only where the row's max finite |x| reaches 2^15"

    def args(self, p):
        return [Arg.ptr("x", "f32", const=True), Arg.ptr("xh", "f16"), Arg.ptr("xe", "i32"),
                Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, rows: int, n_cols: int | None = None) -> Launch:
        """One block per row; SpecError for no rows or (when given) no columns."""
        if rows < 1 or (n_cols is not None and n_cols < 1):
            raise SpecError(f"x_f16: rows={rows} and n_cols={n_cols} must be at least 1")
        return Launch((1, rows, 1), (THREADS, 1, 1))

    def valid(self, p, arch):
        return THREADS <= arch.max_threads and THREADS % arch.wave_size == 0

    def context(self, p, arch):
        return {"threads": THREADS}


register(XF16())
