"""Test configuration: the --backend option, hypothesis profiles, and the kernel-test context."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=12, deadline=None, derandomize=False, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("thorough", max_examples=300, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The emulator runs the suite in checking mode (an out-of-bounds read fails, a write names its
# argument) and with seeded-random wave orders (a race between waves shows whichever wave writes
# first; ascending order hides those whose writer is the lower wave), unless the environment
# says otherwise: README's test command and .ci/run get the same.
os.environ.setdefault("FORGE_EMU_CHECK", "1")
os.environ.setdefault("FORGE_EMU_WAVE_ORDER", "random:1")


def pytest_addoption(parser):
    parser.addoption("--backend", default="cpu", choices=["cpu", "emu", "host", "cuda", "hip"],
                     help="device the kernel tests run on (emu: the CPU emulator, at wave 32 and 64; "
                          "host: the fast host-CPU kernels; cpu: both, the default)")


@dataclass
class KernelContext:
    device: object
    arch: object
    dispatcher: object

    def __repr__(self) -> str:
        return f"<{self.arch.name}>"


def _make_context(target: str) -> KernelContext:
    from forge.runtime.dispatch import Dispatcher
    if target in ("emu32", "emu64"):
        from forge.arch import emu_arch
        from forge.runtime.emu import EmuDevice
        wave = int(target[3:])
        dev, arch = EmuDevice(wave_size=wave), emu_arch(wave)
    elif target == "hip":
        from forge.errors import DeviceError
        from forge.runtime.hip import HipDevice
        try:
            dev = HipDevice()
        except DeviceError as e:
            pytest.skip(f"hip: {e}")
        arch = dev.arch
    elif target == "host":
        try:
            from forge.runtime.host import HostDevice
        except ImportError:
            pytest.skip("the host backend is not in this build")
        from forge.arch import get_arch
        dev, arch = HostDevice(), get_arch("host")
    elif target == "cuda":
        from forge.errors import DeviceError
        from forge.runtime.cuda import CudaDevice
        try:
            dev = CudaDevice()
        except DeviceError as e:
            pytest.skip(f"cuda: {e}")
        arch = dev.arch
    else:
        pytest.skip(f"backend {target} is not available in this build")
    return KernelContext(dev, arch, Dispatcher(dev, arch))


TARGETS = {"cpu": ["emu32", "emu64", "host"], "emu": ["emu32", "emu64"], "host": ["host"],
           "cuda": ["cuda"], "hip": ["hip"]}


def pytest_generate_tests(metafunc):
    if "kctx" in metafunc.fixturenames:
        targets = TARGETS[metafunc.config.getoption("--backend")]
        metafunc.parametrize("kctx", targets, indirect=True, ids=targets, scope="session")


@pytest.fixture(scope="session")
def kctx(request):
    return _make_context(request.param)


@pytest.fixture
def emu_kctx(kctx):
    """kctx, on the emulator targets only: for tests of GPU execution semantics (barriers, waves,
    shared memory) and for the mutants of GPU templates, which the host target does not have."""
    if kctx.arch.vendor != "emu":
        pytest.skip(f"GPU-semantics test; {kctx.arch.name} is not the emulator")
    return kctx


@pytest.fixture
def gpu_kctx(kctx):
    """kctx, on the GPU-model targets only (the emulator and GPUs): for variants the host target
    does not have (the fused decode kernels)."""
    if not kctx.arch.is_gpu_semantics:
        pytest.skip(f"a GPU-model variant; {kctx.arch.name} runs the host kernels")
    return kctx


def pytest_collection_modifyitems(config, items):
    """`peer` tests (against llama.cpp, minutes on a CPU) run only when asked for: `-m peer`."""
    if "peer" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a peer comparison with llama.cpp: run with -m peer")
    for item in items:
        if "peer" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", "emu", "emu-sm90", "cuda"])
def backend(request):
    """A backend name for model-level tests (forge.load, the executor): the CPU targets by
    default (emu-sm90: the emulator through the NVIDIA target's code paths — int8 dot products,
    fused decode kernels, mma.sync); `--backend cuda` runs them on the GPU instead."""
    want = request.config.getoption("--backend")
    if (request.param == "cuda") != (want == "cuda"):
        pytest.skip(f"backend {request.param} is not selected (--backend {want})")
    return request.param
