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


def pytest_addoption(parser):
    parser.addoption("--backend", default="emu", choices=["emu", "host", "cuda", "hip"],
                     help="device the kernel tests run on (emu: the CPU emulator, at wave 32 and 64; "
                          "host: the fast host-CPU kernels)")


@dataclass
class KernelContext:
    device: object
    arch: object
    dispatcher: object

    def __repr__(self) -> str:
        return f"<{self.arch.name}>"


def _make_context(backend: str, wave: int) -> KernelContext:
    from forge.runtime.dispatch import Dispatcher
    if backend == "emu":
        from forge.arch import emu_arch
        from forge.runtime.emu import EmuDevice
        dev, arch = EmuDevice(wave_size=wave), emu_arch(wave)
    else:
        pytest.skip(f"backend {backend} is not available in this build")
    return KernelContext(dev, arch, Dispatcher(dev, arch))


def pytest_generate_tests(metafunc):
    if "kctx" in metafunc.fixturenames:
        backend = metafunc.config.getoption("--backend")
        waves = [32, 64] if backend == "emu" else [0]
        metafunc.parametrize("kctx", waves, indirect=True, ids=[f"{backend}{w or ''}" for w in waves],
                             scope="session")


@pytest.fixture(scope="session")
def kctx(request):
    return _make_context(request.config.getoption("--backend"), request.param)
