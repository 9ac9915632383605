"""gemm on gfx950's scaled MFMA (templates/gemm/mfma_scale.j2), run on the emulator target emu-gfx950,
against numpy: MX weight types only (the path's domain), X quantized to MXFP8 E4M3 per block of 32
on the fly.

Two oracles, two bounds:
1. On the quantized activations: xq = forge.quant.mx's MXFP8 E4M3 quantization of X (the OCP MX
   rule the kernel implements), Y_q = xq W^T in float64 with W the oracle's decoded weights. Every
   product xq_k w_k is exact on the unit (both are FP8 values times powers of two: 4 x 4 significant
   bits), so the only error is summation: the emulator sums each block exactly and rounds once per
   instruction (C plus four scaled block sums), but AMD documents neither the order nor the rounding
   inside the matrix unit; as for WMMA (tests/kernels/test_gemm.py) the bound allows a rounding of
   u_a = 2^-21 at every one of the n additions (n: K padded to the step of 128, plus one per step),
       |Y - Y_q| <= gamma_n S_q + n 2^-126,   gamma_n = n u_a / (1 - n u_a),  S_q = sum_k |xq_k w_k|,
   the last term for f32 underflow. A wrong code in any X or W element (one unit in E4M3's last
   place: 2^-4 relative) would exceed it by far, so this checks the quantization bit for bit too.
2. On the float activations (the looser one): per value, E4M3 rounding gives |xq - x| <= 2^-4 |x|
   (3 mantissa bits, nearest) for normal elements, <= 2^-10 X below E4M3's smallest normal (half
   its subnormal step 2^-9 X, X = the block's scale), plus the saturation OCP MX prescribes
   (elements of |x| > 448 X become 448 X: possible since max|x| / X < 2^9), so
       |Y - X W^T| <= bound_1 + sum_k (2^-4 |x_k| + 2^-10 X_k + max(0, |x_k| - 448 X_k)) |w_k|.

Values as in test_gemm: X of magnitudes 1e-3 .. 8e3, at times times 2^20; W valid random MX rows.
Shapes around the 32 x 32 block tile, one to several K steps of 128 (partial steps too). Example
counts are modest: the emulator runs a wave operation per MFMA."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from forge.arch import get_arch
from forge.codegen.specs.gemm import MS_BK, path
from forge.codegen.wtypes import WTYPE_NAMES
from forge.quant import mx
from tests.kernels.mutants import assert_property_catches
from tests.kernels.test_gemm import emulator_target, run_drawn_gemm
from tests.oracles.dequant import decode
from tests.oracles.gemv import check

UA = 2.0 ** -21  # relative error allowed per addition inside the matrix unit (module docstring)
MX_WTYPES = [w for w in WTYPE_NAMES if path(get_arch("emu-gfx950"), w) == "mfma_scale"]


def test_the_path_takes_exactly_the_mx_types():
    assert MX_WTYPES == ["mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2"]
    assert path(get_arch("gfx950"), "mxfp4") == "mfma_scale" and path(get_arch("gfx950"), "q4_0") == "scalar"
    assert path(get_arch("gfx942"), "mxfp4") == "scalar"  # no scaled MFMA on CDNA3


@pytest.fixture(scope="module")
def ms_ctx(request):
    """The emulator carrying gfx950's MX features (emu-gfx950, wave 64)."""
    return emulator_target(request, "emu-gfx950")


def quantize_x(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xq, X): X quantized to MXFP8 E4M3 per block of 32 along a row (the oracle's codec), and each
    element's block scale X (float64)."""
    scales, codes = mx.quantize_mx(x, "mxfp8_e4m3")
    xq = mx.dequantize_mx(scales, codes, "mxfp8_e4m3").astype(np.float64)
    return xq, mx.e8m0_decode(scales).astype(np.float64).repeat(mx.BLOCK, axis=-1)


def bounds(xq, xs, x, w, n):
    """(bound on |Y - xq W^T|, bound on |Y - x W^T|): the module docstring's two bounds."""
    aw = np.abs(w)
    g = n * UA / (1 - n * UA)
    tight = g * (np.abs(xq) @ aw.T) + n * 2.0 ** -126
    ax = np.abs(x.astype(np.float64))
    q = 2.0 ** -4 * ax + 2.0 ** -10 * xs + np.maximum(0.0, ax - 448.0 * xs)
    return tight, tight + q @ aw.T


def check_gemm_ms(kctx, wtype, data):
    """One drawn case against both oracles (the mutant tests use it too)."""
    w, x, y, cols = run_drawn_gemm(kctx, wtype, data, 2 * MS_BK // 32 + 1)
    wd = decode(wtype, w, cols).astype(np.float64)
    xq, xs = quantize_x(x)
    steps = -(-cols // MS_BK)
    tight, loose = bounds(xq, xs, x, wd, steps * MS_BK + steps)
    check(y, xq @ wd.T, tight)
    check(y, x.astype(np.float64) @ wd.T, loose)


@pytest.mark.parametrize("wtype", MX_WTYPES)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_gemm_mfma_scale(ms_ctx, wtype, data):
    check_gemm_ms(ms_ctx, wtype, data)


MUTANTS = {
    # Each lane's scales taken for block l % 4 instead of its own block l / 16: products scaled by
    # another block's scale (caught whenever a row's blocks differ in scale).
    "scale_block_lane": ("DEVICE u32 ms_sa_blk(u32 lane) { return ((lane) / 16u); }",
                         "DEVICE u32 ms_sa_blk(u32 lane) { return ((lane) % 4u); }"),
    # X elements truncated instead of rounded to nearest even: each value off by up to one unit in
    # E4M3's last place (2^-3 relative), far outside the tight bound.
    "x_truncated": ("const u32 r = a + 0x7FFFFu + ((a >> 20) & 1u);", "const u32 r = a;"),
    # A's K placed contiguously (tinygrad's / triton's FP8 model) while B keeps the table's: A and B
    # no longer pair the same K.
    "a_k_contiguous": ("DEVICE u32 ms_a_k(u32 lane, u32 i) { return (((64u * ((i) / 16u)) + (16u * ((lane) / 16u))) + ((i) % 16u)); }",
                       "DEVICE u32 ms_a_k(u32 lane, u32 i) { return ((32u * ((lane) / 16u)) + (i)); }"),
    # The block scale of X not written (left at its previous step's value or the LDS poison).
    "x_scale_dropped": ("if (h == 0u) xs[r * NB + qb] = (u8)sc;", ""),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_mfma_scale_property_catches_mutant(ms_ctx, mutant, tmp_path, monkeypatch):
    assert_property_catches(ms_ctx, "gemm", {"wtype": "mxfp4"}, MUTANTS[mutant],
                            lambda ctx, data: check_gemm_ms(ctx, "mxfp4", data), tmp_path, monkeypatch,
                            max_examples=20)
