"""gemm (Y = X W^T for many tokens, dequantization fused into the tile loads) vs the float64 product
of the oracle's decoded weights and X.

Scalar path (every arch without WMMA): each output is one thread's fma chain over the n_cols
columns, so the gemv bound applies (tests/oracles/gemv.py):
    |Y_kernel - Y| <= gamma_n * sum_k |X_k W_k| + n * 2^-126,  gamma_n = n u / (1 - n u), u = 2^-24.

WMMA path (arch.has("wmma_f16"): gfx1100, and emu-gfx1100 here): the decoded W is rounded to
f16, and X too, each row's chunk of a K step first scaled by 2^-e (e > 0 only where the chunk's
largest |x| reaches 2^15; then 2^e <= max|x_row| 2^-14), and the step's sums scaled back by 2^e
(exact). So x^ = 2^e fl16(x 2^-e) and w^ = fl16(w), and round to nearest gives
    |x^ - x| <= u_h |x| + e_x,  e_x = e_h max(1, max|x_row| 2^-14);   |w^ - w| <= u_h |w| + e_h
for |w| <= 65504 (random weights stay within ~1e3), with u_h = 2^-11 (f16's unit roundoff) and
e_h = 2^-25 (half the subnormal spacing 2^-24: the absolute error below 2^-14). Per term, writing
p_k = x^_k w^_k,
    p_k - x_k w_k = (x^_k - x_k) w^_k + x_k (w^_k - w_k)
    |p_k - x_k w_k| <= (u_h|x_k| + e_x)((1 + u_h)|w_k| + e_h) + |x_k| (u_h|w_k| + e_h)
                    = (2 u_h + u_h^2) |x_k w_k| + (1 + u_h)(e_h |x_k| + e_x |w_k|) + e_x e_h.
Each product of f16 values is exact in f32 (11 x 11 significant bits, and every nonzero one and
every partial sum is a multiple of 2^-48 times the power of two of its step, far from f32's
underflow), and the kernel adds the n products in a tree of at most n - 1 additions (the matrix
unit's inside a step, then the steps' sums), each with relative error at most u_a, so (Higham,
Accuracy and Stability, 3.1) |s - sum p_k| <= gamma_n sum |p_k| <= gamma_n (S + sum |p_k - x_k w_k|),
gamma_n = n u_a / (1 - n u_a). Altogether, with S = sum_k |x_k w_k|:
    |Y_kernel - Y| <= (gamma_n + (1 + gamma_n)(2 u_h + u_h^2)) S
                      + (1 + gamma_n)((1 + u_h)(e_h sum|x_k| + e_x sum|w_k|) + n e_x e_h).
n counts the K columns of the tiles (n_cols rounded up to the K step; padding adds exact zeros).
u_a: the emulator rounds every addition to f32 to nearest (u_a = 2^-24 would do), but AMD documents
neither the order nor the rounding of the matrix unit's sums, and a ROCm report (rocm-systems
#12056) finds RDNA3.5's f16 dot/WMMA sums aligned to a grid set by the operands' exponents rather
than rounded per addition: u_a = 2^-21 leaves that room (an error of up to 4 ulps of the larger
addend per addition), so the same property can judge a real gfx1100 (--backend hip), unconfirmed
until one runs it. Measured on the emulator: errors up to ~0.5 of the bound, and 3-170x the scalar
path's f32 bound (so the inputs really are f16).

mma.sync path (arch.has("mma_sync"): sm_80/sm_90, and emu-sm90 here): the same roundings of X and
W (per-row chunk scaling included), so the same bound. Its sums differ only in order: the
accumulators are the instruction's C operand through the whole K loop (one chain of n additions
instead of a tree), and a row whose chunk is scaled has its accumulators multiplied by 2^-e before
the step and by 2^e after (exact unless an accumulator falls below 2^-126: at most 2^(e-150) per
step, far under the n e_x e_h term). NVIDIA documents neither the order nor the rounding of the
tensor cores' sums (Fasi, Higham, Mikaitis and Pranesh, "Numerical behavior of NVIDIA tensor
cores", 2021, found V100-A100 truncating them rather than rounding to nearest): u_a = 2^-21 leaves
4 ulps per addition there too, unconfirmed until --backend cuda runs this property on an H100.
Measured on the emulator: errors up to ~0.65 of the bound, and 10-150x the scalar path's.

mma.sync with f16 X (gemm xin="f16", after x_f16): X rounded once per batch with one exponent per
row, e_r from the row's largest finite |x| by the same rule, instead of per K step's chunk. So
x^ = 2^e_r fl16(x 2^-e_r) with 2^e_r <= max(1, max|x_row| 2^-14): the same |x^ - x| <= u_h |x| + e_x,
hence the same bound (e_x already uses the row's max). The sums of row r are in units of 2^e_r for
the whole K loop and scaled back once (exact). Where every chunk's exponent equals its row's, or the
row's values scaled by 2^-e_r stay in f16's normal range (rounding commutes with powers of two), the
products and sums are 2^(e_c - e_r) times the f32-X path's, so its results are the same bits:
test_f16_x_matches_f32_x checks that on emu-sm90 for every such row.

mma.sync with int8 X (gemm xin="q8", after quantize_q8): judged against matmul_q8's oracle
(tests/oracles/matmul_q8.py) on the same xq / xd, not against f32 X: both multiply the same
dequantized activations, so quantize_q8's own error is no part of the comparison. The kernel's
integer products per 32-column block are exact (mma.sync .s8 into s32, from C = 0), so each output
is a sum of 2 n/32 terms, fl(fl(f_w d_x) D) and, for the types with a min, fl(m_w s_x): exactly the
terms, with exactly the roundings, matmul_q8 forms (f_w = d, d sc or 2^(e-128): exact), added into
the accumulator by fma (one rounding per term). The oracle's bound allows N = n/4 + n/32 + 4 such
terms, each off by (1 + u)^3 - 1, and N - 1 further roundings in any order: more than this kernel's
2 n/32 terms and additions, so the same bound holds, and it is small (gamma_N relative to sum |terms|,
~1e-5 at n = 512). NaN / Inf in an X block: quantize_q8 makes d_x NaN / inf and xq 0, so every output
of that token is NaN (d_x D = inf * 0), as in the oracle.

Values: X of magnitudes 1e-3 .. 8e3, and at times 2^20 times that; W random valid encodings.
Shapes: token and row counts around the block tile (32 x 32, 64 x 64 with WMMA, 128 x 128 with
mma.sync: 1, tile - 1, tile + 1, 2 tile + 1 and arbitrary), and column counts of one to several K
steps (float types with a partial last step)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.arch import get_arch
from forge.codegen.specs.gemm import (MMA_BM, MMA_Q8_BK, MMA_SMALL, Q8_WTYPES, gemm_params, mma_tile_for,
                                      path, rounds_to_f16, step_cols, tiles)
from forge.codegen.wtypes import WTYPE_NAMES, get_wtype
from tests.conftest import KernelContext
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.kernels.test_dequant import n_cols
from tests.oracles.dequant import decode, random_weights
from tests.oracles.gemm import gemm
from tests.oracles.gemv import check
from tests.oracles.matmul_q8 import matmul_q8
from tests.oracles.quantize_q8 import quantize_q8
from tests.oracles.x_f16 import row_max, scale_exp

UH = 2.0 ** -11  # f16 unit roundoff
EH = 2.0 ** -25  # f16's absolute rounding error below its smallest normal (half of 2^-24)
UA = 2.0 ** -21  # relative error allowed per addition of the matrix unit's sums (module docstring)
F16_MAX = 65504.0


def wmma_bound(w: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """The WMMA path's bound (module docstring) for decoded weights w [rows, n_cols] and x [m, n_cols]."""
    w64, x64 = np.abs(w.astype(np.float64)), np.abs(x.astype(np.float64))
    assert w64.max(initial=0) <= F16_MAX, "the bound assumes weights within f16's range"
    g = n * UA / (1 - n * UA)
    ex = EH * np.maximum(1.0, x64.max(axis=1, initial=0) * 2.0 ** -14)[:, None]
    s = x64 @ w64.T
    sx, sw = x64.sum(axis=1)[:, None], w64.sum(axis=1)[None, :]
    return (g + (1 + g) * (2 * UH + UH ** 2)) * s + (1 + g) * ((1 + UH) * (EH * sx + ex * sw) + n * ex * EH)


def tile_counts(tile: int):
    return st.one_of(st.sampled_from([1, tile - 1, tile + 1, 2 * tile + 1]), st.integers(1, 2 * tile + 1))


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_gemm(kctx, wtype, data):
    check_gemm(kctx, wtype, data)


def emulator_target(request, name: str) -> KernelContext:
    """A kernel context on the emulator target `name` (one carrying a GPU's matrix features), with
    the emulator asserting the matrix instruction's preconditions; skipped unless --backend runs
    the emulator."""
    if request.config.getoption("--backend") not in ("cpu", "emu"):
        pytest.skip(f"{name} is an emulator target: --backend cpu or emu")
    from forge.runtime.dispatch import Dispatcher
    from forge.runtime.emu import EmuDevice
    arch = get_arch(name)
    dev = EmuDevice(arch.wave_size)
    return KernelContext(dev, arch, Dispatcher(dev, arch))


@pytest.fixture(scope="module")
def wmma_ctx(request):
    """The emulator carrying gfx1100's features (emu-gfx1100, wave 32): the template's WMMA branch."""
    return emulator_target(request, "emu-gfx1100")


@pytest.fixture(scope="module")
def mma_ctx(request):
    """The emulator carrying sm_90's features (emu-sm90, warp 32): the template's mma.sync branch."""
    return emulator_target(request, "emu-sm90")


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_gemm_wmma(wmma_ctx, wtype, data):
    check_gemm(wmma_ctx, wtype, data)


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_gemm_mma_sync(mma_ctx, wtype, data):
    check_gemm(mma_ctx, wtype, data)


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_gemm_mma_sync_f16_x(mma_ctx, wtype, data):
    check_gemm(mma_ctx, wtype, data, xin="f16")


def exact_rows(x: np.ndarray, bk: int) -> np.ndarray:
    """Rows on which the f16-X variant must give the f32-X variant's bits (module docstring): every
    K step's chunk has its row's exponent, or the row's nonzero finite values scaled by 2^-e_r are
    f16 normals (at least 2^-14)."""
    x = x.astype(np.float32)
    e_r = scale_exp(row_max(x))
    pad = -x.shape[1] % bk
    chunks = np.pad(x, ((0, 0), (0, pad))).reshape(x.shape[0], -1, bk)
    same = (scale_exp(row_max(chunks)) == e_r[:, None]).all(axis=1)
    a = np.abs(x.astype(np.float64)) * np.ldexp(1.0, -e_r.astype(np.int64))[:, None]
    normal = ((a >= 2.0 ** -14) | (a == 0) | ~np.isfinite(a)).all(axis=1)
    return same | normal


def check_f16_x_matches_f32_x(ctx, wtype, data):
    """The f16-X variant (x_f16, then gemm xin f16) gives the f32-X variant's results bit for bit on
    the rows exact_rows names (nearly all drawn rows), on the same drawn data, tile and fragment loads."""
    params = mma_params(ctx, wtype, data)  # f32 X's: one K group
    w, x, y32, cols = run_drawn_gemm(ctx, wtype, data, 2, params)
    y16 = run_gemm(ctx, wtype, {**params, "xin": "f16", "ldmatrix": True}, w, x)  # the same fragments
    rows = exact_rows(x, step_cols(ctx.arch, wtype, params.get("kgroups", 1)))
    assert np.array_equal(y16[rows], y32[rows], equal_nan=True), np.argwhere(y16[rows] != y32[rows])[:4]


@pytest.mark.parametrize("wtype", ["q4_0", "q6_k", "f16", "f32"])
@given(data=st.data())
def test_f16_x_matches_f32_x(mma_ctx, wtype, data):
    check_f16_x_matches_f32_x(mma_ctx, wtype, data)


@pytest.fixture
def gpu_mma_ctx(kctx):
    """kctx where its arch has mma.sync (--backend cuda: the GPU); the CPU backends' targets have
    none (emu-sm90 runs the same checks through mma_ctx)."""
    if not kctx.arch.has("mma_sync"):
        pytest.skip(f"{kctx.arch.name} has no mma.sync (emu-sm90 runs these through mma_ctx)")
    return kctx


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_gemm_f16_x_on_the_gpu(gpu_mma_ctx, wtype, data):
    check_gemm(gpu_mma_ctx, wtype, data, xin="f16")


@pytest.mark.parametrize("wtype", ["q4_0", "q6_k", "f16", "f32"])
@given(data=st.data())
def test_f16_x_matches_f32_x_on_the_gpu(gpu_mma_ctx, wtype, data):
    """Bit-identity on the tensor cores: holds if their sums are invariant under power-of-two scaling
    of all addends (true of round-to-nearest and of truncation after alignment, barring underflow);
    not yet run on an H100."""
    check_f16_x_matches_f32_x(gpu_mma_ctx, wtype, data)


def test_f16_x_matches_f32_x_on_special_rows(mma_ctx):
    """Rows of zeros, rows with Inf and NaN beside large finite values (not counted in the max on
    either path, so the finite values still scale into range), and rows reaching 2^15 only in one K
    step but of f16-normal size elsewhere: the same bits (NaN where NaN) on both variants."""
    rng = np.random.default_rng(7)
    m, cols, rows = 9, 96, 40
    w = random_weights("q4_0", rows, cols, rng)
    x = rng.standard_normal((m, cols)).astype(np.float32)
    x[0] = 0.0
    x[1, 3], x[1, 40] = np.inf, 1e6
    x[2, 5], x[2, 70] = np.nan, -3e5
    x[3, :32] *= 1e6  # one chunk scaled, the others by the row's exponent too
    x[4, 10], x[4, 11] = np.inf, -np.inf
    x[5] *= 1e30
    assert exact_rows(x, 32).all()
    y32 = run_gemm(mma_ctx, "q4_0", {}, w, x)
    y16 = run_gemm(mma_ctx, "q4_0", {"xin": "f16"}, w, x)
    assert np.array_equal(y16, y32, equal_nan=True)
    assert np.isnan(y32[2]).all() and not np.isfinite(y32[[1, 4]]).any() and np.isfinite(y32[[0, 3, 5, 6]]).all()
    assert (y32[0] == 0).all()


def mma_params(kctx, wtype: str, data, pinned: dict | None = None, xin: str = "f32") -> dict:
    """The variant's parameters beyond wtype: on the mma.sync path the block tile, the fragment
    loads (ldmatrix or 32-bit) and, with ldmatrix and converted X (`xin`), the K groups are drawn, unless
    `pinned` fixes them (a mutant test pins its mutated variant, so every drawn case runs the
    mutant); elsewhere the defaults."""
    if pinned is not None:
        return dict(pinned)
    if not (kctx.arch.is_gpu_semantics and path(kctx.arch, wtype) == "mma_sync"):
        return {}
    p = {"tile": data.draw(st.sampled_from([MMA_BM, MMA_SMALL]), label="tile"),
         "ldmatrix": data.draw(st.booleans(), label="ldmatrix")}
    if p["ldmatrix"] and xin != "f32":  # K groups come with converted X only (specs/gemm.py valid())
        p["kgroups"] = data.draw(st.sampled_from([1, 2]), label="kgroups")
    return p


def run_drawn_gemm(kctx, wtype: str, data, min_units: int, params: dict | None = None):
    """One drawn gemm case run on kctx (the variant wtype with `params`, default the defaults): token
    and row counts around the variant's block tile, at least `min_units` of the type's units of
    columns, random valid weights, activations up to ~1e10 at times (2^20 is exact: f16's range,
    65504, must not limit them). Returns (w, x, y, n_cols)."""
    params = params or {}
    bm, bn, _ = (tiles(kctx.arch, wtype, params.get("tile", MMA_BM), params.get("kgroups", 1)) if kctx.arch.is_gpu_semantics
                 else (32, 32, 0))
    m, rows = data.draw(tile_counts(bm), label="m"), data.draw(tile_counts(bn), label="rows")
    cols = data.draw(n_cols(wtype, min_units), label="cols")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w = random_weights(wtype, rows, cols, rng)
    x = data.draw(arrays((m, cols), np.float32), label="x") * np.float32(data.draw(st.sampled_from([1, 1, 2**20])))
    return w, x, run_gemm(kctx, wtype, params, w, x), cols


def run_gemm(kctx, wtype: str, params: dict, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Y of the gemm variant (wtype, params) for w and x f32 [m, cols]; with xin f16, x goes through
    the x_f16 kernel first (on kctx too), as lowering chains them."""
    (m, cols), rows = x.shape, w.shape[0]
    xargs = {"x": x}
    if params.get("xin", "f32") == "f16":
        out = run_kernel(kctx, "x_f16", {}, {"x": x, "xh": np.zeros((m, cols), np.uint16), "xe": np.zeros(m, np.int32),
                                             "n_cols": cols}, ["xh", "xe"], rows=m, n_cols=cols)
        xargs = {"x": out["xh"], "xe": out["xe"]}
    return run_kernel(kctx, "gemm", {"wtype": wtype, **params},
                      {"w": w, **xargs, "y": np.full((m, rows), np.nan, np.float32), "m": m, "n_rows": rows,
                       "n_cols": cols},
                      ["y"], m=m, n_rows=rows, n_cols=cols)["y"]


def check_gemm(kctx, wtype, data, pinned: dict | None = None, xin: str = "f32"):
    """The property: one drawn case agrees with the oracle (the mutant tests use it too, with their
    variant's parameters `pinned`), within the bound of the arch's path; xin "f16": the f16-X variant
    (tile and fragment loads drawn unless pinned) fed by x_f16."""
    wt = get_wtype(wtype)
    params = mma_params(kctx, wtype, data, pinned, xin)
    bk = step_cols(kctx.arch, wtype, params.get("kgroups", 1))
    if xin != "f32":
        params.update(xin=xin, ldmatrix=True)  # f16 X comes with ldmatrix fragments only
    w, x, y, cols = run_drawn_gemm(kctx, wtype, data, max(2, 3 * bk // wt.unit_qk), params)
    ref, tol = gemm(wtype, w, cols, x)
    if rounds_to_f16(kctx.arch, wtype):
        tol = wmma_bound(decode(wtype, w, cols), x, -(-cols // bk) * bk)
    check(y, ref, tol)


# The X tile's row guard dropped: rows past m are read (never written back, so only checking mode,
# whose guard pages end every buffer, sees the out-of-bounds read). The mutant test runs on a
# checked device whatever FORGE_EMU_CHECK says; the suite runs checked (tests/conftest.py). The
# site is in both branches of the template; each arch renders one.
X_ROW_GUARD = ("(m0 + r < (u32)m && k0 + c < ncols) ? x[", "(k0 + c < ncols) ? x[")


def test_property_test_catches_x_row_overread(emu_kctx, tmp_path, monkeypatch):
    from forge.runtime.emu import EmuDevice
    checked = EmuDevice(emu_kctx.arch.wave_size, check=True)
    assert_property_catches(emu_kctx, "gemm", {"wtype": "f32"}, X_ROW_GUARD,
                            lambda ctx, data: check_gemm(ctx, "f32", data), tmp_path, monkeypatch,
                            max_examples=30, device=checked)


# The f16 paths' scale mutants show only on a drawn case whose activations reach 2^15 (the 2^20
# factor with a magnitude of at least ~1/30), a few percent of hypothesis's cases: at 30 examples
# the WMMA one went uncaught in 2 of 30 runs here; the other mutants are caught in the first few.
SCALE_MUTANT_EXAMPLES = 150

WMMA_MUTANTS = {
    # The upper half-wave skips its B load (as if the instruction read lanes 0-15 only): the
    # operand is no longer replicated, which the emulated instruction refuses (a DeviceError).
    "b_not_replicated": ("f[i] = __builtin_bit_cast(_Float16, t[wmma_b_col(lane, i)",
                         "f[i] = lane >= 16u ? (_Float16)0.0f : __builtin_bit_cast(_Float16, t[wmma_b_col(lane, i)"),
    # Accumulator element i of lane l taken as row i + 8 (l / 16) (half-waves stacked) instead of the
    # interleaved 2 i + l / 16: results land in the wrong rows.
    "accumulator_rows_stacked": ("DEVICE u32 wmma_d_row(u32 lane, u32 i) { return ((2u * (i)) + ((lane) / 16u)); }",
                                 "DEVICE u32 wmma_d_row(u32 lane, u32 i) { return ((i) + (8u * ((lane) / 16u))); }"),
    # The barrier after the products removed: a wave that finishes first overwrites the tiles of the
    # next K step while the others still multiply the current ones.
    "barrier_after_products": ("acc[i][j][e] = f_fma(st[i][j][e], up, acc[i][j][e]);\n      }\n    sync_threads();",
                               "acc[i][j][e] = f_fma(st[i][j][e], up, acc[i][j][e]);\n      }\n"),
    # The step sums added unscaled: rows whose chunk was scaled down (|x| >= 2^15) come out 2^-e too small.
    "scale_not_undone": ("f_fma(st[i][j][e], up, acc[i][j][e])", "f_fma(st[i][j][e], 1.0f, acc[i][j][e])"),
}


@pytest.mark.parametrize("mutant", sorted(WMMA_MUTANTS))
def test_wmma_property_catches_mutant(wmma_ctx, mutant, tmp_path, monkeypatch):
    assert_property_catches(wmma_ctx, "gemm", {"wtype": "q4_0"}, WMMA_MUTANTS[mutant],
                            lambda ctx, data: check_gemm(ctx, "q4_0", data), tmp_path, monkeypatch,
                            max_examples=SCALE_MUTANT_EXAMPLES)


MMA_SYNC_MUTANTS = {
    # The one barrier per K step removed: a warp that runs ahead multiplies a buffer the others have
    # not filled yet, or refills the one they still multiply.
    "barrier_per_step": ("    sync_threads();\n  }\n  for (u32 i = 0; i < FM; ++i)", "  }\n  for (u32 i = 0; i < FM; ++i)"),
    # The accumulators of a scaled row not scaled back after the step: rows with a chunk >= 2^15
    # come out too small.
    "scale_not_undone": ("if (rescale) acc_rescale(acc, xes, wm, lane, true);", ""),
    # ... or not scaled down before it: the earlier steps' sums of that row come out 2^e too large.
    "accumulators_not_scaled_down": ("if (rescale) acc_rescale(acc, xes, wm, lane, false);", ""),
    # The token guard of the vectorized X load dropped: rows past m are read (checking mode's guard
    # pages end every buffer).
    "x_token_guard": ("if (tok < m && ncols % 4u == 0 && c + 4u <= ncols)", "if (ncols % 4u == 0 && c + 4u <= ncols)"),
}


@pytest.mark.parametrize("mutant", sorted(MMA_SYNC_MUTANTS))
def test_mma_sync_property_catches_mutant(mma_ctx, mutant, tmp_path, monkeypatch):
    pinned = {"tile": MMA_BM, "ldmatrix": True}  # the default variant, the one mutated
    assert_property_catches(mma_ctx, "gemm", {"wtype": "q4_0"}, MMA_SYNC_MUTANTS[mutant],
                            lambda ctx, data: check_gemm(ctx, "q4_0", data, pinned), tmp_path, monkeypatch,
                            max_examples=SCALE_MUTANT_EXAMPLES)


# f16 weights' direct copy of whole units into the tile (rows with ncols % 8 == 0: an eighth of the
# drawn column counts, hence the scale mutants' example count): the source unit one too far.
def test_mma_sync_f16_copy_property_catches_mutant(mma_ctx, tmp_path, monkeypatch):
    pinned = {"tile": MMA_BM, "ldmatrix": True}
    assert_property_catches(mma_ctx, "gemm", {"wtype": "f16"}, ("(u64)col * 2u)", "(u64)col * 2u + 16u)"),
                            lambda ctx, data: check_gemm(ctx, "f16", data, pinned), tmp_path, monkeypatch,
                            max_examples=SCALE_MUTANT_EXAMPLES)


# The two-K-group variant's own code, pinned to it so that every drawn case runs the mutant.
MMA_KGROUPS_MUTANTS = {
    # The second group's partial sums never added: only half of each K step's columns are counted.
    "partials_not_added": ("for (u32 g = 1; g < KG; ++g)", "for (u32 g = KG; g < KG; ++g)"),
    # Group 1 multiplies the whole K step instead of its half: the first half is counted twice.
    "groups_overlap": ("for (u32 kk = kg * (BK / KG); kk < (kg + 1u) * (BK / KG)", "for (u32 kk = 0; kk < (kg + 1u) * (BK / KG)"),
    # The barrier between storing and adding the partials removed: group 0 may add what the tiles
    # held instead of group 1's sums (the emulator runs the warps in random orders in checking mode).
    "partials_unsynchronized": ("  sync_threads();\n  if (kg > 0u) return false;", "  if (kg > 0u) return false;"),
}


@pytest.mark.parametrize("mutant", sorted(MMA_KGROUPS_MUTANTS))
def test_mma_sync_kgroups_property_catches_mutant(mma_ctx, mutant, tmp_path, monkeypatch):
    pinned = {"tile": MMA_BM, "ldmatrix": True, "kgroups": 2}  # with f16 X (K groups need converted X)
    assert_property_catches(mma_ctx, "gemm", {"wtype": "q4_0", "kgroups": 2, "xin": "f16"}, MMA_KGROUPS_MUTANTS[mutant],
                            lambda ctx, data: check_gemm(ctx, "q4_0", data, pinned, xin="f16"), tmp_path, monkeypatch,
                            max_examples=30)


# The f16-X variant's own paths, pinned to it (default tile and ldmatrix) so that every drawn case runs
# the mutant; the exponent mutants show only on rows that were scaled (SCALE_MUTANT_EXAMPLES).
MMA_F16_X_MUTANTS = {
    # The rows' exponents never applied: scaled rows come out 2^-e_r too small.
    "exponent_not_applied": ("  acc_unscale(acc, xe, m0 + wm, mm, lane);\n", ""),
    # The exponent applied the wrong way (2^-e_r instead of 2^e_r).
    "exponent_inverted": ("x_scale_up((u32)xe[tok])", "x_scale_down((u32)xe[tok])"),
    # Each lane's rows taken from the wrong half of the m16 tile (rows g and g + 8 exchanged): scaled
    # rows get their neighbour's exponent.
    "exponent_wrong_row": ("x_scale_up((u32)xe[tok])", "x_scale_up((u32)xe[(tok ^ 8u) < m ? (tok ^ 8u) : tok])"),
    # The f16 X rows read with the shared tile's padded stride (ncols + 8 halves): wrong values, and
    # reads past the end (checking mode).
    "row_stride": ("const f16* row = x + (u64)tok * ncols + k0;", "const f16* row = x + (u64)tok * (ncols + 8u) + k0;"),
}


@pytest.mark.parametrize("mutant", sorted(MMA_F16_X_MUTANTS))
def test_mma_sync_f16_x_property_catches_mutant(mma_ctx, mutant, tmp_path, monkeypatch):
    pinned = {"tile": MMA_BM, "ldmatrix": True, "xin": "f16"}
    assert_property_catches(mma_ctx, "gemm", {"wtype": "q4_0", **pinned}, MMA_F16_X_MUTANTS[mutant],
                            lambda ctx, data: check_gemm(ctx, "q4_0", data, pinned), tmp_path, monkeypatch,
                            max_examples=SCALE_MUTANT_EXAMPLES)


# ldmatrix addressing (common/mma.h.j2), pinned to the ldmatrix variant of either block tile so that
# every drawn case runs the mutant.
MMA_LDM_MUTANTS = {
    # A's k halves swapped in the lane addresses (blocks 0/2 and 1/3 of the A fragment exchanged:
    # the classic ordering slip): A's k 0-7 meet B's k 8-15.
    "ldm_a_k_halves_swapped": ("return mma_a_row(l, e) * ld + mma_a_k(l, e);",
                               "return mma_a_row(l, e ^ 4u) * ld + mma_a_k(l, e ^ 4u);"),
    # The second n8 tile's offset dropped from B's lane addresses: both B fragments of an .x4 load
    # are weight rows 0-7 of the pair, so rows 8-15 of every pair are never multiplied.
    "ldm_bt_second_tile": ("(mma_b_col(l, e) + mma_ldm_elem(r) / 4u * MMA_N) * ld", "(mma_b_col(l, e)) * ld"),
    # A's row addresses 8 bytes off (a miscounted pad): not 16-byte aligned, which the PTX ISA
    # forbids and the emulated ldmatrix refuses (a DeviceError), whatever the data.
    "ldm_a_row_misaligned": ("return mma_a_row(l, e) * ld + mma_a_k(l, e);",
                             "return mma_a_row(l, e) * ld + mma_a_k(l, e) + 4u;"),
}


@pytest.mark.parametrize("tile", [MMA_BM, MMA_SMALL])
@pytest.mark.parametrize("mutant", sorted(MMA_LDM_MUTANTS))
def test_mma_sync_property_catches_ldmatrix_mutant(mma_ctx, mutant, tile, tmp_path, monkeypatch):
    pinned = {"tile": tile, "ldmatrix": True}
    assert_property_catches(mma_ctx, "gemm", {"wtype": "q4_0", **pinned}, MMA_LDM_MUTANTS[mutant],
                            lambda ctx, data: check_gemm(ctx, "q4_0", data, pinned), tmp_path, monkeypatch,
                            max_examples=30)


def check_gemm_q8(ctx, wtype, data, pinned: dict | None = None):
    """The int8 variant's property (module docstring): one drawn case, quantized by quantize_q8's
    oracle, agrees with matmul_q8's oracle on the same xq / xd within its bound. Token and row counts
    around the block tile (tile and K groups drawn unless `pinned`), one to several K steps of
    MMA_Q8_BK with tails of any number of 32-column blocks, activations from 1e-30 to 2^20 times the
    strategy's, and at times NaN or +-Inf planted in a few blocks."""
    params = {"xin": "q8", "ldmatrix": False,
              "tile": data.draw(st.sampled_from([MMA_BM, MMA_SMALL]), label="tile"),
              "kgroups": data.draw(st.sampled_from([1, 2]), label="kgroups"), **(pinned or {})}
    bm, bn, _ = tiles(ctx.arch, wtype, params["tile"], params["kgroups"])
    m, rows = data.draw(tile_counts(bm), label="m"), data.draw(tile_counts(bn), label="rows")
    wt = get_wtype(wtype)
    cols = data.draw(n_cols(wtype, max(2, 3 * MMA_Q8_BK // wt.qk)), label="cols")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w = random_weights(wtype, rows, cols, rng)
    x = data.draw(arrays((m, cols), np.float32), label="x") * np.float32(data.draw(st.sampled_from([1, 2**20, 1e-30])))
    if data.draw(st.booleans(), label="specials"):
        idx = rng.integers(0, x.size, size=max(1, x.size // 200))
        x.flat[idx] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), size=idx.size)
    xq, xd = quantize_q8(x)
    y = run_kernel(ctx, "gemm", {"wtype": wtype, **params},
                   {"w": w, "xq": xq, "xd": xd, "y": np.full((m, rows), np.nan, np.float32), "m": m,
                    "n_rows": rows, "n_cols": cols},
                   ["y"], m=m, n_rows=rows, n_cols=cols)["y"]
    ref, tol = matmul_q8(wtype, w, cols, xq, xd)
    check(y, ref, tol)


@pytest.mark.parametrize("wtype", Q8_WTYPES)
@given(data=st.data())
def test_gemm_mma_sync_q8_x(mma_ctx, wtype, data):
    check_gemm_q8(mma_ctx, wtype, data)


@pytest.mark.parametrize("wtype", Q8_WTYPES)
@given(data=st.data())
def test_gemm_q8_x_on_the_gpu(gpu_mma_ctx, wtype, data):
    """The same property on the tensor cores (--backend cuda; green on the H100, 2026-11-27)."""
    check_gemm_q8(gpu_mma_ctx, wtype, data)


def test_q8_x_variant_covers_matmul_q8s_types_but_q6_k():
    """xin="q8" exists on mma.sync archs for matmul_q8's types whose factors span 32 columns, with
    32-bit fragment loads only (on lowering's tile and K groups too); not for q6_k (factors per 16),
    float types or other archs."""
    from forge.runtime.lower import has_variant
    sm90 = get_arch("sm_90")
    assert all(has_variant("gemm", sm90, wtype=w, xin="q8", ldmatrix=False) for w in Q8_WTYPES)
    assert not has_variant("gemm", sm90, wtype="q6_k", xin="q8", ldmatrix=False)
    assert not has_variant("gemm", sm90, wtype="f16", xin="q8", ldmatrix=False)
    assert not has_variant("gemm", sm90, wtype="q4_0", xin="q8", ldmatrix=True)
    # and with lowering's K groups (gemm_params: 2 where the tiles give no SM a second block)
    assert all(has_variant("gemm", sm90, **gemm_params(sm90, w, 512, r), xin="q8", ldmatrix=False)
               for w in Q8_WTYPES for r in (1024, 4096))
    assert gemm_params(sm90, "q4_0", 512, 4096).get("kgroups") == 2
    assert not any(has_variant("gemm", get_arch(a), wtype="q4_0", xin="q8", ldmatrix=False)
                   for a in ("gfx1100", "gfx950", "host", "emu"))


# The int8 variant's plausible mistakes, pinned to the 128 x 128 tile and one K group so that every
# drawn case runs the mutant (its wtype's variant).
MMA_Q8_MUTANTS = {
    # q4_1: the min term (m_w s_x) dropped
    ("q4_1", "min_dropped"): ("          acc[i][j][e] = f_fma(mw[r], xs[tok], acc[i][j][e]);\n", ""),
    # q4_0: the offset of 8 not subtracted from the nibbles
    ("q4_0", "offset_kept"): ("q[i] = (lo + 0x78787878u) ^ 0x80808080u;", "q[i] = lo;"),
    # every block of a step scaled by the first block's d_x
    ("q4_0", "one_x_scale_per_step"): ("const float* xd = s.xd + kb * BM + wm;", "const float* xd = s.xd + wm;"),
    # q4_k: odd sub-blocks read the low nibbles too
    ("q4_k", "low_nibbles_only"): ("(w.v[k] >> (4u * (j % 2u)))", "(w.v[k] >> 0u)"),
    # the barrier per K step removed: fills race with the products of the other buffer
    ("q4_0", "barrier_per_step"): ("    cp_wait();\n    sync_threads();\n  }\n", "    cp_wait();\n  }\n"),
}


@pytest.mark.parametrize("wtype,mutant", sorted(MMA_Q8_MUTANTS), ids=[f"{w}-{m}" for w, m in sorted(MMA_Q8_MUTANTS)])
def test_mma_sync_q8_x_property_catches_mutant(mma_ctx, wtype, mutant, tmp_path, monkeypatch):
    pinned = {"tile": MMA_BM, "ldmatrix": False, "xin": "q8", "kgroups": 1}
    assert_property_catches(mma_ctx, "gemm", {"wtype": wtype, **pinned}, MMA_Q8_MUTANTS[(wtype, mutant)],
                            lambda ctx, data: check_gemm_q8(ctx, wtype, data, pinned), tmp_path, monkeypatch,
                            max_examples=30)


# The int8 kernel's two-K-group code (as MMA_KGROUPS_MUTANTS), pinned to it so that every drawn case
# runs the mutant.
MMA_Q8_KGROUPS_MUTANTS = {
    # The second group's partial sums never added: only blocks 0 and 1 of each K step are counted.
    "partials_not_added": ("for (u32 g = 1; g < KG; ++g)", "for (u32 g = KG; g < KG; ++g)"),
    # Group 1 multiplies the whole K step instead of its 2 blocks: blocks 0 and 1 are counted twice.
    "groups_overlap": ("for (u32 kb = kg * (NB / KG); kb < (kg + 1u) * (NB / KG)", "for (u32 kb = 0; kb < (kg + 1u) * (NB / KG)"),
    # The barrier between storing and adding the partials removed: group 0 may add what the tiles
    # held instead of group 1's sums (the emulator runs the warps in random orders in checking mode).
    "partials_unsynchronized": ("  sync_threads();\n  if (kg > 0u) return false;", "  if (kg > 0u) return false;"),
}


@pytest.mark.parametrize("mutant", sorted(MMA_Q8_KGROUPS_MUTANTS))
def test_mma_sync_q8_x_kgroups_property_catches_mutant(mma_ctx, mutant, tmp_path, monkeypatch):
    pinned = {"tile": MMA_BM, "ldmatrix": False, "xin": "q8", "kgroups": 2}
    assert_property_catches(mma_ctx, "gemm", {"wtype": "q4_0", **pinned}, MMA_Q8_KGROUPS_MUTANTS[mutant],
                            lambda ctx, data: check_gemm_q8(ctx, "q4_0", data, pinned), tmp_path, monkeypatch,
                            max_examples=30)


def test_q8_x_token_guard_mutant_reads_past_x(mma_ctx, tmp_path, monkeypatch):
    """The X copy's token guard dropped: tokens past m are read, which checking mode's guard pages
    report (their rows are never written back, so only the checked device sees it)."""
    from forge.runtime.emu import EmuDevice
    checked = EmuDevice(mma_ctx.arch.wave_size, check=True)
    pinned = {"tile": MMA_BM, "ldmatrix": False, "xin": "q8", "kgroups": 1}
    assert_property_catches(mma_ctx, "gemm", {"wtype": "q4_0", **pinned},
                            ("const bool on = tok < m && c < ncols;", "const bool on = c < ncols;"),
                            lambda ctx, data: check_gemm_q8(ctx, "q4_0", data, pinned), tmp_path, monkeypatch,
                            max_examples=30, device=checked)


def test_lowering_takes_the_small_tile_only_where_the_big_ones_fill_under_half_the_device():
    """mma_tile_for, from the H100 measurement in its docstring: at m = 512 the 1024-row K/V
    projections take 64 x 64 tiles, the 4096- and 14336-row ones keep 128 x 128; targets that do not
    say how many compute units they have (emu-sm90) and other paths keep the default."""
    sm90 = get_arch("sm_90")
    assert [mma_tile_for(sm90, "q4_0", 512, r) for r in (1024, 4096, 14336)] == [MMA_SMALL, MMA_BM, MMA_BM]
    assert mma_tile_for(get_arch("emu-sm90"), "q4_0", 512, 1024) == MMA_BM
    assert mma_tile_for(get_arch("gfx1100"), "q4_0", 512, 1024) == MMA_BM
