"""Toolchains: turn a rendered source into a code object for one arch.

Each toolchain has an identity (name + version) that enters every cache key. Detection is
automatic and per vendor:
  AMD     ROCm's clang + ld.lld (ROCM_PATH or /opt/rocm), then the portable clang of the `ziglang`
          wheel, then a system clang new enough for the processor (arch.min_clang), with ld.lld
  NVIDIA  NVRTC through cuda-bindings (compiles with no GPU present); stores cubin, not PTX
  CPU     the host C++ compiler (CXX, else g++ / c++): the emulator prelude (emu, emu64) or the
          host prelude (host, -O3 and this machine's ISA)
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..arch import Arch
from ..errors import CompileError, ToolchainError


@dataclass
class CompileResult:
    """What a compile produced: the object, optional assembly listing, the log, resource usage."""

    object_bytes: bytes
    asm: str | None = None
    log: str = ""
    resources: dict = field(default_factory=dict)
    seconds: float = 0.0


class Toolchain:
    """Base class: `compile()` or raise CompileError with the diagnostics and the source's path."""

    name = "?"
    vendor = "?"
    suffix = ".bin"
    asm_suffix = ".s"

    def __init__(self, version: str):
        self.version = version

    @property
    def identity(self) -> str:
        return f"{self.name} {self.version}"

    def flags(self, arch: Arch) -> tuple[str, ...]:
        return ()

    def compile(self, source: str, arch: Arch, symbol: str, workdir: Path, keep_asm: bool) -> CompileResult:
        raise NotImplementedError

    def assemble(self, source: str, arch: Arch, symbol: str, workdir: Path) -> str:
        """The assembly listing (PTX for NVRTC) alone, for an entry stored without one. Toolchains
        that can make it without an object override this; the fallback compiles the object too."""
        return self.compile(source, arch, symbol, workdir, True).asm

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identity}>"


_running: set = set()  # compiler processes in flight (kill_compilers stops them on Ctrl-C)
_running_lock = threading.Lock()


def kill_compilers() -> int:
    """Kill every compiler process forge started that is still running; returns how many."""
    with _running_lock:
        procs = list(_running)
    for p in procs:
        try:
            p.kill()
        except OSError:
            pass
    return len(procs)


def _run(cmd: list[str], src_path: Path, what: str) -> str:
    """Run a compiler command; CompileError with its output and the source path when it fails."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        raise ToolchainError(f"cannot run {cmd[0]}: {e}") from None
    with _running_lock:
        _running.add(proc)
    try:
        stdout, stderr = proc.communicate()
    finally:
        with _running_lock:
            _running.discard(proc)
    out = (stdout + stderr).strip()
    if proc.returncode != 0:
        raise CompileError(f"{what} failed (exit {proc.returncode}); source: {src_path}\n{out}")
    return out


# ---------------------------------------------------------------------------------------- AMD
class ClangAMD(Toolchain):
    """clang -cc1 in HIP device mode + ld.lld: a code object with no ROCm headers or device libs."""

    vendor = "amd"
    suffix = ".co"

    def __init__(self, name: str, clang: list[str], lld: list[str], version: str, major: int):
        super().__init__(version)
        self.name, self.clang, self.lld, self.major = name, clang, lld, major

    def flags(self, arch: Arch) -> tuple[str, ...]:
        return ("-cc1", "-triple", "amdgcn-amd-amdhsa", "-target-cpu", arch.target, "-fcuda-is-device",
                "-x", "hip", "-std=c++17", "-O3", "-mcode-object-version=5")

    def compile(self, source, arch, symbol, workdir, keep_asm):
        src = workdir / f"{symbol}.hip"
        src.write_text(source)
        obj, co = workdir / f"{symbol}.o", workdir / f"{symbol}.co"
        flags = list(self.flags(arch))
        log = _run(self.clang + flags + ["-emit-obj", str(src), "-o", str(obj)], src, f"clang for {arch.name}")
        log += _run(self.lld + ["-shared", str(obj), "-o", str(co)], src, "ld.lld")
        asm = None
        if keep_asm:
            s = workdir / f"{symbol}.s"
            _run(self.clang + flags + ["-S", str(src), "-o", str(s)], src, f"clang -S for {arch.name}")
            asm = s.read_text()
        data = co.read_bytes()
        from .codeobject import read_code_object, resources
        meta = read_code_object(data, str(co))
        return CompileResult(data, asm, log, resources(meta, symbol))

    def assemble(self, source, arch, symbol, workdir):
        src, s = workdir / f"{symbol}.hip", workdir / f"{symbol}.s"
        src.write_text(source)
        _run(self.clang + list(self.flags(arch)) + ["-S", str(src), "-o", str(s)], src, f"clang -S for {arch.name}")
        return s.read_text()


def _clang_version(cmd: list[str]) -> tuple[str, int] | None:
    try:
        out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"clang version (\d+)\.(\d+)\.(\d+)", out)
    return (m.group(0).split()[-1], int(m.group(1))) if m else None


def _zig_toolchain() -> ClangAMD | None:
    try:
        import ziglang
    except ImportError:
        return None
    zig = Path(ziglang.__file__).parent / ("zig.exe" if sys.platform == "win32" else "zig")
    if not zig.exists():
        return None
    ver = _clang_version([str(zig), "clang"])
    if not ver:
        return None
    return ClangAMD("zig-clang", [str(zig), "clang"], [str(zig), "ld.lld"], ver[0], ver[1])


def _rocm_toolchain() -> ClangAMD | None:
    root = Path(os.environ.get("ROCM_PATH", "/opt/rocm"))
    clang, lld = root / "llvm/bin/clang", root / "llvm/bin/ld.lld"
    if not (clang.exists() and lld.exists()):
        return None
    ver = _clang_version([str(clang)])
    return ClangAMD("rocm-clang", [str(clang)], [str(lld)], ver[0], ver[1]) if ver else None


def _system_clangs() -> list[ClangAMD]:
    found = []
    for major in range(30, 14, -1):
        clang, lld = shutil.which(f"clang-{major}"), shutil.which(f"ld.lld-{major}")
        if clang and lld:
            ver = _clang_version([clang])
            if ver:
                found.append(ClangAMD("clang", [clang], [lld], ver[0], ver[1]))
    clang, lld = shutil.which("clang"), shutil.which("ld.lld")
    if clang and lld:
        ver = _clang_version([clang])
        if ver:
            found.append(ClangAMD("clang", [clang], [lld], ver[0], ver[1]))
    return found


@functools.lru_cache(maxsize=1)
def amd_toolchains() -> tuple[ClangAMD, ...]:
    """Every AMD-capable toolchain found, in order of preference."""
    return tuple(t for t in [_rocm_toolchain(), _zig_toolchain(), *_system_clangs()] if t)


# ------------------------------------------------------------------------------------- NVIDIA
_PTXAS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "smem": re.compile(r"(\d+) bytes smem"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "spills": re.compile(r"(\d+) bytes spill stores"),
}


def ptxas_resources(log: str) -> dict:
    """The resource dict (same keys as AMD's) from NVRTC's `--ptxas-options=-v` report."""
    got = {k: (int(m.group(1)) if (m := rx.search(log)) else None) for k, rx in _PTXAS.items()}
    return {"vgpr": got["registers"], "sgpr": None, "agpr": None, "lds": got["smem"] or 0,
            "scratch": got["stack"] or 0, "wave": 32, "spills": got["spills"] or 0}


class NVRTC(Toolchain):
    """NVRTC via cuda-bindings: cubin for sm_XX (SASS loads on older 13.x drivers; PTX would not)."""

    name = "nvrtc"
    vendor = "nvidia"
    suffix = ".cubin"
    asm_suffix = ".ptx"

    def flags(self, arch: Arch) -> tuple[str, ...]:
        return (f"--gpu-architecture={arch.target}", "-std=c++17", "-diag-suppress=177",
                "--ptxas-options=-v")

    def _program(self, source: str, symbol: str, opts: list[str], src: Path):
        from cuda.bindings import nvrtc
        err, prog = nvrtc.nvrtcCreateProgram(source.encode(), f"{symbol}.cu".encode(), 0, [], [])
        (res,) = nvrtc.nvrtcCompileProgram(prog, len(opts), [o.encode() for o in opts])
        _, n = nvrtc.nvrtcGetProgramLogSize(prog)
        # NVRTC writes into the buffer it is given: a bytearray, never `b" " * n`, which for n == 1
        # is CPython's shared one-byte b" " object (an empty log would make every b" " a NUL)
        log = bytearray(n)
        nvrtc.nvrtcGetProgramLog(prog, log)
        log = log.decode(errors="replace").rstrip("\x00").strip()
        if res != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            nvrtc.nvrtcDestroyProgram(prog)
            raise CompileError(f"NVRTC failed for {symbol}; source: {src}\n{log}")
        return prog, log

    def compile(self, source, arch, symbol, workdir, keep_asm):
        from cuda.bindings import nvrtc
        src = workdir / f"{symbol}.cu"
        src.write_text(source)
        prog, log = self._program(source, symbol, list(self.flags(arch)), src)
        _, n = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = bytearray(n)
        nvrtc.nvrtcGetCUBIN(prog, cubin)
        nvrtc.nvrtcDestroyProgram(prog)
        asm = self._ptx(source, arch, symbol, src) if keep_asm else None
        return CompileResult(bytes(cubin), asm, log, ptxas_resources(log))

    def _ptx(self, source, arch, symbol, src) -> str:
        """The PTX listing: a compile for the virtual arch."""
        from cuda.bindings import nvrtc
        virt = arch.target.replace("sm_", "compute_")
        opts = [f"--gpu-architecture={virt}", "-std=c++17", "-diag-suppress=177"]
        p2, _ = self._program(source, symbol, opts, src)
        _, n = nvrtc.nvrtcGetPTXSize(p2)
        ptx = bytearray(n)
        nvrtc.nvrtcGetPTX(p2, ptx)
        nvrtc.nvrtcDestroyProgram(p2)
        return ptx.rstrip(b"\x00").decode()

    def assemble(self, source, arch, symbol, workdir):
        src = workdir / f"{symbol}.cu"
        src.write_text(source)
        return self._ptx(source, arch, symbol, src)


@functools.lru_cache(maxsize=1)
def nvrtc_toolchain() -> NVRTC | None:
    try:
        from cuda.bindings import nvrtc
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception:  # not installed, or libnvrtc missing: both mean "no NVRTC"
        return None
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        return None
    return NVRTC(f"{major}.{minor}")


# ---------------------------------------------------------------------------------------- CPU
class HostCxx(Toolchain):
    """The host C++ compiler building a shared library: an emulated kernel (emu, emu64) or a host
    kernel (host: -O3 with this machine's ISA spelled out, so the key names the CPU features)."""

    name = "host-c++"
    vendor = "cpu"
    suffix = ".so"

    def __init__(self, cxx: str, version: str):
        super().__init__(version)
        self.cxx = cxx

    def flags(self, arch: Arch) -> tuple[str, ...]:
        from .hostcc import EMU_FLAGS, HOST_FLAGS, native_isa_flags
        if arch.vendor == "host":
            return (self.cxx,) + HOST_FLAGS + native_isa_flags(self.cxx)
        return (self.cxx,) + EMU_FLAGS

    def compile(self, source, arch, symbol, workdir, keep_asm):
        from .hostcc import compile_shared
        out = workdir / f"{symbol}.so"
        src = workdir / f"{symbol}.cpp"
        src.write_text(source)
        flags = self.flags(arch)[1:]
        compile_shared(self.cxx, src, out, flags)
        return CompileResult(out.read_bytes(), self._asm(src, arch, symbol, workdir) if keep_asm else None, "", {})

    def _asm(self, src, arch, symbol, workdir) -> str:
        s = workdir / f"{symbol}.s"
        _run([self.cxx, *[f for f in self.flags(arch)[1:] if f != "-shared"], "-S", "-o", str(s), str(src)], src,
             "host assembly")
        return s.read_text()

    def assemble(self, source, arch, symbol, workdir):
        src = workdir / f"{symbol}.cpp"
        src.write_text(source)
        return self._asm(src, arch, symbol, workdir)


def _host_cxx(path: str) -> HostCxx | None:
    """HostCxx for the compiler at `path`, named by the first line of its --version; None when it
    cannot be run."""
    try:
        first = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return HostCxx(path, first[0].strip() if first else "unknown")


@functools.lru_cache(maxsize=1)
def host_toolchain() -> HostCxx | None:
    """The host C++ compiler: $CXX when set, else the first of g++, c++, clang++ that runs; None
    when there is none. A CXX that names no runnable compiler is a ToolchainError, never a silent
    fallback to another compiler (whose objects the user did not ask for)."""
    cxx = os.environ.get("CXX")
    if cxx:
        path = shutil.which(cxx)
        tc = _host_cxx(path) if path else None
        if tc is None:
            raise ToolchainError(f"CXX={cxx} is not a C++ compiler that can be run"
                                 f"{'' if path else ' (not found, or not executable)'}: "
                                 f"set CXX to a compiler executable, or unset it to use g++")
        return tc
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        tc = _host_cxx(path) if path else None
        if tc is not None:
            return tc
    return None


# ---------------------------------------------------------------------------------- selection
_HINTS = {
    "amd": "install the portable clang with `pip install 'forge-kernels[cross]'` (the ziglang wheel), "
           "or ROCm (set ROCM_PATH), or a system clang + lld new enough for the processor",
    "nvidia": "install NVRTC with `pip install 'forge-kernels[cuda]'` (cuda-bindings + nvidia-cuda-nvrtc)",
    "cpu": "install a C++ compiler (e.g. `apt-get install g++`) or set CXX",
}


def toolchain_for(arch: Arch) -> Toolchain:
    """The preferred toolchain for `arch`; ToolchainError saying what to install when none fits."""
    if arch.vendor == "amd":
        for t in amd_toolchains():
            if t.major >= arch.min_clang:
                return t
        have = ", ".join(t.identity for t in amd_toolchains()) or "none"
        raise ToolchainError(f"no compiler for {arch.name} (needs clang >= {arch.min_clang}; found: {have}); "
                             + _HINTS["amd"])
    found = nvrtc_toolchain() if arch.vendor == "nvidia" else host_toolchain()
    if found is None:
        raise ToolchainError(f"no compiler for {arch.name}; " + _HINTS["nvidia" if arch.vendor == "nvidia" else "cpu"])
    return found


def timed_compile(tc: Toolchain, source: str, arch: Arch, symbol: str, workdir: Path, keep_asm: bool) -> CompileResult:
    """compile() with its wall time recorded in the result."""
    t0 = time.perf_counter()
    res = tc.compile(source, arch, symbol, workdir, keep_asm)
    res.seconds = time.perf_counter() - t0
    return res
