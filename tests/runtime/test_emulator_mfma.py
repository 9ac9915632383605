"""The f16 MFMA v_mfma_f32_16x16x16_f16 (__builtin_amdgcn_mfma_f32_16x16x16f16; arch feature mfma_f16:
gfx942, gfx950, and emu-gfx950 where the emulator implements it, common/mfma_emu.h.j2).

Its lane-layout table entry (forge/codegen/matrix_layouts.py) is what both the kernels' tile code
(common/mfma.h.j2) and the emulator render, so a wrong entry would pass every emulated test; here it
is compared with each source's own formula, transcribed literally (no GPU needed), and the emulated
instruction is driven by a kernel that places its operands by hand, in numpy, from AMD's example (not
through the table), and compared with D = A B + C bit for bit. No CDNA GPU exists here: whether the
silicon agrees is for a gfx942/gfx950 to say (the same kernel through the real builtin).

Arithmetic the emulator documents (common/mma_emu.h.j2): C, then + A[r][k] B[k][c] for k = 0..15 in
order, each addition rounded to f32 (products of two f16 are exact in f32). With small-integer
inputs every partial sum is an exact f32, so the result is exact whatever the order."""

import numpy as np
import pytest

from forge.arch import ARCHS, get_arch
from forge.codegen.matrix_layouts import get_layout
from forge.codegen.spec import Arg
from forge.errors import DeviceError
from forge.runtime.emu import EmuDevice
from tests.conftest import KernelContext
from tests.runtime.inline import compile_inline, launch

NAME = "mfma_f32_16x16x16_f16"


# ------------------------------------------------------------------- the table against the sources
def test_mfma_f16_layout_matches_each_source():
    L = get_layout(NAME)
    # LLVM BuiltinsAMDGPU.def: TARGET_BUILTIN(__builtin_amdgcn_mfma_f32_16x16x16f16, "V4fV4hV4hV4fIiIiIi",
    # "nc", "mai-insts"): returns V4f, takes V4h a, V4h b, V4f c and three immediates
    assert (L.builtin, L.instruction, L.feature, L.wave, L.m, L.n, L.k, L.in_type, L.acc_type) == (
        "__builtin_amdgcn_mfma_f32_16x16x16f16", "v_mfma_f32_16x16x16_f16", "mfma_f16", 64, 16, 16, 16, "f16", "f32")
    assert (L.a.elems, L.b.elems, L.d.elems) == (4, 4, 4)
    for lane in range(64):
        # AMD's hgemm_16x16x16 example, one wave launched as (16, 4) threads, lane = x + 16 y:
        #   a[i] = A[threadIdx.x * LDA + 4 * threadIdx.y + i]      (row x, column 4y + i)
        #   b[i] = B[threadIdx.x + (4 * threadIdx.y + i) * LDB]    (row 4y + i, column x)
        #   D[threadIdx.x + (4 * threadIdx.y + i) * LDD] = d[i]    (row 4y + i, column x)
        x, y = lane % 16, lane // 16
        for i in range(4):
            assert L.a.element(lane, i) == (x, 4 * y + i)
            assert L.b.element(lane, i) == (4 * y + i, x)
            assert L.d.element(lane, i) == (4 * y + i, x)
    # tinygrad ops_python.py, AMD threads == 64: a_elem(x, k, row, goff) = x[k % (K//4)][goff + (k // (K//4))*16
    # + row] (register element k % 4 of lane (k // 4) 16 + row holds A[row][k]); b_elem(x, col, k, goff) =
    # a_elem(x, k, col, goff); c_map(lane, elem) = (lane % 16, (lane // 16)*4 + elem) as (column, row)
    K = 16
    for row in range(16):
        for k in range(16):
            assert L.holders("a")[(row, k)] == [((k // (K // 4)) * 16 + row, k % (K // 4))]
            assert L.holders("b")[(k, row)] == [((k // (K // 4)) * 16 + row, k % (K // 4))]
    for lane in range(64):
        for e in range(4):
            col, r = lane % 16, (lane // 16) * 4 + e
            assert L.d.element(lane, e) == (r, col)
    # 64 lanes x 4 elements: every element has exactly one home (no replication to check)
    assert all(len(h) == 1 for op in "abd" for h in L.holders(op).values())


def test_only_wave64_archs_claim_mfma_f16():
    have = {a.name for a in ARCHS.values() if a.has("mfma_f16")}
    assert have == {"gfx942", "gfx950", "emu-gfx950"}
    assert all(get_arch(n).wave_size == 64 for n in have)


# ------------------------------------------------------------------- the emulated instruction
# One wave: lane l loads its 4 A and 4 B halves and 4 C floats from arrays laid out [lane][i] (placed by
# the test), calls the builtin, and writes its 4 D floats to d[lane][i]. Lanes >= live return first.
MFMA = """
{% include "common/mfma_types.h" %}
KERNEL(64) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 lane = lane_id();
  if (lane >= live) return;
  v4h fa, fb;
  v4f fc;
  for (u32 i = 0; i < 4u; ++i) {
    fa[i] = __builtin_bit_cast(_Float16, a[lane * 4u + i]);
    fb[i] = __builtin_bit_cast(_Float16, b[lane * 4u + i]);
    fc[i] = c[lane * 4u + i];
  }
  const v4f r = __builtin_amdgcn_mfma_f32_16x16x16f16(fa, fb, fc, (int)cbsz, (int)abid, (int)blgp);
  for (u32 i = 0; i < 4u; ++i) d[lane * 4u + i] = r[i];
}
"""
ARGS = [Arg.ptr("a", "u16", const=True), Arg.ptr("b", "u16", const=True), Arg.ptr("c", "f32", const=True),
        Arg.ptr("d", "f32"), Arg.scalar("cbsz", "i32"), Arg.scalar("abid", "i32"), Arg.scalar("blgp", "i32"),
        Arg.scalar("live", "u32")]


@pytest.fixture(scope="module")
def ctx(request):
    if request.config.getoption("--backend") not in ("cpu", "emu"):
        pytest.skip("emu-gfx950 is an emulator target: --backend cpu or emu")
    arch = get_arch("emu-gfx950")
    assert arch.has("mfma_f16") and arch.wave_size == 64
    return KernelContext(EmuDevice(wave_size=64, check=True), arch, None)


def place(a, b, c):
    """Per-lane registers [64][4] of A (16x16 f16), B (16x16 f16), C (16x16 f32) as AMD's example loads
    them (lane = x + 16 y): a[i] = A[x][4y + i], b[i] = B[4y + i][x], c[i] = C[4y + i][x]."""
    ra, rb, rc = np.zeros((64, 4), np.float16), np.zeros((64, 4), np.float16), np.zeros((64, 4), np.float32)
    for lane in range(64):
        x, y = lane % 16, lane // 16
        for i in range(4):
            ra[lane, i], rb[lane, i], rc[lane, i] = a[x, 4 * y + i], b[4 * y + i, x], c[4 * y + i, x]
    return ra, rb, rc


def unplace(rd):
    """D [16][16] from the lanes' results: d[i] of lane x + 16 y is D[4y + i][x]."""
    d = np.zeros((16, 16), np.float32)
    for lane in range(64):
        for i in range(4):
            d[4 * (lane // 16) + i, lane % 16] = rd[lane, i]
    return d


def run(ctx, a, b, c, cbsz=0, abid=0, blgp=0, live=64):
    ra, rb, rc = place(a, b, c)
    fn = compile_inline(ctx, MFMA, ARGS)
    rd = launch(ctx, fn, ARGS, {"a": ra.view(np.uint16), "b": rb.view(np.uint16), "c": rc,
                                "d": np.full((64, 4), np.nan, np.float32), "cbsz": cbsz, "abid": abid, "blgp": blgp,
                                "live": live}, (1, 1, 1), (64, 1, 1), outs=["d"])["d"]
    return unplace(rd)


def ordered(a, b, c):
    """The emulator's documented arithmetic: C, then k = 0..15 in order, each addition rounded to f32."""
    d = c.astype(np.float32).copy()
    for k in range(16):
        d = (d + (a[:, k, None].astype(np.float64) * b[None, k, :].astype(np.float64)).astype(np.float32)).astype(np.float32)
    return d


@pytest.mark.parametrize("seed", range(3))
def test_emulated_mfma_f16_computes_a_b_plus_c_in_the_sources_placement(ctx, seed):
    rng = np.random.default_rng(seed)
    # small integers: every partial sum is exact, so D = A B + C exactly in any order
    ai, bi = (rng.integers(-8, 9, (16, 16)).astype(np.float16) for _ in "ab")
    ci = rng.integers(-64, 65, (16, 16)).astype(np.float32)
    np.testing.assert_array_equal(run(ctx, ai, bi, ci), ai.astype(np.float64) @ bi.astype(np.float64) + ci)
    # general f16 values (denormals included) against the documented order, bit for bit
    a = (rng.standard_normal((16, 16)) * 4).astype(np.float16)
    b = (rng.standard_normal((16, 16)) * 4).astype(np.float16)
    b[3, 5], a[7, 2] = np.float16(2.0 ** -20), np.float16(-(2.0 ** -17))
    c = (rng.standard_normal((16, 16)) * 8).astype(np.float32)
    np.testing.assert_array_equal(run(ctx, a, b, c), ordered(a, b, c))


def test_a_transposed_placement_is_not_the_instruction(ctx):
    """Guards the test above: A placed as if lane l held column l % 16 (A^T) gives another product."""
    rng = np.random.default_rng(9)
    a, b = (rng.integers(-8, 9, (16, 16)).astype(np.float16) for _ in "ab")
    z = np.zeros((16, 16), np.float32)
    assert not np.array_equal(run(ctx, a.T.copy(), b, z), a.astype(np.float64) @ b)


def error(ctx, **kw) -> str:
    z16, z32 = np.zeros((16, 16), np.float16), np.zeros((16, 16), np.float32)
    with pytest.raises(DeviceError) as e:
        run(ctx, z16, z16, z32, **kw)
    return str(e.value)


@pytest.mark.parametrize("field", ["cbsz", "abid", "blgp"])
def test_emulated_mfma_f16_refuses_broadcast_and_lane_group_controls(ctx, field):
    assert "only 0, 0, 0 (no broadcast, no lane-group pattern) is emulated" in error(ctx, **{field: 1})


def test_emulated_mfma_f16_refuses_a_partial_exec(ctx):
    assert "not executed by every lane of the wave (EXEC not all ones): lane 63 has exited" in error(ctx, live=63)
    assert "lane 17 has exited" in error(ctx, live=17)
