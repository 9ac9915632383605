"""The emulator's GPU semantics, tested directly with inline kernels at wave 32 and 64: barriers are
real (a scan that is only right with them), wave operations act on waves of the target's size,
shared memory is per block, atomics are atomic across blocks on different OS threads, and the
checking mode reports out-of-bounds accesses with the kernel, argument, index, block and thread."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from forge.arch import emu_arch
from forge.codegen.spec import Arg
from forge.errors import DeviceError
from forge.runtime.emu import EmuDevice
from tests.conftest import KernelContext
from tests.runtime.inline import compile_inline, launch

# ----------------------------------------------------------------------------- block-wide scan
SCAN = """
KERNEL(1024) {{ kernel.symbol }}({{ kernel.signature }}) {
  SHARED float buf[1024];
  const u32 t = tid_x(), base = bid_x() * bdim_x();
  buf[t] = x[base + t];
{% if p.barriers %}  sync_threads();{% endif %}
  for (u32 off = 1; off < bdim_x(); off <<= 1) {
    const float add = t >= off ? buf[t - off] : 0.0f;
{% if p.barriers %}    sync_threads();{% endif %}
    buf[t] += add;
{% if p.barriers %}    sync_threads();{% endif %}
  }
  y[base + t] = buf[t];
}
"""
SCAN_ARGS = [Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32")]


def scan(emu_kctx, x, block, barriers):
    fn = compile_inline(emu_kctx, SCAN, SCAN_ARGS, barriers=barriers)
    grid = x.size // block
    return launch(emu_kctx, fn, SCAN_ARGS, {"x": x, "y": np.zeros_like(x)}, (grid, 1, 1), (block, 1, 1), outs=["y"])["y"]


@given(block=st.integers(1, 1024), grid=st.integers(1, 5), data=st.data())
def test_block_scan_with_barriers_is_exact(emu_kctx, block, grid, data):
    x = np.array(data.draw(st.lists(st.integers(-8, 8), min_size=block * grid, max_size=block * grid)), np.float32)
    got = scan(emu_kctx, x, block, barriers=True)
    np.testing.assert_array_equal(got, np.cumsum(x.reshape(grid, block), axis=1).ravel())  # small ints: exact


@pytest.mark.parametrize("block", [2 * 64, 256, 1000])
def test_block_scan_without_barriers_is_wrong(emu_kctx, block):
    x = np.ones(block, np.float32)
    got = scan(emu_kctx, x, block, barriers=False)
    assert not np.array_equal(got, np.cumsum(x)), "the emulator hid a missing barrier"


# ---------------------------------------------------------------------------------- wave ops
WAVE_OPS = """
KERNEL(1024) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 t = tid_x();
  const float v = x[t];
  float s = v;
  for (u32 o = WAVE_SIZE / 2; o > 0; o >>= 1) s += shfl_xor(s, o);
  out[t * 8 + 0] = f32_bits(s);
  out[t * 8 + 1] = f32_bits(shfl(v, (u32)src[t]));
  out[t * 8 + 2] = f32_bits(shfl_down(v, delta));
  out[t * 8 + 3] = f32_bits(shfl_up(v, delta));
  const u64 b = wave_ballot(v > 0.0f);
  out[t * 8 + 4] = (u32)(b & 0xffffffffu);
  out[t * 8 + 5] = (u32)(b >> 32);
  out[t * 8 + 6] = wave_any(v > 0.0f) ? 1u : 0u;
  out[t * 8 + 7] = wave_all(v > 0.0f) ? 1u : 0u;
}
"""
WAVE_ARGS = [Arg.ptr("x", "f32", const=True), Arg.ptr("src", "i32", const=True), Arg.ptr("out", "u32"),
             Arg.scalar("delta", "u32")]


def wave_model(x, src, delta, W):
    """What each lane must see, as (4 floats, 4 integers) per lane: waves are consecutive runs of W threads; the last may be partial
    (its missing lanes are inactive: they add nothing to a ballot, and only shuffles from them
    are undefined, so the test never reads one)."""
    n = x.size
    out = np.zeros((n, 8), object)
    for w0 in range(0, n, W):
        lanes = x[w0:w0 + W]
        m = lanes.size
        for lane in range(m):
            t = w0 + lane
            out[t, 0] = lanes.sum()  # full butterfly over an entire wave (m == W is asserted)
            s = src[t]
            out[t, 1] = lanes[s] if s < W else x[t]
            out[t, 2] = lanes[lane + delta] if lane + delta < W else x[t]
            out[t, 3] = lanes[lane - delta] if lane >= delta else x[t]
            bits = sum(1 << i for i in range(m) if lanes[i] > 0)
            out[t, 4], out[t, 5] = bits & 0xFFFFFFFF, bits >> 32
            out[t, 6], out[t, 7] = int(bits != 0), int(bits == (1 << m) - 1)
    return out[:, :4].astype(np.float32), out[:, 4:].astype(np.uint64)


@given(nwaves=st.integers(1, 4), data=st.data())
def test_wave_operations_act_on_waves_of_the_target_size(emu_kctx, nwaves, data):
    W = emu_kctx.arch.wave_size
    n = nwaves * W
    x = np.array(data.draw(st.lists(st.sampled_from([-2.0, -1.0, 1.0, 2.0, 4.0]), min_size=n, max_size=n)), np.float32)
    src = np.array(data.draw(st.lists(st.integers(0, W + 3), min_size=n, max_size=n)), np.int32)
    delta = data.draw(st.integers(0, W + 1))
    fn = compile_inline(emu_kctx, WAVE_OPS, WAVE_ARGS)
    out = launch(emu_kctx, fn, WAVE_ARGS, {"x": x, "src": src, "out": np.zeros(n * 8, np.uint32), "delta": delta},
                 (1, 1, 1), (n, 1, 1), outs=["out"])["out"].reshape(n, 8)
    floats, ints = wave_model(x.astype(np.float64), src, delta, W)
    np.testing.assert_array_equal(out[:, :4].view(np.float32), floats)  # small integers: sums are exact
    np.testing.assert_array_equal(out[:, 4:], ints)


def test_partial_wave_ballot_counts_only_live_lanes(emu_kctx):
    W = emu_kctx.arch.wave_size
    n = W + 5  # the second wave has 5 lanes
    x = np.ones(n, np.float32)
    src = np.zeros(n, np.int32)
    fn = compile_inline(emu_kctx, WAVE_OPS, WAVE_ARGS)
    out = launch(emu_kctx, fn, WAVE_ARGS, {"x": x, "src": src, "out": np.zeros(n * 8, np.uint32), "delta": 0},
                 (1, 1, 1), (n, 1, 1), outs=["out"])["out"].reshape(n, 8)
    assert out[W, 4] == 0b11111 and out[W, 7] == 1.0  # ballot of 5 live lanes; all() over live lanes


def test_lane_and_wave_ids_follow_linear_thread_index(emu_kctx):
    body = """
KERNEL(1024) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 t = linear_tid();
  const u32 g = t + bdim_x() * bdim_y() * bdim_z() * (bid_x() + gdim_x() * (bid_y() + gdim_y() * bid_z()));
  out[g * 4 + 0] = tid_x() + 100 * tid_y() + 10000 * tid_z();
  out[g * 4 + 1] = bid_x() + 100 * bid_y() + 10000 * bid_z();
  out[g * 4 + 2] = lane_id();
  out[g * 4 + 3] = wave_id();
}
"""
    args = [Arg.ptr("out", "u32")]
    fn = compile_inline(emu_kctx, body, args, barrier_free=True)
    grid, block = (3, 2, 2), (5, 4, 3)
    nb, nt = 12, 60
    out = launch(emu_kctx, fn, args, {"out": np.zeros(nb * nt * 4, np.uint32)}, grid, block, outs=["out"])["out"]
    out = out.reshape(2, 2, 3, 3, 4, 5, 4)  # bz by bx tz ty tx field
    tz, ty, tx = np.meshgrid(range(3), range(4), range(5), indexing="ij")
    lin = tx + 5 * (ty + 4 * tz)
    W = emu_kctx.arch.wave_size
    for bz, by, bx in np.ndindex(2, 2, 3):
        blk = out[bz, by, bx]
        np.testing.assert_array_equal(blk[..., 0], tx + 100 * ty + 10000 * tz)
        assert np.all(blk[..., 1] == bx + 100 * by + 10000 * bz)
        np.testing.assert_array_equal(blk[..., 2], lin % W)
        np.testing.assert_array_equal(blk[..., 3], lin // W)


# ----------------------------------------------------------------------------- shared memory
DYN = """
KERNEL(256) {{ kernel.symbol }}({{ kernel.signature }}) {
  DYN_SHARED(float, smem);
  SHARED u32 stat[4];
  const u32 t = tid_x();
  if (t == 0) { out[bid_x() * 4 + 0] = f_isnan(smem[5]) ? 1u : 0u; out[bid_x() * 4 + 1] = stat[2]; }
  sync_threads();
  smem[t] = (float)(bid_x() * 1000 + t);
  if (t < 4) stat[t] = bid_x();
  sync_threads();
  if (t == 0) {
    float s = 0.0f;
    for (u32 i = 0; i < bdim_x(); ++i) s += smem[i];
    out[bid_x() * 4 + 2] = (u32)s;
    out[bid_x() * 4 + 3] = stat[3];
  }
}
"""


def test_shared_memory_is_per_block_and_starts_poisoned(emu_kctx):
    args = [Arg.ptr("out", "u32")]
    fn = compile_inline(emu_kctx, DYN, args)
    grid, block = 40, 96
    out = launch(emu_kctx, fn, args, {"out": np.zeros(grid * 4, np.uint32)}, (grid, 1, 1), (block, 1, 1),
                 shared=block * 4, outs=["out"])["out"].reshape(grid, 4)
    b = np.arange(grid)
    assert np.all(out[:, 0] == 1), "dynamic shared memory must read as NaN before it is written"
    assert np.all(out[:, 1] == 0xFFFFFFFF), "static shared memory must be poisoned at block start"
    np.testing.assert_array_equal(out[:, 2], b * 1000 * block + block * (block - 1) // 2)
    np.testing.assert_array_equal(out[:, 3], b)


# ----------------------------------------------------------------------------------- atomics
ATOMICS = """
KERNEL(256) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 g = bid_x() * bdim_x() + tid_x();
  atomic_add(&counts[0], 1u);
  atomic_add(&fsum[0], 1.0f);
  atomic_max(&counts[1], g);
  const u32 ticket = atomic_add(&counts[2], 1u);
  order[ticket] = g;
  atomic_add((i32*)&counts[3], -1);
  u32 seen = atomic_cas(&counts[4], 0u, g + 1);  // exactly one thread wins
  if (seen == 0) atomic_add(&counts[5], 1u);
}
"""


def test_atomics_are_atomic_across_blocks_on_all_threads(emu_kctx):
    args = [Arg.ptr("counts", "u32"), Arg.ptr("fsum", "f32"), Arg.ptr("order", "u32")]
    fn = compile_inline(emu_kctx, ATOMICS, args, barrier_free=True)
    grid, block = 64, 256
    n = grid * block
    out = launch(emu_kctx, fn, args, {"counts": np.zeros(6, np.uint32), "fsum": np.zeros(1, np.float32),
                                  "order": np.zeros(n, np.uint32)}, (grid, 1, 1), (block, 1, 1),
                 outs=["counts", "fsum", "order"])
    c = out["counts"]
    assert c[0] == n and c[1] == n - 1 and c[2] == n and c[3] == (-n) & 0xFFFFFFFF and c[5] == 1
    assert out["fsum"][0] == n  # every partial sum is an integer below 2^24: exact
    np.testing.assert_array_equal(np.sort(out["order"]), np.arange(n))  # each ticket handed out once


# -------------------------------------------------------------------------------- wave order
# Wave 0 writes shared memory that wave 1 reads, with or without the barrier between them.
HANDOFF = """
KERNEL(128) {{ kernel.symbol }}({{ kernel.signature }}) {
  SHARED float buf[64];
  if (wave_id() == 0) buf[lane_id()] = x[lane_id()];
{% if p.barrier %}  sync_threads();{% endif %}
  if (wave_id() == 1) y[bid_x() * WAVE_SIZE + lane_id()] = buf[lane_id()];
}
"""
HANDOFF_ARGS = [Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32")]


def handoff(emu_kctx, order: str, barrier: bool, grid: int = 64) -> np.ndarray:
    """Per block, whether wave 1 read what wave 0 wrote (False: it read the poison)."""
    dev = EmuDevice(emu_kctx.arch.wave_size, wave_order=order)
    fn = compile_inline(emu_kctx, HANDOFF, HANDOFF_ARGS, barrier=barrier)
    w = emu_kctx.arch.wave_size
    x = np.arange(1, w + 1, dtype=np.float32)
    y = launch(emu_kctx, fn, HANDOFF_ARGS, {"x": x, "y": np.zeros(grid * w, np.float32)}, (grid, 1, 1), (2 * w, 1, 1),
               outs=["y"], device=dev)["y"].reshape(grid, w)
    return np.all(y == x, axis=1)


@pytest.mark.parametrize("order", ["ascending", "descending", "random:0", "random:7"])
def test_handoff_between_waves_with_a_barrier_works_in_every_order(emu_kctx, order):
    assert handoff(emu_kctx, order, barrier=True).all()


def test_a_missing_barrier_hidden_by_ascending_order_shows_in_the_others(emu_kctx):
    """The race whose writer is the lower wave: ascending order runs wave 0 to its end first, so
    wave 1 reads the data as if there were a barrier; descending order runs wave 1 first, so it
    reads poison in every block; a random order does in some blocks and not others, and the same
    launch with the same seed repeats its orders exactly."""
    assert handoff(emu_kctx, "ascending", barrier=False).all()
    assert not handoff(emu_kctx, "descending", barrier=False).any()
    shuffled = handoff(emu_kctx, "random:3", barrier=False)
    assert 0 < shuffled.sum() < len(shuffled)
    np.testing.assert_array_equal(handoff(emu_kctx, "random:3", barrier=False), shuffled)
    assert not np.array_equal(handoff(emu_kctx, "random:4", barrier=False), shuffled)


def test_wave_order_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("FORGE_EMU_WAVE_ORDER", "random:12")
    assert EmuDevice(32).wave_order == ("random", 12)
    assert EmuDevice(32, wave_order="descending").wave_order == ("descending", 0)  # the argument wins
    monkeypatch.setenv("FORGE_EMU_WAVE_ORDER", "sideways")
    with pytest.raises(DeviceError, match="FORGE_EMU_WAVE_ORDER 'sideways' is not one of ascending"):
        EmuDevice(32)
    for bad in ("random:-1", "random:x", "descending:3", f"random:{2**32}"):
        with pytest.raises(DeviceError, match="not one of"):
            EmuDevice(32, wave_order=bad)


# ------------------------------------------------------------------------------ misuse errors
def test_wave_operation_in_divergent_code_is_reported(emu_kctx):
    body = """
KERNEL(256) {{ kernel.symbol }}({{ kernel.signature }}) {
  float v = 1.0f;
  if (lane_id() < 3) v = shfl_xor(v, 1u);
  sync_threads();
  y[tid_x()] = v;
}
"""
    args = [Arg.ptr("y", "f32")]
    fn = compile_inline(emu_kctx, body, args)
    with pytest.raises(DeviceError, match="divergent"):
        launch(emu_kctx, fn, args, {"y": np.zeros(64, np.float32)}, (1, 1, 1), (64, 1, 1))


def test_barrier_free_kernel_that_syncs_is_reported(emu_kctx):
    body = """
KERNEL(64) {{ kernel.symbol }}({{ kernel.signature }}) { sync_threads(); y[tid_x()] = 1.0f; }
"""
    args = [Arg.ptr("y", "f32")]
    fn = compile_inline(emu_kctx, body, args, barrier_free=True)
    with pytest.raises(DeviceError, match="barrier_free"):
        launch(emu_kctx, fn, args, {"y": np.zeros(64, np.float32)}, (1, 1, 1), (64, 1, 1))


def test_exited_threads_count_as_arrived_at_a_barrier(emu_kctx):
    body = """
KERNEL(256) {{ kernel.symbol }}({{ kernel.signature }}) {
  SHARED float s[256];
  if (tid_x() >= n) return;
  s[tid_x()] = 2.0f;
  sync_threads();
  y[tid_x()] = s[(tid_x() + 1) % n];
}
"""
    args = [Arg.ptr("y", "f32"), Arg.scalar("n", "u32")]
    fn = compile_inline(emu_kctx, body, args)
    y = launch(emu_kctx, fn, args, {"y": np.zeros(256, np.float32), "n": 100}, (1, 1, 1), (256, 1, 1), outs=["y"])["y"]
    assert np.all(y[:100] == 2.0) and np.all(y[100:] == 0.0)


def test_bad_launches_are_refused(emu_kctx):
    args = [Arg.ptr("y", "f32"), Arg.scalar("n", "u32")]
    fn = compile_inline(emu_kctx, "KERNEL(64) {{ kernel.symbol }}({{ kernel.signature }}) { y[0] = n; }", args,
                        barrier_free=True)
    dev = emu_kctx.device
    buf = dev.alloc(4)
    try:
        with pytest.raises(DeviceError, match="threads per block"):
            dev.launch(fn, (1, 1, 1), (2048, 1, 1), 0, [buf, 1], args)
        with pytest.raises(DeviceError, match="does not fit"):
            dev.launch(fn, (1, 1, 1), (1, 1, 1), 0, [buf, -1], args)
        with pytest.raises(DeviceError, match="EmuBuffer"):
            dev.launch(fn, (1, 1, 1), (1, 1, 1), 0, [np.zeros(1), 1], args)
        other = EmuDevice(wave_size=96 - emu_kctx.arch.wave_size)
        with pytest.raises(DeviceError, match="compiled for wave"):
            other.launch(fn, (1, 1, 1), (1, 1, 1), 0, [buf, 1], args)
    finally:
        dev.free(buf)
    with pytest.raises(DeviceError, match="freed"):
        dev.launch(fn, (1, 1, 1), (1, 1, 1), 0, [buf, 1], args)


# ----------------------------------------------------------------------------- checking mode
OOB = """
KERNEL(128) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 i = bid_x() * bdim_x() + tid_x();
  if (i <= n) y[i] = x[i] * 2.0f;   // off by one: i == n is out of bounds
}
"""
OOB_ARGS = [Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32"), Arg.scalar("n", "u32")]


@pytest.fixture(scope="module")
def checked():
    return {w: KernelContext(EmuDevice(wave_size=w, check=True), emu_arch(w), None) for w in (32, 64)}


@pytest.mark.parametrize("n", [256, 1000])  # 1000 floats end exactly at a guard page; 256 too
def test_out_of_bounds_read_is_reported_with_kernel_argument_and_index(checked, emu_kctx, n):
    ctx = checked[emu_kctx.arch.wave_size]
    fn = compile_inline(ctx, OOB, OOB_ARGS, barrier_free=True)
    with pytest.raises(DeviceError) as e:
        launch(ctx, fn, OOB_ARGS, {"x": np.ones(n, np.float32), "y": np.zeros(n + 1, np.float32), "n": n},
               (n // 128 + 1, 1, 1), (128, 1, 1))
    msg = str(e.value)
    assert fn.symbol in msg and "'x'" in msg and f"element {n}" in msg and "read" in msg
    assert f"block ({n // 128},0,0) thread ({n % 128},0,0)" in msg


def test_out_of_bounds_write_is_reported(checked, emu_kctx):
    ctx = checked[emu_kctx.arch.wave_size]
    fn = compile_inline(ctx, OOB, OOB_ARGS, barrier_free=True)
    n = 512
    with pytest.raises(DeviceError, match=r"out-of-bounds write of argument 'y'.*element 512"):
        launch(ctx, fn, OOB_ARGS, {"x": np.ones(n + 4, np.float32), "y": np.zeros(n, np.float32), "n": n},
               (n // 128 + 1, 1, 1), (128, 1, 1))


def test_write_into_alignment_slack_is_found_by_canaries(checked, emu_kctx):
    ctx = checked[emu_kctx.arch.wave_size]
    fn = compile_inline(ctx, OOB, OOB_ARGS, barrier_free=True)
    n = 13  # 52 bytes: the first byte past the end is alignment slack, not the guard page
    with pytest.raises(DeviceError, match=r"argument 'y'.*byte offset 52"):
        launch(ctx, fn, OOB_ARGS, {"x": np.ones(n + 3, np.float32), "y": np.zeros(n, np.float32), "n": n},
               (1, 1, 1), (128, 1, 1))


def test_in_bounds_kernel_passes_checking_mode(checked, emu_kctx):
    ctx = checked[emu_kctx.arch.wave_size]
    fn = compile_inline(ctx, OOB, OOB_ARGS, barrier_free=True)
    n = 300
    y = launch(ctx, fn, OOB_ARGS, {"x": np.ones(n + 1, np.float32), "y": np.zeros(n + 1, np.float32), "n": n},
               (3, 1, 1), (128, 1, 1), outs=["y"])["y"]
    assert np.all(y == 2.0)


@settings(max_examples=5)
@given(st.integers(1, 3000))
def test_checked_buffers_round_trip(checked, n):
    dev = checked[32].device
    data = np.random.default_rng(n).integers(0, 255, n, dtype=np.uint8)
    buf = dev.alloc(n)
    dev.upload(buf, data)
    assert dev.download(buf) == data.tobytes()
    dev.free(buf)


# --------------------------------------------------------------------- RDNA3 WMMA (emu-gfx1100)
# v_wmma_f32_16x16x16_f16 on the emulator target with gfx1100's features. The kernel below places
# the operands by hand, transcribing the sources (AMD GPUOpen's RDNA3 WMMA article, tinygrad's lane
# model: lane l holds row l % 16 of A and column l % 16 of B, all 16 K values, lanes 16-31 the same
# as lanes 0-15; accumulator element i of lane l is D[2i + l/16][l % 16]), not through the table the
# emulator and the kernels' tile code share (forge/codegen/matrix_layouts.py): so this checks the
# emulated instruction against the sources. Each wave multiplies its own matrices. `mode` plants one
# precondition violation: 1 a lane exits first, 2 lane 20's A differs from lane 4's, 3 the upper
# half-wave is at a shuffle instead.
WMMA = """
KERNEL(1024) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 lane = lane_id(), base = wave_id() * 256u;
  if (mode == 1u && lane == 5u) return;
  v16h fa, fb;
  v8f fc;
  for (u32 k = 0; k < 16u; ++k) {
    fa[k] = __builtin_bit_cast(_Float16, a[base + (lane % 16u) * 16u + k]);
    fb[k] = __builtin_bit_cast(_Float16, b[base + k * 16u + lane % 16u]);
  }
  if (mode == 2u && lane == 20u) fa[3] = -fa[3];
  for (u32 i = 0; i < 8u; ++i) fc[i] = c[base + (2u * i + lane / 16u) * 16u + lane % 16u];
  if (mode == 3u && lane >= 16u) {
    d[base + lane] = shfl(1.0f, 0u);
    return;
  }
  const v8f r = __builtin_amdgcn_wmma_f32_16x16x16_f16_w32(fa, fb, fc);
  for (u32 i = 0; i < 8u; ++i) d[base + (2u * i + lane / 16u) * 16u + lane % 16u] = r[i];
}
"""
WMMA_ARGS = [Arg.ptr("a", "f16", const=True), Arg.ptr("b", "f16", const=True), Arg.ptr("c", "f32", const=True),
             Arg.ptr("d", "f32"), Arg.scalar("mode", "u32")]


@pytest.fixture(scope="module")
def gfx1100_ctx():
    from forge.arch import get_arch
    arch = get_arch("emu-gfx1100")
    assert arch.has("wmma_f16") and arch.wave_size == 32
    return KernelContext(EmuDevice(wave_size=32, check=True), arch, None)


def wmma_launch(ctx, a, b, c, mode=0, threads=None):
    fn = compile_inline(ctx, WMMA, WMMA_ARGS)
    n = a.shape[0]
    return launch(ctx, fn, WMMA_ARGS, {"a": a.view(np.uint16), "b": b.view(np.uint16), "c": c, "d": np.zeros_like(c),
                                       "mode": mode}, (1, 1, 1), (threads or 32 * n, 1, 1), outs=["d"])["d"]


def wmma_model(a, b, c):
    """D = A B + C as the emulator documents it: C, then + A[r][k] B[k][c] for k = 0, 1, ..., each
    product exact and each addition rounded to f32."""
    d = c.copy()
    for k in range(a.shape[2]):
        p = (a[:, :, k, None].astype(np.float64) * b[:, None, k, :].astype(np.float64)).astype(np.float32)
        d = (d + p).astype(np.float32)
    return d


@given(waves=st.integers(1, 3), data=st.data())
def test_wmma_computes_a_times_b_plus_c_with_the_sources_lane_layout(gfx1100_ctx, waves, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    a = (rng.standard_normal((waves, 16, 16)) * 4).astype(np.float16)
    b = (rng.standard_normal((waves, 16, 16)) * 4).astype(np.float16)
    c = (rng.standard_normal((waves, 16, 16)) * 8).astype(np.float32)
    d = wmma_launch(gfx1100_ctx, a, b, c)
    np.testing.assert_array_equal(d, wmma_model(a, b, c))
    exact = a.astype(np.float64) @ b.astype(np.float64) + c  # and close to the exact product
    assert np.all(np.abs(d - exact) <= 17 * 2.0 ** -24 * (np.abs(a.astype(np.float64)) @ np.abs(b) + np.abs(c)))


def wmma_error(ctx, mode, threads=None) -> str:
    a = np.arange(2 * 256, dtype=np.float16).reshape(2, 16, 16) % 64 + 1
    with pytest.raises(DeviceError) as e:
        wmma_launch(ctx, a, a, np.zeros((2, 16, 16), np.float32), mode, threads)
    return str(e.value)


def test_wmma_with_a_lane_exited_is_refused(gfx1100_ctx):
    msg = wmma_error(gfx1100_ctx, 1)
    assert "inline" in msg and "not executed by every lane of the wave (EXEC not all ones): lane 5 has exited" in msg


def test_wmma_in_a_partial_wave_is_refused(gfx1100_ctx):
    msg = wmma_error(gfx1100_ctx, 0, threads=48)  # the second wave has 16 lanes
    assert "lane 16 has exited or does not exist (a partial wave)" in msg and "wave 1" in msg


def test_wmma_with_unreplicated_operands_is_refused(gfx1100_ctx):
    msg = wmma_error(gfx1100_ctx, 2)
    assert "operand A is not replicated" in msg and "A[4][3]" in msg and "lane 4" in msg and "lane 20" in msg


def test_wmma_with_half_the_wave_at_another_operation_is_refused(gfx1100_ctx):
    assert "lane 16 is at another wave operation" in wmma_error(gfx1100_ctx, 3)


# ------------------------------------------------------------- NVIDIA mma.sync (emu-sm90)
# mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 on the emulator target with sm_90's features,
# operands placed by hand from the PTX ISA's "Matrix Fragments for mma.m16n8k16 with floating point
# type" (groupID g = lane / 4, threadID_in_group t = lane % 4), not through the shared table. Each
# warp multiplies its own matrices; `mode` as for WMMA (1: lane 9 exits first, 3: the upper half is
# at a shuffle).
MMA = """
KERNEL(1024) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 lane = lane_id(), w = wave_id(), g = lane / 4u, t = lane % 4u;
  const f16* A = a + w * 256u;
  const f16* B = b + w * 128u;
  if (mode == 1u && lane == 9u) return;
  u32 fa[4], fb[2];
  float fc[4], fd[4];
  for (u32 i = 0; i < 8u; i += 2u) {  // a_i: row g (+8 for i = 2, 3, 6, 7), col 2t + (i & 1) (+8 for i >= 4)
    const u32 r = g + (i == 2u || i == 6u ? 8u : 0u), k = 2u * t + (i >= 4u ? 8u : 0u);
    fa[i / 2u] = (u32)A[r * 16u + k] | ((u32)A[r * 16u + k + 1u] << 16);
  }
  for (u32 i = 0; i < 4u; i += 2u) {  // b_i: row 2t + (i & 1) (+8 for i >= 2), col g
    const u32 k = 2u * t + (i >= 2u ? 8u : 0u);
    fb[i / 2u] = (u32)B[k * 8u + g] | ((u32)B[(k + 1u) * 8u + g] << 16);
  }
  for (u32 i = 0; i < 4u; ++i)  // c_i: row g (+8 for i >= 2), col 2t + (i & 1)
    fc[i] = c[w * 128u + (g + (i >= 2u ? 8u : 0u)) * 8u + 2u * t + (i & 1u)];
  if (mode == 3u && lane >= 16u) {
    d[w * 128u + lane] = shfl(1.0f, 0u);
    return;
  }
  mma_m16n8k16_f16(fd, fa, fb, fc);
  for (u32 i = 0; i < 4u; ++i) d[w * 128u + (g + (i >= 2u ? 8u : 0u)) * 8u + 2u * t + (i & 1u)] = fd[i];
}
"""


@pytest.fixture(scope="module")
def sm90_ctx():
    from forge.arch import get_arch
    arch = get_arch("emu-sm90")
    assert arch.has("mma_sync") and arch.wave_size == 32
    return KernelContext(EmuDevice(wave_size=32, check=True), arch, None)


def mma_launch(ctx, a, b, c, mode=0):
    fn = compile_inline(ctx, MMA, WMMA_ARGS)
    return launch(ctx, fn, WMMA_ARGS, {"a": a.view(np.uint16), "b": b.view(np.uint16), "c": c, "d": np.zeros_like(c),
                                       "mode": mode}, (1, 1, 1), (32 * a.shape[0], 1, 1), outs=["d"])["d"]


@given(waves=st.integers(1, 3), data=st.data())
def test_mma_sync_computes_a_times_b_plus_c_with_the_ptx_lane_layout(sm90_ctx, waves, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    a = (rng.standard_normal((waves, 16, 16)) * 4).astype(np.float16)
    b = (rng.standard_normal((waves, 16, 8)) * 4).astype(np.float16)
    c = (rng.standard_normal((waves, 16, 8)) * 8).astype(np.float32)
    np.testing.assert_array_equal(mma_launch(sm90_ctx, a, b, c), wmma_model(a, b, c))


def test_mma_sync_not_executed_by_the_whole_warp_is_refused(sm90_ctx):
    a = np.ones((1, 16, 16), np.float16)
    b, c = np.ones((1, 16, 8), np.float16), np.zeros((1, 16, 8), np.float32)
    for mode, want in ((1, "lane 9 has exited"), (3, "lane 16 is at another wave operation")):
        with pytest.raises(DeviceError, match=want):
            mma_launch(sm90_ctx, a, b, c, mode)
