"""Host C++ compilation: kernel sources into shared libraries for the CPU targets (the emulator
`emu`/`emu64` and the fast `host` target), and any other host library forge builds (the emulator
runtime). Compiling for the host is a toolchain like the others; this module knows no runtime."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from ..errors import ToolchainError

# -fno-strict-aliasing: kernels reinterpret buffers through wide types (u32x4 over bytes), which
# GPU compilers accept; -ffp-contract=off: no fused multiply-add unless the kernel asks (f_fma).
EMU_FLAGS = ("-O2", "-std=c++17", "-fPIC", "-shared", "-fno-strict-aliasing", "-ffp-contract=off",
             "-fno-math-errno", "-w")
# The host target is for speed: -O3 and this machine's ISA. -march=native alone does not say which
# ISA it was (a store or pack moved to another CPU would run illegal instructions), so the key
# carries the compiler's expansion of it (native_isa_flags).
#   -ffp-contract=off: as for the emulator, a kernel fuses a multiply-add only where it says f_fma,
#   so host results round where the template says (gcc's GNU dialects would contract freely);
#   no -ffast-math: reassociation would break the oracles' error bounds and NaN/Inf handling,
#   so host kernels vectorize reductions by hand (explicit partial sums) instead;
#   no -fopenmp: the host runtime (forge/runtime/host_runtime.cpp) has its own thread pool.
HOST_FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-fno-strict-aliasing", "-fno-math-errno",
              "-ffp-contract=off", "-fno-semantic-interposition", "-fno-plt", "-w")


def compile_shared(cxx: str, src_path: Path, out: Path, flags: tuple[str, ...]) -> str:
    """Compile `src_path` into the shared library `out`; CompileError with diagnostics on failure."""
    from .toolchain import _run
    return _run([cxx, *flags, "-o", str(out), str(src_path), "-lm"], src_path, "host compile")


@functools.lru_cache(maxsize=4)
def native_isa_flags(cxx: str) -> tuple[str, ...]:
    """What `-march=native` means for `cxx` on this machine: the -march/-mtune and every -m ISA
    switch the driver passes to the compiler proper (gcc: the cc1plus line of `-v`; clang: the
    target-cpu and target-features of `-###`). ToolchainError when the compiler will not say."""
    try:
        proc = subprocess.run([cxx, "-march=native", "-x", "c++", "-E", "-v", "-", "-o", "/dev/null"],
                              input="", capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolchainError(f"cannot ask {cxx} what -march=native means: {e}") from None
    for line in proc.stderr.splitlines():
        if "cc1" in line and "-march=" in line:  # gcc: -m switches and `--param name=value` pairs
            toks, out = line.split(), []
            for i, t in enumerate(toks):
                if t.startswith("-m"):
                    out.append(t)
                elif t == "--param" and i + 1 < len(toks):
                    out += [t, toks[i + 1]]
            return tuple(out)
    try:
        proc = subprocess.run([cxx, "-march=native", "-x", "c++", "-###", "-c", "-", "-o", "/dev/null"],
                              input="", capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolchainError(f"cannot ask {cxx} what -march=native means: {e}") from None
    toks = proc.stderr.replace('"', " ").split()
    out = [f"-march={toks[i + 1]}" for i, t in enumerate(toks) if t == "-target-cpu" and i + 1 < len(toks)]
    out += [toks[i + 1] for i, t in enumerate(toks) if t == "-target-feature" and i + 1 < len(toks)]
    if not out:
        raise ToolchainError(f"{cxx} does not say what -march=native means on this machine")
    return tuple(out)


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as the kernel lists them (/proc/cpuinfo's "flags"; empty elsewhere):
    what a host kernel pack records where it was built, and checks where it is used."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()
