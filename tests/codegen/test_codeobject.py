"""Reading AMDGPU code objects: real objects compiled by the ziglang wheel's clang for gfx1100 and
gfx950, hand-built ELF files for the metadata checks, and damaged files that must raise
CodeObjectError (never struct.error, IndexError or a msgpack exception)."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge.codegen.codeobject import CodeObject, read_code_object, resources, RESOURCE_KEYS
from forge.errors import CodeObjectError

SOURCE = r"""
extern "C" __attribute__((global)) void lds_kernel(float* x, int n) {
  __attribute__((shared)) float tile[256];          // 1024 bytes of static LDS
  unsigned i = __builtin_amdgcn_workitem_id_x();
  tile[i] = x[i];
  __builtin_amdgcn_s_barrier();
  if ((int)i < n) x[i] = tile[255 - i];
}
extern "C" __attribute__((global)) void args_kernel(float* x, int n, float* y) {
  // workgroup_size reads the implicit kernel arguments, so the compiler appends hidden_* args
  unsigned i = __builtin_amdgcn_workgroup_id_x() * __builtin_amdgcn_workgroup_size_x()
             + __builtin_amdgcn_workitem_id_x();
  if ((int)i < n) y[i] = x[i];
}
"""
MACH = {"gfx1100": 0x41, "gfx950": 0x4F}
WAVE = {"gfx1100": 32, "gfx950": 64}


def _zig(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "ziglang", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module", params=sorted(MACH))
def compiled(request, tmp_path_factory):
    """(arch, path of a linked code object holding lds_kernel and args_kernel)."""
    if importlib.util.find_spec("ziglang") is None:
        pytest.skip("ziglang is not installed: no portable clang to build AMDGPU code objects with")
    arch = request.param
    d = tmp_path_factory.mktemp(f"co-{arch}")
    (d / "k.hip").write_text(SOURCE)
    _zig("clang", "-cc1", "-triple", "amdgcn-amd-amdhsa", "-target-cpu", arch, "-fcuda-is-device", "-x", "hip",
         "-O3", "-mcode-object-version=5", "-emit-obj", str(d / "k.hip"), "-o", str(d / "k.o"))
    _zig("ld.lld", "-shared", "-o", str(d / "k.co"), str(d / "k.o"))
    return arch, d / "k.co"


# ------------------------------------------------------------------------------- real objects
def test_header_target_and_kernels(compiled):
    arch, path = compiled
    co = read_code_object(path)
    assert isinstance(co, CodeObject) and co.source == str(path)
    assert co.mach == MACH[arch] and co.e_flags & 0xFF == MACH[arch]
    assert co.target == f"amdgcn-amd-amdhsa--{arch}" and co.processor == arch
    assert co.abi_version == 3  # -mcode-object-version=5
    assert sorted(k.name for k in co.kernels) == ["args_kernel", "lds_kernel"]
    for k in co.kernels:
        assert k.symbol == k.name + ".kd"
        assert k.wavefront_size == WAVE[arch] and k.vgpr_count > 0 and k.sgpr_count > 0
        assert k.max_flat_workgroup_size == 1024 and k.private_segment_fixed_size == 0
        assert k.vgpr_spill_count == 0 and k.sgpr_spill_count == 0
        assert (k.agpr_count is not None) == (arch == "gfx950")  # AGPRs exist on CDNA only
    assert read_code_object(path.read_bytes()).kernels == co.kernels  # bytes and path agree


def test_lds_bytes_reported(compiled):
    arch, path = compiled
    co = read_code_object(path)
    assert co.kernel("lds_kernel").group_segment_fixed_size == 256 * 4
    assert co.kernel("args_kernel").group_segment_fixed_size == 0


def test_args_follow_the_declaration_then_hidden(compiled):
    _, path = compiled
    k = read_code_object(path).kernel("args_kernel.kd")  # by symbol too
    explicit = [(a.offset, a.size, a.value_kind) for a in k.explicit_args]
    assert explicit == [(0, 8, "global_buffer"), (8, 4, "by_value"), (16, 8, "global_buffer")]
    assert k.args[0].name.startswith("x") and k.args[1].name == "n" and k.args[2].name.startswith("y")
    assert k.args[:3] == k.explicit_args  # explicit first, then only hidden ones
    hidden = k.hidden_args
    assert hidden and all(a.value_kind.startswith("hidden_") for a in hidden)
    assert hidden[0].offset >= 24 and "hidden_group_size_x" in {a.value_kind for a in hidden}
    assert all(b.offset >= a.offset + a.size for a, b in zip(k.args, k.args[1:]))  # no overlap
    assert k.kernarg_segment_size >= k.args[-1].offset + k.args[-1].size
    assert k.kernarg_segment_align == 8


def test_resources_dict(compiled):
    arch, path = compiled
    co = read_code_object(path)
    r = resources(co, "lds_kernel")
    assert tuple(r) == RESOURCE_KEYS
    assert r["lds"] == 1024 and r["wave"] == WAVE[arch] and r["scratch"] == 0 and r["spills"] == 0
    assert r["vgpr"] == co.kernel("lds_kernel").vgpr_count and r["sgpr"] > 0
    assert (r["agpr"] is None) == (arch == "gfx1100")
    assert resources(co, "lds_kernel.kd") == r
    with pytest.raises(CodeObjectError, match="no kernel 'nope'.*lds_kernel"):
        resources(co, "nope")


def test_relocatable_object_is_not_mistaken_for_garbage(compiled):
    # The unlinked .o carries the same note; reading it must work (the toolchain may hand either).
    _, path = compiled
    assert read_code_object(path.with_suffix(".o")).mach == read_code_object(path).mach


# ---------------------------------------------------------------------- damaged real objects
@pytest.mark.parametrize("cut", [0, 3, 4, 16, 63, 64, 200, -100, -1])
def test_truncated_file_raises(compiled, cut):
    _, path = compiled
    data = path.read_bytes()
    with pytest.raises(CodeObjectError, match=r"k\.co"):
        read_code_object(data[:cut], str(path))


def test_not_a_file_or_not_elf(tmp_path):
    with pytest.raises(CodeObjectError, match="cannot read"):
        read_code_object(tmp_path / "absent.co")
    (tmp_path / "g.co").write_bytes(b"garbage, not a code object" * 10)
    with pytest.raises(CodeObjectError, match=r"g\.co: not an ELF"):
        read_code_object(tmp_path / "g.co")


def _patch(data: bytes, off: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


def test_wrong_class_machine_endianness(compiled):
    _, path = compiled
    data = path.read_bytes()
    with pytest.raises(CodeObjectError, match="ELF class 1"):
        read_code_object(_patch(data, 4, "B", 1))
    with pytest.raises(CodeObjectError, match="little-endian"):
        read_code_object(_patch(data, 5, "B", 2))
    with pytest.raises(CodeObjectError, match="machine 62"):
        read_code_object(_patch(data, 18, "<H", 62))  # x86-64
    with pytest.raises(CodeObjectError, match="section header size"):
        read_code_object(_patch(data, 58, "<H", 40))
    with pytest.raises(CodeObjectError, match="past the end"):
        read_code_object(_patch(data, 40, "<Q", len(data) - 10))  # e_shoff near the end


# Bytes are flipped where the parser looks: the ELF header, the note, the section headers.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_byte_flips_raise_only_code_object_error(compiled, data):
    _, path = compiled
    raw = path.read_bytes()
    note = raw.find(b"AMDGPU\0\0") - 12
    shoff = struct.unpack_from("<Q", raw, 40)[0]
    regions = [(0, 64), (note, note + 200), (shoff, len(raw))]
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        lo, hi = data.draw(st.sampled_from(regions))
        b[data.draw(st.integers(lo, hi - 1))] ^= data.draw(st.integers(1, 255))
    try:
        read_code_object(bytes(b))
    except CodeObjectError:
        pass  # a flip that keeps the file readable is fine; any other exception type is the bug


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(0.0, 1.0, exclude_max=True))
def test_any_truncation_raises(compiled, frac):
    _, path = compiled
    raw = path.read_bytes()
    with pytest.raises(CodeObjectError):
        read_code_object(raw[:int(len(raw) * frac)])


# ------------------------------------------------------------------------ hand-built ELF files
KERNEL = {".name": "k", ".symbol": "k.kd", ".kernarg_segment_size": 8, ".kernarg_segment_align": 8,
          ".group_segment_fixed_size": 64, ".private_segment_fixed_size": 16, ".wavefront_size": 64,
          ".sgpr_count": 10, ".vgpr_count": 20, ".agpr_count": 4, ".sgpr_spill_count": 1,
          ".vgpr_spill_count": 2, ".max_flat_workgroup_size": 256,
          ".args": [{".offset": 0, ".size": 8, ".value_kind": "global_buffer", ".name": "p"}]}


def make_elf(desc: bytes, *, name: bytes = b"AMDGPU", ntype: int = 32, flags: int = 0x44F,
             extra_notes: bytes = b"") -> bytes:
    """A minimal ELF64 for EM_AMDGPU: header, one SHT_NOTE section, a null + note section table."""
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    note = extra_notes + struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)
    note_off = 64
    shoff = note_off + len(note) + (-(note_off + len(note)) % 8)
    ident = b"\x7fELF" + bytes([2, 1, 1, 64, 3]) + b"\0" * 7
    hdr = struct.pack("<16sHHIQQQIHHHHHH", ident, 3, 224, 1, 0, 0, shoff, flags, 64, 56, 0, 64, 2, 0)
    null = b"\0" * 64
    sec = struct.pack("<IIQQQQIIQQ", 0, 7, 2, 0, note_off, len(note), 0, 0, 4, 0)
    return hdr + note + b"\0" * (shoff - note_off - len(note)) + null + sec


def meta(**over) -> bytes:
    m = {"amdhsa.version": [1, 2], "amdhsa.target": "amdgcn-amd-amdhsa--gfx950:xnack-", "amdhsa.kernels": [KERNEL]}
    m.update(over)
    return msgpack.packb(m)


def test_hand_built_object_round_trips():
    gnu = struct.pack("<III", 4, 4, 1) + b"GNU\0" + b"\1\2\3\4"  # an unrelated note comes first
    co = read_code_object(make_elf(meta(), extra_notes=gnu))
    assert co.mach == 0x4F and co.e_flags == 0x44F and co.processor == "gfx950" and co.version == (1, 2)
    k = co.kernel("k")
    assert (k.agpr_count, k.sgpr_spill_count, k.vgpr_spill_count) == (4, 1, 2)
    assert resources(co, "k") == {"vgpr": 20, "sgpr": 10, "agpr": 4, "lds": 64, "scratch": 16, "wave": 64,
                                  "spills": 3}
    assert co.metadata["amdhsa.kernels"][0][".name"] == "k"


def test_optional_counts_missing_become_none():
    k = {key: v for key, v in KERNEL.items() if key not in (".agpr_count", ".sgpr_spill_count", ".vgpr_spill_count")}
    co = read_code_object(make_elf(meta(**{"amdhsa.kernels": [k]})))
    r = resources(co, "k.kd")
    assert r["agpr"] is None and r["spills"] is None and r["vgpr"] == 20


@pytest.mark.parametrize("elf, words", [
    (make_elf(meta(), ntype=33), "no AMDGPU metadata note"),
    (make_elf(meta(), name=b"AMDGPX"), "no AMDGPU metadata note"),
    (make_elf(b"\xc1\xc1"), "not valid MessagePack"),
    (make_elf(meta() + b"\x00"), "not valid MessagePack"),  # trailing data
    (make_elf(msgpack.packb([1, 2])), "expected a map"),
    (make_elf(meta(**{"amdhsa.kernels": {"k": 1}})), "amdhsa.kernels is dict"),
    (make_elf(meta(**{"amdhsa.kernels": ["k"]})), r"amdhsa.kernels\[0\] is str"),
    (make_elf(meta(**{"amdhsa.kernels": [{**KERNEL, ".vgpr_count": "20"}]})), ".vgpr_count = '20'"),
    (make_elf(meta(**{"amdhsa.kernels": [{**KERNEL, ".vgpr_count": -1}]})), "non-negative"),
    (make_elf(meta(**{"amdhsa.kernels": [{**KERNEL, ".wavefront_size": True}]})), "wavefront_size = True"),
    (make_elf(meta(**{"amdhsa.kernels": [{k: v for k, v in KERNEL.items() if k != ".sgpr_count"}]})),
     "lacks .sgpr_count"),
    (make_elf(meta(**{"amdhsa.kernels": [{**KERNEL, ".args": [{".offset": 0}]}]})), "lacks .size"),
    (make_elf(meta(**{"amdhsa.kernels": [{**KERNEL, ".args": {}}]})), ".args of type dict"),
    (make_elf(meta(**{"amdhsa.target": 5})), "amdhsa.target = 5"),
    (make_elf(meta(**{"amdhsa.version": "1.2"})), "amdhsa.version"),
])
def test_malformed_metadata(elf, words):
    with pytest.raises(CodeObjectError, match=words.replace(".", r"\.") if "\\" not in words else words):
        read_code_object(elf, "hand.co")


def test_note_running_past_its_section():
    elf = bytearray(make_elf(meta()))
    struct.pack_into("<I", elf, 64 + 4, 10_000)  # descsz far beyond the section
    with pytest.raises(CodeObjectError, match="runs past its section"):
        read_code_object(bytes(elf))


def test_note_section_outside_the_file():
    elf = bytearray(make_elf(meta()))
    shoff = struct.unpack_from("<Q", elf, 40)[0]
    struct.pack_into("<Q", elf, shoff + 64 + 32, 1 << 40)  # second section's sh_size
    with pytest.raises(CodeObjectError, match="note section"):
        read_code_object(bytes(elf))
