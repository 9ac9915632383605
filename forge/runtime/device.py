"""The Device protocol: what the runtime and the dispatcher need from a backend. The CPU emulator
(forge/runtime/cpu.py) implements it today; the HIP and CUDA backends implement the same methods.

Buffers are opaque handles with `.nbytes`; byte offsets are explicit. A launch takes the kernel's
Arg signature (forge.codegen.spec.Arg) beside the values, so a backend can pack arguments once per
function and check each value's kind.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Buffer(Protocol):
    nbytes: int


@runtime_checkable
class Function(Protocol):
    """A kernel entry point inside a loaded module."""

    symbol: str


@runtime_checkable
class Module(Protocol):
    def function(self, symbol: str) -> Function: ...


@runtime_checkable
class Device(Protocol):
    name: str  # "emu", "host", "cuda:0", "hip:0"

    # -- memory ----------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> Buffer: ...
    def free(self, buf: Buffer) -> None: ...
    def upload(self, buf: Buffer, data: np.ndarray | bytes, offset: int = 0, stream: Any = None) -> None: ...
    def download(self, buf: Buffer, nbytes: int | None = None, offset: int = 0, stream: Any = None) -> bytes: ...
    def memset(self, buf: Buffer, value: int, nbytes: int | None = None, offset: int = 0, stream: Any = None) -> None: ...
    def copy(self, dst: Buffer, src: Buffer, nbytes: int, dst_offset: int = 0, src_offset: int = 0,
             stream: Any = None) -> None: ...

    # -- code --------------------------------------------------------------------------------------
    def load_module(self, data: bytes) -> Module: ...
    def launch(self, fn: Function, grid: tuple[int, int, int], block: tuple[int, int, int], shared_bytes: int,
               values: Sequence[Any], args: Sequence[Any], stream: Any = None) -> None: ...

    # -- ordering ----------------------------------------------------------------------------------
    def create_stream(self) -> Any: ...
    def synchronize(self, stream: Any = None) -> None: ...

    # -- launch lists --------------------------------------------------------------------------------
    # view(buf, offset, nbytes): a Buffer aliasing bytes [offset, offset + nbytes) of buf, usable as a
    # kernel argument and in transfers; it is never freed itself and dies with buf.
    # record(launches): a replayable form of a fixed list of launches (BoundLaunch below), run in
    # order by `.run(stream)`; a backend makes it cheap (a CUDA/HIP graph, a C loop), the default
    # is PythonReplay. Values that change between replays must live in device memory.
    def view(self, buf: Buffer, offset: int, nbytes: int) -> Buffer: ...
    def record(self, launches: Sequence["BoundLaunch"]) -> Any: ...


class BoundLaunch(NamedTuple):
    """One launch with everything fixed: what a launch list is made of."""

    fn: Any
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int
    values: tuple
    args: tuple


class PythonReplay:
    """The default replay of a launch list: one device.launch per entry."""

    def __init__(self, device, launches: Sequence[BoundLaunch]):
        self.device, self.launches = device, list(launches)

    def run(self, stream: Any = None) -> None:
        launch = self.device.launch
        for b in self.launches:
            launch(b.fn, b.grid, b.block, b.shared_bytes, b.values, b.args, stream)


def check_range(buf: Buffer, offset: int, nbytes: int, what: str) -> None:
    """Bounds of a host-side transfer; DeviceError rather than a silent overrun."""
    from ..errors import DeviceError
    if offset < 0 or nbytes < 0 or offset + nbytes > buf.nbytes:
        raise DeviceError(f"{what}: bytes [{offset}, {offset + nbytes}) outside a buffer of {buf.nbytes} bytes")


def time_launches(device, launches: Sequence[BoundLaunch], reps: int = 3) -> list[float]:
    """Seconds each launch takes (the best of `reps` runs of the whole list, launched one by one):
    device events around each launch where the backend has them (record_event/elapsed), else the
    host clock around a launch and a synchronize."""
    import time
    best = [float("inf")] * len(launches)
    events = hasattr(device, "record_event") and hasattr(device, "elapsed")
    for _ in range(reps):
        device.synchronize()
        for i, b in enumerate(launches):
            if events:
                e0 = device.record_event()
                device.launch(b.fn, b.grid, b.block, b.shared_bytes, b.values, b.args)
                e1 = device.record_event()
                t = device.elapsed(e0, e1)
                device.destroy_event(e0), device.destroy_event(e1)
            else:
                t0 = time.perf_counter()
                device.launch(b.fn, b.grid, b.block, b.shared_bytes, b.values, b.args)
                device.synchronize()
                t = time.perf_counter() - t0
            best[i] = min(best[i], t)
    return best
