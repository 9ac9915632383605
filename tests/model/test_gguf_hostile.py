"""Hostile GGUF files: corruptions of small valid files always end in a GGUFError or a clean load.

Never another exception, never a hang, never a large allocation; and whenever forge accepts a
corrupted file, gguf's own reader (an independent parser) must read the same keys and tensors.
`forge info` on such files prints one `forge: error:` line and exits 1.
"""

from __future__ import annotations

import itertools
import signal
import struct
import subprocess
import sys
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as QT

from forge.cli import main as forge_main
from forge.errors import GGUFError
from forge.model.config import config_from_gguf
from forge.model.gguf import load_gguf, verify_with_gguf_reader
from tests.helpers.gguf_bytes import craft, fields, kv_str, kv_u32, one_f32_tensor, plant, tensor_info
from tests.helpers.tiny_gguf import write_tiny_gguf

TIME_LIMIT_S = 10          # one load of a 31 KB file takes about a millisecond
MEMORY_LIMIT = 8 << 20     # bytes allocated by one load of a planted file (tracemalloc peak)


def examples(n: int) -> int:
    """n examples, or more under a profile that asks for more (HYPOTHESIS_PROFILE=thorough)."""
    return max(n, settings.default.max_examples)


@contextmanager
def time_limit(seconds: float = TIME_LIMIT_S):
    """Turns a hang into a test failure (SIGALRM; tests run in the main thread)."""
    def expire(signum, frame):
        raise TimeoutError(f"load did not finish in {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Files:
    """Writes each example to a fresh file: rewriting a file that an earlier example still maps
    would shrink it under the mapping."""

    def __init__(self, root: Path):
        self.root, self.n = root, itertools.count()

    def write(self, data: bytes) -> Path:
        path = self.root / f"case{next(self.n)}.gguf"
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    return Files(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, bytes]:
    """Valid files to corrupt: a tiny llama (Q8_0 matrices, full tokenizer), a tiny qwen2
    (biases, Q4_1, tied) and the minimal one-tensor file (so flips land in headers often)."""
    d = tmp_path_factory.mktemp("bases")
    small = dict(n_layer=1, n_embd=32, n_head=2, n_head_kv=1, n_ff=32)
    llama = write_tiny_gguf(d / "llama.gguf", weight_type="Q8_0", **small)
    qwen = write_tiny_gguf(d / "qwen.gguf", arch="qwen2", weight_type="Q4_1", tied=True, **small)
    out = {"llama": llama.read_bytes(), "qwen2": qwen.read_bytes(), "one": one_f32_tensor(8)}
    for b in out.values():
        assert load_gguf(Files(d).write(b)) is not None
    return out


def outcome(path: Path) -> str:
    """"refused", "unsupported" (loads, config refuses) or "ok"; anything else fails the test.

    When forge accepts the file, gguf's reader must agree with it (a GGUFError from the
    cross-check is not caught here: it fails the test).
    """
    with time_limit():
        try:
            g = load_gguf(path)
        except GGUFError:
            return "refused"
        verify_with_gguf_reader(g)
        try:
            config_from_gguf(g)
        except GGUFError:
            return "unsupported"
    return "ok"


def header_end(b: bytes) -> int:
    """Where the data section of a valid file starts."""
    return fields(b)[1][-1]


@st.composite
def flipped(draw, bases_: dict[str, bytes]) -> bytes:
    """A base file with 1 to 8 bytes replaced, mostly inside the header (where flips matter)."""
    b = bytearray(bases_[draw(st.sampled_from(sorted(bases_)))])
    end = header_end(bytes(b))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.one_of(st.integers(0, end - 1), st.integers(0, len(b) - 1)))
        b[pos] = draw(st.integers(0, 255).filter(lambda v, old=b[pos]: v != old))
    return bytes(b)


def test_byte_flips_anywhere(bases, files):
    @settings(max_examples=examples(300))
    @given(st.data())
    def run(data):
        assert outcome(files.write(data.draw(flipped(bases)))) in ("ok", "unsupported", "refused")
    run()


def test_truncation_at_every_section_boundary(bases, files):
    for name, b in bases.items():
        flds, bounds = fields(b)
        cuts = {c for x in bounds for c in (x - 1, x, x + 1)}
        cuts |= {c for f in flds for c in (f.pos, f.pos + 1)}   # at and inside every field
        cuts |= set(range(0, 64))   # every length through the fixed header and the first key
        cuts |= {len(b) - 1, len(b) - 2, (len(b) + header_end(b)) // 2}
        for cut in sorted(c for c in cuts if 0 <= c < len(b)):
            assert outcome(files.write(b[:cut])) == "refused", (name, cut)


def test_truncation_anywhere(bases, files):
    # The tiny writers put no padding after the last tensor: any shorter file is incomplete.
    @settings(max_examples=examples(100))
    @given(st.data())
    def run(data):
        b = bases[data.draw(st.sampled_from(sorted(bases)))]
        cut = data.draw(st.integers(0, len(b) - 1))
        assert outcome(files.write(b[:cut])) == "refused"
    run()


def huge_value(size: int) -> st.SearchStrategy[int]:
    """Values no valid file has in a field of that width (counts, lengths, dims, ids, offsets)."""
    if size == 8:
        return st.one_of(st.sampled_from([2**64 - 1, 2**63, 2**63 - 1, 2**62, 2**40, 2**32 + 1]),
                         st.integers(2**40, 2**64 - 1))
    return st.one_of(st.sampled_from([2**32 - 1, 2**31, 2**31 - 1, 2**16]),
                     st.integers(2**16, 2**32 - 1))


def test_every_field_with_its_largest_value_is_refused(bases, files):
    for name, b in bases.items():
        for f in fields(b)[0]:
            assert outcome(files.write(plant(b, f, -1))) == "refused", (name, f)


def test_planted_huge_values_are_refused_without_large_allocation(bases, files):
    @settings(max_examples=examples(200))
    @given(st.data())
    def run(data):
        b = bases[data.draw(st.sampled_from(sorted(bases)))]
        f = data.draw(st.sampled_from(fields(b)[0]))
        path = files.write(plant(b, f, data.draw(huge_value(f.size))))
        tracemalloc.start()
        try:
            assert outcome(path) == "refused", f
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < MEMORY_LIMIT, (f, peak)
    run()


def test_planted_arbitrary_values(bases, files):
    @settings(max_examples=examples(200))
    @given(st.data())
    def run(data):
        b = bases[data.draw(st.sampled_from(sorted(bases)))]
        f = data.draw(st.sampled_from(fields(b)[0]))
        value = data.draw(st.integers(0, 2 ** (8 * f.size) - 1))
        assert outcome(files.write(plant(b, f, value))) in ("ok", "unsupported", "refused")
    run()


# Tensor tables built from scratch: the loader either refuses them or hands out tensors that lie
# inside the file, one after the other, aligned, never overlapping. Each aspect is honest most of
# the time, so that accepted files are common too.
GOOD_TYPES = [QT.F32, QT.F16, QT.Q8_0, QT.Q4_K]
BAD_TYPES = [4, 5, 42, 2**31]   # not GGML types (4 and 5 were removed)
GOOD_DIMS, BAD_DIMS = [1, 2, 3, 32, 64, 256], [-1, 0, 2**31, 2**62]


def mostly(draw, good: list, bad: list):
    """An element of good seven times in eight, else one of bad."""
    return draw(st.sampled_from(bad if draw(st.integers(0, 7)) == 0 else good))


@st.composite
def tensor_tables(draw) -> bytes:
    alignment = mostly(draw, [1, 8, 32, 64, 4096], [0, 3, 48])
    kvs = [kv_str("general.architecture", "llama")]
    if alignment != 32 or draw(st.booleans()):
        kvs.append(kv_u32("general.alignment", alignment))
    align = alignment if alignment > 0 and alignment & (alignment - 1) == 0 else 32
    infos, offset = [], 0
    for i in range(draw(st.integers(0, 5))):
        ttype = mostly(draw, GOOD_TYPES, BAD_TYPES)
        block, size = GGML_QUANT_SIZES.get(ttype, (1, 4)) if isinstance(ttype, QT) else (1, 4)
        dims = [mostly(draw, GOOD_DIMS, BAD_DIMS) for _ in range(mostly(draw, [1, 2, 3, 4], [0, 5]))]
        if dims and dims[0] in GOOD_DIMS and draw(st.integers(0, 7)):
            dims[0] *= block   # rows a whole number of blocks, most of the time
        n = 1
        for d in dims:
            n *= max(d, 0)
        at = mostly(draw, [offset], [0, 8, 32, offset + 1, offset - align, 2**63])
        infos.append(tensor_info(mostly(draw, [f"t{i}"], ["a", "t0", "x" * 64]), dims,
                                 int(ttype), at % 2**64))
        offset += -(-min(n // block * size, 1 << 16) // align) * align
    data_len = mostly(draw, [offset, offset + 7], [0, offset // 2, max(offset - 1, 0)])
    return craft(kvs, infos, b"\x3c" * data_len, alignment=align)


def test_crafted_tensor_tables(files):
    @settings(max_examples=examples(300))
    @given(tensor_tables())
    def run(data):
        path = files.write(data)
        with time_limit():
            try:
                g = load_gguf(path)
            except GGUFError:
                return
        expected = 0
        for t in g.tensors.values():   # accepted: every tensor in bounds, in order, aligned
            assert t.data_offset == expected and t.offset == g.data_start + expected
            assert t.offset + t.nbytes <= g.file_size and len(t.data) == t.nbytes
            expected += -(-t.nbytes // g.alignment) * g.alignment
        verify_with_gguf_reader(g)
    run()


# ---------------------------------------------------------------------------- forge info on them
def run_info(capsys, path: Path) -> tuple[int, str, str]:
    with time_limit():
        code = forge_main(["info", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_error_line(code: int, out: str, err: str) -> None:
    assert code == 1 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("forge: error: "), err


@pytest.mark.parametrize("defect", ["truncated", "huge tensor count", "huge string", "flipped type"])
def test_info_on_hostile_file_prints_one_error_line(bases, files, capsys, defect):
    b = bases["llama"]
    flds = fields(b)[0]
    first = {k: next(f for f in flds if f.kind == k) for k in ("n_tensors", "str_len", "ggml_type")}
    bad = {"truncated": b[:len(b) // 2],
           "huge tensor count": plant(b, first["n_tensors"], 2**62),
           "huge string": plant(b, first["str_len"], 2**40),
           "flipped type": plant(b, first["ggml_type"], 77)}[defect]
    code, out, err = run_info(capsys, files.write(bad))
    assert_one_error_line(code, out, err)
    assert out == ""


def test_info_on_flipped_files(bases, files, capsys):
    @settings(max_examples=examples(60))
    @given(st.data())
    def run(data):
        path = files.write(data.draw(flipped(bases)))
        code, out, err = run_info(capsys, path)
        if code == 0:
            assert err == "" and "architecture" in out
        else:
            assert_one_error_line(code, out, err)
    run()


@pytest.mark.parametrize("how", ["truncated", "missing"])
def test_info_subprocess_exits_non_zero_without_traceback(bases, files, how):
    path = files.write(bases["llama"][:1000]) if how == "truncated" else files.root / "absent.gguf"
    proc = subprocess.run([sys.executable, "-m", "forge.cli", "info", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("forge: error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_one_f32_tensor_base_is_what_the_byte_level_tests_assume():
    b = one_f32_tensor(8)
    flds, bounds = fields(b)
    assert [f.kind for f in flds][:2] == ["n_tensors", "n_kv"] and bounds[-1] % 32 == 0
    assert struct.unpack_from("<8f", b, bounds[-1]) == tuple(float(i) for i in range(8))
