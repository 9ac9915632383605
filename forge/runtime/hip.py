"""The HIP backend: the Device protocol on the HIP runtime through hip-python, for AMD GPUs.

    print(hip_status())               # one line: the devices, or why there is no HIP here
    dev = HipDevice()                 # device 0; dev.arch is the forge Arch of its gfx processor
    kernels = Dispatcher(dev, dev.arch)

Kernels are code objects from the store, loaded with hipModuleLoadData. Their AMDGPU metadata is
read at load (forge/codegen/codeobject.py): a code object for another processor is refused, and a
kernel whose registers, LDS, scratch or wave size exceed the arch is refused when it is first asked
for (forge/codegen/abi.py kernel_problems). On its first launch the kernel's argument packing is
checked against the metadata (abi.require_abi) and every launch is checked against the kernel's
limits (block size, LDS static + dynamic, grid) before hipModuleLaunchKernel sees it. Arguments go
as one kernarg segment (HIP_LAUNCH_PARAM_BUFFER_POINTER), packed by abi.KernargLayout, which the
ABI tests prove equal to the code object's `.args` for every registered variant.

`record(launches)` captures a fixed launch list into a hipGraph by stream capture, replayed by
`.run(stream)` with one hipGraphLaunch; when the runtime cannot capture it, a PythonReplay serves
(its `reason` says why). Without hip-python, a HIP runtime or a device, HipDevice() raises
DeviceError in one line, and hip_status() returns that line for `forge doctor`.

Nothing here has run on an AMD GPU: no machine of this project has one (docs/AMD.md).
"""

from __future__ import annotations

import ctypes
import re
import threading
from typing import Any, Sequence

import numpy as np

from ..arch import ARCHS, Arch
from ..codegen.abi import KernargLayout, kernel_problems, launch_problems, layout_for, require_abi
from ..codegen.codeobject import CodeObject, KernelInfo, read_code_object
from ..errors import CodeObjectError, DeviceError
from .device import PythonReplay, check_range

_INSTALL = "pip install 'forge-kernels[amd]' (hip-python matching your ROCm version)"
_BUFFER_POINTER, _BUFFER_SIZE, _END = 1, 2, 3  # HIP_LAUNCH_PARAM_* (hip_runtime_api.h)


def _api():
    """The hip-python module; DeviceError in one line when it is not installed."""
    try:
        from hip import hip
    except ImportError as e:
        raise DeviceError(f"hip-python is not installed ({e}); {_INSTALL}") from None
    return hip


def _err_name(api, err) -> str:
    try:
        name = getattr(err, "name", str(err))
        _, text = api.hipGetErrorString(err)
        return f"{name} ({text.decode() if isinstance(text, bytes) else text})"
    except Exception:  # the description is best effort; the code itself is what matters
        return str(err)


def _check(api, res, what: str):
    """The values of a hip-python result tuple; DeviceError naming `what` when its status fails."""
    err = res[0]
    if err != api.hipError_t.hipSuccess:
        raise DeviceError(f"{what}: {_err_name(api, err)}")
    return res[1] if len(res) == 2 else (res[1:] or None)


def _init(api) -> None:
    """hipInit; DeviceError in one line when the runtime library is missing or finds no device.
    hip-python loads libamdhip64.so on the first call and raises RuntimeError when it cannot."""
    try:
        res = api.hipInit(0)
    except RuntimeError as e:
        why = re.findall(r"b'([^']*)'", str(e))  # hip-python quotes dlerror() as bytes
        raise DeviceError(f"no HIP runtime ({why[-1] if why else ' '.join(str(e).split())[:200]}); install "
                          f"ROCm, or put its lib/ on LD_LIBRARY_PATH") from None
    if res[0] != api.hipError_t.hipSuccess:
        raise DeviceError(f"hipInit: {_err_name(api, res[0])} (no usable AMD GPU)")


def _properties(api, ordinal: int):
    """hipDeviceProp_t of a device: hip-python 7+ returns it, older versions fill one passed in."""
    try:
        return _check(api, api.hipGetDeviceProperties(ordinal), f"hipGetDeviceProperties({ordinal})")
    except TypeError:
        props = api.hipDeviceProp_t()
        _check(api, api.hipGetDeviceProperties(props, ordinal), f"hipGetDeviceProperties({ordinal})")
        return props


def _text(v) -> str:
    return (v.split(b"\0")[0].decode(errors="replace") if isinstance(v, (bytes, bytearray)) else str(v)).strip()


def arch_for_gfx(gcn_arch_name: str) -> Arch:
    """The forge Arch of a device whose gcnArchName is e.g. "gfx1100" or "gfx942:sramecc+:xnack-";
    DeviceError listing forge's AMD targets for any other processor."""
    processor = gcn_arch_name.split(":", 1)[0].strip()
    a = ARCHS.get(processor)
    if a is None or a.vendor != "amd":
        known = ", ".join(n for n, x in ARCHS.items() if x.vendor == "amd")
        raise DeviceError(f"no forge target for AMD processor {gcn_arch_name!r} (known: {known})")
    return a


def hip_available(api=None) -> tuple[bool, str]:
    """(True, "hip: ...devices...") when a HIP device can be opened, else (False, one line saying
    what is missing: hip-python, the HIP runtime, a device, or a forge target for it)."""
    try:
        api = api or _api()
        _init(api)
        n = _check(api, api.hipGetDeviceCount(), "hipGetDeviceCount")
        if not n:
            return False, "hip: no AMD GPU visible to the HIP runtime"
        devs = []
        for i in range(n):
            props = _properties(api, i)
            gfx = _text(props.gcnArchName)
            try:
                target = arch_for_gfx(gfx).name
            except DeviceError:
                target = "no forge target"
            devs.append(f"{i}: {_text(props.name)} {gfx} ({target})")
        ver = _check(api, api.hipRuntimeGetVersion(), "hipRuntimeGetVersion")
    except DeviceError as e:
        return False, f"hip: unavailable: {e}"
    return True, f"hip: HIP runtime {ver}; " + "; ".join(devs)


def hip_status(api=None) -> str:
    """One line for `forge doctor`: the HIP devices and their forge arch, or why there are none."""
    return hip_available(api)[1]


# ------------------------------------------------------------------------------------- handles
class HipBuffer:
    """Device memory: `ptr` (an int device address) is None once freed; a view has a parent."""

    __slots__ = ("ptr", "nbytes", "parent")

    def __init__(self, ptr: int, nbytes: int, parent: "HipBuffer | None" = None):
        self.ptr, self.nbytes, self.parent = ptr, nbytes, parent

    @property
    def alive(self) -> bool:
        return self.ptr is not None and (self.parent is None or self.parent.alive)

    def __repr__(self) -> str:
        return f"<HipBuffer {self.nbytes} B at {self.ptr:#x}>" if self.ptr is not None else "<HipBuffer freed>"


class HipStream:
    __slots__ = ("handle",)

    def __init__(self, handle):
        self.handle = handle


class HipFunction:
    """A kernel of a loaded module with its metadata; its kernarg layout is built and proven
    against the metadata on the first launch."""

    __slots__ = ("symbol", "handle", "info", "module", "layout", "_local")

    def __init__(self, symbol: str, handle, info: KernelInfo, module: "HipModule"):
        self.symbol, self.handle, self.info, self.module = symbol, handle, info, module
        self.layout: KernargLayout | None = None
        self._local = threading.local()

    def prepare(self, args: Sequence[Any]) -> KernargLayout:
        """The kernarg layout for `args`; DeviceError when it is not what the code object reads."""
        lay = layout_for(self.symbol, args, self.info)
        try:
            require_abi(lay, self.info)
        except CodeObjectError as e:
            raise DeviceError(f"refusing to launch {self.symbol}: {e}") from None
        self.layout = lay
        return lay

    def segment(self, data: bytes, keep: list | None) -> int:
        """The address of a `void* extra[5]` for hipModuleLaunchKernel holding `data`. HIP copies
        the segment during the call, so each thread reuses one buffer; `keep` (during a capture)
        gets fresh buffers that live as long as the graph."""
        bufs = None if keep is not None else getattr(self._local, "bufs", None)
        if bufs is None:
            seg = ctypes.create_string_buffer(max(8, len(data)))  # malloc: 16-byte aligned
            size = ctypes.c_size_t(len(data))
            extra = (ctypes.c_void_p * 5)(_BUFFER_POINTER, ctypes.addressof(seg), _BUFFER_SIZE,
                                          ctypes.addressof(size), _END)
            bufs = (seg, size, extra)
            if keep is None:
                self._local.bufs = bufs
            else:
                keep.append(bufs)
        ctypes.memmove(bufs[0], data, len(data))
        return ctypes.addressof(bufs[2])

    def __repr__(self) -> str:
        return f"<HipFunction {self.symbol}>"


class HipModule:
    def __init__(self, dev: "HipDevice", handle, code: CodeObject):
        self.dev, self.handle, self.code = dev, handle, code
        self._functions: dict[str, HipFunction] = {}

    def function(self, symbol: str) -> HipFunction:
        """The kernel `symbol`; DeviceError when the module lacks it or it exceeds the arch."""
        fn = self._functions.get(symbol)
        if fn is None:
            try:
                info = self.code.kernel(symbol)
            except CodeObjectError as e:
                raise DeviceError(str(e)) from None
            problems = kernel_problems(info, self.dev.arch)
            if problems:
                raise DeviceError(f"refusing {symbol} on {self.dev.arch.name}: " + "; ".join(problems))
            api = self.dev._api
            h = _check(api, api.hipModuleGetFunction(self.handle, symbol.encode()), f"hipModuleGetFunction({symbol})")
            fn = self._functions[symbol] = HipFunction(symbol, h, info, self)
        return fn


class HipGraph:
    """A captured launch list: `run(stream)` replays it with one hipGraphLaunch. Scalars and buffer
    addresses are the ones given at capture; what changes between replays lives in device memory."""

    reason = None  # a PythonReplay fallback says why it is one; a graph has nothing to explain

    def __init__(self, dev: "HipDevice", graph, exe, n: int, keep: list):
        self.dev, self.graph, self.exe, self.launches, self._keep = dev, graph, exe, n, keep

    def run(self, stream: HipStream | None = None) -> None:
        if self.exe is None:
            raise DeviceError("the HIP graph was closed")
        api = self.dev._api
        _check(api, api.hipGraphLaunch(self.exe, None if stream is None else stream.handle),
               f"hipGraphLaunch ({self.launches} launches)")

    def close(self) -> None:
        if self.exe is not None:
            api = self.dev._api
            api.hipGraphExecDestroy(self.exe)
            api.hipGraphDestroy(self.graph)
            self.exe = self.graph = None
            self._keep = []

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the runtime may be gone already
            pass


class _Fallback(PythonReplay):
    """PythonReplay with the reason the launch list could not become a hipGraph."""

    def __init__(self, device, launches, reason: str):
        super().__init__(device, launches)
        self.reason = reason


# -------------------------------------------------------------------------------------- device
class HipDevice:
    """An AMD GPU as a forge Device. `api` is the hip-python module (injectable for tests).
    DeviceError, one line, when hip-python, the runtime, the device or a forge target is missing."""

    def __init__(self, ordinal: int = 0, api=None):
        self._api = api = api or _api()
        _init(api)
        n = _check(api, api.hipGetDeviceCount(), "hipGetDeviceCount")
        if not 0 <= ordinal < n:
            raise DeviceError(f"no HIP device {ordinal} ({n} visible)")
        self.ordinal = ordinal
        self._tls = threading.local()
        self._current()
        props = _properties(api, ordinal)
        self.gcn_arch_name = _text(props.gcnArchName)
        self.device_name = _text(props.name)
        self.arch = arch_for_gfx(self.gcn_arch_name)
        self.arch_name = self.arch.name
        if props.warpSize != self.arch.wave_size:
            raise DeviceError(f"{self.device_name} runs wave {props.warpSize}; forge's {self.arch.name} kernels "
                              f"are wave {self.arch.wave_size}")
        self.name = f"hip:{ordinal}"

    def __repr__(self) -> str:
        return f"<HipDevice {self.name} {self.device_name} {self.gcn_arch_name}>"

    def _current(self) -> None:
        """Make this device current in the calling thread (HIP's current device is per thread)."""
        if getattr(self._tls, "set", False):
            return
        _check(self._api, self._api.hipSetDevice(self.ordinal), f"hipSetDevice({self.ordinal})")
        self._tls.set = True

    def _addr(self, buf: HipBuffer, offset: int, nbytes: int, what: str) -> int:
        if type(buf) is not HipBuffer:
            raise DeviceError(f"{what}: expected a HipBuffer, got {type(buf).__name__}")
        if not buf.alive:
            raise DeviceError(f"{what}: the buffer was freed")
        check_range(buf, offset, nbytes, what)
        self._current()
        return buf.ptr + offset

    @staticmethod
    def _stream(stream):
        return None if stream is None else stream.handle

    # ---- memory ---------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> HipBuffer:
        if nbytes < 0:
            raise DeviceError(f"cannot allocate {nbytes} bytes")
        self._current()
        ptr = _check(self._api, self._api.hipMalloc(max(1, nbytes)), f"hipMalloc({nbytes} bytes)")
        return HipBuffer(int(ptr), nbytes)

    def free(self, buf: HipBuffer) -> None:
        if buf.ptr is None:
            raise DeviceError("buffer freed twice")
        if buf.parent is not None:
            raise DeviceError("a view is not freed; free the buffer it views")
        self._current()
        _check(self._api, self._api.hipFree(buf.ptr), "hipFree")
        buf.ptr = None

    def view(self, buf: HipBuffer, offset: int, nbytes: int) -> HipBuffer:
        """Bytes [offset, offset + nbytes) of buf as a buffer of their own; dies with buf."""
        return HipBuffer(self._addr(buf, offset, nbytes, "view"), nbytes, buf)

    def upload(self, buf: HipBuffer, data, offset: int = 0, stream=None) -> None:
        """Copy host data into buf. With a stream the copy is ordered on it, and waited for: the
        source is pageable memory the caller may reuse as soon as this returns."""
        arr = np.ascontiguousarray(np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview))
                                   else data)
        if arr.nbytes == 0:
            return
        dst = self._addr(buf, offset, arr.nbytes, "upload")
        if stream is None:
            _check(self._api, self._api.hipMemcpyHtoD(dst, arr.ctypes.data, arr.nbytes), "hipMemcpyHtoD")
        else:
            _check(self._api, self._api.hipMemcpyHtoDAsync(dst, arr.ctypes.data, arr.nbytes, stream.handle),
                   "hipMemcpyHtoDAsync")
            self.synchronize(stream)

    def download(self, buf: HipBuffer, nbytes: int | None = None, offset: int = 0, stream=None) -> bytes:
        n = buf.nbytes - offset if nbytes is None else nbytes
        src = self._addr(buf, offset, n, "download")
        out = np.empty(n, np.uint8)
        if n:
            if stream is None:
                _check(self._api, self._api.hipMemcpyDtoH(out.ctypes.data, src, n), "hipMemcpyDtoH")
            else:
                _check(self._api, self._api.hipMemcpyDtoHAsync(out.ctypes.data, src, n, stream.handle),
                       "hipMemcpyDtoHAsync")
                self.synchronize(stream)
        return out.tobytes()

    def memset(self, buf: HipBuffer, value: int, nbytes: int | None = None, offset: int = 0, stream=None) -> None:
        n = buf.nbytes - offset if nbytes is None else nbytes
        dst = self._addr(buf, offset, n, "memset")
        if n:
            if stream is None:
                _check(self._api, self._api.hipMemsetD8(dst, value & 0xFF, n), "hipMemsetD8")
            else:
                _check(self._api, self._api.hipMemsetD8Async(dst, value & 0xFF, n, stream.handle), "hipMemsetD8Async")

    def copy(self, dst: HipBuffer, src: HipBuffer, nbytes: int, dst_offset: int = 0, src_offset: int = 0,
             stream=None) -> None:
        d = self._addr(dst, dst_offset, nbytes, "copy to")
        s = self._addr(src, src_offset, nbytes, "copy from")
        if nbytes:
            if stream is None:
                _check(self._api, self._api.hipMemcpyDtoD(d, s, nbytes), "hipMemcpyDtoD")
            else:
                _check(self._api, self._api.hipMemcpyDtoDAsync(d, s, nbytes, stream.handle), "hipMemcpyDtoDAsync")

    # ---- code -----------------------------------------------------------------------------------
    def load_module(self, data: bytes) -> HipModule:
        """Load a code object; DeviceError when it is unreadable or for another processor."""
        try:
            code = read_code_object(data)
        except CodeObjectError as e:
            raise DeviceError(f"cannot load a code object: {e}") from None
        if code.mach != self.arch.elf_mach:
            raise DeviceError(f"code object for {code.processor} (e_flags mach {code.mach:#x}) cannot run on "
                              f"{self.device_name} ({self.gcn_arch_name}, mach {self.arch.elf_mach:#x})")
        self._current()
        handle = _check(self._api, self._api.hipModuleLoadData(bytes(data)),
                        f"hipModuleLoadData ({len(data)} bytes, {', '.join(k.name for k in code.kernels)})")
        return HipModule(self, handle, code)

    def launch(self, fn: HipFunction, grid, block, shared_bytes: int, values, args, stream=None) -> None:
        """Check the launch against the kernel's metadata and the arch, pack the kernarg segment and
        hand it to hipModuleLaunchKernel; DeviceError naming the kernel (and argument) otherwise."""
        lay = fn.layout or fn.prepare(args)
        problems = launch_problems(fn.info, self.arch, grid, block, shared_bytes)
        if problems:
            raise DeviceError(f"refusing to launch {fn.symbol}: " + "; ".join(problems))
        data = lay.pack(self._values(fn, values, args), grid, block, shared_bytes)
        extra = fn.segment(data, getattr(self._tls, "capture", None))
        self._current()
        err = self._api.hipModuleLaunchKernel(fn.handle, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                                              shared_bytes, self._stream(stream), None, extra)[0]
        if err != self._api.hipError_t.hipSuccess:
            raise DeviceError(f"{fn.symbol}: launch of grid {tuple(grid)} block {tuple(block)} shared "
                              f"{shared_bytes} failed: {_err_name(self._api, err)}")

    @staticmethod
    def _values(fn: HipFunction, values, args) -> list:
        """The explicit values with buffers replaced by their device addresses."""
        if len(values) != len(args):
            raise DeviceError(f"{fn.symbol}: {len(args)} arguments expected, {len(values)} given")
        out = list(values)
        for i, a in enumerate(args):
            if not a.is_ptr:
                continue
            v = out[i]
            if type(v) is HipBuffer and v.alive:
                out[i] = v.ptr
            elif v is None:
                out[i] = 0
            else:
                what = "a freed buffer" if type(v) is HipBuffer else f"a {type(v).__name__}, not a HipBuffer"
                raise DeviceError(f"{fn.symbol}: argument {a.name!r} is {what}")
        return out

    # ---- ordering ---------------------------------------------------------------------------------
    def create_stream(self) -> HipStream:
        self._current()
        return HipStream(_check(self._api, self._api.hipStreamCreate(), "hipStreamCreate"))

    def synchronize(self, stream=None) -> None:
        """Wait for the stream's work (None: all work of the device); DeviceError when a kernel faulted."""
        self._current()
        res = self._api.hipDeviceSynchronize() if stream is None else self._api.hipStreamSynchronize(stream.handle)
        _check(self._api, res, "synchronize (an earlier launch failed on the device)")

    # ---- launch lists ------------------------------------------------------------------------------
    def record(self, launches) -> HipGraph | PythonReplay:
        """Capture `launches` (BoundLaunch) into a hipGraph; `.run(stream)` replays them in order
        with one hipGraphLaunch. Every launch is checked as launch() checks it (DeviceError). When
        the runtime refuses the capture itself, a PythonReplay whose `reason` says why."""
        launches = list(launches)
        for b in launches:  # refuse bad launches before capturing anything
            lay = b.fn.layout or b.fn.prepare(b.args)
            problems = launch_problems(b.fn.info, self.arch, b.grid, b.block, b.shared_bytes)
            if problems:
                raise DeviceError(f"refusing to record {b.fn.symbol}: " + "; ".join(problems))
            lay.pack(self._values(b.fn, b.values, b.args), b.grid, b.block, b.shared_bytes)
        try:
            return self._capture_graph(launches)
        except DeviceError as e:
            return _Fallback(self, launches, f"hipGraph capture failed, launches replay from Python: {e}")

    def _capture_graph(self, launches) -> HipGraph:
        api = self._api
        self._current()
        s = _check(api, api.hipStreamCreate(), "hipStreamCreate")
        try:
            mode = api.hipStreamCaptureMode.hipStreamCaptureModeThreadLocal
            _check(api, api.hipStreamBeginCapture(s, mode), "hipStreamBeginCapture")
            keep: list = []
            self._tls.capture = keep
            try:
                for b in launches:
                    self.launch(b.fn, b.grid, b.block, b.shared_bytes, b.values, b.args, HipStream(s))
            except BaseException:
                api.hipStreamEndCapture(s)  # end the capture; the partial graph is dropped
                raise
            finally:
                self._tls.capture = None
            graph = _check(api, api.hipStreamEndCapture(s), "hipStreamEndCapture")
            res = api.hipGraphInstantiate(graph, 0)
            if res[0] != api.hipError_t.hipSuccess:
                api.hipGraphDestroy(graph)
            exe = _check(api, res, f"hipGraphInstantiate ({len(launches)} launches)")
        finally:
            api.hipStreamDestroy(s)
        exe = exe[0] if isinstance(exe, tuple) else exe  # hip-python returns (exec, error node, log)
        return HipGraph(self, graph, exe, len(launches), keep)
