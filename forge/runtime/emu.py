"""The CPU emulation backend: the Device protocol over host memory and the emulator runtime
(forge/runtime/cpu_emulator.cpp). Kernels are the same generated source as for the GPUs, compiled
by the host C++ compiler against templates/common/prelude_emu.h.

    dev = EmuDevice(wave_size=64)          # runs the wave64 (gfx950-style) template branches
    FORGE_EMU_CHECK=1 → checking mode: buffers end at guard pages, an out-of-bounds access raises
    DeviceError naming the kernel, the argument, the element index, the block and the thread.
    FORGE_EMU_WAVE_ORDER=ascending|descending|random[:SEED] → the order in which the waves of a
    block run between barriers (docs/EMULATOR.md).

Launches run synchronously (a stream only orders, and CPU launches are already ordered).
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
import zlib
from typing import Any, Sequence

import numpy as np

from ..codegen.spec import DTYPE_BYTES, SCALARS
from ..errors import DeviceError
from .hostlib import build_runtime, load_library
from .device import PythonReplay, check_range

_PAGE = os.sysconf("SC_PAGE_SIZE")
_U64 = ctypes.c_uint64
_NO_DAMAGE = -(1 << 63)
_runtime_lock = threading.Lock()
_runtimes: dict[str, ctypes.CDLL] = {}


def emulator_runtime(store=None, fibers: str = "asm", toolchain=None) -> ctypes.CDLL:
    """The loaded emulator runtime (built into the store on first use; `toolchain`: a kernel pack's,
    to find the runtime the pack carries). The "asm" runtime is loaded with global symbols, since
    kernels link against it; "ucontext" only serves measurements. Loaded once per process: an
    EmuDevice made afterwards uses it."""
    with _runtime_lock:
        lib = _runtimes.get(fibers)
        if lib is None:
            if store is None:
                from ..codegen.store import Store, default_root
                store = Store(default_root())
            lib = load_library(build_runtime(store, fibers, toolchain), global_symbols=fibers == "asm")
            _declare(lib)
            _runtimes[fibers] = lib
        return lib


def _declare(lib: ctypes.CDLL) -> None:
    vp = ctypes.c_void_p
    lib.forge_emu_launch.argtypes = [vp]
    lib.forge_emu_launch.restype = ctypes.c_int
    lib.forge_emu_alloc.argtypes = [_U64, ctypes.c_int]
    lib.forge_emu_alloc.restype = vp
    lib.forge_emu_free.argtypes = [vp, _U64, ctypes.c_int]
    lib.forge_emu_free.restype = None
    lib.forge_emu_canary.argtypes = [vp, _U64]
    lib.forge_emu_canary.restype = ctypes.c_longlong
    lib.forge_emu_threads.restype = ctypes.c_uint
    lib.forge_emu_fiber_kind.restype = ctypes.c_char_p
    lib.forge_emu_bench_switch.argtypes = [_U64]
    lib.forge_emu_bench_switch.restype = ctypes.c_double


class EmuBuffer:
    """Host memory standing in for device memory. `ptr` is None once freed."""

    __slots__ = ("ptr", "nbytes", "guarded", "parent")

    def __init__(self, ptr: int, nbytes: int, guarded: bool, parent: "EmuBuffer | None" = None):
        self.ptr, self.nbytes, self.guarded, self.parent = ptr, nbytes, guarded, parent

    def __repr__(self) -> str:
        return f"<EmuBuffer {self.nbytes} B at {self.ptr:#x}>" if self.ptr else "<EmuBuffer freed>"


class EmuStream:
    """Launches on the CPU run to completion in order, so a stream has nothing to track."""


class EmuFunction:
    """One kernel entry in a loaded module, with its argument packer built on the first launch."""

    __slots__ = ("symbol", "entry", "tls", "flags", "module", "packer")

    def __init__(self, symbol: str, entry: int, tls: int, flags: int, module: "EmuModule"):
        self.symbol, self.entry, self.tls, self.flags, self.module = symbol, entry, tls, flags, module
        self.packer = None

    @property
    def wave_size(self) -> int:
        return self.flags & 0xFF


class EmuModule:
    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    def function(self, symbol: str) -> EmuFunction:
        try:
            entry = ctypes.cast(getattr(self.lib, f"forge_entry_{symbol}"), ctypes.c_void_p).value
            tls = ctypes.cast(getattr(self.lib, f"forge_tls_{symbol}"), ctypes.c_void_p).value
            flags = ctypes.c_uint.in_dll(self.lib, f"forge_flags_{symbol}").value
        except (AttributeError, ValueError):
            raise DeviceError(f"module has no kernel {symbol!r} (was it compiled for the cpu arch?)") from None
        return EmuFunction(symbol, entry, tls, flags, self)


# ------------------------------------------------------------------------------ argument packing
# LaunchDesc of cpu_emulator.cpp: entry, tls, err, err_len, fault; flags, check; grid[3], block[3];
# wave order, seed; shared bytes, nargs; then one 8-byte slot per argument (scalars in the low
# bytes, emu_abi.h).
_DESC = "<5Q2I3I3I2I2Q"
WAVE_ORDERS = {"ascending": 0, "descending": 1, "random": 2}
_SLOT = {"ptr": "Q", "f32": "f4x", "i32": "i4x", "u32": "I4x", "i64": "q", "u64": "Q"}
_tls = threading.local()


def _ptr(v) -> int:
    if v is None:
        return 0
    if not isinstance(v, EmuBuffer):
        raise DeviceError(f"expected a EmuBuffer, got {type(v).__name__}")
    if v.ptr is None:
        raise DeviceError("the buffer was freed")
    return v.ptr


class Packer:
    """Packs (geometry, values) into a LaunchDesc with one struct.pack_into: built once per kernel,
    so a warm launch costs a few microseconds of Python."""

    def __init__(self, fn: "EmuFunction", args: Sequence[Any], dev: "EmuDevice"):
        self.args, self.dev = list(args), dev
        self.struct = struct.Struct(_DESC + "".join(_SLOT[a.kind] for a in args))
        self.ptrs = tuple(i for i, a in enumerate(args) if a.is_ptr)
        self.head = (fn.entry, fn.tls, ctypes.addressof(dev._err), len(dev._err), ctypes.addressof(dev._fault),
                     fn.flags, int(dev.check))
        self.order = (WAVE_ORDERS[dev.wave_order[0]], dev.wave_order[1])
        # random order: the shuffle's seed also hashes the launch (kernel, geometry, scalar
        # arguments), so that examples of a property test each get their own orders while a
        # repeated launch repeats its order (a failure reproduces)
        self.salt = (fn.symbol, dev.wave_order[1]) if dev.wave_order[0] == "random" else None
        self.scalars = tuple(i for i, a in enumerate(args) if not a.is_ptr)
        self.nargs = len(args)

    def pack(self, grid, block, shared_bytes: int, values) -> int:
        """The address of this thread's descriptor, filled in."""
        vals = list(values)
        for i in self.ptrs:
            v = vals[i]
            vals[i] = v.ptr if type(v) is EmuBuffer and v.ptr is not None else self._bad_ptr(i, v)
        buf = getattr(_tls, "desc", None)
        if buf is None or len(buf) < self.struct.size:
            buf = _tls.desc = ctypes.create_string_buffer(max(4096, self.struct.size))
        try:
            order = self.order if self.salt is None else (self.order[0], self._seed(grid, block, vals))
            self.struct.pack_into(buf, 0, *self.head, *grid, *block, *order, shared_bytes, self.nargs, *vals)
        except struct.error:
            self._explain(values)
            raise
        return ctypes.addressof(buf)

    def _seed(self, grid, block, vals) -> int:
        return zlib.crc32(repr((self.salt, tuple(grid), tuple(block), [vals[i] for i in self.scalars])).encode())

    def _bad_ptr(self, i: int, v) -> int:
        try:
            return _ptr(v)
        except DeviceError as e:
            raise DeviceError(f"argument {self.args[i].name!r}: {e}") from None

    def _explain(self, values) -> None:
        for a, v in zip(self.args, values):
            if a.is_ptr:
                continue
            try:
                struct.pack("<" + _SLOT[a.kind], v)
            except struct.error:
                raise DeviceError(f"argument {a.name!r}: {v!r} does not fit a {a.kind} argument") from None


# ----------------------------------------------------------------------------------- the device
def parse_wave_order(text: str, what: str = "wave order") -> tuple[str, int]:
    """("ascending" | "descending" | "random", seed) from "ascending", "descending", "random" (seed
    0) or "random:SEED" (SEED an integer below 2^32); DeviceError naming `what` otherwise."""
    kind, _, seed = text.strip().partition(":")
    try:
        if kind in WAVE_ORDERS and (not seed or kind == "random"):
            n = int(seed or 0)
            if 0 <= n < 2**32:
                return kind, n
    except ValueError:
        pass
    raise DeviceError(f"{what} {text!r} is not one of ascending, descending, random, random:SEED "
                      f"(SEED an integer from 0 to 2^32-1)")


class EmuDevice:
    """The CPU emulator as a Device. `wave_size` (32 or 64) must match the kernels' arch (emu or
    emu64); `check` (default: FORGE_EMU_CHECK=1) turns on guard pages and fault reports;
    `wave_order` (default: FORGE_EMU_WAVE_ORDER, else "ascending") is the order in which the waves
    of a block run between two barriers: "ascending", "descending" or "random:SEED"."""

    def __init__(self, wave_size: int = 32, check: bool | None = None, store=None, wave_order: str | None = None,
                 toolchain=None):
        if wave_size not in (32, 64):
            raise DeviceError(f"the CPU emulator has wave sizes 32 and 64, not {wave_size}")
        self.wave_size = wave_size
        self.check = os.environ.get("FORGE_EMU_CHECK", "") not in ("", "0") if check is None else check
        env = os.environ.get("FORGE_EMU_WAVE_ORDER", "")
        self.wave_order = (parse_wave_order(wave_order) if wave_order is not None
                           else parse_wave_order(env, "FORGE_EMU_WAVE_ORDER") if env else ("ascending", 0))
        self.name = "emu"
        self._rt = emulator_runtime(store, toolchain=toolchain)  # toolchain: a kernel pack's, to find its runtime
        self._err = ctypes.create_string_buffer(1024)
        self._fault = (_U64 * 8)()

    def __repr__(self) -> str:
        order = "" if self.wave_order[0] == "ascending" else " " + ":".join(map(str, self.wave_order))
        return f"<EmuDevice wave{self.wave_size}{' checked' if self.check else ''}{order}>"

    @property
    def threads(self) -> int:
        """OS threads that run blocks (FORGE_EMU_THREADS, default: all cores)."""
        return self._rt.forge_emu_threads()

    # ---- memory ---------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> EmuBuffer:
        if nbytes < 0:
            raise DeviceError(f"cannot allocate {nbytes} bytes")
        ptr = self._rt.forge_emu_alloc(nbytes, int(self.check))
        if not ptr:
            raise DeviceError(f"out of host memory allocating {nbytes} bytes")
        return EmuBuffer(ptr, nbytes, self.check)

    def free(self, buf: EmuBuffer) -> None:
        if buf.ptr is None:
            raise DeviceError("buffer freed twice")
        if buf.parent is not None:
            raise DeviceError("a view is not freed; free the buffer it views")
        self._rt.forge_emu_free(buf.ptr, buf.nbytes, int(buf.guarded))
        buf.ptr = None

    def _addr(self, buf: EmuBuffer, offset: int, nbytes: int, what: str) -> int:
        if buf.ptr is None:
            raise DeviceError(f"{what}: the buffer was freed")
        check_range(buf, offset, nbytes, what)
        return buf.ptr + offset

    def upload(self, buf: EmuBuffer, data, offset: int = 0, stream=None) -> None:
        arr = np.ascontiguousarray(np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data)
        ctypes.memmove(self._addr(buf, offset, arr.nbytes, "upload"), arr.ctypes.data, arr.nbytes)

    def download(self, buf: EmuBuffer, nbytes: int | None = None, offset: int = 0, stream=None) -> bytes:
        n = buf.nbytes - offset if nbytes is None else nbytes
        return ctypes.string_at(self._addr(buf, offset, n, "download"), n)

    def memset(self, buf: EmuBuffer, value: int, nbytes: int | None = None, offset: int = 0, stream=None) -> None:
        n = buf.nbytes - offset if nbytes is None else nbytes
        ctypes.memset(self._addr(buf, offset, n, "memset"), value, n)

    def copy(self, dst: EmuBuffer, src: EmuBuffer, nbytes: int, dst_offset: int = 0, src_offset: int = 0,
             stream=None) -> None:
        ctypes.memmove(self._addr(dst, dst_offset, nbytes, "copy to"), self._addr(src, src_offset, nbytes, "copy from"),
                       nbytes)

    # ---- code -----------------------------------------------------------------------------------
    def load_module(self, data: bytes) -> EmuModule:
        try:
            return EmuModule(load_library(data))
        except OSError as e:
            raise DeviceError(f"cannot load a CPU kernel library: {e}") from None

    def launch(self, fn: EmuFunction, grid, block, shared_bytes: int, values, args, stream=None) -> None:
        packer = fn.packer
        if packer is None or packer.dev is not self:
            if fn.wave_size != self.wave_size:
                raise DeviceError(f"{fn.symbol} was compiled for wave {fn.wave_size}, this device runs wave "
                                  f"{self.wave_size}")
            packer = fn.packer = Packer(fn, args, self)
        if len(values) != packer.nargs:
            raise DeviceError(f"{fn.symbol}: {packer.nargs} arguments expected, {len(values)} given")
        try:
            desc = packer.pack(grid, block, shared_bytes, values)
        except DeviceError as e:
            raise DeviceError(f"{fn.symbol}: {e}") from None
        except struct.error:
            raise DeviceError(f"{fn.symbol}: bad launch geometry grid={grid} block={block}") from None
        rc = self._rt.forge_emu_launch(desc)
        if rc == 1:
            raise DeviceError(f"{fn.symbol}: {self._err.value.decode(errors='replace')}")
        if rc == 2:
            raise DeviceError(f"{fn.symbol}: {self._describe_fault(values, args)}")
        if self.check:
            self._check_canaries(fn, values, args)

    def create_stream(self) -> EmuStream:
        return EmuStream()

    def view(self, buf: EmuBuffer, offset: int, nbytes: int) -> EmuBuffer:
        """Bytes [offset, offset + nbytes) of buf as a buffer of their own (no guard pages: checking
        mode sees a view's overruns only where they leave the parent buffer)."""
        return EmuBuffer(self._addr(buf, offset, nbytes, "view"), nbytes, False, buf)

    def record(self, launches) -> "PythonReplay":
        return PythonReplay(self, launches)

    def synchronize(self, stream=None) -> None:
        """Nothing to wait for: every launch has finished when launch() returns."""

    # ---- checking mode --------------------------------------------------------------------------
    def _describe_fault(self, values, args) -> str:
        addr, write, *where = list(self._fault)
        kind = {0: "read", 1: "write"}.get(write, "access")
        loc = f"block ({where[0]},{where[1]},{where[2]}) thread ({where[3]},{where[4]},{where[5]})"
        for a, v in zip(args, values):
            if not (a.is_ptr and isinstance(v, EmuBuffer) and v.ptr):
                continue
            end = v.ptr + -(-max(v.nbytes, 1) // 16) * 16
            first_page = v.ptr - (v.ptr % _PAGE)
            if end <= addr < end + _PAGE or first_page - _PAGE <= addr < first_page:
                item = DTYPE_BYTES[a.dtype]
                rel = addr - v.ptr
                side = f"{rel - v.nbytes} bytes past its end" if rel >= 0 else f"{-rel} bytes before its start"
                return (f"out-of-bounds {kind} of argument {a.name!r} ({a.dtype}[{v.nbytes // item}], {v.nbytes} bytes) "
                        f"at element {rel // item} ({side}) by {loc}")
        return f"out-of-bounds {kind} at address {addr:#x}, outside every buffer argument, by {loc}"

    def _check_canaries(self, fn: EmuFunction, values, args) -> None:
        for a, v in zip(args, values):
            if a.is_ptr and isinstance(v, EmuBuffer) and v.ptr and v.guarded:
                off = self._rt.forge_emu_canary(v.ptr, v.nbytes)
                if off != _NO_DAMAGE:
                    raise DeviceError(f"{fn.symbol}: out-of-bounds write to argument {a.name!r} ({v.nbytes} bytes) at "
                                      f"byte offset {off} (found after the launch: the thread is not known)")
