"""The host backend (forge/runtime/host.py + host_runtime.cpp): the Device protocol over host memory,
zero-copy wrapping, views, the thread pool (every block of a grid runs exactly once, whatever the
grid's shape), recorded launch lists (in order, pinned buffers), refusal of GPU launch shapes, the
host prelude's compile errors for GPU-only vocabulary, and the vectorized exp's accuracy."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.arch import get_arch
from forge.codegen.spec import Arg
from forge.errors import CompileError, DeviceError
from forge.runtime.device import BoundLaunch, Device
from forge.runtime.host import HostDevice
from tests.conftest import KernelContext
from tests.runtime.inline import compile_inline, launch


@pytest.fixture(scope="module")
def hctx():
    return KernelContext(HostDevice(), get_arch("host"), None)


def test_host_device_implements_the_protocol(hctx):
    assert isinstance(hctx.device, Device) and hctx.device.threads >= 1


@given(n=st.integers(0, 5000), off=st.integers(0, 64), data=st.data())
def test_upload_download_round_trip_at_offsets(hctx, n, off, data):
    dev = hctx.device
    payload = np.frombuffer(data.draw(st.binary(min_size=n, max_size=n)), np.uint8)
    buf = dev.alloc(n + off)
    try:
        dev.memset(buf, 0xAB)
        dev.upload(buf, payload, offset=off)
        got = dev.download(buf)
        assert got[:off] == b"\xab" * off and got[off:] == payload.tobytes()
    finally:
        dev.free(buf)


def test_large_buffers_copy_memset_and_views(hctx):
    dev = hctx.device
    a, b = dev.alloc(3 << 20), dev.alloc(100)  # a is past the huge-page threshold: its own mapping
    dev.memset(a, 5)
    dev.upload(b, np.arange(100, dtype=np.uint8))
    dev.copy(a, b, 10, dst_offset=(3 << 20) - 10, src_offset=5)
    assert dev.download(a, 12, offset=(3 << 20) - 12) == bytes([5, 5] + list(range(5, 15)))
    v = dev.view(b, 40, 20)
    assert dev.download(v, 3) == bytes([40, 41, 42])
    dev.memset(v, 9, nbytes=2, offset=1)
    assert dev.download(b, 4, offset=40) == bytes([40, 9, 9, 43])
    with pytest.raises(DeviceError, match="outside a buffer of 20 bytes"):
        dev.view(v, 10, 11)
    with pytest.raises(DeviceError, match="a view is not freed"):
        dev.free(v)
    dev.free(a), dev.free(b)
    with pytest.raises(DeviceError, match="freed"):
        dev.download(v)
    with pytest.raises(DeviceError, match="freed twice"):
        dev.free(a)


def test_wrap_is_zero_copy_and_keeps_the_array(hctx):
    dev = hctx.device
    arr = np.arange(16, dtype=np.float32)
    buf = dev.wrap(arr)
    assert buf.ptr == arr.ctypes.data and buf.nbytes == 64
    arr[3] = 42
    assert np.frombuffer(dev.download(buf), np.float32)[3] == 42  # same memory
    dev.upload(buf, np.full(16, 7, np.float32))
    assert np.all(arr == 7)
    del arr  # the buffer keeps the array alive
    assert np.all(np.frombuffer(dev.download(buf), np.float32) == 7)
    dev.free(buf)  # releases the array, never frees numpy's memory
    with pytest.raises(DeviceError, match="C-contiguous"):
        dev.wrap(np.zeros((4, 4), np.float32)[:, 1])


# ------------------------------------------------------------------------------- the thread pool
BLOCK_IDS = """
KERNEL(1) {{ kernel.symbol }}(HOST_BLOCK, {{ kernel.signature }}) {
  const u64 lin = bid_x() + (u64)gdim_x() * (bid_y() + (u64)gdim_y() * bid_z());
  atomic_add((u32*)&hits[lin], 1u);
  ids[lin * 3] = bid_x(), ids[lin * 3 + 1] = bid_y(), ids[lin * 3 + 2] = bid_z();
}
"""
BLOCK_ARGS = [Arg.ptr("hits", "i32"), Arg.ptr("ids", "i32")]


@given(grid=st.tuples(st.integers(1, 40), st.integers(1, 6), st.integers(1, 4)))
def test_every_block_runs_exactly_once(hctx, grid):
    fn = compile_inline(hctx, BLOCK_IDS, BLOCK_ARGS)
    n = grid[0] * grid[1] * grid[2]
    out = launch(hctx, fn, BLOCK_ARGS, {"hits": np.zeros(n, np.int32), "ids": np.full(3 * n, -1, np.int32)},
                 grid, (1, 1, 1), outs=["hits", "ids"])
    assert np.all(out["hits"] == 1)
    want = np.stack(np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), np.arange(grid[2]), indexing="ij"), -1)
    np.testing.assert_array_equal(out["ids"].reshape(grid[2], grid[1], grid[0], 3), want.transpose(2, 1, 0, 3))


def test_gpu_launch_shapes_are_refused(hctx):
    fn = compile_inline(hctx, BLOCK_IDS, BLOCK_ARGS)
    vals = {"hits": np.zeros(1, np.int32), "ids": np.zeros(3, np.int32)}
    with pytest.raises(DeviceError, match=r"block \(1, 1, 1\)"):
        launch(hctx, fn, BLOCK_ARGS, vals, (1, 1, 1), (256, 1, 1))
    with pytest.raises(DeviceError, match="shared"):
        launch(hctx, fn, BLOCK_ARGS, vals, (1, 1, 1), (1, 1, 1), shared=64)
    with pytest.raises(DeviceError, match="2 arguments expected"):
        hctx.device.launch(fn, (1, 1, 1), (1, 1, 1), 0, [None], BLOCK_ARGS)
    with pytest.raises(DeviceError, match="expected a HostBuffer"):
        hctx.device.launch(fn, (1, 1, 1), (1, 1, 1), 0, [np.zeros(1), None], BLOCK_ARGS)


def test_pool_size_follows_the_environment():
    code = "from forge.runtime.host import HostDevice; print(HostDevice().threads)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "FORGE_HOST_THREADS": "3"}).stdout
    assert out.strip() == "3"


# --------------------------------------------------------------------------------- launch lists
AXPB = """
KERNEL(1) {{ kernel.symbol }}(HOST_BLOCK, {{ kernel.signature }}) {
  const u32 i = bid_x();
  if (i < (u32)n) y[i] = x[i] * a + b[0];
}
"""
AXPB_ARGS = [Arg.ptr("x", "f32", const=True), Arg.ptr("b", "f32", const=True), Arg.ptr("y", "f32"),
             Arg.scalar("a", "f32"), Arg.scalar("n", "i32")]


def test_a_recorded_list_runs_in_order_and_pins_its_buffers(hctx):
    dev = hctx.device
    fn = compile_inline(hctx, AXPB, AXPB_ARGS)
    n = 37
    buf, bias = dev.alloc(2 * 4 * n), dev.alloc(4)
    x, y = dev.view(buf, 0, 4 * n), dev.view(buf, 4 * n, 4 * n)
    dev.upload(x, np.arange(n, dtype=np.float32))
    dev.upload(bias, np.array([1.0], np.float32))
    # y = 2x + b, then x = 3y + b: order matters; the bias lives in device memory, so a replay
    # sees its new value (what a captured decode step relies on)
    lst = [BoundLaunch(fn, (n, 1, 1), (1, 1, 1), 0, (x, bias, y, 2.0, n), tuple(AXPB_ARGS)),
           BoundLaunch(fn, (n, 1, 1), (1, 1, 1), 0, (y, bias, x, 3.0, n), tuple(AXPB_ARGS))]
    replay = dev.record(lst)
    assert len(replay) == 2
    replay.run()
    want = (np.arange(n) * 2 + 1) * 3 + 1.0
    np.testing.assert_array_equal(np.frombuffer(dev.download(x), np.float32), want)
    dev.upload(bias, np.array([0.5], np.float32))
    replay.run()
    np.testing.assert_array_equal(np.frombuffer(dev.download(x), np.float32), (want * 2 + 0.5) * 3 + 0.5)
    with pytest.raises(DeviceError, match="recorded launch list"):
        dev.free(buf)  # through a view: the root buffer is pinned
    replay.close()
    with pytest.raises(DeviceError, match="closed"):
        replay.run()
    dev.free(buf)
    with pytest.raises(DeviceError, match="a HostBuffer"):
        dev.record(lst)  # x and y view a freed buffer
    dev.free(bias)


def test_a_collected_list_unpins(hctx):
    dev = hctx.device
    fn = compile_inline(hctx, AXPB, AXPB_ARGS)
    bufs = [dev.alloc(4) for _ in range(3)]
    replay = dev.record([BoundLaunch(fn, (1, 1, 1), (1, 1, 1), 0, (bufs[0], bufs[1], bufs[2], 1.0, 1),
                                     tuple(AXPB_ARGS))])
    replay.run()
    del replay
    for b in bufs:
        dev.free(b)


# ----------------------------------------------------------------------------- host vocabulary
@pytest.mark.parametrize("use,name", [("sync_threads();", "sync_threads"), ("y[0] = shfl(1.0f, 0u);", "shfl"),
                                      ("SHARED float s[4]; s[0] = 1; y[0] = s[0];", "SHARED"),
                                      ("y[0] = (float)tid_x();", "tid_x")])
def test_gpu_vocabulary_is_a_compile_error(hctx, use, name):
    body = "KERNEL(1) {{ kernel.symbol }}(HOST_BLOCK, {{ kernel.signature }}) { " + use + " }"
    with pytest.raises(CompileError, match=name):
        compile_inline(hctx, body, [Arg.ptr("y", "f32")])


EXP = """
KERNEL(1) {{ kernel.symbol }}(HOST_BLOCK, {{ kernel.signature }}) {
  for (u32 i = 0; i + HV <= (u32)n; i += HV) vf_store(y + i, vf_exp(vf_load(x + i)));
}
"""
EXP_ARGS = [Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32"), Arg.scalar("n", "i32")]


def test_vectorized_exp_is_within_two_ulp(hctx):
    """vf_exp (common/host_vec.h) against float64 exp: every float32 in [-104, 89] on a fine grid,
    random values, the overflow and underflow edges, subnormal results and the specials."""
    rng = np.random.default_rng(0)
    specials = [0.0, -0.0, 1.0, -1.0, 88.7228, 88.72284, 88.7229, 89.0, 100.0, -87.3, -88.0, -100.0, -103.9,
                -104.0, -200.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30]
    x = np.concatenate([np.linspace(-104, 89, 400_000), rng.uniform(-110, 95, 200_000), specials]).astype(np.float32)
    x = np.concatenate([x, np.zeros((-len(x)) % 16, np.float32)])
    fn = compile_inline(hctx, EXP, EXP_ARGS)
    got = launch(hctx, fn, EXP_ARGS, {"x": x, "y": np.zeros_like(x), "n": len(x)}, (1, 1, 1), (1, 1, 1),
                 outs=["y"])["y"]
    with np.errstate(over="ignore"):
        ref = np.exp(x.astype(np.float64))
    fin = np.isfinite(ref) & (ref <= np.finfo(np.float32).max)
    ulps = np.abs(got[fin] - ref[fin]) / np.spacing(np.maximum(ref[fin], np.finfo(np.float32).tiny).astype(np.float32))
    assert ulps.max() <= 2.0, (float(ulps.max()), x[fin][np.argmax(ulps)])
    assert np.all(got[~fin & ~np.isnan(x)] == np.inf) and np.isnan(got[np.isnan(x)]).all()
    assert got[x == -np.inf][0] == 0.0 and got[x == -200][0] == 0.0


# ------------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize("top_k", [257, 1000, 2990])
def test_host_sampler_radix_top_k(hctx, top_k):
    """top-k beyond the sorted-insertion limit (256) takes the host sampler's radix search. The
    logits are 3000 adjacent float32 values (every ordered key distinct and consecutive, so a cut
    one key off keeps a token too many or too few) in random order, with NaNs; at temperature 1e4
    every kept token is about equally likely, and 64 draws must all be among the top_k largest."""
    from forge.runtime.dispatch import Dispatcher
    from tests.oracles.sample import make_state
    kernel = Dispatcher(hctx.device, hctx.arch).get("sample", block=256)
    dev, rng = hctx.device, np.random.default_rng(top_k)
    logits = rng.permutation((np.float32(1.0).view(np.int32) + np.arange(3000, dtype=np.int32)).view(np.float32))
    logits[rng.choice(3000, 5, replace=False)] = np.nan
    kept = set(np.argsort(-np.nan_to_num(logits, nan=-np.inf), kind="stable")[:top_k].tolist())
    state = make_state(temperature=1e4, top_k=top_k, top_p=1.0, min_p=0.0, seed=top_k)
    bl, bs, bt = dev.alloc(logits.nbytes), dev.alloc(state.nbytes), dev.alloc(4)
    dev.upload(bl, logits), dev.upload(bs, state)
    drawn = []
    for _ in range(64):  # the kernel advances its own draw counter
        kernel(bl, bs, bt, len(logits))
        drawn.append(int(np.frombuffer(dev.download(bt), np.int32)[0]))
    for b in (bl, bs, bt):
        dev.free(b)
    assert set(drawn) <= kept and len(set(drawn)) > 16, (sorted(set(drawn) - kept)[:5], len(set(drawn)))
