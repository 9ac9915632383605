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
# What else the launch does (common/rowteams.j2): none, add (+ a residual), glu (silu(W x) * W2 x),
# multi (three matrices over one x). GPU-model targets only; the host runs them unfused.
FUSES = ("none", "add", "glu", "multi")


def fused_args(fuse: str, args: list[Arg]) -> list[Arg]:
    """A GEMV-shaped kernel's arguments with its fusion's extras: glu/multi's second (third) weight
    after w, add's residual `res` and multi's outputs after y, multi's row counts after n_rows."""
    extra = {"w": {"glu": ["w2"], "multi": ["w2", "w3"]},
             "y": {"add": ["res"], "multi": ["y2", "y3"]},
             "n_rows": {"multi": ["n_rows2", "n_rows3"]}}
    out = []
    for a in args:
        out.append(a)
        for name in extra.get(a.name, {}).get(fuse, []):
            out.append(Arg.ptr(name, "u8", const=True) if name[0] == "w" else
                       Arg.ptr(name, "f32", const=True) if name == "res" else
                       Arg.ptr(name, "f32") if name[0] == "y" else Arg.scalar(name, "i32"))
    return out


def fused_rows(fuse: str, n_rows: int, n_rows2: int = 0, n_rows3: int = 0) -> int:
    """The rows a fused launch covers (multi: all three matrices')."""
    return n_rows + n_rows2 + n_rows3 if fuse == "multi" else n_rows


def fused_grid(fuse: str, grid: int) -> int:
    """multi gives each matrix at least one block: at least 3."""
    return max(3, grid) if fuse == "multi" else grid


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
    space = {"wtype": WTYPE_NAMES, "fuse": FUSES}
    defaults = {"fuse": "none"}
    host = True  # the host GEMM with one token (common/host_gemm.h.j2): 4 rows at a time
    doc = "THREADS per block over the columns of up to RMAX rows at a time; w and x (f32) 16-byte aligned, y f32"

    def valid(self, p, arch):
        if not arch.is_gpu_semantics:
            return p["fuse"] == "none"
        return THREADS <= arch.max_threads and THREADS % arch.wave_size == 0

    def args(self, p):
        return fused_args(p["fuse"], [Arg.ptr("w", "u8", const=True), Arg.ptr("x", "f32", const=True),
                                      Arg.ptr("y", "f32"), Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32")])

    def launch(self, p, arch: Arch, *, n_rows: int, n_cols: int, rows_per_block: int | None = None,
               rows_per_team: int | None = None, n_rows2: int = 0, n_rows3: int = 0) -> Launch:
        """GPU: row_grid blocks of THREADS threads (`rows_per_team`: a tuning override, any positive
        number is correct). Host: one block per `rows_per_block` rows (default gemm.host_rows_per_block)."""
        wt = get_wtype(p["wtype"])
        wt.check_shape(n_cols, n_rows=n_rows)
        if not arch.is_gpu_semantics:  # a block per chunk of rows, one call each
            from .gemm import host_rows_per_block
            return Launch((ceil_div(n_rows, rows_per_block or host_rows_per_block(n_rows)), 1, 1), (1, 1, 1))
        rows = fused_rows(p["fuse"], n_rows, n_rows2, n_rows3)
        return Launch((fused_grid(p["fuse"], row_grid(arch, rows, THREADS, rows_per_team)), 1, 1), (THREADS, 1, 1))

    def context(self, p, arch):
        wt = get_wtype(p["wtype"])
        # Two groups in flight per row where a group is small (<= 8 values); one for the wide groups
        # of Q6_K and MXFP6 (16 and 32 values), whose decode already holds many registers.
        # MXFP6's 32-value groups decode 2 rows at a time (4 rows' values spill on sm_90); its teams take
        # their RMAX rows in two rounds.
        return {"wt": wt, "fuse": p["fuse"], "rmax": 2 if wt.group_values >= 32 else RMAX, "threads": THREADS, "tpr": THREADS,
                "unroll": 2 if wt.group_values <= 8 else 1}


register(Gemv())
