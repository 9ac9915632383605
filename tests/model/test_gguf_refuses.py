"""load_gguf refuses every defect on FACTS.md's list (what llama.cpp's gguf.cpp refuses), one
planted defect per file, each with a GGUFError whose message says what is wrong."""

from __future__ import annotations

import os
import struct

import pytest
from gguf.constants import GGMLQuantizationType as QT

from forge.errors import GGUFError
import forge.model.gguf as gguf_module
from forge.model.gguf import load_gguf
from tests.helpers.gguf_bytes import (ARRAY, STRING, UINT32, UINT64, craft, gstr, kv, kv_array,
                                      kv_str, kv_u32, one_f32_tensor, tensor_info)

F32, Q8_0 = int(QT.F32), int(QT.Q8_0)
ARCH = kv_str("general.architecture", "llama")
DATA8 = struct.pack("<8f", *range(8))   # one F32 tensor of 8, 32 bytes: no padding needed


def _t(name="t.weight", dims=(8,), ttype=F32, offset=0) -> bytes:
    return tensor_info(name, list(dims), ttype, offset)


def _header_only(magic=b"GGUF", version=3, n_tensors=0, n_kv=0) -> bytes:
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv) + b"\0" * 64


CASES = {
    # 1. magic and version
    "bad magic": (_header_only(magic=b"GGML"), "not a GGUF file"),
    "zero magic": (_header_only(magic=b"\0\0\0\0"), "not a GGUF file"),
    "version 0": (_header_only(version=0), "version 0 is not supported"),
    "version 1": (_header_only(version=1), "version 1 is not supported"),
    "version 4": (_header_only(version=4), "version 4 is not supported"),
    "byte-swapped": (_header_only(version=3 << 24), "byte-swapped"),
    # 2. counts whose tables cannot fit
    "tensor count 2^64-1": (craft([ARCH], n_tensors=2**64 - 1), "tensors, whose table cannot fit"),
    # counts are uint64: a flipped top byte is a huge count, said as such (never "-72057594037927664")
    "tensor count, top byte flipped": (craft([ARCH], n_tensors=(0xFF << 56) | 1),
                                       "header claims 18374686479671623681 tensors"),
    "key count, top byte flipped": (craft([ARCH], n_kv=(0x80 << 56) | 1),
                                    "header claims 9223372036854775809 metadata keys"),
    "tensor count 2^40": (craft([ARCH], n_tensors=2**40), "tensors, whose table cannot fit"),
    "kv count 2^63-1": (craft([ARCH], n_kv=2**63 - 1), "metadata keys, whose table cannot fit"),
    "kv count one too many": (craft([ARCH], n_kv=2, pad=False) + gstr("abc")[:-1],
                              "truncated: key 1"),
    # 3. strings
    "string over 1 GiB": (craft([kv("general.name", STRING, gstr("x", 2**30 + 1))]), "limit"),
    "string past end": (craft([kv("general.name", STRING, gstr("abc", 4096))]), "truncated"),
    "key length 2^64-1": (craft([gstr("k", 2**64 - 1) + b"k"]), "limit"),
    # 4. arrays
    "array over 2^30 items": (craft([kv_array("a", UINT32, 2**30 + 1, b"")]), "limit"),
    "array past end": (craft([kv_array("a", UINT64, 2**20, b"\0" * 8)]), "truncated"),
    "string array past end": (craft([kv_array("a", STRING, 2**29, gstr("x"))]), "strings, more than"),
    "nested array": (craft([kv_array("a", ARRAY, 1, b"")]), "nested array"),
    # 5. keys and value types
    "empty key": (craft([kv_u32("", 1)]), "is empty"),
    "duplicate key": (craft([kv_u32("a.b", 1), kv_u32("a.b", 2)]), "duplicate key 'a.b'"),
    "unknown value type": (craft([kv("a", 13, b"\0" * 8)]), "unknown value type 13"),
    "value type 2^32-1": (craft([kv("a", 2**32 - 1, b"")]), "unknown value type"),
    "unknown array type": (craft([kv_array("a", 99, 1, b"\0")]), "unknown value type 99"),
    "key not UTF-8": (craft([kv(b"a\xff", UINT32, b"\0" * 4)]), "not valid UTF-8"),
    # 6. alignment
    "alignment 0": (craft([kv_u32("general.alignment", 0)]), "not a non-zero power of two"),
    "alignment 48": (craft([kv_u32("general.alignment", 48)]), "not a non-zero power of two"),
    "alignment as UINT64": (craft([kv("general.alignment", UINT64, struct.pack("<Q", 32))]),
                            "must be a UINT32"),
    # 7. tensor names
    "name of 64 bytes": (craft([ARCH], [_t("n" * 64)], DATA8), "GGML allows at most 63"),
    "duplicate tensor": (craft([ARCH], [_t("a"), _t("a", offset=32)], DATA8 * 2),
                         "duplicate tensor name 'a'"),
    "empty tensor name": (craft([ARCH], [_t("")], DATA8), "empty name"),
    "tensor name not UTF-8": (craft([ARCH], [_t(b"\xc3(")], DATA8), "not valid UTF-8"),
    # 8. dimensions
    "five dims": (craft([ARCH], [_t(dims=(1, 1, 1, 1, 8))], DATA8), "5 dimensions"),
    "zero dims": (craft([ARCH], [_t(dims=())], DATA8), "0 dimensions"),
    "n_dims 2^32-1": (craft([ARCH], [gstr("t") + struct.pack("<I", 2**32 - 1)]), "dimensions"),
    # dims are uint64: a -1 written signed reads as 2^64-1 (a huge shape, not a "negative dim")
    "dim 2^64-1": (craft([ARCH], [_t(dims=(8, -1))], DATA8), r"\[8, 18446744073709551615\] has an element count"),
    "zero dim": (craft([ARCH], [_t(dims=(8, 0))], DATA8), "dimension of 0"),
    "element count overflows int64": (craft([ARCH], [_t(dims=(2**32, 2**32))], DATA8),
                                      "overflows int64"),
    "absurd but representable dims": (craft([ARCH], [_t(dims=(2**20, 2**20, 2**20))], DATA8),
                                      "past the end"),
    # 9. types
    "removed type 4 (Q4_2)": (craft([ARCH], [_t(ttype=4)], DATA8), "unknown GGML type id 4"),
    "type 1000": (craft([ARCH], [_t(ttype=1000)], DATA8), "unknown GGML type id 1000"),
    "type 2^32-1": (craft([ARCH], [_t(ttype=2**32 - 1)], DATA8), "unknown GGML type id"),
    "row not a block multiple": (craft([ARCH], [_t(dims=(33,), ttype=Q8_0)], b"\0" * 64),
                                 "not a multiple of its block size 32"),
    # 10. data section
    "data section missing": (craft([ARCH], [_t()], b""), "past the end"),
    "no padding before data": (craft([ARCH, kv_u32("general.alignment", 4096)], [_t()], DATA8,
                                     alignment=4096, pad=False), "past the end"),
    # 11. offsets
    "overlapping tensors": (craft([ARCH], [_t("a"), _t("b")], DATA8 * 2),
                            "tensor 'b' has data offset 0, expected 32"),
    "overlap by one block": (craft([ARCH], [_t("a", (16,)), _t("b", offset=32)], DATA8 * 3),
                             "tensor 'b' has data offset 32, expected 64"),
    "gap between tensors": (craft([ARCH], [_t("a"), _t("b", offset=64)], DATA8 * 3),
                            "expected 32"),
    "unaligned offset": (craft([ARCH], [_t("a", (2,)), _t("b", offset=8)], DATA8 * 2),
                         "has data offset 8, expected 32"),
    "first offset not zero": (craft([ARCH], [_t(offset=32)], DATA8 * 2), "expected 0"),
    "offset 2^64-1": (craft([ARCH], [_t(offset=2**64 - 1)], DATA8), "expected 0"),
    # 12. short reads
    "header of 20 bytes": (b"GGUF" + struct.pack("<I", 3) + b"\0" * 12, "too short"),
    "truncated value": (craft([kv_u32("a.b", 1)], pad=False)[:-2], "truncated: value of 'a.b'"),
    "truncated tensor data": (one_f32_tensor(8)[:-1], "past the end"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refuses(tmp_path, name):
    data, message = CASES[name]
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError, match=message) as e:
        load_gguf(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_63_byte_name_is_the_longest_accepted(tmp_path):
    path = tmp_path / "ok.gguf"
    path.write_bytes(craft([ARCH], [_t("n" * 63)], DATA8))
    assert list(load_gguf(path).tensors) == ["n" * 63]


@pytest.mark.parametrize("alignment", [1, 8, 64, 1 << 20])
def test_powers_of_two_alignments_load(tmp_path, alignment):
    path = tmp_path / "ok.gguf"
    path.write_bytes(craft([kv_u32("general.alignment", alignment)],
                           [_t("a", (3,)), _t("b", offset=-(-12 // alignment) * alignment)],
                           DATA8[:12] + b"\0" * ((-12) % alignment) + DATA8, alignment=alignment))
    g = load_gguf(path)
    assert g.alignment == alignment and g.tensor("b").array().tolist() == list(range(8))


def test_missing_file_directory_and_short_file(tmp_path):
    with pytest.raises(GGUFError, match="no such file"):
        load_gguf(tmp_path / "absent.gguf")
    with pytest.raises(GGUFError, match="not a regular file"):
        load_gguf(tmp_path)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(GGUFError, match="too short"):
        load_gguf(tmp_path / "empty.gguf")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)   # opening it for reading would block forever
    with pytest.raises(GGUFError, match="not a regular file"):
        load_gguf(fifo)


def test_unreadable_file_is_a_gguf_error(tmp_path, monkeypatch):
    path = tmp_path / "locked.gguf"
    path.write_bytes(one_f32_tensor())

    def denied(*args, **kwargs):   # what mapping an unreadable file raises (tests may run as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(gguf_module.np, "memmap", denied)
    with pytest.raises(GGUFError, match="cannot open: Permission denied"):
        load_gguf(path)
