"""The Device protocol: what the runtime and the dispatcher need from a backend. The CPU emulator
(forge/runtime/cpu.py) implements it today; the HIP and CUDA backends implement the same methods.

Buffers are opaque handles with `.nbytes`; byte offsets are explicit. A launch takes the kernel's
Arg signature (forge.codegen.spec.Arg) beside the values, so a backend can pack arguments once per
function and check each value's kind.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

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


def check_range(buf: Buffer, offset: int, nbytes: int, what: str) -> None:
    """Bounds of a host-side transfer; DeviceError rather than a silent overrun."""
    from ..errors import DeviceError
    if offset < 0 or nbytes < 0 or offset + nbytes > buf.nbytes:
        raise DeviceError(f"{what}: bytes [{offset}, {offset + nbytes}) outside a buffer of {buf.nbytes} bytes")
