"""The emulator's gfx950 MX instructions (emu-gfx950): the scaled MFMA
__builtin_amdgcn_mfma_scale_f32_16x16x128_f8f6f4 with operands placed by hand from the sources (in
numpy here, not through the lane-layout table the emulator and the kernels share), its refusals, and
the cvt_scalef32 decodes the MX weight decoders use (common/quant_mx.h.j2), bit for bit against the
oracle's codecs.

Placement, transcribed from the sources (docs/ARCH.md): FP8/BF8 element A[i][k] in lane
16((k%64)/16) + i, byte (k/64)16 + k%16 (FPSan's MI350-verified model; AMD's blog shows the same rule
for 32x32x64); FP6/BF6/FP4 element A[i][k] in lane 16(k/32) + i, field k%32 of the lane's register
stream (FPSan's mix model, AMD's blog's FP4 figure: low nibble first); B the same with its column;
block kb's scale of row i in lane 16kb + i, byte opsel; D[4(l/16) + e][l%16] in element e of lane l
(tinygrad's c_map).

Exactness: the model below sums each block exactly (products of two elements have at most 4 + 4
significant bits; a block's 32 FP8 E4M3 products span 2^-18 .. 2^22.6, 41 bits, inside float64's
53; FP6/FP4 less), scales it (a power of two: exact), adds C and the four blocks in float64 and
rounds once to f32 — the emulator's documented arithmetic. With elements of magnitude <= 4 and
scales within 2^+-5, as drawn here, every partial sum is exact in float64 too, so the result is the
exact (A x sa)(B x sb) + C rounded once to f32, whatever the order."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from forge.arch import get_arch
from forge.codegen.spec import Arg
from forge.errors import DeviceError
from forge.quant import mx
from forge.runtime.emu import EmuDevice
from tests.conftest import KernelContext
from tests.kernels.harness import run_kernel
from tests.oracles.dequant import bits_equal, dequant, random_bytes, random_weights
from tests.runtime.inline import compile_inline, launch

FORMATS = {0: "mxfp8_e4m3", 1: "mxfp8_e5m2", 2: "mxfp6_e2m3", 3: "mxfp6_e3m2", 4: "mxfp4"}  # cbsz / blgp
WIDTH = {0: 8, 1: 8, 2: 6, 3: 6, 4: 4}

MFMA = """
KERNEL(64) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 lane = lane_id();
  if (mode == 1u && lane == 7u) return;
  forge_v8i fa, fb;
  forge_v4f fc;
  for (u32 k = 0; k < 8u; ++k) {
    fa[k] = (int)a[lane * 8u + k];
    fb[k] = (int)b[lane * 8u + k];
  }
  for (u32 i = 0; i < 4u; ++i) fc[i] = c[lane * 4u + i];
  const forge_v4f r = __builtin_amdgcn_mfma_scale_f32_16x16x128_f8f6f4(fa, fb, fc, (int)cbsz, (int)blgp,
      (int)opsel_a, (int)sa[lane], (int)opsel_b, (int)sb[lane]);
  for (u32 i = 0; i < 4u; ++i) d[lane * 4u + i] = r[i];
}
"""
MFMA_ARGS = [Arg.ptr("a", "u32", const=True), Arg.ptr("b", "u32", const=True), Arg.ptr("c", "f32", const=True),
             Arg.ptr("sa", "u32", const=True), Arg.ptr("sb", "u32", const=True), Arg.ptr("d", "f32"),
             Arg.scalar("cbsz", "u32"), Arg.scalar("blgp", "u32"), Arg.scalar("opsel_a", "u32"),
             Arg.scalar("opsel_b", "u32"), Arg.scalar("mode", "u32")]


@pytest.fixture(scope="module")
def gfx950_ctx(request):
    if request.config.getoption("--backend") not in ("cpu", "emu"):
        pytest.skip("emu-gfx950 is an emulator target: --backend cpu or emu")
    arch = get_arch("emu-gfx950")
    assert arch.has("mx_scaled_mfma") and arch.has("mx_cvt") and arch.wave_size == 64
    return KernelContext(EmuDevice(wave_size=64, check=True), arch, None)


def place(codes: np.ndarray, fmt: int) -> np.ndarray:
    """Registers (64 lanes x 8 words) holding a 16 x 128 operand (rows of A, or columns of B) of
    element codes, per the sources' placement (module docstring)."""
    regs = np.zeros((64, 8), np.uint64)
    w = WIDTH[fmt]
    for r in range(16):
        for k in range(128):
            if w == 8:
                lane, field = 16 * ((k % 64) // 16) + r, (k // 64) * 16 + k % 16
            else:
                lane, field = 16 * (k // 32) + r, k % 32
            bit = w * field
            v = int(codes[r, k]) << (bit % 32)
            regs[lane, bit // 32] |= v & 0xFFFFFFFF
            if v >> 32:
                regs[lane, bit // 32 + 1] |= v >> 32
    return regs.astype(np.uint32)


def place_scales(s: np.ndarray, opsel: int, rng) -> np.ndarray:
    """Scale registers: block kb of row r in lane 16 kb + r, byte opsel; the other bytes random."""
    regs = rng.integers(0, 2**32, 64, dtype=np.uint64)
    for r in range(16):
        for kb in range(4):
            lane = 16 * kb + r
            regs[lane] = (regs[lane] & ~np.uint64(0xFF << (8 * opsel))) | np.uint64(int(s[r, kb]) << (8 * opsel))
    return regs.astype(np.uint32)


def model(a, b, c, sa, sb):
    """D = C + sum over blocks of (exact block sum) 2^(sa-127) 2^(sb-127), in float64, rounded once."""
    d = c.astype(np.float64).copy()
    for kb in range(4):
        blk = a[:, 32 * kb:32 * kb + 32] @ b[32 * kb:32 * kb + 32, :]
        d = d + blk * np.exp2(sa[:, kb, None] - 127.0) * np.exp2(sb[None, kb, :] - 127.0)
    return d.astype(np.float32)


def small_codes(fmt: int, shape, rng) -> tuple[np.ndarray, np.ndarray]:
    """(codes, values) of random elements of magnitude at most 4 (every format has them)."""
    f = mx.mx_format(FORMATS[fmt]).elem
    vals = rng.choice([0, 0.5, 1, 1.5, 2, 3, 4], shape) * rng.choice([-1, 1], shape)
    codes = f.encode(vals)
    return codes, f.decode(codes).astype(np.float64)


def run_mfma(ctx, ca, cb, c, sa_regs, sb_regs, cbsz, blgp, opsel_a=0, opsel_b=0, mode=0, threads=64):
    fn = compile_inline(ctx, MFMA, MFMA_ARGS)
    d = launch(ctx, fn, MFMA_ARGS, {"a": ca, "b": cb, "c": c, "sa": sa_regs, "sb": sb_regs,
                                    "d": np.zeros((64, 4), np.float32), "cbsz": cbsz, "blgp": blgp,
                                    "opsel_a": opsel_a, "opsel_b": opsel_b, "mode": mode},
               (1, 1, 1), (threads, 1, 1), outs=["d"])["d"]
    out = np.zeros((16, 16), np.float32)
    for lane in range(64):
        for e in range(4):
            out[4 * (lane // 16) + e, lane % 16] = d[lane, e]  # tinygrad's c_map
    return out


FORMAT_PAIRS = [(0, 0), (1, 1), (0, 1), (2, 2), (3, 3), (4, 4), (0, 4), (4, 0), (2, 4), (1, 3)]


@pytest.mark.parametrize("cbsz,blgp", FORMAT_PAIRS)
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_scaled_mfma_computes_the_scaled_product_with_the_sources_placement(gfx950_ctx, cbsz, blgp, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ca, a = small_codes(cbsz, (16, 128), rng)
    cbt, bt = small_codes(blgp, (16, 128), rng)  # B's columns as rows
    sa, sb = rng.integers(122, 133, (16, 4)), rng.integers(122, 133, (16, 4))  # per block: not uniform
    c = rng.integers(-64, 64, (16, 16)).astype(np.float32)
    oa, ob = data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))
    # C in the accumulator layout: element e of lane l is C[4(l/16) + e][l%16]
    creg = np.array([[c[4 * (lane // 16) + e, lane % 16] for e in range(4)] for lane in range(64)], np.float32)
    d = run_mfma(gfx950_ctx, place(ca, cbsz), place(cbt, blgp), creg, place_scales(sa, oa, rng),
                 place_scales(sb, ob, rng), cbsz, blgp, oa, ob)
    want = model(a, bt.T, c, sa, sb.T)
    np.testing.assert_array_equal(d, want)
    exact = c + sum((a[:, 32 * kb:32 * kb + 32] @ bt.T[32 * kb:32 * kb + 32]) * np.exp2(sa[:, kb, None] - 127.0)
                    * np.exp2(sb.T[None, kb, :] - 127.0) for kb in range(4))
    np.testing.assert_array_equal(d, exact.astype(np.float32))  # the exact value, rounded once


def test_a_nan_scale_makes_its_products_nan(gfx950_ctx):
    rng = np.random.default_rng(5)
    ca, _ = small_codes(0, (16, 128), rng)
    sa = np.full((16, 4), 127)
    sa[3, 2] = 255
    z = np.zeros((64, 4), np.float32)
    d = run_mfma(gfx950_ctx, place(ca, 0), place(ca, 0), z, place_scales(sa, 0, rng),
                 place_scales(np.full((16, 4), 127), 0, rng), 0, 0)
    assert np.isnan(d[3]).all() and not np.isnan(np.delete(d, 3, axis=0)).any()


def mfma_error(ctx, **kw) -> str:
    z = np.zeros((64, 8), np.uint32)
    s = np.full(64, 0x7F7F7F7F, np.uint32)
    args = dict(cbsz=0, blgp=0)
    args.update(kw)
    with pytest.raises(DeviceError) as e:
        run_mfma(ctx, z, z, np.zeros((64, 4), np.float32), s, s, **args)
    return str(e.value)


def test_scaled_mfma_with_a_lane_exited_is_refused(gfx950_ctx):
    assert "not executed by every lane of the wave (EXEC not all ones): lane 7 has exited" in \
        mfma_error(gfx950_ctx, mode=1)


def test_scaled_mfma_in_a_partial_wave_is_refused(gfx950_ctx):
    assert "lane 48 has exited or does not exist (a partial wave)" in mfma_error(gfx950_ctx, threads=48)


def test_scaled_mfma_with_a_bad_format_or_scale_byte_is_refused(gfx950_ctx):
    assert "cbsz 5 / blgp 0 is not a format" in mfma_error(gfx950_ctx, cbsz=5)
    assert "cbsz 0 / blgp 7 is not a format" in mfma_error(gfx950_ctx, blgp=7)
    assert "opsel_a 4 / opsel_b 0 does not select a byte" in mfma_error(gfx950_ctx, opsel_a=4)


# -------------------------------------------------- cvt_scalef32 decodes (common/quant_mx.h.j2)
@pytest.fixture(scope="module")
def gfx950_run_ctx(request):
    from tests.kernels.test_gemm import emulator_target
    return emulator_target(request, "emu-gfx950")


@pytest.mark.parametrize("wtype", list(FORMATS.values()))
@pytest.mark.parametrize("valid", [True, False])
def test_mx_decoders_through_the_emulated_cvt_builtins_match_the_oracle(gfx950_run_ctx, wtype, valid):
    """On emu-gfx950 (mx_cvt) the MX decoders call __builtin_amdgcn_cvt_scalef32_pk_f32_fp4 / _fp8 /
    _bf8 and pk32_f32_fp6 / _bf6, emulated: dequantized rows bit for bit as the oracle's, for valid
    rows and for random bytes (E8M0 0x00 and 0xFF, FP8 NaN/Inf codes, GGML's +0 for FP4 code 8)."""
    rng = np.random.default_rng(11)
    rows, cols = 5, 96
    raw = random_weights(wtype, rows, cols, rng) if valid else random_bytes(wtype, rows, cols, rng)
    got = run_kernel(gfx950_run_ctx, "dequant", {"wtype": wtype, "out": "f32"},
                     {"w": raw, "y": np.zeros((rows, cols), np.float32), "n_rows": rows, "n_cols": cols},
                     ["y"], n_rows=rows, n_cols=cols)["y"]
    assert bits_equal(got, dequant(wtype, raw, cols, "f32")).all()


# -------------------------------------------------- cvt_scalef32 2xpk16 encodes (MXFP6 activations)
CVT6 = """
KERNEL(64) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 lane = lane_id();
  forge_v16f lo, hi;
  for (u32 k = 0; k < 16u; ++k) {
    lo[k] = x[lane * 32u + k];
    hi[k] = x[lane * 32u + 16u + k];
  }
  const forge_u6 r = bf6 ? __builtin_amdgcn_cvt_scalef32_2xpk16_bf6_f32(lo, hi, scale[lane])
                         : __builtin_amdgcn_cvt_scalef32_2xpk16_fp6_f32(lo, hi, scale[lane]);
  for (u32 k = 0; k < 6u; ++k) out[lane * 6u + k] = r[k];
}
"""
CVT6_ARGS = [Arg.ptr("x", "f32", const=True), Arg.ptr("scale", "f32", const=True), Arg.ptr("out", "u32"),
             Arg.scalar("bf6", "u32")]


def unpack6(words: np.ndarray) -> np.ndarray:
    """[..., 6] u32 -> [..., 32] fields of 6 bits, field f = bits 6f .. 6f+5 of the little-endian stream."""
    bits = np.unpackbits(words.astype("<u4").view(np.uint8), axis=-1, bitorder="little")
    return (bits.reshape(*words.shape[:-1], 32, 6) << np.arange(6)).sum(-1).astype(np.uint8)


def run_cvt6(ctx, x, scale, bf6):
    fn = compile_inline(ctx, CVT6, CVT6_ARGS)
    return launch(ctx, fn, CVT6_ARGS, {"x": x, "scale": scale, "out": np.zeros((64, 6), np.uint32), "bf6": bf6},
                  (1, 1, 1), (64, 1, 1), outs=["out"])["out"]


@pytest.mark.parametrize("bf6", [0, 1])
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_cvt_2xpk16_fp6_rounds_like_the_codec_and_interleaves_its_sources(gfx950_ctx, bf6, data):
    """v_cvt_scalef32_2xpk16_{fp6,bf6}_f32 on emu-gfx950: field 2k from src0[k], 2k+1 from src1[k]
    (FPSan's gfx950 tests), each value divided by the power-of-two scale and encoded exactly as
    forge.quant.mx encodes (nearest even, saturated, sign of zero kept): every code, ties, values
    past the max, subnormals, -0."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    fmt = mx.FP6_E3M2 if bf6 else mx.FP6_E2M3
    scale = np.exp2(rng.integers(-20, 20, 64)).astype(np.float32)
    table = fmt.table[np.isfinite(fmt.table)]
    v = rng.choice(table, (64, 32))  # exact codes, their midpoints (ties), a little off them, beyond max
    v = np.where(rng.random((64, 32)) < 0.3, v + rng.choice([-1, 1], (64, 32)) * fmt.max / 64, v)
    v = np.where(rng.random((64, 32)) < 0.2, v * 1.5, v)
    v[0, :4] = [0.0, -0.0, fmt.max * 4, -fmt.max * 1.01]
    x = (v * scale[:, None]).astype(np.float32)
    got = unpack6(run_cvt6(gfx950_ctx, x, scale, bf6))
    want = fmt.encode(x.astype(np.float64) / scale[:, None].astype(np.float64))
    inter = np.empty_like(want)
    inter[:, 0::2], inter[:, 1::2] = want[:, :16], want[:, 16:]
    np.testing.assert_array_equal(got, inter)


def test_cvt_2xpk16_fp6_refuses_a_scale_that_is_not_a_power_of_two_and_nan_inputs(gfx950_ctx):
    x = np.ones((64, 32), np.float32)
    with pytest.raises(DeviceError, match="scale 3 is not a power of two"):
        run_cvt6(gfx950_ctx, x, np.full(64, 3.0, np.float32), 0)
    x[5, 7] = np.nan
    with pytest.raises(DeviceError, match="has no FP6 encoding"):
        run_cvt6(gfx950_ctx, x, np.ones(64, np.float32), 0)
