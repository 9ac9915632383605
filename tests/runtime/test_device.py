"""The CPU backend as a Device: memory transfers with their bounds, misuse errors, the protocol."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.errors import DeviceError
from forge.runtime.emu import EmuDevice
from forge.runtime.device import Device


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "checked"])
def dev(request):
    return EmuDevice(wave_size=32, check=request.param)


def test_cpu_device_implements_the_protocol(dev):
    assert isinstance(dev, Device)


@given(n=st.integers(0, 5000), off=st.integers(0, 64), data=st.data())
def test_upload_download_round_trip_at_offsets(dev, n, off, data):
    payload = np.frombuffer(data.draw(st.binary(min_size=n, max_size=n)), np.uint8)
    buf = dev.alloc(n + off)
    try:
        dev.memset(buf, 0xAB)
        dev.upload(buf, payload, offset=off)
        got = dev.download(buf)
        assert got[:off] == b"\xab" * off and got[off:] == payload.tobytes()
    finally:
        dev.free(buf)


def test_copy_and_memset_ranges(dev):
    a, b = dev.alloc(100), dev.alloc(100)
    dev.upload(a, np.arange(100, dtype=np.uint8))
    dev.memset(b, 7)
    dev.copy(b, a, 10, dst_offset=90, src_offset=5)
    got = np.frombuffer(dev.download(b), np.uint8)
    assert np.all(got[:90] == 7) and list(got[90:]) == list(range(5, 15))
    dev.memset(b, 1, nbytes=3, offset=2)
    assert dev.download(b, 6) == bytes([7, 7, 1, 1, 1, 7])
    dev.free(a), dev.free(b)


@pytest.mark.parametrize("op", ["upload", "download", "memset", "copy"])
def test_transfers_outside_a_buffer_are_refused(dev, op):
    buf = dev.alloc(16)
    calls = {"upload": lambda: dev.upload(buf, np.zeros(17, np.uint8)),
             "download": lambda: dev.download(buf, 8, offset=9),
             "memset": lambda: dev.memset(buf, 0, nbytes=4, offset=-1),
             "copy": lambda: dev.copy(buf, buf, 16, dst_offset=1)}
    with pytest.raises(DeviceError, match="outside a buffer of 16 bytes"):
        calls[op]()
    dev.free(buf)


def test_freed_buffers_are_refused(dev):
    buf = dev.alloc(8)
    dev.free(buf)
    with pytest.raises(DeviceError, match="freed"):
        dev.download(buf)
    with pytest.raises(DeviceError, match="freed twice"):
        dev.free(buf)


def test_bad_wave_size_and_bad_module_are_refused():
    with pytest.raises(DeviceError, match="32 and 64"):
        EmuDevice(wave_size=16)
    with pytest.raises(DeviceError, match="cannot load"):
        EmuDevice().load_module(b"not an ELF object")


def test_streams_order_and_synchronize_returns():
    d = EmuDevice()
    s = d.create_stream()
    buf = d.alloc(4)
    d.memset(buf, 3, stream=s)
    d.synchronize(s)
    assert d.download(buf, stream=s) == b"\x03" * 4
    d.free(buf)
