import pytest

from forge.arch import ARCHS, FEATURES, emu_arch, get_arch
from forge.errors import ArchError


def test_required_archs_present():
    for name in ["gfx1100", "gfx1101", "gfx1102", "gfx942", "gfx950", "sm_80", "sm_90", "emu", "emu64", "host"]:
        assert get_arch(name).name == name


def test_unknown_arch_lists_known():
    with pytest.raises(ArchError) as e:
        get_arch("nope")
    for name in ARCHS:
        assert name in str(e.value)


def test_wave_sizes_and_elf_mach():
    assert get_arch("gfx1100").wave_size == 32 and get_arch("gfx1100").elf_mach == 0x41
    assert get_arch("gfx950").wave_size == 64 and get_arch("gfx950").elf_mach == 0x4F
    assert get_arch("gfx942").elf_mach == 0x4C
    assert emu_arch(32).name == "emu" and emu_arch(64).name == "emu64"
    with pytest.raises(ArchError):
        emu_arch(16)


def test_features_are_known_and_queried_by_name():
    for a in ARCHS.values():
        assert a.features <= set(FEATURES), a.name
    assert get_arch("gfx950").has("mx_cvt") and not get_arch("gfx1100").has("mx_cvt")
    assert get_arch("gfx1100").has("wmma_f16") and not get_arch("gfx942").has("wmma_f16")
    with pytest.raises(ArchError):
        get_arch("gfx950").has("warp_drive")
