"""The host backend: the Device protocol for the fast host-CPU target (arch `host`).

Host kernels are the host branches of the templates (`templates/<family>.host.j2`), compiled by
the host C++ compiler with -O3 for this machine's ISA; the runtime (forge/runtime/host_runtime.cpp,
built into the store on first use) runs a launch's grid on a persistent thread pool, one call of
the kernel per block. Launches are synchronous: when `launch` or a replay returns, the work is done.

    dev = HostDevice()
    k = Dispatcher(dev, get_arch("host")).get("rmsnorm", dtype="f32", block=256)
    k(x, w, y, 576, 1e-5, rows=1)                  # one launch, a few microseconds of Python
    step = dev.record([BoundLaunch(...), ...])      # a fixed launch list ...
    step.run()                                      # ... replayed in one call into C

FORGE_HOST_THREADS sets the pool size (default: the CPUs this process may run on), FORGE_HOST_SPIN_US
how long idle workers spin before they sleep (default 200). docs/HOST.md has the details.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DeviceError
from .device import check_range
from .hostlib import library_entry, load_library

RUNTIME_SRC = Path(__file__).with_name("host_runtime.cpp")
ABI_HEADER = Path(__file__).resolve().parent.parent / "templates" / "common" / "host_abi.h"
RUNTIME_FLAGS = ("-O2", "-std=c++17", "-fPIC", "-shared", "-pthread", "-w")
_U64 = ctypes.c_uint64
_lock = threading.Lock()
_runtime: list[ctypes.CDLL] = []


def runtime_source() -> str:
    """The runtime's source with its ABI header inlined: exactly what is compiled and hashed."""
    return RUNTIME_SRC.read_text().replace('#include "host_abi.h"\n', ABI_HEADER.read_text(), 1)


def runtime_entry(store, tc=None):
    """The store entry of the host runtime library (compiled on a miss; `tc`: the toolchain whose
    build to find, e.g. a kernel pack's, which compiles nothing). ToolchainError when there is no C++
    compiler, or the pack's runtime is not in the store."""
    return library_entry(store, tc, runtime_source(), RUNTIME_FLAGS, "host runtime", "host-runtime",
                         "libforge_host", {})


def build_runtime(store, tc=None) -> bytes:
    """The host runtime library's bytes (runtime_entry's object, sha256-verified)."""
    return runtime_entry(store, tc).read_object()


def host_runtime(store=None, toolchain=None) -> ctypes.CDLL:
    """The loaded host runtime (one per process; its thread pool starts on the first launch).
    `toolchain`: a kernel pack's, to find the runtime the pack carries."""
    with _lock:
        if not _runtime:
            if store is None:
                from ..codegen.store import Store, default_root
                store = Store(default_root())
            lib = load_library(build_runtime(store, toolchain))
            vp = ctypes.c_void_p
            lib.forge_host_run.argtypes = [vp, _U64]
            lib.forge_host_run.restype = None
            lib.forge_host_alloc.argtypes = [_U64]
            lib.forge_host_alloc.restype = vp
            lib.forge_host_free.argtypes = [vp, _U64]
            lib.forge_host_free.restype = None
            lib.forge_host_threads.restype = ctypes.c_uint
            lib.forge_host_straggles.restype = ctypes.c_ulonglong
            lib.forge_host_abi.restype = ctypes.c_uint
            _runtime.append(lib)
        return _runtime[0]


class HostBuffer:
    """Host memory used as device memory. `ptr` is None once freed. A view has `base`, the buffer
    it (or the view it was cut from) views, and dies with it; a wrapped numpy array
    (HostDevice.wrap) has `owner` (kept alive by the buffer) and is never freed by the device.
    `pins` counts the recorded launch lists that use the buffer: it cannot be freed while one of
    them lives."""

    __slots__ = ("ptr", "nbytes", "base", "owner", "pins", "__weakref__")

    def __init__(self, ptr: int, nbytes: int, base: "HostBuffer | None" = None, owner: Any = None):
        self.ptr, self.nbytes, self.base, self.owner, self.pins = ptr, nbytes, base, owner, 0

    @property
    def root(self) -> "HostBuffer":
        return self.base if self.base is not None else self

    @property
    def alive(self) -> bool:
        return self.ptr is not None and (self.base is None or self.base.ptr is not None)

    def __repr__(self) -> str:
        return f"<HostBuffer {self.nbytes} B at {self.ptr:#x}>" if self.ptr else "<HostBuffer freed>"


class HostStream:
    """Host launches run to completion in order, so a stream has nothing to track."""


class HostFunction:
    """One kernel entry of a loaded host module."""

    __slots__ = ("symbol", "entry", "module", "packer")

    def __init__(self, symbol: str, entry: int, module: "HostModule"):
        self.symbol, self.entry, self.module, self.packer = symbol, entry, module, None


class HostModule:
    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    def function(self, symbol: str) -> HostFunction:
        try:
            entry = ctypes.cast(getattr(self.lib, f"forge_entry_{symbol}"), ctypes.c_void_p).value
            abi = ctypes.c_uint.in_dll(self.lib, f"forge_abi_{symbol}").value
        except (AttributeError, ValueError):
            raise DeviceError(f"module has no host kernel {symbol!r} (was it compiled for the host arch?)") from None
        if abi != host_runtime().forge_host_abi():
            raise DeviceError(f"{symbol}: compiled for host ABI {abi}, the runtime speaks {host_runtime().forge_host_abi()}")
        return HostFunction(symbol, entry, self)


# A launch as host_runtime.cpp's struct Launch: entry, grid[3], nargs, then one 8-byte slot per
# argument (pointers as addresses, scalars in the low bytes: host_abi.h).
_HEAD = "<Q3II"
_SLOT = {"ptr": "Q", "f32": "f4x", "i32": "i4x", "u32": "I4x", "i64": "q", "u64": "Q"}
_tls = threading.local()


class Packer:
    """Packs (grid, values) of one kernel into a launch record with one struct.pack_into; built
    once per kernel, so a warm launch costs a few microseconds of Python."""

    def __init__(self, fn: HostFunction, args: Sequence[Any]):
        self.args = list(args)
        self.struct = struct.Struct(_HEAD + "".join(_SLOT[a.kind] for a in args))
        self.ptrs = tuple(i for i, a in enumerate(args) if a.is_ptr)
        self.entry, self.nargs = fn.entry, len(args)

    def values(self, values) -> list:
        vals = list(values)
        for i in self.ptrs:
            v = vals[i]
            if type(v) is HostBuffer and v.ptr is not None and (v.base is None or v.base.ptr is not None):
                vals[i] = v.ptr
            elif v is None:
                vals[i] = 0
            else:
                what = "a freed buffer" if isinstance(v, HostBuffer) else type(v).__name__
                raise DeviceError(f"argument {self.args[i].name!r}: expected a HostBuffer, got {what}")
        return vals

    def pack_into(self, buf, offset: int, grid, values) -> None:
        try:
            self.struct.pack_into(buf, offset, self.entry, *grid, self.nargs, *self.values(values))
        except struct.error:
            for a, v in zip(self.args, values):
                if not a.is_ptr:
                    try:
                        struct.pack("<" + _SLOT[a.kind], v)
                    except struct.error:
                        raise DeviceError(f"argument {a.name!r}: {v!r} does not fit a {a.kind} argument") from None
            raise DeviceError(f"bad grid {grid}") from None


def _check_geometry(symbol: str, grid, block, shared_bytes: int) -> None:
    if tuple(block) != (1, 1, 1) or shared_bytes:
        raise DeviceError(f"{symbol}: a host kernel runs with block (1, 1, 1) and no shared memory, "
                          f"not block {tuple(block)} with {shared_bytes} shared bytes (a GPU launch shape?)")
    if len(grid) != 3 or min(grid) < 0 or grid[0] * grid[1] * grid[2] >= 1 << 32:
        raise DeviceError(f"{symbol}: bad grid {tuple(grid)} (three sizes, fewer than 2^32 blocks)")


class HostReplay:
    """A recorded launch list: `run()` executes it in one call into the runtime. The buffers it
    uses are pinned (freeing one raises) until the replay is closed or collected."""

    def __init__(self, dev: "HostDevice", launches):
        self.n = len(launches)
        sizes, packers = [], []
        for b in launches:
            if not isinstance(b.fn, HostFunction):
                raise DeviceError(f"record: {b.fn!r} is not a host kernel")
            _check_geometry(b.fn.symbol, b.grid, b.block, b.shared_bytes)
            p = Packer(b.fn, b.args)
            if len(b.values) != p.nargs:
                raise DeviceError(f"{b.fn.symbol}: {p.nargs} arguments expected, {len(b.values)} given")
            packers.append(p)
            sizes.append(p.struct.size)
        self._buf = ctypes.create_string_buffer(max(1, sum(sizes)))
        self._pinned: list[HostBuffer] = []
        seen = set()
        off = 0
        for b, p, size in zip(launches, packers, sizes):
            try:
                p.pack_into(self._buf, off, b.grid, b.values)
            except DeviceError as e:
                raise DeviceError(f"{b.fn.symbol}: {e}") from None
            off += size
            for i in p.ptrs:
                v = b.values[i]
                if v is not None and id(v.root) not in seen:
                    seen.add(id(v.root))
                    self._pinned.append(v.root)
        for r in self._pinned:
            r.pins += 1
        self._addr = ctypes.addressof(self._buf)
        self._run = dev._rt.forge_host_run
        self._fns = [b.fn for b in launches]  # keeps the kernel libraries loaded
        self._finalizer = weakref.finalize(self, HostReplay._unpin, self._pinned)

    @staticmethod
    def _unpin(pinned) -> None:
        for r in pinned:
            r.pins -= 1

    def run(self, stream: Any = None) -> None:
        """Run every launch of the list, in order; returns when the last has finished."""
        if self._finalizer.alive:
            self._run(self._addr, self.n)
        else:
            raise DeviceError("this launch list was closed")

    def close(self) -> None:
        """Unpin the buffers; the list cannot run afterwards."""
        self._finalizer()

    def __len__(self) -> int:
        return self.n


class HostDevice:
    """The host CPU as a Device for host-target kernels (block (1, 1, 1), no shared memory)."""

    def __init__(self, store=None, toolchain=None):
        self.name = "host"
        self._rt = host_runtime(store, toolchain)

    def __repr__(self) -> str:
        return f"<HostDevice {self.threads} threads>"

    @property
    def threads(self) -> int:
        """Threads that run blocks, the caller included (FORGE_HOST_THREADS, default: all CPUs)."""
        return self._rt.forge_host_threads()

    @property
    def straggles(self) -> int:
        """Times (in this process) the runtime saw that the machine was busier than the pool (the
        caller waited more than 50 us for a block on another thread, or ran 4 launches in a row
        without help) and ran launches on the caller alone for a while (2 ms, doubling while it
        recurs, up to 0.25 s)."""
        return self._rt.forge_host_straggles()

    # ---- memory ---------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> HostBuffer:
        """nbytes of uninitialized memory, 64-byte aligned (large buffers: page-aligned, huge pages
        requested)."""
        if nbytes < 0:
            raise DeviceError(f"cannot allocate {nbytes} bytes")
        ptr = self._rt.forge_host_alloc(nbytes)
        if not ptr:
            raise DeviceError(f"out of host memory allocating {nbytes} bytes")
        return HostBuffer(ptr, nbytes)

    def wrap(self, array: np.ndarray) -> HostBuffer:
        """A buffer over `array`'s own memory, no copy (e.g. a weight tensor of a memory-mapped GGUF
        file): the buffer keeps the array alive. The array must be C-contiguous. A read-only array
        (a read-only memmap) is fine as a kernel input; a kernel that writes to it faults."""
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
            raise DeviceError("wrap: expects a C-contiguous numpy array")
        return HostBuffer(array.ctypes.data if array.nbytes else 0, array.nbytes, None, array)

    def free(self, buf: HostBuffer) -> None:
        if buf.ptr is None:
            raise DeviceError("buffer freed twice")
        if buf.base is not None:
            raise DeviceError("a view is not freed; free the buffer it views")
        if buf.pins:
            raise DeviceError(f"the buffer is used by {buf.pins} recorded launch list(s): close them first")
        if buf.owner is None:
            self._rt.forge_host_free(buf.ptr, buf.nbytes)
        buf.ptr, buf.owner = None, None

    def _addr(self, buf: HostBuffer, offset: int, nbytes: int, what: str) -> int:
        if not buf.alive:
            raise DeviceError(f"{what}: the buffer was freed")
        check_range(buf, offset, nbytes, what)
        return buf.ptr + offset

    def upload(self, buf: HostBuffer, data, offset: int = 0, stream=None) -> None:
        arr = np.ascontiguousarray(np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview))
                                   else data)
        dst = self._addr(buf, offset, arr.nbytes, "upload")
        if arr.nbytes:
            ctypes.memmove(dst, arr.ctypes.data, arr.nbytes)

    def download(self, buf: HostBuffer, nbytes: int | None = None, offset: int = 0, stream=None) -> bytes:
        n = buf.nbytes - offset if nbytes is None else nbytes
        return ctypes.string_at(self._addr(buf, offset, n, "download"), n)

    def memset(self, buf: HostBuffer, value: int, nbytes: int | None = None, offset: int = 0, stream=None) -> None:
        n = buf.nbytes - offset if nbytes is None else nbytes
        ctypes.memset(self._addr(buf, offset, n, "memset"), value, n)

    def copy(self, dst: HostBuffer, src: HostBuffer, nbytes: int, dst_offset: int = 0, src_offset: int = 0,
             stream=None) -> None:
        ctypes.memmove(self._addr(dst, dst_offset, nbytes, "copy to"),
                       self._addr(src, src_offset, nbytes, "copy from"), nbytes)

    def view(self, buf: HostBuffer, offset: int, nbytes: int) -> HostBuffer:
        """Bytes [offset, offset + nbytes) of buf as a buffer of their own; never freed itself."""
        return HostBuffer(self._addr(buf, offset, nbytes, "view"), nbytes, buf.root)

    # ---- code -----------------------------------------------------------------------------------
    def load_module(self, data: bytes) -> HostModule:
        try:
            return HostModule(load_library(data))
        except OSError as e:
            raise DeviceError(f"cannot load a host kernel library: {e}") from None

    def launch(self, fn: HostFunction, grid, block, shared_bytes: int, values, args, stream=None) -> None:
        packer = fn.packer
        if packer is None:
            if not isinstance(fn, HostFunction):
                raise DeviceError(f"{fn!r} is not a host kernel")
            packer = fn.packer = Packer(fn, args)
        if len(values) != packer.nargs:
            raise DeviceError(f"{fn.symbol}: {packer.nargs} arguments expected, {len(values)} given")
        if block != (1, 1, 1) or shared_bytes or len(grid) != 3 or grid[0] * grid[1] * grid[2] >= 1 << 32:
            _check_geometry(fn.symbol, grid, block, shared_bytes)
        buf = getattr(_tls, "desc", None)
        if buf is None or len(buf) < packer.struct.size:
            buf = _tls.desc = ctypes.create_string_buffer(max(4096, packer.struct.size))
            _tls.addr = ctypes.addressof(buf)
        try:
            packer.pack_into(buf, 0, grid, values)
        except DeviceError as e:
            raise DeviceError(f"{fn.symbol}: {e}") from None
        self._rt.forge_host_run(_tls.addr, 1)

    def record(self, launches) -> HostReplay:
        """The launch list (BoundLaunch entries) packed once, replayed by `.run()` in one C call."""
        return HostReplay(self, list(launches))

    def create_stream(self) -> HostStream:
        return HostStream()

    def synchronize(self, stream=None) -> None:
        """Nothing to wait for: every launch has finished when launch() or run() returns."""
