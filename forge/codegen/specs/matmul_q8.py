"""y = W x for activations quantized to 8-bit blocks: the integer path of the matrix product.

Why: on a CPU a matrix-vector product over 4-bit weights is bound by how fast the weights can be
decoded and multiplied, not by memory, if each weight becomes a float. llama.cpp's CPU backend
instead quantizes the activations once per token to blocks of 32 int8 values with one float scale
(quantize_q8), decodes the weights to int8 only, and multiplies the two with integer dot-product
instructions (VNNI vpdpbusd, or AVX2 vpmaddubsw + vpmaddwd): four multiply-adds per byte lane,
exact, and one float scaling per 32 columns. matmul_q8 is that product, for every weight type
whose values are an integer times a per-block factor:

    type                weight value                    per 32-column sub-block of x
    q8_0, q4_0, q5_0    d * q          (q signed)       sd * d_x * sum(q * xq)
    q4_1, q5_1          d * q + m      (q 0..31)        + m * s_x          (s_x = d_x * sum(xq))
    q4_k, q5_k          d*sc_j * q - dmin*m_j           same, factors per sub-block j
    q6_k                d * sc * (q - 32), sc per 16    integer sc times each 16-column half
    mxfp4               kvalues[q] * 2^(e-128)          doubled E2M1 values are integers

This is why quantize_q8 stores xd = (d_x, d_x * sum(xq)) per block: the min terms of the _1 and
K types need the sum, and having it precomputed costs one multiply per block instead of a pass.
The float types and forge's MXFP6/MXFP8 layouts (non-integer element values) use gemm instead.

Arguments: w [n_rows][row_bytes] (no alignment needed on the host), xq int8 [n_tokens][n_cols]
with values in [-127, 127], xd f32 [n_tokens][n_cols / 32][2], y f32 [n_tokens][n_rows];
n_cols a multiple of the type's block (32, or 256 for the K types).

Host launch: grid (row chunks, token chunks). The kernel derives its share from the grid size
(rows ceil(n_rows / grid x) per block), so the geometry below is a tuning choice only: ~16 rows
per block keeps a 576-row matrix at 36 blocks for two to a few dozen threads, 64 for large
matrices (the 49152-row output head: 768 blocks) so block hand-off stays under 1 % of the time;
tokens in chunks of TOKENS so a prefill's weights are decoded once per 32 tokens, and inside a
block in tiles of TB tokens x 2 rows.

GPU (matmul_q8.hip.j2, the decode GEMV's integer path): the gemv kernel's shape — blocks of
gemv.THREADS threads in row teams of `team` threads (common/rowteams.j2), the grid from
gemv.row_grid, grid y = the token — with weights decoded to 8-bit integers and
multiplied by xq with 4-way integer dot products (dp4a / v_dot4). Its reductions use waves and
shared memory, so the family is not barrier_free (that flag only concerns the emulator).

`team` (32, 64, 128 threads per row; a compile-time stride) is picked per matrix by team_for():
the smallest team giving each thread at most a few units (32 columns, 64 for the K types; the
lowering's TEAM_UNITS, measured), so a short row does not leave most of its team idle (SmolLM2's
576 columns are 18 units: a 128-thread team had 110 idle threads) and a block takes more rows at
once. Left out, it is 128 (64 for the K types: one unit per thread of a 4096-column row).
"""

from ...arch import Arch
from ...errors import SpecError
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from ..wtypes import get_wtype
from . import gemv

K_UNIT_TYPES = ("q4_k", "q5_k")  # 64-column units (a K-quant sub-block pair)
INT_WTYPES = ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k", "mxfp4")
TOKENS = 32  # tokens per block
TEAMS = (32, 64, 128)  # GPU row-team sizes
TB = 4  # tokens per register tile


def host_rows_per_block(n_rows: int) -> int:
    """Host target: weight rows per block (the kernel derives its share from the grid size)."""
    return 16 if n_rows <= 8192 else 64


class MatmulQ8(KernelSpec):
    family = "matmul_q8"
    space = {"wtype": INT_WTYPES, "fuse": gemv.FUSES, "team": TEAMS}  # fuse: as gemv's (rowteams.j2), GPU only
    defaults = {"fuse": "none"}
    host = True
    gpu = True
    barrier_free = False  # the GPU kernels reduce through waves and shared memory
    doc = "y[t] = W (xq[t] * d_x[t]); integer dot products per 32 columns, one float scale per block"

    def args(self, p):
        return gemv.fused_args(p["fuse"], [
            Arg.ptr("w", "u8", const=True), Arg.ptr("xq", "i8", const=True), Arg.ptr("xd", "f32", const=True),
            Arg.ptr("y", "f32"), Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32"), Arg.scalar("n_tokens", "i32")])

    def launch(self, p, arch: Arch, *, n_rows: int, n_cols: int, n_tokens: int, rows_per_block: int | None = None,
               rows_per_team: int | None = None, n_rows2: int = 0, n_rows3: int = 0) -> Launch:
        """Host: row chunks of `rows_per_block` x token chunks. GPU: gpu_launch (`rows_per_team`)."""
        get_wtype(p["wtype"]).check_shape(n_cols, n_rows=n_rows, n_tokens=n_tokens)
        if arch.is_gpu_semantics:
            return self.gpu_launch(p, gemv.fused_rows(p["fuse"], n_rows, n_rows2, n_rows3), n_cols, n_tokens, arch,
                                   rows_per_team)
        rpb = rows_per_block or host_rows_per_block(n_rows)
        return Launch((ceil_div(n_rows, rpb), ceil_div(n_tokens, TOKENS), 1), (1, 1, 1))

    def context(self, p, arch):
        if arch.is_gpu_semantics:
            # Two units in flight per row, except q8_0 and q6_k, whose units already hold 9 and 18 loads
            # per row (and for which ptxas spills at two).
            return {"wt": get_wtype(p["wtype"]), "fuse": p["fuse"], "rmax": gemv.RMAX, "threads": gemv.THREADS, "tpr": self.team(p),
                    "unroll": 1 if p["wtype"] in ("q8_0", "q6_k") else 2}
        return {"wt": get_wtype(p["wtype"]), "tb": TB}

    # --- GPU kernels (matmul_q8.hip.j2) ----------------------------------------------------------
    def valid(self, p, arch):
        if not arch.is_gpu_semantics:
            return p["fuse"] == "none" and p["team"] == (64 if p["wtype"] in K_UNIT_TYPES else 128)
        return (gemv.THREADS <= arch.max_threads and gemv.THREADS % arch.wave_size == 0)

    def gpu_launch(self, p, n_rows: int, n_cols: int, n_tokens: int, arch: Arch, rows_per_team: int | None) -> Launch:
        """Grid (row blocks as gemv.row_grid over the row's units, tokens); `rows_per_team` (a tuning
        override) is any positive number: the kernel derives its rows from the grid."""
        grid = gemv.fused_grid(p["fuse"], gemv.row_grid(arch, n_rows, self.team(p), rows_per_team))
        return Launch((grid, n_tokens, 1), (gemv.THREADS, 1, 1))

    def variant(self, arch: Arch, **params):
        """`team` left out: 128 threads, 64 for the K types (their old fixed choice)."""
        if "team" not in params and "wtype" in params:
            params["team"] = 64 if params["wtype"] in K_UNIT_TYPES else 128
        return super().variant(arch, **params)

    @staticmethod
    def team(p) -> int:
        return p["team"]


def team_for(wtype: str, n_cols: int, units_per_thread: int = 1) -> int:
    """The row-team size for rows of n_cols columns: the smallest of TEAMS that gives each thread at
    most `units_per_thread` units (32 columns, 64 for the K types), else the largest."""
    units = n_cols // (64 if wtype in K_UNIT_TYPES else 32)
    return next((t for t in TEAMS if t * units_per_thread >= units), TEAMS[-1])


register(MatmulQ8())
