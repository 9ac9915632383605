"""The HIP backend. No AMD GPU exists on this project's machines, so:
- the failure path is tested for real: on this machine hip_status() and HipDevice() say in one line
  what is missing (hip-python, the HIP runtime, or a device), and the kernel tests' "hip" target
  skips with that line;
- everything HipDevice hands the HIP runtime is tested against FakeHip, a recording stand-in for
  hip-python's `hip` module (same call signatures and result tuples as hip-python 10's docstrings)
  over host memory, with real gfx1100 / gfx950 code objects from the portable clang: the kernarg
  segment each launch passes (read back at the offsets of the code object's own metadata), the
  `extra` array, the refusals that must come before any HIP call, stream capture into a graph and
  its fallback;
- tests marked `gpu` run on a real device when one is present (`pytest --backend hip` runs the
  kernel suite there as well)."""

from __future__ import annotations

import ctypes
import enum
import importlib.util
import struct
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from forge.arch import get_arch
from forge.codegen.build import compile_variant
from forge.codegen.codeobject import read_code_object
from forge.codegen.spec import get_spec
from forge.codegen.store import Store
from forge.errors import DeviceError, ToolchainError
from forge.runtime.device import BoundLaunch, PythonReplay
from forge.runtime.dispatch import Dispatcher
from forge.runtime.hip import HipDevice, HipGraph, hip_available, hip_status


# ------------------------------------------------------------------------------- the fake runtime
class Err(enum.IntEnum):
    hipSuccess = 0
    hipErrorInvalidValue = 1
    hipErrorNoDevice = 100
    hipErrorNotFound = 500
    hipErrorLaunchFailure = 719
    hipErrorStreamCaptureUnsupported = 900


class FakeHip:
    """hip-python's `hip` module as far as HipDevice uses it, over host memory. It checks what it is
    handed (device ranges, the `extra` array, code objects) and records every launch with its
    kernarg bytes; kernels are not run."""

    hipError_t = Err
    hipStreamCaptureMode = enum.IntEnum("hipStreamCaptureMode", {"hipStreamCaptureModeGlobal": 0,
                                                                 "hipStreamCaptureModeThreadLocal": 1,
                                                                 "hipStreamCaptureModeRelaxed": 2})

    def __init__(self, gfx: str = "gfx1100", warp: int = 32, devices: int = 1):
        self.gfx, self.warp, self.devices = gfx, warp, devices
        self.mem: dict[int, ctypes.Array] = {}
        self.launches: list[SimpleNamespace] = []  # what ran, in order
        self.calls: list[str] = []
        self.capturing: dict = {}  # stream -> launches captured on it
        self.fail: dict[str, Err] = {}  # call name -> error it returns
        self._streams = 0

    def _ret(self, name: str, *values):
        self.calls.append(name)
        return (self.fail.get(name, Err.hipSuccess), *values)

    def _dev(self, addr: int, n: int) -> None:
        for base, buf in self.mem.items():
            if base <= addr and addr + n <= base + len(buf):
                return
        raise AssertionError(f"device range [{addr:#x}, +{n}) is outside every allocation")

    # -- device and errors
    def hipInit(self, flags):
        return self._ret("hipInit")

    def hipGetDeviceCount(self):
        return self._ret("hipGetDeviceCount", self.devices)

    def hipSetDevice(self, i):
        return self._ret("hipSetDevice")

    def hipGetDeviceProperties(self, i):
        props = SimpleNamespace(gcnArchName=self.gfx.encode() + b"\0", name=b"Fake Radeon\0", warpSize=self.warp)
        return self._ret("hipGetDeviceProperties", props)

    def hipRuntimeGetVersion(self):
        return self._ret("hipRuntimeGetVersion", 60443483)

    def hipGetErrorString(self, err):
        return Err.hipSuccess, f"fake {Err(err).name}".encode()

    # -- memory
    def hipMalloc(self, n):
        buf = ctypes.create_string_buffer(n)
        self.mem[ctypes.addressof(buf)] = buf
        return self._ret("hipMalloc", ctypes.addressof(buf))

    def hipFree(self, ptr):
        assert ptr in self.mem, "hipFree of a pointer hipMalloc did not return"
        del self.mem[ptr]
        return self._ret("hipFree")

    def hipMemcpyHtoD(self, dst, src, n):
        self._dev(dst, n)
        ctypes.memmove(dst, src, n)
        return self._ret("hipMemcpyHtoD")

    def hipMemcpyDtoH(self, dst, src, n):
        self._dev(src, n)
        ctypes.memmove(dst, src, n)
        return self._ret("hipMemcpyDtoH")

    def hipMemcpyDtoD(self, dst, src, n):
        self._dev(dst, n), self._dev(src, n)
        ctypes.memmove(dst, src, n)
        return self._ret("hipMemcpyDtoD")

    def hipMemsetD8(self, dst, value, n):
        self._dev(dst, n)
        ctypes.memset(dst, value, n)
        return self._ret("hipMemsetD8")

    def hipMemcpyHtoDAsync(self, dst, src, n, stream):
        return self.hipMemcpyHtoD(dst, src, n)

    def hipMemcpyDtoHAsync(self, dst, src, n, stream):
        return self.hipMemcpyDtoH(dst, src, n)

    def hipMemcpyDtoDAsync(self, dst, src, n, stream):
        return self.hipMemcpyDtoD(dst, src, n)

    def hipMemsetD8Async(self, dst, value, n, stream):
        return self.hipMemsetD8(dst, value, n)

    # -- ordering
    def hipStreamCreate(self):
        self._streams += 1
        return self._ret("hipStreamCreate", f"stream{self._streams}")

    def hipStreamDestroy(self, s):
        return self._ret("hipStreamDestroy")

    def hipStreamSynchronize(self, s):
        return self._ret("hipStreamSynchronize")

    def hipDeviceSynchronize(self):
        return self._ret("hipDeviceSynchronize")

    # -- code
    def hipModuleLoadData(self, image):
        code = read_code_object(image)  # a real code object, or the test fails here
        return self._ret("hipModuleLoadData", SimpleNamespace(code=code))

    def hipModuleGetFunction(self, module, name):
        if not any(k.name == name.decode() for k in module.code.kernels):
            return Err.hipErrorNotFound, None
        return self._ret("hipModuleGetFunction", SimpleNamespace(name=name.decode(), module=module))

    def hipModuleLaunchKernel(self, f, gx, gy, gz, bx, by, bz, shared, stream, kernelParams, extra):
        assert kernelParams is None, "kernelParams and extra are exclusive"
        ex = (ctypes.c_void_p * 5).from_address(extra)
        assert (ex[0], ex[2], ex[4]) == (1, 2, 3), "extra must be BUFFER_POINTER, ptr, BUFFER_SIZE, &size, END"
        size = ctypes.c_size_t.from_address(ex[3]).value
        rec = SimpleNamespace(symbol=f.name, grid=(gx, gy, gz), block=(bx, by, bz), shared=shared, stream=stream,
                              kernarg=ctypes.string_at(ex[1], size))
        err = self._ret("hipModuleLaunchKernel")[0]
        if err == Err.hipSuccess:
            (self.capturing[stream] if stream in self.capturing else self.launches).append(rec)
        return (err,)

    # -- graphs
    def hipStreamBeginCapture(self, s, mode):
        assert mode == self.hipStreamCaptureMode.hipStreamCaptureModeThreadLocal
        err = self._ret("hipStreamBeginCapture")
        if err[0] == Err.hipSuccess:
            self.capturing[s] = []
        return err

    def hipStreamEndCapture(self, s):
        return self._ret("hipStreamEndCapture", SimpleNamespace(launches=self.capturing.pop(s)))

    def hipGraphInstantiate(self, graph, size):
        return self._ret("hipGraphInstantiate", SimpleNamespace(launches=graph.launches), None, b"")

    def hipGraphLaunch(self, exe, stream):
        self.launches.extend(exe.launches)
        return self._ret("hipGraphLaunch")

    def hipGraphExecDestroy(self, exe):
        return self._ret("hipGraphExecDestroy")

    def hipGraphDestroy(self, graph):
        return self._ret("hipGraphDestroy")


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("hip-store"))


def _compiled(store, arch_name: str, family: str, **params):
    arch = get_arch(arch_name)
    v = get_spec(family).variant(arch, **params)
    try:
        entry, _ = compile_variant(v, arch, store)
    except ToolchainError as e:
        pytest.skip(f"no AMD compiler here: {e}")
    return v, entry.read_object()


RMS = dict(family="rmsnorm", dtype="f32", block=256)  # reads hidden arguments (block size)
ADD = dict(family="elementwise", op="add", dtype="f32", block=256)  # reads none


@pytest.fixture
def fake():
    return FakeHip()


@pytest.fixture
def dev(fake):
    return HipDevice(api=fake)


# -------------------------------------------------------------------- the failure path, for real
def test_this_machine_says_in_one_line_why_there_is_no_hip():
    ok, line = hip_available()
    if ok:
        pytest.skip(f"a HIP device is present: {line}")
    assert line == hip_status() and "\n" not in line and line.startswith("hip: unavailable: ")
    if importlib.util.find_spec("hip") is None:
        assert "hip-python is not installed" in line and "forge-kernels[amd]" in line
    else:  # hip-python imports without ROCm; its first call cannot load the runtime, or finds no GPU
        assert "no HIP runtime (" in line or "no usable AMD GPU" in line or "no AMD GPU visible" in line, line
    with pytest.raises(DeviceError) as e:
        HipDevice()
    assert str(e.value) in line and "\n" not in str(e.value)


def test_missing_hip_python_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "hip", None)  # import hip now raises ImportError
    line = hip_status()
    assert line.startswith("hip: unavailable: hip-python is not installed") and "forge-kernels[amd]" in line
    with pytest.raises(DeviceError, match="hip-python is not installed"):
        HipDevice()


def test_kernel_tests_hip_target_skips_with_the_reason():
    from tests.conftest import _make_context
    if hip_available()[0]:
        pytest.skip("a HIP device is present")
    with pytest.raises(pytest.skip.Exception, match="hip: "):
        _make_context("hip")


def test_no_device_and_unknown_processor_are_one_line():
    assert hip_status(FakeHip(devices=0)) == "hip: no AMD GPU visible to the HIP runtime"
    with pytest.raises(DeviceError, match=r"no HIP device 0 \(0 visible\)"):
        HipDevice(api=FakeHip(devices=0))
    with pytest.raises(DeviceError, match=r"no forge target for AMD processor 'gfx90a:sramecc\+:xnack-' \(known: gfx1100"):
        HipDevice(api=FakeHip(gfx="gfx90a:sramecc+:xnack-"))
    fake = FakeHip()
    fake.fail["hipInit"] = Err.hipErrorNoDevice
    assert hip_status(fake) == "hip: unavailable: hipInit: hipErrorNoDevice (fake hipErrorNoDevice) (no usable AMD GPU)"


def test_status_names_devices_and_their_forge_arch():
    assert hip_status(FakeHip(gfx="gfx942:sramecc+:xnack-", warp=64)) == \
        "hip: HIP runtime 60443483; 0: Fake Radeon gfx942:sramecc+:xnack- (gfx942)"
    d = HipDevice(api=FakeHip(gfx="gfx950", warp=64))
    assert d.arch.name == d.arch_name == "gfx950" and d.name == "hip:0"


# ------------------------------------------------------------------------- what HIP is handed
def _explicit(kernarg: bytes, info, args) -> list:
    """The explicit values in a segment, read at the code object's own offsets."""
    codes = {"ptr": "Q", "i32": "i", "u32": "I", "f32": "f", "i64": "q", "u64": "Q"}
    return [struct.unpack_from("<" + codes[a.kind], kernarg, m.offset)[0] for a, m in zip(args, info.explicit_args)]


def test_launch_hands_hip_the_segment_the_code_object_reads(store, dev, fake):
    v, obj = _compiled(store, "gfx1100", **RMS)
    info = read_code_object(obj).kernel(v.symbol)
    assert info.hidden_args  # this kernel reads hidden arguments: they must be where it reads them
    fn = dev.load_module(obj).function(v.symbol)
    x, w, y = dev.alloc(4 * 999), dev.alloc(4 * 999), dev.alloc(4 * 999 * 3)
    g = v.launch(dev.arch, rows=3)
    dev.launch(fn, g.grid, g.block, g.shared_bytes, [x, w, y, 999, 1e-5], v.args)
    (rec,) = fake.launches
    assert rec.symbol == v.symbol and rec.grid == g.grid and rec.block == g.block and rec.stream is None
    assert len(rec.kernarg) == info.kernarg_segment_size
    assert _explicit(rec.kernarg, info, v.args) == [x.ptr, w.ptr, y.ptr, 999, pytest.approx(1e-5)]
    hidden = {a.value_kind: struct.unpack_from({2: "<H", 4: "<I", 8: "<Q"}[a.size], rec.kernarg, a.offset)[0]
              for a in info.hidden_args}
    assert [hidden[f"hidden_block_count_{c}"] for c in "xyz"] == list(g.grid)
    assert [hidden[f"hidden_group_size_{c}"] for c in "xyz"] == list(g.block)
    assert hidden["hidden_remainder_x"] == 0 and hidden["hidden_grid_dims"] == 3


def test_refusals_come_before_any_hip_call(store, dev, fake):
    v, obj = _compiled(store, "gfx1100", **ADD)
    fn = dev.load_module(obj).function(v.symbol)
    a = dev.alloc(64)
    bad = [((1, 1, 1), (512, 1, 1), 0, "512 threads, the kernel allows 256"),
           ((1, 1, 1), (256, 1, 1), 1 << 20, "LDS 0 static \\+ 1048576 dynamic"),
           ((0, 1, 1), (256, 1, 1), 0, "at least 1")]
    for grid, block, shared, msg in bad:
        with pytest.raises(DeviceError, match=f"refusing to launch {v.symbol}: .*{msg}"):
            dev.launch(fn, grid, block, shared, [a, a, a, 16], v.args)
    freed = dev.alloc(64)
    dev.free(freed)
    with pytest.raises(DeviceError, match=f"{v.symbol}: argument 'b' is a freed buffer"):
        dev.launch(fn, (1, 1, 1), (256, 1, 1), 0, [a, freed, a, 16], v.args)
    with pytest.raises(DeviceError, match=f"{v.symbol}: argument 'n': 4294967296 does not fit a i32"):
        dev.launch(fn, (1, 1, 1), (256, 1, 1), 0, [a, a, a, 1 << 32], v.args)
    assert fake.launches == [] and "hipModuleLaunchKernel" not in fake.calls


def test_packing_that_disagrees_with_the_code_object_is_refused(store, dev, fake):
    v, obj = _compiled(store, "gfx1100", family="attn_combine", block=128)
    fn = dev.load_module(obj).function(v.symbol)
    args = list(v.args)
    i, j = [n for n, a in enumerate(args) if a.kind == "i32"][:2]
    args[i], args[j] = args[j], args[i]
    a = dev.alloc(64)
    with pytest.raises(DeviceError, match=f"refusing to launch {v.symbol}: .*argument {args[i].name!r}.*order"):
        dev.launch(fn, (1, 1, 1), (128, 1, 1), 0, [a, a, a, 1, 1, 1], args)
    assert fake.launches == []


def test_code_objects_for_another_processor_or_over_the_arch_are_refused(store, fake):
    dev = HipDevice(api=fake)
    _, obj950 = _compiled(store, "gfx950", **ADD)
    with pytest.raises(DeviceError, match="code object for gfx950 .* cannot run on Fake Radeon \\(gfx1100"):
        dev.load_module(obj950)
    assert "hipModuleLoadData" not in fake.calls
    v, obj = _compiled(store, "gfx1100", **ADD)
    module = dev.load_module(obj)
    with pytest.raises(DeviceError, match="no kernel 'nope'"):
        module.function("nope")
    dev.arch = replace(dev.arch, max_vgprs=1)  # a part with fewer registers than the kernel uses
    with pytest.raises(DeviceError, match=f"refusing {v.symbol} on gfx1100: {v.symbol}: vgpr_count \\d+ exceeds"):
        module.function(v.symbol)


def test_launch_failure_is_one_line_naming_the_kernel(store, dev, fake):
    v, obj = _compiled(store, "gfx1100", **ADD)
    fn = dev.load_module(obj).function(v.symbol)
    a = dev.alloc(64)
    fake.fail["hipModuleLaunchKernel"] = Err.hipErrorLaunchFailure
    with pytest.raises(DeviceError, match=f"^{v.symbol}: launch of grid \\(1, 1, 1\\) block \\(256, 1, 1\\) shared 0 "
                                          f"failed: hipErrorLaunchFailure \\(fake hipErrorLaunchFailure\\)$"):
        dev.launch(fn, (1, 1, 1), (256, 1, 1), 0, [a, a, a, 16], v.args)


def test_memory_views_and_transfers(dev, fake):
    buf = dev.alloc(64)
    dev.upload(buf, np.arange(16, dtype=np.float32))
    v = dev.view(buf, 16, 32)
    assert np.frombuffer(dev.download(v), np.float32).tolist() == [4, 5, 6, 7, 8, 9, 10, 11]
    s = dev.create_stream()
    dev.memset(v, 0, 8, offset=8, stream=s)
    other = dev.alloc(64)
    dev.copy(other, buf, 64, stream=s)
    dev.upload(other, b"\x01\x02", offset=62, stream=s)
    got = dev.download(other, stream=s)
    assert np.frombuffer(got[:60], np.float32).tolist() == [0, 1, 2, 3, 4, 5, 0, 0, 8, 9, 10, 11, 12, 13, 14]
    assert got[62:] == b"\x01\x02" and "hipStreamSynchronize" in fake.calls
    with pytest.raises(DeviceError, match="outside a buffer of 32 bytes"):
        dev.download(v, 8, offset=28)
    with pytest.raises(DeviceError, match="a view is not freed"):
        dev.free(v)
    dev.free(buf)
    with pytest.raises(DeviceError, match="freed"):
        dev.download(v)


def test_dispatcher_drives_the_device_from_the_store(store, dev, fake):
    _compiled(store, "gfx1100", **ADD)  # skips where no AMD compiler is installed
    k = Dispatcher(dev, dev.arch, store).get("elementwise", op="add", dtype="f32", block=256)
    a = dev.alloc(4 * 1000)
    k(a, a, a, 1000, n=1000)
    (rec,) = fake.launches
    assert rec.symbol == k.symbol and rec.grid == (4, 1, 1)


# ----------------------------------------------------------------------------------- launch lists
def _bound(store, dev, n: int = 2):
    v, obj = _compiled(store, "gfx1100", **ADD)
    fn = dev.load_module(obj).function(v.symbol)
    a = dev.alloc(4 * 512)
    return [BoundLaunch(fn, (i + 1, 1, 1), (256, 1, 1), 0, (a, a, a, 256 * (i + 1)), tuple(v.args)) for i in range(n)]


def test_record_captures_a_hip_graph_replayed_with_one_launch(store, dev, fake):
    launches = _bound(store, dev)
    graph = dev.record(launches)
    assert isinstance(graph, HipGraph) and graph.reason is None
    assert fake.launches == []  # nothing runs during the capture
    assert [c for c in fake.calls if "Capture" in c or "Graph" in c] == \
        ["hipStreamBeginCapture", "hipStreamEndCapture", "hipGraphInstantiate"]
    graph.run()
    graph.run(dev.create_stream())
    assert [r.grid for r in fake.launches] == [(1, 1, 1), (2, 1, 1)] * 2
    assert struct.unpack_from("<i", fake.launches[1].kernarg, 24) == (512,)
    assert fake.calls.count("hipGraphLaunch") == 2
    graph.close()
    with pytest.raises(DeviceError, match="closed"):
        graph.run()


def test_record_falls_back_to_python_replay_when_capture_is_refused(store, dev, fake):
    launches = _bound(store, dev)
    fake.fail["hipStreamBeginCapture"] = Err.hipErrorStreamCaptureUnsupported
    replay = dev.record(launches)
    assert isinstance(replay, PythonReplay) and "hipErrorStreamCaptureUnsupported" in replay.reason
    replay.run()
    assert [r.grid for r in fake.launches] == [(1, 1, 1), (2, 1, 1)]


def test_record_refuses_a_bad_launch_instead_of_falling_back(store, dev, fake):
    launches = _bound(store, dev)
    launches[1] = launches[1]._replace(block=(1024, 1, 1))
    with pytest.raises(DeviceError, match="refusing to record .*1024 threads"):
        dev.record(launches)
    assert "hipStreamBeginCapture" not in fake.calls


# ------------------------------------------------------------------------------- real hardware
@pytest.mark.gpu
def test_a_kernel_runs_on_a_real_amd_gpu(store):
    ok, line = hip_available()
    if not ok:
        pytest.skip(line)
    dev = HipDevice()
    k = Dispatcher(dev, dev.arch, store).get("elementwise", op="add", dtype="f32", block=256)
    a, b = np.arange(1000, dtype=np.float32), np.full(1000, 0.5, np.float32)
    bufs = [dev.alloc(4000) for _ in range(3)]
    dev.upload(bufs[0], a), dev.upload(bufs[1], b)
    k(bufs[0], bufs[1], bufs[2], 1000, n=1000)
    dev.synchronize()
    np.testing.assert_array_equal(np.frombuffer(dev.download(bufs[2]), np.float32), a + b)
