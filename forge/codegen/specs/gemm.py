"""Y[m, n_rows] = X W^T for many tokens, W in any weight type: a shared-memory tiled kernel that
decodes a BN x BK tile of W per K step (fused dequant) next to a BM x BK tile of X.

Where the arch has RDNA3's WMMA (arch.has("wmma_f16"): gfx1100-1102, and the emulator target
emu-gfx1100), the tiles are rounded to f16 in shared memory and multiplied on the matrix unit
(v_wmma_f32_16x16x16_f16, accumulating in f32): a block of 4 waves owns a 64 x 64 output tile,
each wave a 32 x 32 patch of 2 x 2 WMMA tiles, so every A and B fragment it loads serves two
products. The lane layouts come from forge/codegen/matrix_layouts.py. The price is f16 rounding of
both inputs (relative 2^-11; tests/kernels/test_gemm.py derives the bound) and f16's range: an
activation or weight beyond +-65504 becomes infinite.

Where the arch has NVIDIA's mma.sync (arch.has("mma_sync"): sm_80, sm_90, emu-sm90), the same f16
tiles go through mma.sync m16n8k16 (templates/gemm/mma_sync.j2): a block of 8 warps (16 with
kgroups 2) owns a 128 x 128 output tile, each warp a 64 x 32 patch of 4 x 4 m16n8 tiles; the tiles are double-buffered in
dynamic shared memory (mma_shared_bytes), so one barrier per K step suffices. Same accuracy bound.
Fragments come from shared memory by ldmatrix .x4 (one per A fragment, one per two B fragments;
`ldmatrix=False` keeps the earlier 32-bit loads, for benchmarks and tests). `tile=64`: 4 warps of
32 x 32 on a 64 x 64 block tile, which mma_tile_for picks where 128 x 128 tiles would not give every
SM a block (the 8B's K/V projections at m = 512). `xin="f16"`: X comes already rounded to f16 by
x_f16 (specs/x_f16.py: once per batch, row r scaled by 2^-xe[r]; arguments x f16 and xe i32 [m]),
so the X tile is copied instead of converted per block column, and the sums of row r are scaled by
2^xe[r] at the end; the default "f32" reads f32 X and rounds it per K step. Same accuracy bound
(the per-row exponent is the one the bound's e_x already assumes), and the same bits where every
chunk's exponent equals its row's.

`xin="q8"` (mma.sync archs, the weight types of Q8_WTYPES): llama.cpp's MMQ scheme on the int8
tensor cores (templates/gemm/mma_sync_q8.j2). X comes quantized by quantize_q8 (once per batch,
shared by every matmul reading it: int8 xq [m][n_cols] and xd [m][n_cols / 32] = (d_x, d_x *
sum(xq)) per 32-column block; arguments w, xq, xd, y); the weights are decoded to int8 plus a factor
and a min per (row, 32-column block) by matmul_q8's decoders (common/q8_weights.j2); per block the
integer products come from mma.sync m16n8k32 .s8 (exact s32), and each is scaled into the f32
accumulators as (f_w d_x) D + m_w s_x. Those are matmul_q8's terms, rounded the same way, summed in
another order: tests/oracles/matmul_q8.py's bound holds (tests/kernels/test_gemm.py). Against
the f16 paths, the int8 tiles halve the shared-memory bytes per K column and the instruction does
twice the K per issue; X's error is quantize_q8's (d_x / 2 per element) instead of f16 rounding. The
same block tiles, warp tiles and double buffering as the f16 kernel, MMA_Q8_BK columns (4 blocks)
per K step and barrier, 32-bit fragment loads (so `ldmatrix` False: no ldmatrix variant yet). q6_k
(factors per 16 columns) and the float types stay on the f16 paths. Lowering runs it for every type it has (lower.py GEMM_Q8_X: on the H100 it beat the
f16-X gemm in every whole model measured, docs/PERFORMANCE.md). `kgroups` 2 as in the f16 kernel (lowering's
mma_kgroups_for picks it the same way): twice the warps, each group the whole output tile but 2 of
every K step's 4 blocks from the same shared tiles (MMA_Q8_BK stays 128), group 1's accumulators
added by group 0 through shared memory after the K loop (mma_q8_shared_bytes covers them).

Where the arch has gfx950's scaled MFMA (arch.has("mx_scaled_mfma"): gfx950, emu-gfx950) and the
weights are MX (mxfp4/6/8), v_mfma_scale_f32_16x16x128_f8f6f4 multiplies with the E8M0 block scales
passed natively (templates/gemm/mfma_scale.j2): X is quantized to MXFP8 E4M3 per block of 32 on the
fly, the weight elements are re-encoded exactly as FP8 in shared memory (E5M2 kept as BF8), a block
of 4 waves owns a 32 x 32 output tile, one instruction per wave per K step of 128. Its parameter
`acts` picks X's format: "mxfp8" (E4M3, the default) or "mxfp6" (FP6 E2M3, converted by
v_cvt_scalef32_2xpk16_fp6_f32 and given to the unit as FP6: cbsz 2); other paths have only the
default, which there means nothing (their X stays f32 / f16).

Elsewhere every output is an f32 fma chain (2 x 2 outputs per thread of 256)."""

from ...arch import Arch
from ..spec import Arg, KernelSpec, Launch, ceil_div, register
from ..wtypes import WTYPE_NAMES, get_wtype
from .matmul_q8 import INT_WTYPES

MX_HELPER = "common/quant_mx.h.j2"  # the MX weight types' decoder: the types the scaled MFMA takes

BM, BN = 32, 32  # tokens and weight rows per block tile (scalar path)
THREADS = 256  # each thread owns a 2 x 2 patch of the tile
WMMA_BM, WMMA_BN = 64, 64  # WMMA path: tokens and weight rows per block tile
WMMA_THREADS = 128  # 4 waves of 32, each a WMMA_WAVE_TILE patch of the block tile; 2 per X tile row
WMMA_WAVE_TILE = (32, 32)
MMA_BM, MMA_BN = 128, 128  # mma.sync path (NVIDIA): tokens and weight rows per block tile
MMA_THREADS = 256  # 8 warps: 2 along tokens x 4 along weight rows
MMA_WARP_TILE = (64, 32)  # per warp: 4 x 4 m16n8 tiles, so each A fragment serves 4 products, each B 4
# mma.sync: columns per K step at least MMA_BK per K group (fewer barriers per product than 32;
# measured on the H100 at m = 512, docs/PERFORMANCE.md: 64 columns made the 8B's q4_0 projections
# 70.2 -> 64.2 ms and q8_0's 85.1 -> 72.6 ms; 128 was slower where 2 blocks share an SM, its shared
# memory allowing only one). `kgroups` 2: the block's warps come in two groups splitting each K step,
# twice the warps on the same output tile (for grids that leave SMs with one block).
MMA_BK = 64
KGROUPS = (1, 2)
# mma.sync's smaller tile (the `tile` parameter, chosen by mma_tile_for from the shape): 64 x 64 by 4
# warps of 32 x 32 (2 x 4 m16n8 tiles), for shapes whose 128 x 128 tiles leave SMs idle.
MMA_SMALL = 64
MMA_SMALL_THREADS = 128
MMA_SMALL_WARP_TILE = (32, 32)
MS_BM, MS_BN, MS_BK = 32, 32, 128  # scaled-MFMA path (gfx950): tokens, weight rows, K per step (one instruction)
MS_THREADS = 256  # 4 waves of 64, each one 16 x 16 tile of the block tile
ACTS = ("mxfp8", "mxfp6")  # what the scaled-MFMA path quantizes X to (forge.load(acts=...))
XIN = ("f32", "f16", "q8")  # mma.sync path: X as f32 (rounded per K step), as x_f16's output (f16 + row
# exponents), or as quantize_q8's output (int8 blocks of 32 with a scale each: the int8 tensor cores)
# xin="q8": the weight types whose 32-column blocks are int8 values times one factor plus one min
# (matmul_q8's table); q6_k's factors change every 16 columns.
Q8_WTYPES = tuple(t for t in INT_WTYPES if t != "q6_k")
MMA_Q8_BK = 128  # xin="q8": K columns per step, 4 blocks of 32 per barrier (as many tile bytes as f16's 64)
Q8_PAD = 16  # xin="q8": bytes after each int8 tile row (bank spread, rows 16-byte aligned)
LDS_PAD = 8  # f16 after each tile row (common/wmma.h.j2's fragment loads want rows 16-byte aligned)
HOST_TOKENS = 32  # host target: tokens per block (each decoded weight chunk serves 4 at a time)


def host_rows_per_block(n_rows: int) -> int:
    """Host target: weight rows per block (the kernel derives its share from the grid size)."""
    return 16 if n_rows <= 8192 else 64


def k_step(span: int) -> int:
    """Columns per K step: a whole number of the type's group spans, at least 32."""
    return max(32, span)


def path(arch: Arch, wtype: str) -> str:
    """Which matrix path multiplies the tiles on `arch` (templates/gemm/<path>.j2): the arch's
    matrix unit where it has one this kernel uses, else scalar fma."""
    if arch.has("wmma_f16"):
        return "wmma"
    if arch.has("mx_scaled_mfma") and get_wtype(wtype).helper == MX_HELPER:
        return "mfma_scale"
    if arch.has("mma_sync"):
        return "mma_sync"
    return "scalar"


def rounds_to_f16(arch: Arch, wtype: str) -> bool:
    """Whether the GPU kernel on `arch` rounds X and W to f16 before multiplying (the WMMA and
    mma.sync paths): its results carry the f16 error bound of tests/kernels/test_gemm.py."""
    return arch.is_gpu_semantics and path(arch, wtype) in ("wmma", "mma_sync")


def mma_tiles(tile: int, kgroups: int = 1) -> tuple[int, int, int, tuple[int, int]]:
    """(BM, BN, threads, warp tile) of the mma.sync kernel with block tile `tile` (128 or 64) and
    `kgroups` groups of warps splitting each K step (each group covers the whole output tile)."""
    if tile == MMA_SMALL:
        return MMA_SMALL, MMA_SMALL, MMA_SMALL_THREADS * kgroups, MMA_SMALL_WARP_TILE
    return MMA_BM, MMA_BN, MMA_THREADS * kgroups, MMA_WARP_TILE


def mma_k_step(span: int, kgroups: int = 1) -> int:
    """mma.sync's columns per K step: whole group spans, at least MMA_BK per K group."""
    return max(MMA_BK * kgroups, span)


def step_cols(arch: Arch, wtype: str, kgroups: int = 1) -> int:
    """Columns per K step of the gemm variant on `arch` (the bound's K is n_cols rounded up to it)."""
    span = get_wtype(wtype).span
    return mma_k_step(span, kgroups) if arch.is_gpu_semantics and path(arch, wtype) == "mma_sync" else k_step(span)


def mma_tile_for(arch: Arch, wtype: str, m: int, n_rows: int) -> int:
    """The mma.sync block tile for Y [m, n_rows]: 128, unless its tiles would fill less than half the
    arch's compute units, then 64 (4x the blocks, each half the reuse per fragment). Measured on the
    H100 at m = 512 (docs/PERFORMANCE.md, benchmarks/gemm.py): 1024 rows (32 tiles for 132 SMs) 64 is
    1.4x faster; 4096 rows (128 tiles) 128 is 1.5x faster. Other paths: 128 (the parameter's
    default, which they ignore)."""
    if path(arch, wtype) != "mma_sync" or not arch.compute_units:
        return MMA_BM
    return MMA_SMALL if 2 * ceil_div(m, MMA_BM) * ceil_div(n_rows, MMA_BN) < arch.compute_units else MMA_BM


def mma_kgroups_for(arch: Arch, wtype: str, m: int, n_rows: int, tile: int) -> int:
    """K groups for Y [m, n_rows] on the mma.sync block tile `tile`: 2 where the tiles give no compute
    unit a second block (then each block's warps double instead), else 1. Other paths: 1."""
    if path(arch, wtype) != "mma_sync" or not arch.compute_units:
        return 1
    return 2 if ceil_div(m, tile) * ceil_div(n_rows, tile) <= arch.compute_units else 1


def gemm_params(arch: Arch, wtype: str, m: int, n_rows: int) -> dict:
    """The gemm variant's parameters for Y [m, n_rows] = X W^T on `arch` (what lowering calls): the
    weight type, and the mma.sync block tile and K groups where mma_tile_for and mma_kgroups_for pick
    non-default ones."""
    tile = mma_tile_for(arch, wtype, m, n_rows)
    kgroups = mma_kgroups_for(arch, wtype, m, n_rows, tile)
    return {"wtype": wtype, **({"tile": tile} if tile != MMA_BM else {}), **({"kgroups": kgroups} if kgroups != 1 else {})}


def mma_shared_bytes(wtype: str, tile: int = MMA_BM, kgroups: int = 1) -> int:
    """Dynamic shared memory of the mma.sync kernel: two buffers (the tiles of one K step are filled
    while the other's are multiplied), each the W and X tiles in f16, LDS_PAD-padded rows, and a u32
    scale exponent per X tile row; with two K groups at least the second group's f32 accumulators
    (the whole output tile), which reuse the buffers after the K loop."""
    bm, bn, _, _ = mma_tiles(tile, kgroups)
    bk = mma_k_step(get_wtype(wtype).span, kgroups)
    tiles_bytes = 2 * ((bm + bn) * (bk + LDS_PAD) * 2 + bm * 4)
    return max(tiles_bytes, (kgroups - 1) * bm * bn * 4)


def mma_q8_shared_bytes(tile: int = MMA_BM, kgroups: int = 1) -> int:
    """Dynamic shared memory of the int8 mma.sync kernel (xin="q8"): two buffers, each the W and X
    tiles in int8 with Q8_PAD-padded rows, then per 32-column block a factor and a min per weight row
    and d_x and s_x per token, in f32; with K groups at least groups 1..'s f32 accumulators (the
    whole output tile each), which reuse the buffers after the K loop."""
    bm, bn, _, _ = mma_tiles(tile, kgroups)
    tiles_bytes = 2 * ((bm + bn) * (MMA_Q8_BK + Q8_PAD) + (MMA_Q8_BK // 32) * 2 * (bm + bn) * 4)
    return max(tiles_bytes, (kgroups - 1) * bm * bn * 4)


def tiles(arch: Arch, wtype: str = "f32", tile: int = MMA_BM, kgroups: int = 1) -> tuple[int, int, int]:
    """(BM, BN, threads) of the GPU kernel on `arch`: the WMMA tiles where it has WMMA; on mma.sync,
    those of the `tile` and `kgroups` parameters."""
    if path(arch, wtype) == "mma_sync":
        return mma_tiles(tile, kgroups)[:3]
    if path(arch, wtype) == "mfma_scale":
        return MS_BM, MS_BN, MS_THREADS
    return (WMMA_BM, WMMA_BN, WMMA_THREADS) if path(arch, wtype) == "wmma" else (BM, BN, THREADS)


def shared_bytes(p) -> int:
    """Dynamic shared memory of the mma.sync variant with parameters p."""
    return mma_q8_shared_bytes(p["tile"], p["kgroups"]) if p["xin"] == "q8" else mma_shared_bytes(p["wtype"], p["tile"], p["kgroups"])


class Gemm(KernelSpec):
    family = "gemm"
    # tile and ldmatrix: mma.sync choices (other paths take only the defaults). tile: the block tile
    # (mma_tile_for picks it from the shape); ldmatrix False: the 32-bit fragment loads it replaced,
    # kept so that benchmarks/gemm.py times both and the property tests prove both.
    # xin: the mma.sync path's X input (f16: converted once per batch by x_f16; q8: quantize_q8's int8
    # blocks, with ldmatrix False; others take only f32)
    # kgroups: warps per output tile doubled, each group half of every K step (mma.sync: ldmatrix, or
    # xin q8)
    space = {"wtype": WTYPE_NAMES, "tile": (MMA_BM, MMA_SMALL), "ldmatrix": (True, False), "acts": ACTS, "xin": XIN,
             "kgroups": KGROUPS}
    # acts: the scaled-MFMA path's X format (others take only the default)
    defaults = {"tile": MMA_BM, "ldmatrix": True, "acts": "mxfp8", "xin": "f32", "kgroups": 1}
    host = True
    doc = ("grid (n_rows/BN, m/BM); W 16-byte aligned, X f32 [m, n_cols] row-major (xin f16: x_f16's f16 X and "
           "its i32 row exponents xe [m]; xin q8: quantize_q8's xq i8 [m, n_cols] and xd f32 [m, n_cols/32, 2]), "
           "Y f32 [m, n_rows]")

    def valid(self, p, arch):
        if p["acts"] != "mxfp8" and not (arch.is_gpu_semantics and path(arch, p["wtype"]) == "mfma_scale"):
            return False  # only the scaled-MFMA path quantizes X to an MX format
        if (p["tile"], p["ldmatrix"], p["xin"]) != (MMA_BM, True, "f32") and (
                not arch.is_gpu_semantics or path(arch, p["wtype"]) != "mma_sync"):
            return False
        if p["xin"] == "f16" and not p["ldmatrix"]:
            return False  # the 32-bit fragment loads are kept for comparison only, with f32 X
        if p["xin"] == "q8" and (p["ldmatrix"] or p["wtype"] not in Q8_WTYPES):
            return False  # int8 fragments come by 32-bit loads (ldmatrix False); types of matmul_q8's table
        if p["kgroups"] != 1 and (not arch.is_gpu_semantics or path(arch, p["wtype"]) != "mma_sync"
                                  or not (p["ldmatrix"] or p["xin"] == "q8") or p["xin"] == "f32"):
            # K groups: mma.sync with converted X (f16 with ldmatrix fragments, or the int8 kernel).
            # f32 X's per-step conversion with two groups needs more than the 128 registers a thread
            # of 512 may have: ptxas (sm_90) spilled 24-88 bytes for every weight type
            return False
        if not arch.is_gpu_semantics:
            return True
        bm, bn, threads = tiles(arch, p["wtype"], p["tile"], p["kgroups"])
        if path(arch, p["wtype"]) == "wmma":  # f16 tiles in shared memory
            lds = 2 * (bm + bn) * (k_step(get_wtype(p["wtype"]).span) + LDS_PAD)
            return threads <= arch.max_threads and threads % arch.wave_size == 0 and lds <= arch.lds_bytes
        if path(arch, p["wtype"]) == "mma_sync":
            return threads <= arch.max_threads and shared_bytes(p) <= arch.lds_bytes
        if path(arch, p["wtype"]) == "mfma_scale":
            return threads <= arch.max_threads and threads % arch.wave_size == 0
        return threads <= arch.max_threads

    def args(self, p):
        x = {"f16": [Arg.ptr("x", "f16", const=True), Arg.ptr("xe", "i32", const=True)],
             "q8": [Arg.ptr("xq", "i8", const=True), Arg.ptr("xd", "f32", const=True)]}.get(
                 p["xin"], [Arg.ptr("x", "f32", const=True)])
        return [Arg.ptr("w", "u8", const=True), *x, Arg.ptr("y", "f32"),
                Arg.scalar("m", "i32"), Arg.scalar("n_rows", "i32"), Arg.scalar("n_cols", "i32")]

    def launch(self, p, arch: Arch, *, m: int, n_rows: int, n_cols: int) -> Launch:
        get_wtype(p["wtype"]).check_shape(n_cols, m=m, n_rows=n_rows)
        if not arch.is_gpu_semantics:  # row chunks x token chunks, one call each
            return Launch((ceil_div(n_rows, host_rows_per_block(n_rows)), ceil_div(m, HOST_TOKENS), 1), (1, 1, 1))
        bm, bn, threads = tiles(arch, p["wtype"], p["tile"], p["kgroups"])
        shared = shared_bytes(p) if path(arch, p["wtype"]) == "mma_sync" else 0
        return Launch((ceil_div(n_rows, bn), ceil_div(m, bm), 1), (threads, 1, 1), shared)

    def context(self, p, arch):
        wt = get_wtype(p["wtype"])
        bm, bn, threads = tiles(arch, p["wtype"], p["tile"], p["kgroups"])
        bk = MMA_Q8_BK if p["xin"] == "q8" else step_cols(arch, p["wtype"], p["kgroups"])
        return {"wt": wt, "path": path(arch, p["wtype"]), "bm": bm, "bn": bn, "bk": bk, "threads": threads,
                "kgroups": p["kgroups"],
                "wm": WMMA_WAVE_TILE[0], "wn": WMMA_WAVE_TILE[1], "mma_warp_tile": mma_tiles(p["tile"])[3],
                "ldmatrix": p["ldmatrix"], "lds_pad": LDS_PAD, "ms_bk": MS_BK, "acts": p["acts"], "xin": p["xin"], "q8_pad": Q8_PAD}


register(Gemm())
