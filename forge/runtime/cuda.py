"""The CUDA backend: the Device protocol on the CUDA driver API (cuda-bindings), for NVIDIA GPUs.

    dev = CudaDevice()                 # device 0; dev.arch is the forge Arch of its cubin target
    kernels = Dispatcher(dev, dev.arch)

Kernels are cubin from the store (NVRTC, sm_80/sm_90), loaded with cuModuleLoadData. A launch packs
its arguments with one struct.pack_into into a buffer built once per function (8-byte slots and an
array of pointers to them: cuLaunchKernel's kernelParams), so a warm launch is one pack and one
driver call. `record(launches)` captures a fixed launch list into a CUDA graph (stream capture) that
`.run(stream)` replays with one cuGraphLaunch.

Ordering: stream=None is the legacy default stream; streams from `create_stream()` are blocking
streams, so they are ordered against it (transfers without a stream wait for earlier launches on
every stream). Errors are DeviceError with one line naming the call, the kernel and the driver's
error name. A fault inside a kernel is reported at the next synchronizing call and leaves the
context unusable, as CUDA always does.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
import warnings
from typing import Any, Sequence

import numpy as np

from ..arch import ARCHS, Arch
from ..errors import DeviceError
from .device import check_range


class PdlRefused(DeviceError):
    """The driver refused a programmatic-dependent launch (record() then captures without)."""

_SLOT = {"ptr": "Q", "f32": "f4x", "i32": "i4x", "u32": "I4x", "i64": "q", "u64": "Q"}
_STATIC_SMEM = 48 * 1024  # a kernel may use more dynamic shared memory only after cuFuncSetAttribute


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError as e:
        raise DeviceError(f"the CUDA backend needs cuda-bindings (pip install 'forge-kernels[cuda]'): {e}") from None
    return driver


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _err_name(drv, err) -> str:
    name = getattr(err, "name", str(err))
    try:
        res, s = drv.cuGetErrorString(err)
        if res == drv.CUresult.CUDA_SUCCESS and s:
            return f"{name} ({s.decode() if isinstance(s, bytes) else s})"
    except Exception:  # the description is best effort (it needs the driver library itself)
        pass
    return name


def _check(drv, res, what: str):
    """The values of a cuda-bindings result tuple; DeviceError naming `what` when its status fails."""
    err = res[0]
    if err != drv.CUresult.CUDA_SUCCESS:
        raise DeviceError(f"{what}: {_err_name(drv, err)}")
    return res[1] if len(res) == 2 else res[1:]


def arch_for_capability(major: int, minor: int) -> Arch:
    """The forge Arch whose cubin runs on a device of compute capability major.minor: the exact
    target, else the newest known one of the same major with a lower minor (SASS runs on later
    minors of its major); DeviceError for other majors."""
    best = None
    for a in ARCHS.values():
        if a.vendor != "nvidia" or not a.target.startswith("sm_"):
            continue
        mj, mn = int(a.target[3:-1]), int(a.target[-1])
        if mj == major and mn <= minor and (best is None or mn > best[0]):
            best = (mn, a)
    if best is None:
        known = ", ".join(a.target for a in ARCHS.values() if a.vendor == "nvidia")
        raise DeviceError(f"no forge target runs on compute capability {major}.{minor} (known: {known})")
    return best[1]


class CudaBuffer:
    """Device memory: `ptr` (an int device address) is None once freed; a view has a parent."""

    __slots__ = ("ptr", "nbytes", "parent")

    def __init__(self, ptr: int, nbytes: int, parent: "CudaBuffer | None" = None):
        self.ptr, self.nbytes, self.parent = ptr, nbytes, parent

    @property
    def alive(self) -> bool:
        return self.ptr is not None and (self.parent is None or self.parent.alive)

    def __repr__(self) -> str:
        return f"<CudaBuffer {self.nbytes} B at {self.ptr:#x}>" if self.ptr is not None else "<CudaBuffer freed>"


class CudaStream:
    __slots__ = ("handle",)

    def __init__(self, handle):
        self.handle = handle


class CudaEvent:
    __slots__ = ("handle",)

    def __init__(self, handle):
        self.handle = handle


class Packer:
    """Kernel arguments in one buffer of 8-byte slots (scalars in the low bytes) plus the array of
    pointers to the slots that cuLaunchKernel takes as kernelParams. Built once per function; each
    thread that launches it gets its own pair, since the driver copies the values during the call."""

    def __init__(self, symbol: str, args: Sequence[Any]):
        self.symbol, self.args = symbol, list(args)
        self.struct = struct.Struct("<" + "".join(_SLOT[a.kind] for a in self.args))
        self.ptrs = tuple(i for i, a in enumerate(self.args) if a.is_ptr)
        self.nargs = len(self.args)
        self._local = threading.local()

    def _buffers(self):
        slots = ctypes.create_string_buffer(max(8, self.struct.size))
        base = ctypes.addressof(slots)
        params = (ctypes.c_void_p * max(1, self.nargs))(*[base + 8 * i for i in range(self.nargs)])
        self._local.bufs = (slots, params, ctypes.addressof(params))
        return self._local.bufs

    def pack(self, values) -> int:
        """Pack `values` (device buffers for pointers, numbers for scalars); returns the address of
        the kernelParams array. DeviceError naming the argument when a value does not fit."""
        if len(values) != self.nargs:
            raise DeviceError(f"{self.symbol}: {self.nargs} arguments expected, {len(values)} given")
        vals = list(values)
        for i in self.ptrs:
            v = vals[i]
            if type(v) is CudaBuffer and v.ptr is not None and (v.parent is None or v.parent.alive):
                vals[i] = v.ptr
            elif v is None:
                vals[i] = 0
            else:
                what = "a freed buffer" if type(v) is CudaBuffer else f"a {type(v).__name__}, not a CudaBuffer"
                raise DeviceError(f"{self.symbol}: argument {self.args[i].name!r} is {what}")
        bufs = getattr(self._local, "bufs", None) or self._buffers()
        try:
            self.struct.pack_into(bufs[0], 0, *vals)
        except struct.error:
            for a, v in zip(self.args, vals):
                try:
                    struct.pack("<" + _SLOT[a.kind], v)
                except struct.error:
                    raise DeviceError(f"{self.symbol}: argument {a.name!r}: {v!r} does not fit a {a.kind} "
                                      f"argument") from None
            raise
        return bufs[2]

    def unpack(self) -> tuple:
        """The values last packed by this thread (for tests)."""
        return self.struct.unpack_from(self._local.bufs[0], 0)


class CudaFunction:
    __slots__ = ("symbol", "handle", "module", "packer", "dyn_smem")

    def __init__(self, symbol: str, handle, module: "CudaModule"):
        self.symbol, self.handle, self.module = symbol, handle, module
        self.packer = None
        self.dyn_smem = _STATIC_SMEM

    def __repr__(self) -> str:
        return f"<CudaFunction {self.symbol}>"


class CudaModule:
    def __init__(self, dev: "CudaDevice", handle):
        self.dev, self.handle = dev, handle
        self._functions: dict[str, CudaFunction] = {}

    def function(self, symbol: str) -> CudaFunction:
        fn = self._functions.get(symbol)
        if fn is None:
            drv = self.dev._drv
            err, h = drv.cuModuleGetFunction(self.handle, symbol.encode())
            if err != drv.CUresult.CUDA_SUCCESS:
                raise DeviceError(f"module has no kernel {symbol!r}: {_err_name(drv, err)}")
            fn = self._functions[symbol] = CudaFunction(symbol, h, self)
        return fn

    def resources(self, symbol: str) -> dict:
        """What the driver says the loaded kernel uses: registers per thread, local (stack) bytes per
        thread, static shared bytes."""
        drv, fn = self.dev._drv, self.function(symbol)
        attr = drv.CUfunction_attribute
        get = lambda a: _check(drv, drv.cuFuncGetAttribute(a, fn.handle), f"cuFuncGetAttribute({symbol})")
        return {"registers": get(attr.CU_FUNC_ATTRIBUTE_NUM_REGS), "local": get(attr.CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES),
                "smem": get(attr.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)}


class CudaGraph:
    """A captured launch list: `run(stream)` replays it with one cuGraphLaunch. Scalars and buffer
    addresses are the ones given at capture; what changes between replays lives in device memory."""

    def __init__(self, dev: "CudaDevice", graph, exe, n: int):
        self.dev, self.graph, self.exe, self.launches = dev, graph, exe, n

    def run(self, stream: CudaStream | None = None) -> None:
        if self.exe is None:
            raise DeviceError("the CUDA graph was closed")
        drv = self.dev._drv
        err, = drv.cuGraphLaunch(self.exe, stream.handle if stream is not None else 0)
        if err != drv.CUresult.CUDA_SUCCESS:
            raise DeviceError(f"cuGraphLaunch ({self.launches} launches): {_err_name(drv, err)}")

    def close(self) -> None:
        if self.exe is not None:
            drv = self.dev._drv
            drv.cuGraphExecDestroy(self.exe)
            drv.cuGraphDestroy(self.graph)
            self.exe = self.graph = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the driver may be gone already
            pass


class CudaDevice:
    """A CUDA GPU as a forge Device (its primary context). DeviceError, one line, when there is no
    driver, no device, or no forge target for its compute capability."""

    def __init__(self, ordinal: int = 0):
        drv = self._drv = _driver()
        try:
            res = drv.cuInit(0)
        except Exception as e:  # cuda-bindings raises when libcuda.so itself cannot be found
            raise DeviceError(f"no CUDA driver here ({type(e).__name__}: {_one_line(e)})") from None
        if res[0] != drv.CUresult.CUDA_SUCCESS:
            raise DeviceError(f"cuInit: {_err_name(drv, res[0])} (no usable CUDA device)")
        self.ordinal = ordinal
        self._dev = _check(drv, drv.cuDeviceGet(ordinal), f"cuDeviceGet({ordinal})")
        self._ctx = _check(drv, drv.cuDevicePrimaryCtxRetain(self._dev), "cuDevicePrimaryCtxRetain")
        self._tls = threading.local()
        self._current()
        attr = drv.CUdevice_attribute
        get = lambda a: _check(drv, drv.cuDeviceGetAttribute(a, self._dev), "cuDeviceGetAttribute")
        self.capability = (get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                           get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))
        self.sm_count = get(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        self.l2_bytes = get(attr.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
        raw = _check(drv, drv.cuDeviceGetName(256, self._dev), "cuDeviceGetName")
        self.device_name = (raw.split(b"\0")[0].decode() if isinstance(raw, bytes) else str(raw)).strip()
        self.driver_version = _check(drv, drv.cuDriverGetVersion(), "cuDriverGetVersion")
        self.arch = arch_for_capability(*self.capability)
        self.name = f"cuda:{ordinal}"
        self._capture_stream: CudaStream | None = None
        self._ok = drv.CUresult.CUDA_SUCCESS
        # Programmatic dependent launch in captured launch lists (Hopper on): each kernel's blocks may
        # start while the previous kernel drains, waiting at their entry (prelude_cuda.h) for its
        # results; a decode step is hundreds of short kernels. FORGE_PDL=0 turns it off (A/B timing).
        self.pdl = self.capability >= (9, 0) and os.environ.get("FORGE_PDL", "1") != "0"

    def __repr__(self) -> str:
        return f"<CudaDevice {self.name} {self.device_name} sm_{self.capability[0]}{self.capability[1]}, {self.sm_count} SMs>"

    def _current(self) -> None:
        """Make the primary context current in this thread (once per thread)."""
        if getattr(self._tls, "ctx", False):
            return
        _check(self._drv, self._drv.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")
        self._tls.ctx = True

    @staticmethod
    def _stream(stream) -> Any:
        return 0 if stream is None else stream.handle

    def _addr(self, buf: CudaBuffer, offset: int, nbytes: int, what: str) -> int:
        if type(buf) is not CudaBuffer:
            raise DeviceError(f"{what}: expected a CudaBuffer, got {type(buf).__name__}")
        if not buf.alive:
            raise DeviceError(f"{what}: the buffer was freed")
        check_range(buf, offset, nbytes, what)
        self._current()
        return buf.ptr + offset

    # ---- memory ---------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> CudaBuffer:
        if nbytes < 0:
            raise DeviceError(f"cannot allocate {nbytes} bytes")
        self._current()
        ptr = _check(self._drv, self._drv.cuMemAlloc(max(1, nbytes)), f"cuMemAlloc({nbytes} bytes)")
        return CudaBuffer(int(ptr), nbytes)

    def free(self, buf: CudaBuffer) -> None:
        if buf.ptr is None:
            raise DeviceError("buffer freed twice")
        if buf.parent is not None:
            raise DeviceError("a view is not freed; free the buffer it views")
        self._current()
        _check(self._drv, self._drv.cuMemFree(buf.ptr), "cuMemFree")
        buf.ptr = None

    def view(self, buf: CudaBuffer, offset: int, nbytes: int) -> CudaBuffer:
        """Bytes [offset, offset + nbytes) of buf as a buffer of their own; dies with buf."""
        return CudaBuffer(self._addr(buf, offset, nbytes, "view"), nbytes, buf)

    def upload(self, buf: CudaBuffer, data, offset: int = 0, stream=None) -> None:
        arr = np.ascontiguousarray(np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview))
                                   else data)
        if arr.nbytes == 0:
            return
        dst = self._addr(buf, offset, arr.nbytes, "upload")
        if stream is None:
            _check(self._drv, self._drv.cuMemcpyHtoD(dst, arr.ctypes.data, arr.nbytes), "cuMemcpyHtoD")
        else:  # pageable source: the driver stages it before returning, so arr may go at once
            _check(self._drv, self._drv.cuMemcpyHtoDAsync(dst, arr.ctypes.data, arr.nbytes, stream.handle),
                   "cuMemcpyHtoDAsync")

    def download(self, buf: CudaBuffer, nbytes: int | None = None, offset: int = 0, stream=None) -> bytes:
        n = buf.nbytes - offset if nbytes is None else nbytes
        src = self._addr(buf, offset, n, "download")
        out = np.empty(n, np.uint8)
        if n:
            if stream is None:
                _check(self._drv, self._drv.cuMemcpyDtoH(out.ctypes.data, src, n), "cuMemcpyDtoH")
            else:
                _check(self._drv, self._drv.cuMemcpyDtoHAsync(out.ctypes.data, src, n, stream.handle),
                       "cuMemcpyDtoHAsync")
                self.synchronize(stream)
        return out.tobytes()

    def memset(self, buf: CudaBuffer, value: int, nbytes: int | None = None, offset: int = 0, stream=None) -> None:
        n = buf.nbytes - offset if nbytes is None else nbytes
        dst = self._addr(buf, offset, n, "memset")
        if n:
            if stream is None:
                _check(self._drv, self._drv.cuMemsetD8(dst, value & 0xFF, n), "cuMemsetD8")
            else:
                _check(self._drv, self._drv.cuMemsetD8Async(dst, value & 0xFF, n, stream.handle), "cuMemsetD8Async")

    def copy(self, dst: CudaBuffer, src: CudaBuffer, nbytes: int, dst_offset: int = 0, src_offset: int = 0,
             stream=None) -> None:
        d = self._addr(dst, dst_offset, nbytes, "copy to")
        s = self._addr(src, src_offset, nbytes, "copy from")
        if nbytes:
            if stream is None:
                _check(self._drv, self._drv.cuMemcpyDtoD(d, s, nbytes), "cuMemcpyDtoD")
            else:
                _check(self._drv, self._drv.cuMemcpyDtoDAsync(d, s, nbytes, stream.handle), "cuMemcpyDtoDAsync")

    # ---- code -----------------------------------------------------------------------------------
    def load_module(self, data: bytes) -> CudaModule:
        self._current()
        err, h = self._drv.cuModuleLoadData(bytes(data))
        if err != self._ok:
            raise DeviceError(f"cannot load a cubin ({len(data)} bytes) on {self.device_name} "
                              f"(sm_{self.capability[0]}{self.capability[1]}): {_err_name(self._drv, err)}")
        return CudaModule(self, h)

    def _params(self, fn: CudaFunction, shared_bytes: int, values, args) -> int:
        """The kernelParams of one launch of fn (its packer made on first use), its dynamic shared
        memory allowed first where it exceeds what fn has."""
        if fn.packer is None:
            fn.packer = Packer(fn.symbol, args)
        params = fn.packer.pack(values)
        if shared_bytes > fn.dyn_smem:
            self._raise_smem(fn, shared_bytes)
        return params

    def launch(self, fn: CudaFunction, grid, block, shared_bytes: int, values, args, stream=None) -> None:
        params = self._params(fn, shared_bytes, values, args)
        if not getattr(self._tls, "ctx", False):
            self._current()
        err, = self._drv.cuLaunchKernel(fn.handle, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                                        shared_bytes, 0 if stream is None else stream.handle, params, 0)
        if err != self._ok:
            raise DeviceError(f"{fn.symbol}: launch of grid {tuple(grid)} block {tuple(block)} shared "
                              f"{shared_bytes} failed: {_err_name(self._drv, err)}")

    def _launch_pdl(self, fn: CudaFunction, grid, block, shared_bytes: int, values, args, stream) -> None:
        """launch() with the programmatic-stream-serialization attribute (cuLaunchKernelEx)."""
        drv = self._drv
        params = self._params(fn, shared_bytes, values, args)
        cfg = drv.CUlaunchConfig()
        cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ = (int(g) for g in grid)
        cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ = (int(b) for b in block)
        cfg.sharedMemBytes, cfg.hStream = shared_bytes, stream.handle
        attr = drv.CUlaunchAttribute()
        attr.id = drv.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        attr.value.programmaticStreamSerializationAllowed = 1
        cfg.attrs, cfg.numAttrs = [attr], 1
        err, = drv.cuLaunchKernelEx(cfg, fn.handle, params, 0)
        if err != self._ok:
            raise PdlRefused(f"{fn.symbol}: programmatic-dependent launch failed: {_err_name(drv, err)}")

    def _raise_smem(self, fn: CudaFunction, nbytes: int) -> None:
        attr = self._drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        _check(self._drv, self._drv.cuFuncSetAttribute(fn.handle, attr, nbytes),
               f"{fn.symbol}: {nbytes} bytes of dynamic shared memory")
        fn.dyn_smem = nbytes

    # ---- ordering and timing -----------------------------------------------------------------------
    def create_stream(self) -> CudaStream:
        self._current()
        flags = self._drv.CUstream_flags.CU_STREAM_DEFAULT  # blocking: ordered against stream None
        return CudaStream(_check(self._drv, self._drv.cuStreamCreate(flags), "cuStreamCreate"))

    def synchronize(self, stream=None) -> None:
        """Wait for the stream's work (None: all work of the device); DeviceError when a kernel faulted."""
        self._current()
        res = self._drv.cuCtxSynchronize() if stream is None else self._drv.cuStreamSynchronize(stream.handle)
        _check(self._drv, res, "synchronize (an earlier launch failed on the device)")

    def record_event(self, stream=None) -> CudaEvent:
        """A new event recorded on `stream` now: pairs of them time device work (elapsed())."""
        self._current()
        ev = _check(self._drv, self._drv.cuEventCreate(self._drv.CUevent_flags.CU_EVENT_DEFAULT), "cuEventCreate")
        _check(self._drv, self._drv.cuEventRecord(ev, self._stream(stream)), "cuEventRecord")
        return CudaEvent(ev)

    def elapsed(self, start: CudaEvent, end: CudaEvent) -> float:
        """Seconds of device time between two recorded events (waits for `end`)."""
        _check(self._drv, self._drv.cuEventSynchronize(end.handle), "cuEventSynchronize")
        ms = _check(self._drv, self._drv.cuEventElapsedTime(start.handle, end.handle), "cuEventElapsedTime")
        return float(ms) * 1e-3

    def destroy_event(self, ev: CudaEvent) -> None:
        self._drv.cuEventDestroy(ev.handle)

    # ---- launch lists ------------------------------------------------------------------------------
    def record(self, launches) -> CudaGraph:
        """Capture `launches` (BoundLaunch) into a CUDA graph, once; `.run(stream)` replays them in
        order with one cuGraphLaunch. Nothing runs during the capture. With `pdl`, the kernels are
        linked by programmatic dependencies; if the driver refuses that, PDL is turned off for this
        device (a warning says so) and the list is captured plainly."""
        launches = list(launches)
        if self.pdl:
            try:
                return self._capture(launches, True)
            except PdlRefused as e:
                self.pdl = False
                warnings.warn(f"{self.device_name}: programmatic dependent launch is off ({e})", RuntimeWarning)
        return self._capture(launches, False)

    def _capture(self, launches: list, pdl: bool) -> CudaGraph:
        drv = self._drv
        self._current()
        if self._capture_stream is None:
            self._capture_stream = self.create_stream()
        s = self._capture_stream
        mode = drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        _check(drv, drv.cuStreamBeginCapture(s.handle, mode), "cuStreamBeginCapture")
        launch = self._launch_pdl if pdl else self.launch
        try:
            for b in launches:
                launch(b.fn, b.grid, b.block, b.shared_bytes, b.values, b.args, s)
        except BaseException:
            drv.cuStreamEndCapture(s.handle)  # leave the stream usable; the partial graph is dropped
            raise
        graph = _check(drv, drv.cuStreamEndCapture(s.handle), "cuStreamEndCapture")
        exe = _check(drv, drv.cuGraphInstantiate(graph, 0), f"cuGraphInstantiate ({len(launches)} launches)")
        return CudaGraph(self, graph, exe, len(launches))
