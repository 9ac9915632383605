"""JIT dispatch: one compile per variant per store, one load per process, argument checks."""

import numpy as np
import pytest

from forge.arch import emu_arch
from forge.codegen.store import Store
from forge.errors import SpecError
from forge.runtime.emu import EmuDevice
from forge.runtime.dispatch import Dispatcher


@pytest.fixture(scope="module")
def dev():
    return EmuDevice(wave_size=32)


def test_a_variant_is_compiled_once_per_store_and_loaded_once_per_dispatcher(dev, tmp_path):
    store = Store(tmp_path / "store")
    d1 = Dispatcher(dev, emu_arch(32), store)
    k = d1.get("elementwise", op="add", dtype="f32", block=256)
    assert d1.get("elementwise", op="add", dtype="f32", block=256) is k
    assert len(list(store.entries())) == 1
    d2 = Dispatcher(dev, emu_arch(32), store)
    d2.get("elementwise", op="add", dtype="f32", block=256)
    assert len(list(store.entries())) == 1  # the second dispatcher hit the store


def test_unknown_parameters_name_the_space(dev, tmp_path):
    d = Dispatcher(dev, emu_arch(32), Store(tmp_path / "store"))
    with pytest.raises(SpecError, match="is not one of"):
        d.get("elementwise", op="pow", dtype="f32", block=256)
    with pytest.raises(SpecError, match="missing"):
        d.get("elementwise", op="add")


def test_wrong_argument_count_names_the_arguments(dev, tmp_path):
    k = Dispatcher(dev, emu_arch(32), Store(tmp_path / "store")).get("elementwise", op="add", dtype="f32", block=256)
    with pytest.raises(TypeError, match="takes"):
        k(1, 2, n=3)


def test_kernel_runs_through_dispatch(dev, tmp_path):
    k = Dispatcher(dev, emu_arch(32), Store(tmp_path / "store")).get("elementwise", op="add", dtype="f32", block=256)
    a, b = np.arange(1000, dtype=np.float32), np.full(1000, 0.5, np.float32)
    bufs = [dev.alloc(4000) for _ in range(3)]
    dev.upload(bufs[0], a), dev.upload(bufs[1], b)
    values = {"a": bufs[0], "b": bufs[1], "y": bufs[2], "x": bufs[0], "n": 1000, "alpha": 1.0}
    k(*[values[x.name] for x in k.args], n=1000)
    np.testing.assert_array_equal(np.frombuffer(dev.download(bufs[2]), np.float32), a + b)
    for buf in bufs:
        dev.free(buf)
