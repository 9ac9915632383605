"""The CUDA backend (forge.runtime.cuda). Without a GPU: a missing driver, a failing cuInit or missing
cuda-bindings is one DeviceError line (and the cuda test target a skip), compute capabilities map to
the cubin targets that run on them, and argument packing lays values into the slots cuLaunchKernel
reads. With a GPU (the lent H100): transfers and their bounds, views, the scalar ABI through a real
kernel, dynamic shared memory past 48 KiB, events, and record(): a captured launch list replays with
one cuGraphLaunch and reads what changes between replays from device memory."""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pytest

from forge.codegen.spec import Arg
from forge.errors import DeviceError
from forge.runtime import cuda
from forge.runtime.device import BoundLaunch, Device
from tests.conftest import KernelContext
from tests.runtime.inline import compile_inline, launch


# --------------------------------------------------------------------------- no GPU needed
def _driver_module():
    return pytest.importorskip("cuda.bindings.driver")


def test_missing_driver_is_one_line_device_error(monkeypatch):
    drv = _driver_module()

    def no_lib(flags):
        raise RuntimeError('"cuda" is an NVIDIA driver library and can only be found via system search.\n'
                           "Ensure the NVIDIA display driver is installed.")

    monkeypatch.setattr(drv, "cuInit", no_lib)
    with pytest.raises(DeviceError) as e:
        cuda.CudaDevice()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("no CUDA driver here") and "display driver" in msg


def test_cuinit_failure_names_the_error(monkeypatch):
    drv = _driver_module()
    monkeypatch.setattr(drv, "cuInit", lambda flags: (drv.CUresult.CUDA_ERROR_NO_DEVICE,))
    with pytest.raises(DeviceError, match="cuInit: CUDA_ERROR_NO_DEVICE"):
        cuda.CudaDevice()


def test_missing_cuda_bindings_says_what_to_install(monkeypatch):
    bindings = pytest.importorskip("cuda.bindings")
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", None)
    monkeypatch.delattr(bindings, "driver", raising=False)
    with pytest.raises(DeviceError, match=r"forge-kernels\[cuda\]"):
        cuda.CudaDevice()


def test_cuda_target_without_a_gpu_is_a_skip_with_the_reason(monkeypatch):
    drv = _driver_module()
    monkeypatch.setattr(drv, "cuInit", lambda flags: (drv.CUresult.CUDA_ERROR_NO_DEVICE,))
    from tests.conftest import _make_context
    with pytest.raises(pytest.skip.Exception, match="cuda: cuInit: CUDA_ERROR_NO_DEVICE"):
        _make_context("cuda")


@pytest.mark.parametrize("cc, target", [((9, 0), "sm_90"), ((8, 0), "sm_80"), ((8, 6), "sm_80"), ((8, 9), "sm_80")])
def test_capability_maps_to_the_cubin_target_that_runs(cc, target):
    assert cuda.arch_for_capability(*cc).target == target


@pytest.mark.parametrize("cc", [(7, 5), (10, 0), (12, 0)])
def test_capability_without_a_target_is_refused(cc):
    with pytest.raises(DeviceError, match=f"compute capability {cc[0]}.{cc[1]}"):
        cuda.arch_for_capability(*cc)


ABI_ARGS = [Arg.ptr("p", "f32"), Arg.scalar("a", "i32"), Arg.scalar("b", "u32"), Arg.scalar("c", "f32"),
            Arg.scalar("d", "i64"), Arg.scalar("e", "u64"), Arg.ptr("q", "u8", const=True)]


def test_packer_fills_one_slot_per_argument_and_points_at_each():
    pk = cuda.Packer("k", ABI_ARGS)
    buf = cuda.CudaBuffer(0x7F0000001000, 64)
    addr = pk.pack([buf, -5, 2**32 - 1, 1.5, -(2**40), 2**64 - 1, None])
    ptrs = (ctypes.c_void_p * 7).from_address(addr)
    slots = ctypes.string_at(ptrs[0], 56)
    assert [ptrs[i] - ptrs[0] for i in range(7)] == [8 * i for i in range(7)]
    assert int.from_bytes(slots[0:8], "little") == 0x7F0000001000
    assert int.from_bytes(slots[8:12], "little", signed=True) == -5
    assert int.from_bytes(slots[16:20], "little") == 2**32 - 1
    assert np.frombuffer(slots[24:28], np.float32)[0] == 1.5
    assert int.from_bytes(slots[32:40], "little", signed=True) == -(2**40)
    assert int.from_bytes(slots[40:48], "little") == 2**64 - 1
    assert slots[48:56] == bytes(8)
    # a second pack reuses the same slots (the driver copies them during cuLaunchKernel)
    assert pk.pack([buf, 7, 0, 0.0, 0, 0, buf]) == addr and pk.unpack()[1] == 7


@pytest.mark.parametrize("bad, match", [
    ({0: "not a buffer"}, "argument 'p' is a str, not a CudaBuffer"),
    ({0: cuda.CudaBuffer(None, 4)}, "argument 'p' is a freed buffer"),
    ({1: 2**31}, "argument 'a': 2147483648 does not fit a i32"),
    ({2: -1}, "argument 'b': -1 does not fit a u32"),
])
def test_packer_names_the_argument_that_does_not_fit(bad, match):
    vals = [cuda.CudaBuffer(0x1000, 4), 1, 2, 3.0, 4, 5, None]
    for i, v in bad.items():
        vals[i] = v
    with pytest.raises(DeviceError, match=match):
        cuda.Packer("k", ABI_ARGS).pack(vals)


def test_a_view_of_a_freed_buffer_is_refused_as_an_argument():
    parent = cuda.CudaBuffer(0x2000, 64)
    view = cuda.CudaBuffer(0x2010, 16, parent)
    pk = cuda.Packer("k", [Arg.ptr("p", "u8")])
    pk.pack([view])
    parent.ptr = None
    with pytest.raises(DeviceError, match="freed"):
        pk.pack([view])


# --------------------------------------------------------------------------------- on a GPU
@pytest.fixture(scope="module")
def dev():
    try:
        return cuda.CudaDevice()
    except DeviceError as e:
        pytest.skip(f"cuda: {e}")


@pytest.fixture(scope="module")
def ctx(dev):
    return KernelContext(dev, dev.arch, None)


def test_device_implements_the_protocol_and_reports_its_target(dev):
    assert isinstance(dev, Device)
    assert dev.arch.vendor == "nvidia" and dev.sm_count > 0 and dev.name == "cuda:0"


def test_transfers_at_offsets_views_and_bounds(dev):
    rng = np.random.default_rng(0)
    payload = rng.integers(0, 256, 5000, dtype=np.uint8)
    a, b = dev.alloc(5100), dev.alloc(5100)
    try:
        dev.memset(a, 0xAB)
        dev.upload(a, payload, offset=37)
        got = dev.download(a)
        assert got[:37] == b"\xab" * 37 and got[37:5037] == payload.tobytes() and got[5037:] == b"\xab" * 63
        dev.memset(b, 7)
        dev.copy(b, a, 100, dst_offset=3, src_offset=37)
        assert dev.download(b, 100, offset=3) == payload[:100].tobytes()
        v = dev.view(b, 1000, 16)
        dev.upload(v, np.arange(16, dtype=np.uint8))
        assert dev.download(b, 18, offset=999) == b"\x07" + bytes(range(16)) + b"\x07"
        s = dev.create_stream()
        dev.memset(v, 9, stream=s)
        assert dev.download(v, stream=s) == b"\x09" * 16
        with pytest.raises(DeviceError, match="outside a buffer of 16 bytes"):
            dev.download(v, 8, offset=9)
        with pytest.raises(DeviceError, match="outside a buffer of 5100 bytes"):
            dev.upload(a, payload, offset=101)
        with pytest.raises(DeviceError, match="a view is not freed"):
            dev.free(v)
    finally:
        dev.free(a), dev.free(b)
    with pytest.raises(DeviceError, match="freed"):
        dev.download(v)
    with pytest.raises(DeviceError, match="freed twice"):
        dev.free(a)


ABI_BODY = """
KERNEL(32) {{ kernel.symbol }}({{ kernel.signature }}) {
  if (tid_x() == 0) {
    ((i64*)p)[0] = (i64)a; ((u64*)p)[1] = (u64)b; p[4] = c; ((i64*)p)[3] = d; ((u64*)p)[4] = e;
    ((u64*)p)[5] = (u64)q[0] + (u64)q[15] * 256u;
  }
}
"""


def test_scalar_arguments_reach_the_kernel_exactly(dev, ctx):
    fn = compile_inline(ctx, ABI_BODY, ABI_ARGS)
    q = np.arange(16, dtype=np.uint8) * 3
    out = launch(ctx, fn, ABI_ARGS, {"p": np.zeros(12, np.float32), "a": -123456789, "b": 4000000000,
                                     "c": -2.75, "d": -(2**40) - 3, "e": 2**63 + 5, "q": q},
                 (1, 1, 1), (32, 1, 1), outs=["p"])["p"]
    w = out.view(np.uint64)
    assert w[0].view(np.int64) == -123456789 and w[1] == 4000000000 and out[4] == -2.75
    assert w[3].view(np.int64) == -(2**40) - 3 and w[4] == 2**63 + 5 and w[5] == 0 + 45 * 256


DYN_BODY = """
KERNEL(256) {{ kernel.symbol }}({{ kernel.signature }}) {
  DYN_SHARED(float, buf);
  const u32 n = (u32)n_floats;
  for (u32 i = tid_x(); i < n; i += bdim_x()) buf[i] = x[i] * 2.0f;
  sync_threads();
  for (u32 i = tid_x(); i < n; i += bdim_x()) y[i] = buf[n - 1 - i];
}
"""
DYN_ARGS = [Arg.ptr("x", "f32", const=True), Arg.ptr("y", "f32"), Arg.scalar("n_floats", "i32")]


def test_dynamic_shared_memory_past_48_kib(dev, ctx):
    n = 25000  # 100 KB
    fn = compile_inline(ctx, DYN_BODY, DYN_ARGS)
    x = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    y = launch(ctx, fn, DYN_ARGS, {"x": x, "y": np.zeros(n, np.float32), "n_floats": n}, (1, 1, 1), (256, 1, 1),
               shared=4 * n, outs=["y"])["y"]
    np.testing.assert_array_equal(y, (x * 2)[::-1])


BUMP_BODY = """
KERNEL(128) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 n = (u32)count[0];
  for (u32 i = bid_x() * bdim_x() + tid_x(); i < n; i += gdim_x() * bdim_x()) acc[i] = acc[i] * 2.0f + add;
}
"""
BUMP_ARGS = [Arg.ptr("acc", "f32"), Arg.ptr("count", "i32", const=True), Arg.scalar("add", "f32")]


def test_record_replays_the_launch_list_in_order_and_reads_device_values(dev, ctx):
    fn = compile_inline(ctx, BUMP_BODY, BUMP_ARGS)
    acc, count = dev.alloc(4 * 1000), dev.alloc(4)
    try:
        dev.upload(acc, np.zeros(1000, np.float32))
        dev.upload(count, np.array([1000], np.int32))
        steps = [BoundLaunch(fn, (4, 1, 1), (128, 1, 1), 0, (acc, count, a), tuple(BUMP_ARGS)) for a in (1.0, 3.0)]
        graph = dev.record(steps)
        assert not np.any(np.frombuffer(dev.download(acc), np.float32))  # nothing ran during capture
        graph.run()
        dev.synchronize()
        assert np.all(np.frombuffer(dev.download(acc), np.float32) == 5.0)  # (0*2+1)*2+3: order kept
        dev.upload(count, np.array([10], np.int32))  # changes between replays live in device memory
        s = dev.create_stream()
        graph.run(s)
        dev.synchronize(s)
        got = np.frombuffer(dev.download(acc), np.float32)
        assert np.all(got[:10] == 5.0 * 4 + 2 + 3) and np.all(got[10:] == 5.0)
        graph.close()
        with pytest.raises(DeviceError, match="closed"):
            graph.run()
    finally:
        dev.free(acc), dev.free(count)


def test_recorded_chains_wait_for_their_predecessor_under_pdl(dev, ctx):
    """Each kernel of a recorded list reads what the one before wrote: with programmatic dependent
    launch (on from Hopper) the next kernel's blocks start early and must wait at their entry
    (prelude_cuda.h). 300 dependent steps over 64 blocks give a race many chances to show."""
    body = """
KERNEL(128) {{ kernel.symbol }}({{ kernel.signature }}) {
  const u32 i = bid_x() * bdim_x() + tid_x();
  dst[i] = src[(i + 128u) % (u32)n] + 1.0f;  // another block's value from the step before
}
"""
    args = [Arg.ptr("src", "f32", const=True), Arg.ptr("dst", "f32"), Arg.scalar("n", "i32")]
    fn = compile_inline(ctx, body, args)
    n = 64 * 128
    a, b = dev.alloc(4 * n), dev.alloc(4 * n)
    try:
        dev.upload(a, np.zeros(n, np.float32))
        steps = [BoundLaunch(fn, (64, 1, 1), (128, 1, 1), 0, pair + (n,), tuple(args)) for pair in [(a, b), (b, a)]]
        graph = dev.record(steps * 150)
        assert dev.pdl == (dev.capability >= (9, 0))  # the driver took the programmatic launches
        for _ in range(3):
            graph.run()
        dev.synchronize()
        # 900 everywhere only if every step read all of the step before's writes
        got = np.frombuffer(dev.download(a), np.float32)
        assert np.all(got == 900.0), (got.min(), got.max())
        graph.close()
    finally:
        dev.free(a), dev.free(b)


def test_a_failing_launch_inside_record_leaves_the_stream_usable(dev, ctx):
    fn = compile_inline(ctx, BUMP_BODY, BUMP_ARGS)
    acc, count = dev.alloc(16), dev.alloc(4)
    try:
        dev.upload(count, np.array([4], np.int32))
        bad = BoundLaunch(fn, (1, 1, 1), (128, 1, 1), 0, (acc, "oops", 1.0), tuple(BUMP_ARGS))
        with pytest.raises(DeviceError, match="argument 'count'"):
            dev.record([bad])
        good = BoundLaunch(fn, (1, 1, 1), (128, 1, 1), 0, (acc, count, 1.0), tuple(BUMP_ARGS))
        dev.upload(acc, np.zeros(4, np.float32))
        dev.record([good]).run()
        dev.synchronize()
        assert np.all(np.frombuffer(dev.download(acc), np.float32) == 1.0)
    finally:
        dev.free(acc), dev.free(count)


def test_events_time_device_work(dev, ctx):
    fn = compile_inline(ctx, BUMP_BODY, BUMP_ARGS)
    n = 1 << 22
    acc, count = dev.alloc(4 * n), dev.alloc(4)
    try:
        dev.memset(acc, 0)
        dev.upload(count, np.array([n], np.int32))
        e0 = dev.record_event()
        for _ in range(10):
            dev.launch(fn, (1024, 1, 1), (128, 1, 1), 0, (acc, count, 1.0), BUMP_ARGS)
        e1 = dev.record_event()
        t = dev.elapsed(e0, e1)
        assert 0 < t < 10  # 10 passes over 16 MB: microseconds to milliseconds
        dev.destroy_event(e0), dev.destroy_event(e1)
    finally:
        dev.free(acc), dev.free(count)
