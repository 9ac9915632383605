"""y[n_rows] = W x for one token, W in any weight type, the decode fused into the dot product.

Memory-bound by design, and shaped by two facts measured on an H100 (docs/PERFORMANCE.md): a grid
must fill the device (blocks of 8 rows with no column split left a ~50 % tail at 14336 rows and a
third of the GPU idle at 4096), and loads must be in flight while the previous ones are decoded
(stage → barrier → decode → barrier had nothing in flight). So:

- A block of THREADS threads owns a run of rows and all its threads (one row team of THREADS,
  common/rowteams.j2) split each row's columns: thread t takes decode groups t, t + THREADS, ...
  (a compile-time stride: measured on the H100, a run-time team size lost 15-40 % to a loop the
  compiler would not unroll); a shuffle sum per wave and one sum through shared memory per RMAX
  rows finish them.
- Rows per block come from the arch facts (compute units x resident threads): the most (up to
  RMAX, which share each x load) that still give the device a full wave of blocks; the kernel
  derives its rows from the grid (ceil(n_rows / blocks)), so any grid is correct.
- Weights are read straight from global memory by the decode helpers (common/quant_*.h.j2, the
  widest loads a block's alignment allows; float types 16 bytes), no staging or barrier in the
  loop: the RMAX rows' loads of a group are independent and issued together, and the loop is
  unrolled by UNROLL so the next groups' loads are in flight while these are decoded. x is read
  once per group for all the block's rows."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from ..wtypes import WTYPE_NAMES, get_wtype

THREADS = 256  # per block, every arch (8 waves of 32, 4 of 64)
RMAX = 4  # rows a block decodes at once; x values are loaded once for all of them


def default_rows_per_team(arch: Arch, n_rows: int, tpr: int) -> int:
    """The most rows per team (RMAX, 2, 1) that still give the arch's reference part a full wave of
    teams of tpr threads; RMAX where the arch does not say how large it is (the emulator)."""
    if not arch.compute_units:
        return RMAX
    wave = arch.compute_units * max(1, arch.threads_per_cu // tpr)
    for rpt in (RMAX, 2):
        if ceil_div(n_rows, rpt) >= wave:
            return rpt
    return 1


def row_grid(arch: Arch, n_rows: int, tpr: int, rows_per_team: int | None = None) -> int:
    """Blocks for n_rows rows: rows_per_team (default from the arch) rows for each of a block's
    THREADS / tpr teams (common/rowteams.j2). Any grid is correct: the kernel derives its rows from it."""
    rpt = rows_per_team or default_rows_per_team(arch, n_rows, tpr)
    return ceil_div(n_rows, rpt * (THREADS // tpr))


class Gemv(KernelSpec):
    family = "gemv"
    space = {"wtype": WTYPE_NAMES}
    host = True  # the host GEMM with one token (common/host_gemm.h.j2): 4 rows at a time
    doc = "THREADS per block over the columns of up to RMAX rows at a time; w and x (f32) 16-byte aligned, y f32"

    def valid(self, p, arch):
        if not arch.is_gpu_semantics:
            return True
        return THREADS <= arch.max_threads and THREADS % arch.wave_size == 0

    def args(self, p):
        return [Arg.ptr("w", "u8", const=True), Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32"),
                Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, n_rows: int, n_cols: int, rows_per_block: int | None = None,
               rows_per_team: int | None = None) -> Launch:
        """GPU: row_grid blocks of THREADS threads (`rows_per_team`: a tuning override, any positive
        number is correct). Host: one block per `rows_per_block` rows (default gemm.host_rows_per_block)."""
        wt = get_wtype(p["wtype"])
        wt.check_shape(n_cols, n_rows=n_rows)
        if not arch.is_gpu_semantics:  # a block per chunk of rows, one call each
            from .gemm import host_rows_per_block
            return Launch((ceil_div(n_rows, rows_per_block or host_rows_per_block(n_rows)), 1, 1), (1, 1, 1))
        return Launch((row_grid(arch, n_rows, THREADS, rows_per_team), 1, 1), (THREADS, 1, 1))

    def context(self, p, arch):
        wt = get_wtype(p["wtype"])
        # Two groups in flight per row where a group is small (<= 8 values); one for the wide groups
        # of Q6_K and MXFP6 (16 and 32 values), whose decode already holds many registers.
        # MXFP6's 32-value groups decode 2 rows at a time (4 rows' values spill on sm_90); its teams take
        # their RMAX rows in two rounds.
        return {"wt": wt, "rmax": 2 if wt.group_values >= 32 else RMAX, "threads": THREADS, "tpr": THREADS,
                "unroll": 2 if wt.group_values <= 8 else 1}


register(Gemv())
