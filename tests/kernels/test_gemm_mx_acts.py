"""The scaled-MFMA gemm (templates/gemm/mfma_scale.j2) with MXFP6 activations (acts="mxfp6"), on
emu-gfx950, against numpy: X quantized per block of 32 to FP6 E2M3 (v_cvt_scalef32_2xpk16_fp6_f32,
emulated bit for bit) and given to the unit as FP6 (cbsz 2, the sub-byte lane layout), the MX weights
re-encoded as FP8 as with MXFP8 activations. tests/kernels/test_gemm_mfma_scale.py covers acts="mxfp8".

Two oracles, two bounds, as there:
1. On the quantized activations: xq = forge.quant.mx's MXFP6 E2M3 quantization of X (OCP MX: shared
   exponent floor(log2 max|x|) - 2, nearest even, saturated to 7.5 X). Each product xq_k w_k is exact
   on the unit (E2M3 and FP8 values: 4 x 4 significant bits), so only the sums err; AMD documents
   neither their order nor their rounding, so every one of the n additions may round by u_a = 2^-21:
       |Y - xq W^T| <= gamma_n sum_k |xq_k w_k| + n 2^-126.
   One E2M3 code off by a unit in the last place (2^-3 relative at worst) exceeds this by far: the
   quantization is checked bit for bit through it.
2. On the float activations: E2M3 has 3 mantissa bits, so rounding a normal element errs by at most
   2^-4 |x|; below its smallest normal (1.0 X) the step is 2^-3 X, so at most 2^-4 X; and OCP MX
   saturates elements beyond 7.5 X (possible: max|x| / X < 8):
       |Y - X W^T| <= bound_1 + sum_k (2^-4 |x_k| + 2^-4 X_k + max(0, |x_k| - 7.5 X_k)) |w_k|.
   (MXFP6's price against MXFP8: the subnormal term is 64x larger, the saturation starts at 7.5 X
   instead of 448 X.)
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from forge.arch import get_arch
from forge.codegen.spec import get_spec
from forge.codegen.specs.gemm import MS_BK, path, tiles
from forge.codegen.wtypes import WTYPE_NAMES
from forge.errors import SpecError
from forge.quant import mx
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.kernels.test_dequant import n_cols
from tests.kernels.test_gemm import emulator_target, tile_counts
from tests.oracles.dequant import decode, random_weights
from tests.oracles.gemv import check

UA = 2.0 ** -21  # relative error allowed per addition inside the matrix unit
MX_WTYPES = [w for w in WTYPE_NAMES if path(get_arch("emu-gfx950"), w) == "mfma_scale"]
# acts -> (forge.quant.mx format, the element's max): what the kernel quantizes X to
ACT_FORMATS = {"mxfp8": ("mxfp8_e4m3", 448.0), "mxfp6": ("mxfp6_e2m3", 7.5)}


@pytest.fixture(scope="module")
def ms_ctx(request):
    return emulator_target(request, "emu-gfx950")


def quantize_acts(x: np.ndarray, acts: str) -> tuple[np.ndarray, np.ndarray]:
    """(xq, X): x quantized per block of 32 along a row to the `acts` format by the oracle's codec, and
    each element's block scale X (float64)."""
    fmt = ACT_FORMATS[acts][0]
    scales, codes = mx.quantize_mx(x, fmt)
    xq = mx.dequantize_mx(scales, codes, fmt).astype(np.float64)
    return xq, mx.e8m0_decode(scales).astype(np.float64).repeat(mx.BLOCK, axis=-1)


def act_bounds(xq, xs, x, w, n, acts):
    """(bound on |Y - xq W^T|, bound on |Y - x W^T|): the module docstring's two bounds, for either
    activation format (E4M3: subnormal step 2^-9 X, so 2^-10 X; E2M3: 2^-4 X)."""
    aw = np.abs(w)
    g = n * UA / (1 - n * UA)
    tight = g * (np.abs(xq) @ aw.T) + n * 2.0 ** -126
    ax = np.abs(x.astype(np.float64))
    top = ACT_FORMATS[acts][1]
    sub = 2.0 ** -4 if acts == "mxfp6" else 2.0 ** -10
    q = 2.0 ** -4 * ax + sub * xs + np.maximum(0.0, ax - top * xs)
    return tight, tight + q @ aw.T


def draw_case(kctx, wtype, data, m_counts, min_units):
    """(w, x, cols): random valid MX weights (rows around the gemm's tile) and activations (up to ~1e10
    at times), token count from m_counts."""
    _, bn, _ = tiles(kctx.arch, wtype)
    m, rows = data.draw(m_counts, label="m"), data.draw(tile_counts(bn), label="rows")
    cols = data.draw(n_cols(wtype, min_units), label="cols")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    w = random_weights(wtype, rows, cols, rng)
    x = data.draw(arrays((m, cols), np.float32), label="x") * np.float32(data.draw(st.sampled_from([1, 1, 2**20])))
    return w, x, cols


def check_case(y, w, x, cols, wtype, acts, n):
    """Y against both oracles (n: the additions the unit may round)."""
    wd = decode(wtype, w, cols).astype(np.float64)
    xq, xs = quantize_acts(x, acts)
    tight, loose = act_bounds(xq, xs, x, wd, n, acts)
    check(y, xq @ wd.T, tight)
    check(y, x.astype(np.float64) @ wd.T, loose)


def check_gemm_acts(kctx, wtype, acts, data):
    """One drawn gemm case with activations `acts` against both oracles (the mutant tests use it too)."""
    bm, _, _ = tiles(kctx.arch, wtype)
    w, x, cols = draw_case(kctx, wtype, data, tile_counts(bm), 2 * MS_BK // 32 + 1)
    m, rows = x.shape[0], w.shape[0]
    y = run_kernel(kctx, "gemm", {"wtype": wtype, "acts": acts},
                   {"w": w, "x": x, "y": np.full((m, rows), np.nan, np.float32), "m": m, "n_rows": rows,
                    "n_cols": cols}, ["y"], m=m, n_rows=rows, n_cols=cols)["y"]
    steps = -(-cols // MS_BK)
    check_case(y, w, x, cols, wtype, acts, steps * MS_BK + steps)


@pytest.mark.parametrize("wtype", MX_WTYPES)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_gemm_mfma_scale_mxfp6_acts(ms_ctx, wtype, data):
    check_gemm_acts(ms_ctx, wtype, "mxfp6", data)


def test_mxfp6_acts_exist_only_on_the_scaled_mfma_path():
    gemm = get_spec("gemm")
    assert gemm.variant(get_arch("gfx950"), wtype="mxfp4", acts="mxfp6").symbol == "gemm_mxfp4_mxfp6"
    assert gemm.variant(get_arch("gfx950"), wtype="mxfp4").symbol == "gemm_mxfp4"  # the default: unchanged
    for arch, wtype in (("gfx950", "q4_0"), ("gfx1100", "mxfp4"), ("sm_90", "mxfp4"), ("emu64", "mxfp4"),
                        ("host", "mxfp4")):
        with pytest.raises(SpecError, match="does not exist"):
            gemm.variant(get_arch(arch), wtype=wtype, acts="mxfp6")


MUTANTS = {
    # FP6 codes truncated (toward zero) instead of rounded to nearest even: each value off by up to a
    # unit in E2M3's last place. The clamp site is unique to the FP6 branch of common/mx_acts.h.j2.
    "x6_truncated": ("lo[k] = k < 8u ? f_min(f_max(v[2u * k] * inv, -7.5f), 7.5f) : 0.0f;",
                     "lo[k] = k < 8u ? (float)(i32)(f_min(f_max(v[2u * k] * inv, -7.5f), 7.5f) * 8.0f) / 8.0f : 0.0f;"),
    # The shared exponent taken as for E4M3 (emax 8 instead of 2): a scale 2^6 too large, every
    # element 64x too small for FP6's 3 mantissa bits (most round to 0).
    "x6_emax": ("#define MX_ACT_EMAX 2u", "#define MX_ACT_EMAX 8u"),
    # A lane's FP6 fields read as if contiguous over the 128 K (the 8-bit order) while B keeps its own:
    # A and B no longer pair the same K.
    "x6_k_order": ("DEVICE u32 ms6_a_k(u32 lane, u32 i) { return ((32u * ((lane) / 16u)) + (i)); }",
                   "DEVICE u32 ms6_a_k(u32 lane, u32 i) { return (((64u * ((i) / 16u)) + (16u * ((lane) / 16u))) + ((i) % 16u)); }"),
    # The interleave ignored: odd elements given to the conversion's first source, even to the second.
    "x6_interleave": ("hi[k] = k < 8u ? f_min(f_max(v[2u * k + 1u] * inv", "hi[k] = k < 8u ? f_min(f_max(v[2u * k] * inv"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_mxfp6_acts_property_catches_mutant(ms_ctx, mutant, tmp_path, monkeypatch):
    assert_property_catches(ms_ctx, "gemm", {"wtype": "mxfp4", "acts": "mxfp6"}, MUTANTS[mutant],
                            lambda ctx, data: check_gemm_acts(ctx, "mxfp4", "mxfp6", data), tmp_path, monkeypatch,
                            max_examples=20)
