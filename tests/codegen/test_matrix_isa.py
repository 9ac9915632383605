"""The matrix instructions in the kept assembly, and their lane-layout table against the sources
(and, for NVIDIA's mma.sync, against an H100 where one is present).

gfx1100 (arch feature wmma_f16): every gemm weight type multiplies on v_wmma_f32_16x16x16_f16,
loads its fragments from shared memory with 16-byte loads, and uses no scratch and no VGPR spills
(a v16h/v8f fragment array indexed at run time, or an over-budget tile, would put it in scratch
silently). gfx950 has no WMMA: its gemm stays on scalar fma (the negative control).

The table (forge/codegen/matrix_layouts.py) is what both the kernels and the emulator render, so a
wrong entry would pass every emulated test; here each entry is compared with each source's own
formula, transcribed literally."""

import numpy as np
import pytest

from forge.arch import ARCHS, get_arch
from forge.codegen.build import ASM_FILE, compile_variant
from forge.codegen.codeobject import read_code_object
from forge.codegen.matrix_layouts import LAYOUTS, Expr, get_layout
from forge.codegen.spec import get_spec
from forge.codegen.store import Store
from forge.codegen.wtypes import WTYPE_NAMES
from forge.errors import SpecError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


def _compile(store, family, params, arch_name):
    """(entry, kept assembly); a skip where the machine has no compiler for the arch (the lent GPU
    machine has no AMD one; CI installs the portable clang, so there this never skips)."""
    from forge.errors import ToolchainError
    arch = get_arch(arch_name)
    try:
        entry, _ = compile_variant(get_spec(family).variant(arch, **params), arch, store, keep_asm=True)
    except ToolchainError as e:
        if "no compiler for" not in str(e):
            raise
        pytest.skip(f"no compiler for {arch_name} here: {e}")
    return entry, entry.file(ASM_FILE).read_text()


def compiled_gfx950(store, family, params):
    """gfx950 assembly of a variant, after checking it uses no scratch and spills nothing (the MX
    ISA tests: test_mx_acts_isa.py, test_kv_cvt_isa.py)."""
    entry, asm = _compile(store, family, params, "gfx950")
    res = entry.meta["resources"]
    k = read_code_object(entry.read_object(), family).kernel(entry.meta["symbol"])
    assert res["scratch"] == 0 and not k.vgpr_spill_count, f"{entry.meta['symbol']}: {res}, spills {k.vgpr_spill_count}"
    return asm


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
def test_gfx1100_gemm_multiplies_on_wmma_without_scratch(store, wtype):
    entry, asm = _compile(store, "gemm", {"wtype": wtype}, "gfx1100")
    assert "v_wmma_f32_16x16x16_f16" in asm
    assert "ds_load_b128" in asm, "fragments should come from shared memory in 16-byte loads"
    res = entry.meta["resources"]
    k = read_code_object(entry.read_object(), wtype).kernel(entry.meta["symbol"])
    assert res["scratch"] == 0 and not k.vgpr_spill_count, f"{entry.meta['symbol']}: {res}, spills {k.vgpr_spill_count}"
    assert res["vgpr"] <= get_arch("gfx1100").max_vgprs


def test_gfx950_gemm_has_no_wmma(store):
    _, asm = _compile(store, "gemm", {"wtype": "q4_0"}, "gfx950")
    assert "v_wmma" not in asm and "v_fma" in asm


NVIDIA_GEMMS = ([("sm_90", w, {}) for w in WTYPE_NAMES] + [("sm_80", "q4_0", {}), ("sm_80", "f16", {})]
                + [("sm_90", w, {"tile": 64}) for w in ("q4_0", "q6_k", "f16")]
                + [("sm_90", w, {"ldmatrix": False}) for w in ("q4_0", "q6_k")]
                # what lowering runs for q6_k and the float types: f16 X, one or two K groups
                + [("sm_90", w, {"xin": "f16", "kgroups": k}) for w in WTYPE_NAMES for k in (1, 2)]
                + [("sm_90", w, {"xin": "f16", "kgroups": 2, "tile": 64}) for w in ("q4_0", "q6_k", "f16")])


@pytest.mark.parametrize("arch_name, wtype, extra", NVIDIA_GEMMS)
def test_nvidia_gemm_multiplies_on_mma_sync_without_local_memory(store, arch_name, wtype, extra):
    """NVRTC's PTX of every sm_90 gemm (and two sm_80 ones, the 64 x 64 tile and the 32-bit-load
    variant of a few) holds mma.sync m16n8k16, loads its fragments from shared memory by ldmatrix .x4
    (or, in the ldmatrix=False variant, 32 bits at a time: common/mma.h.j2's paired loads), never 16
    bits at a time, and ptxas (or, without its report, the CUDA driver) finds no local memory: a
    fragment or accumulator array indexed at run time, or a register budget overrun, would put it
    there silently."""
    from forge.errors import ToolchainError
    from tests.codegen.test_resources import assert_no_local_memory
    try:
        entry, ptx = _compile(store, "gemm", {"wtype": wtype, **extra}, arch_name)
    except ToolchainError as e:
        pytest.skip(f"no NVRTC: {e}")
    assert "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" in ptx
    ldm = get_layout("ldmatrix_m8n8_x4_b16").instruction
    if extra.get("ldmatrix", True):
        assert ldm in ptx
    else:
        assert ldm not in ptx and "ld.shared.u32" in ptx
    assert "ld.shared.u16" not in ptx and "ld.shared.b16" not in ptx
    assert_no_local_memory(entry)  # the driver's count where NVRTC gave no ptxas report (the lent H100's)


def test_mma_sync_register_halves_are_adjacent_along_k():
    """common/mma.h.j2's 32-bit fragment loads rely on it (and refuse to render otherwise): in every
    lane, A's elements 2j and 2j+1 share a row and sit at columns k, k+1 with k even; B's likewise
    share a column."""
    L = get_layout("mma_m16n8k16_f16_f32")
    for lane in range(L.wave):
        for j in range(L.a.elems // 2):
            (r0, k0), (r1, k1) = L.a.element(lane, 2 * j), L.a.element(lane, 2 * j + 1)
            assert r0 == r1 and k0 % 2 == 0 and k1 == k0 + 1
        for j in range(L.b.elems // 2):
            (k0, c0), (k1, c1) = L.b.element(lane, 2 * j), L.b.element(lane, 2 * j + 1)
            assert c0 == c1 and k0 % 2 == 0 and k1 == k0 + 1


def test_only_wave32_archs_with_the_feature_claim_wmma():
    """The builtin is the _w32 one: an arch claiming wmma_f16 must run waves of 32 (gfx1100-1102 and
    the emulator target that stands in for them)."""
    have = {a.name for a in ARCHS.values() if a.has("wmma_f16")}
    assert have == {"gfx1100", "gfx1101", "gfx1102", "emu-gfx1100"}
    assert all(get_arch(n).wave_size == get_layout("wmma_f32_16x16x16_f16").wave for n in have)


# ------------------------------------------------------------------------------- the table
def test_rdna3_wmma_layout_matches_each_source():
    L = get_layout("wmma_f32_16x16x16_f16")
    assert (L.builtin, L.feature, L.wave, L.m, L.n, L.k) == (
        "__builtin_amdgcn_wmma_f32_16x16x16_f16_w32", "wmma_f16", 32, 16, 16, 16)
    assert (L.a.elems, L.b.elems, L.d.elems) == (16, 16, 8)  # V16h, V16h, V8f (BuiltinsAMDGPU.def)
    for lane in range(32):
        for i in range(16):
            # tinygrad ops_python.py: a_elem(x, k, row, goff) = x[k][goff + row] (register element k
            # of lane row holds A[row][k]); b_elem(x, col, k, goff) = a_elem(x, k, col, goff)
            assert L.a.element(lane, i) == (lane % 16, i)
            assert L.b.element(lane, i) == (i, lane % 16)
        for v in range(8):
            # tinygrad: c_map(lane, elem) = (lane % 16, lane // 16 + elem * 2) as (column, row);
            # Modular's get_rdna_fragment_layout: D[row = v*2 + l//16, col = l%16]
            assert L.d.element(lane, v) == (lane // 16 + v * 2, lane % 16)
    # GPUOpen / tinygrad: lanes 16-31 replicate lanes 0-15's A and B; one home per accumulator
    for op in ("a", "b"):
        for holders in L.holders(op).values():
            assert [lane for lane, _ in holders] == [holders[0][0], holders[0][0] + 16]
    assert all(len(h) == 1 for h in L.holders("d").values())


def test_every_layout_is_consistent():
    for layout in LAYOUTS.values():
        layout.check()


def test_layout_expressions_render_to_the_same_unsigned_c():
    e = Expr("2 * i + lane // 16")
    assert e(lane=17, i=3) == 7 and e.names == {"i", "lane"}
    assert e.c(lane="l", i="e") == "((2u * (e)) + ((l) / 16u))"
    for bad in ("lane - 1", "lane / 2", "f(lane)", "-1", "lane ** 2", "1.5"):
        with pytest.raises(SpecError):
            Expr(bad)


def test_mma_sync_layout_matches_each_source():
    L = get_layout("mma_m16n8k16_f16_f32")
    assert (L.builtin, L.instruction, L.feature, L.wave, L.m, L.n, L.k) == (
        "mma_m16n8k16_f16", "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", "mma_sync", 32, 16, 8, 16)
    assert (L.a.elems, L.b.elems, L.d.elems) == (8, 4, 4)
    for lane in range(32):
        g, t = lane >> 2, lane % 4  # PTX: groupID = %laneid >> 2, threadID_in_group = %laneid % 4
        for i in range(8):
            # PTX ISA, fragment A (.f16, m16n8k16): row = groupID for ai where i < 2 || 4 <= i < 6, else
            # groupID + 8; col = (threadID_in_group * 2) + (i & 0x1) for i < 4, else that + 8
            row = g if i < 2 or 4 <= i < 6 else g + 8
            col = t * 2 + (i & 1) + (0 if i < 4 else 8)
            assert L.a.element(lane, i) == (row, col)
        for i in range(4):
            # fragment B: row = (threadID_in_group * 2) + (i & 0x1) for bi where i < 2, else that + 8;
            # col = groupID
            assert L.b.element(lane, i) == (t * 2 + (i & 1) + (0 if i < 2 else 8), g)
            # fragments C/D: row = groupID for ci where i < 2, else groupID + 8;
            # col = (threadID_in_group * 2) + (i & 0x1)
            assert L.d.element(lane, i) == (g if i < 2 else g + 8, t * 2 + (i & 1))
    # tinygrad's CUDA model, dims (8, 16, 16): A element x[k%2 + (row//8)*2 + (k//8)*4] of lane
    # (k//2)%4 + (row%8)*4; B element x[k%2 + (k//8)*2] of lane (k//2)%4 + col*4; c_map (col, row)
    for row in range(16):
        for k in range(16):
            assert L.holders("a")[(row, k)] == [((k // 2) % 4 + (row % 8) * 4, k % 2 + (row // 8) * 2 + (k // 8) * 4)]
    for k in range(16):
        for col in range(8):
            assert L.holders("b")[(k, col)] == [((k // 2) % 4 + col * 4, k % 2 + (k // 8) * 2)]
    for lane in range(32):
        for e in range(4):
            col, row = e % 2 + (lane % 4) * 2, lane // 4 + (e // 2) * 8
            assert L.d.element(lane, e) == (row, col)


def test_only_wave32_archs_claim_mma_sync():
    have = {a.name for a in ARCHS.values() if a.has("mma_sync")}
    assert have == {"sm_80", "sm_90", "emu-sm90"}
    assert all(get_arch(n).wave_size == 32 for n in have)


# One warp: D = A B + C through common/mma.h.j2's table-rendered fragment loads, on the emulator
# target emu-sm90 (bit for bit against the documented order) and, where a CUDA device is present,
# on the GPU itself: small-integer inputs make every sum exact in any order, so the hardware must
# agree exactly, which checks the table against the silicon.
MMA_TILE = """
{% include "common/mma.h.j2" %}
KERNEL(32) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 lane = lane_id();
  u32 fa[MMA_A_REGS], fb[MMA_B_REGS];
  float fc[MMA_D_ELEMS], fd[MMA_D_ELEMS];
  mma_load_a(a, MMA_K, fa);
  mma_load_bt(bt, MMA_K, fb);
  for (u32 i = 0; i < MMA_D_ELEMS; ++i) fc[i] = c[mma_d_row(lane, i) * MMA_N + mma_d_col(lane, i)];
  mma_m16n8k16_f16(fd, fa, fb, fc);
  for (u32 i = 0; i < MMA_D_ELEMS; ++i) d[mma_d_row(lane, i) * MMA_N + mma_d_col(lane, i)] = fd[i];
}
"""


def _mma_args():
    from forge.codegen.spec import Arg
    return [Arg.ptr("a", "f16", const=True), Arg.ptr("bt", "f16", const=True), Arg.ptr("c", "f32", const=True),
            Arg.ptr("d", "f32")]


def _mma_run(ctx, a, b, c):
    from tests.runtime.inline import compile_inline, launch
    fn = compile_inline(ctx, MMA_TILE, _mma_args())
    bt = np.ascontiguousarray(b.T)
    return launch(ctx, fn, _mma_args(), {"a": a.view(np.uint16), "bt": bt.view(np.uint16), "c": c,
                                         "d": np.full_like(c, np.nan)}, (1, 1, 1), (32, 1, 1), outs=["d"])["d"]


def _mma_cases():
    rng = np.random.default_rng(15)
    ints = (rng.integers(-8, 9, (16, 16)).astype(np.float16), rng.integers(-8, 9, (16, 8)).astype(np.float16),
            rng.integers(-64, 65, (16, 8)).astype(np.float32))
    reals = ((rng.standard_normal((16, 16)) * 4).astype(np.float16), (rng.standard_normal((16, 8)) * 4).astype(np.float16),
             (rng.standard_normal((16, 8)) * 8).astype(np.float32))
    return ints, reals


def _model(a, b, c):
    d = c.copy()
    for k in range(a.shape[1]):  # the emulator's documented order, each addition rounded to f32
        d = (d + (a[:, k, None].astype(np.float64) * b[None, k, :]).astype(np.float32)).astype(np.float32)
    return d


def test_mma_sync_tile_code_on_emu_sm90():
    from tests.conftest import KernelContext
    from forge.runtime.emu import EmuDevice
    ctx = KernelContext(EmuDevice(32, check=True), get_arch("emu-sm90"), None)
    for a, b, c in _mma_cases():
        np.testing.assert_array_equal(_mma_run(ctx, a, b, c), _model(a, b, c))


def test_mma_sync_ptx_from_nvrtc():
    from forge.codegen.render import render_inline
    from forge.codegen.toolchain import nvrtc_toolchain
    tc = nvrtc_toolchain()
    if tc is None:
        pytest.skip("no NVRTC (pip install '.[cuda]')")
    import tempfile
    from pathlib import Path
    arch = get_arch("sm_90")
    src = render_inline(MMA_TILE, arch, "mma_tile", _mma_args())
    with tempfile.TemporaryDirectory() as work:
        ptx = tc.compile(src, arch, "mma_tile", Path(work), True).asm
    assert get_layout("mma_m16n8k16_f16_f32").instruction in ptx


def _mma_gpu():
    """A kernel context on this machine's CUDA device, if it has mma.sync; skipped otherwise (CI)."""
    from tests.conftest import KernelContext
    from forge.errors import DeviceError
    try:
        from forge.runtime.cuda import CudaDevice
        dev = CudaDevice()
    except (DeviceError, ImportError) as e:
        pytest.skip(f"no CUDA device: {e}")
    if not dev.arch.has("mma_sync"):
        pytest.skip(f"{dev.arch.name} has no mma.sync")
    return KernelContext(dev, dev.arch, None)


def test_mma_sync_tile_code_on_the_gpu():
    """Skipped without a CUDA device (CI); run on the lent H100 (docs/ARCH.md)."""
    ctx = _mma_gpu()
    (ai, bi, ci), (a, b, c) = _mma_cases()
    np.testing.assert_array_equal(_mma_run(ctx, ai, bi, ci), ai.astype(np.float64) @ bi + ci)  # exact sums
    got, exact = _mma_run(ctx, a, b, c), a.astype(np.float64) @ b.astype(np.float64) + c
    assert np.all(np.abs(got - exact) <= 17 * 2.0 ** -21 * (np.abs(a.astype(np.float64)) @ np.abs(b) + np.abs(c)))


# ------------------------------------------------------------------------------- ldmatrix .x4
# One warp: 32 rows of 8 halves in shared memory (row r at s + r * LDM_LD), lane l gives the address
# of memory row rows[l] (plus `shift` halves: 0, or a misalignment), ldmatrix_x4 (common/mma.h.j2 on
# CUDA, common/mma_emu.h.j2 on emu-sm90), and each lane's four registers come back. Lanes >= live
# return first (the precondition test).
LDM_LD = 16  # halves per shared row: 32 bytes, so every row starts 16-byte aligned
LDM_TILE = """
{% include "common/mma.h.j2" %}
KERNEL(32) {{ kernel.symbol }}({{ kernel.signature }}) {
  DYN_SHARED(f16, s);
  const u32 lane = lane_id();
  for (u32 c = 0; c < 8u; ++c) s[lane * 16u + c] = src[lane * 8u + c];
  sync_threads();
  if (lane >= (u32)live) return;
  u32 r[4];
  ldmatrix_x4(r, s + rows[lane] * 16u + (u32)shift);
  for (u32 j = 0; j < 4u; ++j) out[lane * 4u + j] = r[j];
}
"""


def _ldm_args():
    from forge.codegen.spec import Arg
    return [Arg.ptr("src", "f16", const=True), Arg.ptr("rows", "u32", const=True), Arg.ptr("out", "u32"),
            Arg.scalar("shift", "i32"), Arg.scalar("live", "i32")]


def _ldm_run(ctx, src, rows, shift=0, live=32):
    from tests.runtime.inline import compile_inline, launch
    fn = compile_inline(ctx, LDM_TILE, _ldm_args())
    return launch(ctx, fn, _ldm_args(), {"src": src, "rows": rows, "out": np.zeros(128, np.uint32), "shift": shift,
                                         "live": live}, (1, 1, 1), (32, 1, 1), shared=32 * LDM_LD * 2,
                  outs=["out"])["out"].reshape(32, 4)


def _ldm_ptx_model(src, rows):
    """The PTX ISA's ldmatrix .x4 .b16, transcribed literally (not through the table): threads 0-7,
    8-15, 16-23, 24-31 give the addresses of rows 0-7 of matrices 0-3; destination register j holds
    matrix j, and each thread receives row groupID = %laneid >> 2, elements 2 (%laneid % 4) and
    2 (%laneid % 4) + 1, the first in the low half."""
    out = np.zeros((32, 4), np.uint32)
    for lane in range(32):
        for j in range(4):
            addr_thread = 8 * j + (lane >> 2)  # the thread that gave matrix j's row groupID
            row = src[rows[addr_thread]]
            lo, hi = int(row[2 * (lane % 4)]), int(row[2 * (lane % 4) + 1])
            out[lane, j] = lo | (hi << 16)
    return out


def _ldm_case(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2 ** 16, (32, 8)).astype(np.uint16), rng.permutation(32).astype(np.uint32)


def test_ldmatrix_layout_matches_the_ptx_isa():
    """The table's entry against the PTX ISA's words, and the A / B fragments it serves."""
    LD, M = get_layout("ldmatrix_m8n8_x4_b16"), get_layout("mma_m16n8k16_f16_f32")
    assert (LD.builtin, LD.instruction, LD.feature, LD.wave, LD.rows, LD.cols, LD.row_bytes) == (
        "ldmatrix_x4", "ldmatrix.sync.aligned.m8n8.x4.shared.b16", "mma_sync", 32, 32, 8, 16)
    for lane in range(32):
        assert LD.addr(lane=lane) == 8 * (lane // 8) + lane % 8  # threads 8j..8j+7: rows of matrix j
        for i in range(8):  # register i // 2 = matrix j; row groupID, element 2 (lane % 4) + i % 2
            assert LD.dst.element(lane, i) == (8 * (i // 2) + (lane >> 2), 2 * (lane % 4) + i % 2)
    assert LD.serves(M.a) and LD.serves(M.b, 2, transposed=True)
    assert not LD.serves(M.a, transposed=True) and not LD.serves(M.b, 2)  # the checks can fail


def test_ldmatrix_on_emu_sm90_matches_the_ptx_isa():
    from tests.conftest import KernelContext
    from forge.runtime.emu import EmuDevice
    ctx = KernelContext(EmuDevice(32, check=True), get_arch("emu-sm90"), None)
    for seed in range(3):
        src, rows = _ldm_case(seed)
        np.testing.assert_array_equal(_ldm_run(ctx, src, rows), _ldm_ptx_model(src, rows))


@pytest.mark.parametrize("shift, live, message", [(4, 32, "not 16-byte aligned"), (0, 31, "EXEC not all ones")])
def test_emulated_ldmatrix_refuses_what_the_ptx_isa_forbids(shift, live, message):
    """A row address 8 bytes off, or a lane that has exited: the emulated ldmatrix fails the launch
    instead of loading."""
    from tests.conftest import KernelContext
    from forge.errors import DeviceError
    from forge.runtime.emu import EmuDevice
    ctx = KernelContext(EmuDevice(32, check=True), get_arch("emu-sm90"), None)
    src, rows = _ldm_case(0)
    with pytest.raises(DeviceError, match=message):
        _ldm_run(ctx, src, rows, shift=shift, live=live)


def test_ldmatrix_on_the_gpu():
    """Skipped without a CUDA device (CI): the instruction itself against the PTX ISA's words."""
    ctx = _mma_gpu()
    for seed in range(3):
        src, rows = _ldm_case(seed)
        np.testing.assert_array_equal(_ldm_run(ctx, src, rows), _ldm_ptx_model(src, rows))


# ------------------------------------------------------------------------------- mma.sync int8
def test_mma_s8_layout_matches_the_ptx_isa():
    """The int8 entry (gemm xin="q8") against the PTX ISA's "Matrix Fragments for mma.m16n8k32"
    (.s8), transcribed literally."""
    L = get_layout("mma_m16n8k32_s8_s32")
    assert (L.builtin, L.instruction, L.feature, L.wave, L.m, L.n, L.k, L.in_type, L.acc_type) == (
        "mma_m16n8k32_s8", "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32", "mma_sync", 32, 16, 8, 32, "s8", "s32")
    assert (L.a.elems, L.b.elems, L.d.elems) == (16, 8, 4)
    for lane in range(32):
        g, t = lane >> 2, lane % 4  # groupID, threadID_in_group
        for i in range(16):
            # A: row = groupID for ai where i < 4 || 8 <= i < 12, else groupID + 8;
            # col = threadID_in_group * 4 + (i & 0x3) for i < 8, else that + 16
            row = g if i < 4 or 8 <= i < 12 else g + 8
            assert L.a.element(lane, i) == (row, t * 4 + (i & 3) + (0 if i < 8 else 16))
        for i in range(8):
            # B: row = threadID_in_group * 4 + (i & 0x3) for bi where i < 4, else that + 16; col = groupID
            assert L.b.element(lane, i) == (t * 4 + (i & 3) + (0 if i < 4 else 16), g)
        for i in range(4):  # C/D: as m16n8k16's
            assert L.d.element(lane, i) == (g if i < 2 else g + 8, t * 2 + (i & 1))


# One warp, D = A B + C in s32 through common/mma_s8.h.j2's table-rendered 32-bit fragment loads.
MMA8_TILE = """
{% include "common/mma_s8.h.j2" %}
KERNEL(32) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 lane = lane_id();
  u32 fa[MMA8_A_REGS], fb[MMA8_B_REGS];
  i32 fc[MMA8_D_ELEMS], fd[MMA8_D_ELEMS];
  mma8_load_a32(a, MMA8_K, lane, fa);
  mma8_load_bt32(bt, MMA8_K, lane, fb);
  for (u32 i = 0; i < MMA8_D_ELEMS; ++i) fc[i] = c[mma8_d_row(lane, i) * MMA8_N + mma8_d_col(lane, i)];
  mma_m16n8k32_s8(fd, fa, fb, fc);
  for (u32 i = 0; i < MMA8_D_ELEMS; ++i) d[mma8_d_row(lane, i) * MMA8_N + mma8_d_col(lane, i)] = fd[i];
}
"""


def _mma8_args():
    from forge.codegen.spec import Arg
    return [Arg.ptr("a", "i8", const=True), Arg.ptr("bt", "i8", const=True), Arg.ptr("c", "i32", const=True),
            Arg.ptr("d", "i32")]


def _mma8_run(ctx, a, b, c):
    from tests.runtime.inline import compile_inline, launch
    fn = compile_inline(ctx, MMA8_TILE, _mma8_args())
    return launch(ctx, fn, _mma8_args(), {"a": a, "bt": np.ascontiguousarray(b.T), "c": c,
                                          "d": np.zeros_like(c)}, (1, 1, 1), (32, 1, 1), outs=["d"])["d"]


def test_mma_s8_tile_code_on_emu_sm90():
    """Exact integer sums over the whole int8 range (-128 included): the product of the matrices,
    each element where the table's fragments put it."""
    from tests.conftest import KernelContext
    from forge.runtime.emu import EmuDevice
    ctx = KernelContext(EmuDevice(32, check=True), get_arch("emu-sm90"), None)
    rng = np.random.default_rng(16)
    for lo, hi in ((-128, 128), (-3, 4)):
        a = rng.integers(lo, hi, (16, 32)).astype(np.int8)
        b = rng.integers(lo, hi, (32, 8)).astype(np.int8)
        c = rng.integers(-2**20, 2**20, (16, 8)).astype(np.int32)
        np.testing.assert_array_equal(_mma8_run(ctx, a, b, c), a.astype(np.int64) @ b + c)


def test_emulated_mma_s8_refuses_an_s32_overflow():
    """The emulator does not model the wrap-around: a sum outside s32 fails the launch."""
    from tests.conftest import KernelContext
    from forge.errors import DeviceError
    from forge.runtime.emu import EmuDevice
    ctx = KernelContext(EmuDevice(32, check=True), get_arch("emu-sm90"), None)
    a, b = np.full((16, 32), -128, np.int8), np.full((32, 8), -128, np.int8)
    with pytest.raises(DeviceError, match="outside s32"):
        _mma8_run(ctx, a, b, np.full((16, 8), 2**31 - 2**18, np.int32))


Q8_TYPES = ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "mxfp4")
Q8_GEMMS = ([("sm_90", w, t, kg) for kg in (1, 2) for t in (128, 64) for w in Q8_TYPES]
            + [("sm_80", w, t, 1) for w in ("q4_0", "q4_k") for t in (128, 64)])


@pytest.mark.parametrize("arch_name, wtype, tile, kgroups", Q8_GEMMS)
def test_nvidia_q8_gemm_multiplies_on_int8_mma_sync_without_local_memory(store, arch_name, wtype, tile, kgroups):
    """gemm xin="q8": NVRTC's PTX holds the int8 mma.sync (m16n8k32 .s8) and not the f16 one, takes
    its fragments by 32-bit shared loads (no ldmatrix), copies X by cp.async, and ptxas (or the
    driver) finds no local memory, for both block tiles, with one K group and (sm_90) two (twice the
    threads, so half the registers a thread may have)."""
    from forge.errors import ToolchainError
    from tests.codegen.test_resources import assert_no_local_memory
    try:
        entry, ptx = _compile(store, "gemm", {"wtype": wtype, "xin": "q8", "ldmatrix": False, "tile": tile,
                                              "kgroups": kgroups}, arch_name)
    except ToolchainError as e:
        pytest.skip(f"no NVRTC: {e}")
    assert get_layout("mma_m16n8k32_s8_s32").instruction in ptx
    assert "mma.sync.aligned.m16n8k16" not in ptx and "ldmatrix.sync" not in ptx  # (the symbol says noldmatrix)
    assert "ld.shared.u32" in ptx and "cp.async" in ptx
    assert_no_local_memory(entry)
