"""Backends by name: a Device and the Arch its kernels are built for.

    device, arch = open_backend("auto")     # a GPU when one is present, else the fast host CPU

  cpu    the host CPU: kernels written for a CPU (-O3 -march=native), on a thread pool
  emu    the CPU emulator of the GPU model at wave 32 (emu64: wave 64) — a test vehicle, slow
  emu-sm90, emu-gfx1100, ...   the emulator running the code paths of that target's features
         (forge.arch.EMU_ARCHS: mma.sync, WMMA, int8 dot products) at its wave size
  cuda   an NVIDIA GPU through the CUDA driver (cuda-bindings); the arch from its compute capability
  hip    an AMD GPU through HIP (hip-python); the arch from its gfx name
  auto   cuda, then hip, else cpu
"""

from __future__ import annotations

from ..arch import EMU_ARCHS, Arch, get_arch
from ..errors import DeviceError

BACKENDS = ("auto", "cpu", "cuda", "hip") + EMU_ARCHS


def _cpu(store=None, toolchain=None):
    from .host import HostDevice
    return HostDevice(store, toolchain), get_arch("host")


def _emu(wave: int, store=None, toolchain=None):
    from ..arch import emu_arch
    from .emu import EmuDevice
    return EmuDevice(wave_size=wave, store=store, toolchain=toolchain), emu_arch(wave)


def _cuda(store=None, toolchain=None):
    from .cuda import CudaDevice
    dev = CudaDevice()
    return dev, dev.arch


def _hip(store=None, toolchain=None):
    from .hip import HipDevice
    dev = HipDevice()
    return dev, dev.arch


def open_backend(name: str = "auto", arch: str | Arch | None = None, *, store=None, toolchain=None):
    """(device, arch) for backend `name`; `arch` overrides the arch the device reports (to run
    kernels built for a compatible target); `store`/`toolchain` say where a CPU backend finds its
    runtime library (a kernel pack's toolchain compiles nothing). DeviceError naming what is missing
    when the backend cannot be opened; for "auto", the first GPU backend that opens, else the host."""
    if name not in BACKENDS:
        raise DeviceError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        for opener in (_cuda, _hip):
            try:
                dev, a = opener()
                break
            except (DeviceError, ImportError, OSError):
                continue
        else:
            dev, a = _cpu(store, toolchain)
    else:
        try:
            if name in EMU_ARCHS:
                dev, a = _emu(get_arch(name).wave_size, store, toolchain)
                a = get_arch(name)
            else:
                dev, a = {"cpu": _cpu, "cuda": _cuda, "hip": _hip}[name](store, toolchain)
        except ImportError as e:
            raise DeviceError(f"backend {name!r} is not available: {e}") from None
    return dev, (get_arch(arch) if arch is not None else a)


def backend_for(arch: Arch) -> str:
    """The backend that runs kernels built for `arch` (a kernel pack's)."""
    return {"host": "cpu", "nvidia": "cuda", "amd": "hip"}.get(arch.vendor) or arch.name
