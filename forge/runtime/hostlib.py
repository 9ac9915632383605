"""Host shared libraries for the CPU backends: the emulator runtime (forge/runtime/cpu_emulator.cpp),
built once per compiler into the store, and dlopen of verified objects from memory."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from ..errors import ToolchainError

RUNTIME_SRC = Path(__file__).with_name("cpu_emulator.cpp")
ABI_DIR = Path(__file__).resolve().parent.parent / "templates" / "common"


def runtime_source() -> str:
    """The runtime's source with its ABI header inlined: exactly what is compiled and hashed."""
    abi = (ABI_DIR / "emu_abi.h").read_text()
    return RUNTIME_SRC.read_text().replace('#include "emu_abi.h"\n', abi, 1)


def build_runtime(store, fibers: str = "asm", tc=None) -> bytes:
    """The emulator runtime library (bytes, from the store; compiled on a miss). `fibers` is "asm"
    (the hand-written switch, on x86-64) or "ucontext" (the portable floor, for measurement). `tc`
    overrides the host compiler: a kernel pack's toolchain finds the runtime the pack carries."""
    return runtime_entry(store, fibers, tc).read_object()


def runtime_entry(store, fibers: str = "asm", tc=None):
    """The store entry of the emulator runtime (build_runtime's), for a kernel pack to carry."""
    from ..codegen.hostcc import EMU_FLAGS
    flags = EMU_FLAGS + ("-pthread",) + (("-DFORGE_FIBER_UCONTEXT",) if fibers == "ucontext" else ())
    return library_entry(store, tc, runtime_source(), flags, "emulator runtime", "emulator-runtime",
                         f"libforge_emu_{fibers}", {"fibers": fibers})


def library_entry(store, tc, source: str, flags: tuple, what: str, family: str, symbol: str, params: dict):
    """The store entry of a host runtime library (`source` compiled with `flags` into a shared
    library by the host compiler, or by `tc`: a kernel pack's toolchain only finds the entry the
    pack carries). ToolchainError when there is no compiler, or a pack's library is missing."""
    from ..codegen.hostcc import compile_shared
    from ..codegen.store import BuildOutput, KeyInputs
    from ..codegen.toolchain import host_toolchain
    tc = tc or host_toolchain()
    if tc is None:
        raise ToolchainError("the CPU backends need a C++ compiler: install g++ (apt-get install g++) or set CXX")
    inputs = KeyInputs(source_sha256=hashlib.sha256(source.encode()).hexdigest(), arch="host",
                       target="host", toolchain=tc.identity, flags=flags)

    def build():
        if getattr(tc, "cxx", None) is None:  # a pack's toolchain: it finds entries and compiles nothing
            raise ToolchainError(f"the {what} built by {tc.identity} is not in the store {store.root}, and "
                                 f"there is no compiler here to build it: use a kernel pack that carries it")
        work = Path(tempfile.mkdtemp(prefix=f"forge-{family}-"))
        try:
            src, out = work / f"{family}.cpp", work / f"{symbol}.so"
            src.write_text(source)
            compile_shared(tc.cxx, src, out, flags)
            return BuildOutput(out.read_bytes(), {"source.cpp": source},
                               {"family": family, "symbol": symbol, "arch": "host", "toolchain": tc.identity,
                                "params": params})
        finally:
            shutil.rmtree(work, ignore_errors=True)

    entry, _ = store.get_or_build(inputs, build)
    return entry


_lock = threading.Lock()
_tmp: list[Path] = []


def load_library(data: bytes, global_symbols: bool = False) -> ctypes.CDLL:
    """dlopen a verified object from memory: written to this process's private 0700 directory under
    its sha256 (the same bytes load once), then opened there."""
    with _lock:
        if not _tmp:
            _tmp.append(Path(tempfile.mkdtemp(prefix="forge-so-")))
            import atexit
            atexit.register(shutil.rmtree, _tmp[0], True)
        path = _tmp[0] / (hashlib.sha256(data).hexdigest()[:32] + ".so")
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
    mode = os.RTLD_NOW | (os.RTLD_GLOBAL if global_symbols else os.RTLD_LOCAL)
    return ctypes.CDLL(str(path), mode=mode)
