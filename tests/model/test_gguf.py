"""forge.model.gguf on valid files: it must agree with what was written and with gguf's reader."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType as QT

from forge.errors import GGUFError
from forge.model import fetch
from forge.model.gguf import load_gguf
from tests.helpers.gguf_bytes import craft, kv, kv_str, kv_u32, one_f32_tensor, tensor_info
from tests.helpers.tiny_gguf import write_tiny_gguf


@pytest.mark.parametrize("kw", [dict(), dict(arch="qwen2", weight_type="Q8_0", tied=True),
                                dict(weight_type="Q4_1", embd_type="Q8_0", n_head_kv=1),
                                dict(weight_type="Q4_K", n_embd=256, n_ff=512, n_layer=1),
                                dict(weight_type="F16", output_type="Q5_0")])
def test_tensors_agree_with_gguf_reader(tmp_path, kw):
    path = write_tiny_gguf(tmp_path / "m.gguf", **kw)
    g = load_gguf(path)
    ref = gguf.GGUFReader(path)
    assert list(g.tensors) == [t.name for t in ref.tensors]
    for t in ref.tensors:
        mine = g.tensors[t.name]
        assert mine.ggml_type == t.tensor_type
        assert mine.ggml_shape == tuple(int(d) for d in t.shape)
        assert mine.shape == tuple(reversed(mine.ggml_shape))
        assert mine.offset == t.data_offset and mine.nbytes == t.n_bytes
        assert np.array_equal(mine.data, np.asarray(t.data).reshape(-1).view(np.uint8))
        deq = gguf.quants.dequantize(mine.rows(), mine.ggml_type)
        assert deq.shape == mine.shape and np.isfinite(deq).all()


@pytest.mark.parametrize("kw", [dict(), dict(arch="qwen2", weight_type="Q4_0", tied=True)])
def test_gguf_reader_agrees_when_asked(tmp_path, kw):
    g = load_gguf(write_tiny_gguf(tmp_path / "m.gguf", **kw), verify=True)
    assert len(g.tensors) > 10


def test_verify_reports_a_disagreement(tmp_path, monkeypatch):
    from forge.model import gguf as gguf_module
    g = load_gguf(write_tiny_gguf(tmp_path / "m.gguf"))
    real = gguf_module._reader_view
    monkeypatch.setattr(gguf_module, "_reader_view",
                        lambda g: (*real(g)[:3], real(g)[3][:-1] + [("x", 0, (1,), 0, 4)]))
    with pytest.raises(GGUFError, match="disagree about the tensors: .*'x'"):
        gguf_module.verify_with_gguf_reader(g)


def test_verify_wraps_whatever_gguf_reader_raises(tmp_path, monkeypatch):
    from forge.model import gguf as gguf_module
    g = load_gguf(write_tiny_gguf(tmp_path / "m.gguf"))

    def broken(*args, **kwargs):
        raise IndexError("index 7 is out of bounds")
    monkeypatch.setattr(gguf_module, "GGUFReader", broken)
    with pytest.raises(GGUFError, match="gguf's reader refuses the file .IndexError"):
        gguf_module.verify_with_gguf_reader(g)


def test_tensor_views_share_the_file_mapping(tmp_path):
    g = load_gguf(write_tiny_gguf(tmp_path / "m.gguf"))
    t = g.tensor("blk.0.attn_q.weight")
    assert isinstance(t.data, np.memmap) and not t.data.flags.owndata
    assert not t.data.flags.writeable
    raw = open(g.path, "rb").read()[t.offset:t.offset + t.nbytes]
    assert t.array().tobytes() == raw and t.array().shape == (64, 64)


def test_offsets_are_sequential_and_padded(tmp_path):
    g = load_gguf(write_tiny_gguf(tmp_path / "m.gguf", weight_type="Q4_0"))
    assert g.data_start % g.alignment == 0
    expected = 0
    for t in g.tensors.values():
        assert t.data_offset == expected and t.offset == g.data_start + expected
        expected += -(-t.nbytes // g.alignment) * g.alignment


def test_metadata_types_and_values(tmp_path):
    g = load_gguf(write_tiny_gguf(tmp_path / "m.gguf", rope_base=5e5))
    assert g.architecture == "llama" and g.version == 3
    assert g.get("llama.block_count") == 2 and isinstance(g.get("llama.block_count"), int)
    assert g.get("llama.rope.freq_base") == 5e5
    assert g.get("tokenizer.ggml.add_bos_token") is False
    assert g.get("tokenizer.ggml.tokens")[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = g.kv["tokenizer.ggml.token_type"]
    assert types.elem_type == gguf.GGUFValueType.INT32 and types.value.dtype == np.int32
    assert not types.value.flags.writeable and not types.value.flags.owndata   # a view, no copy
    assert g.get("missing.key", 7) == 7 and "llama.block_count" in g


def test_custom_alignment_is_honoured(tmp_path):
    path = tmp_path / "a.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(256)
    w.add_tensor("a", np.arange(3, dtype=np.float32))
    w.add_tensor("b", np.arange(5, dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    g = load_gguf(path)
    assert g.alignment == 256 and g.data_start % 256 == 0
    assert g.tensor("b").data_offset == 256
    assert g.tensor("b").array().tolist() == [0, 1, 2, 3, 4]


def test_invalid_utf8_string_value_round_trips(tmp_path):
    path = tmp_path / "u.gguf"
    path.write_bytes(craft([kv_str("general.architecture", "llama"),
                            kv("general.name", 8, struct.pack("<Q", 3) + b"a\xffb")]))
    name = load_gguf(path).get("general.name")
    assert name.encode("utf-8", "surrogateescape") == b"a\xffb"


def test_zero_tensor_file_without_data_section_loads(tmp_path):
    path = tmp_path / "z.gguf"
    path.write_bytes(craft([kv_u32("x.y", 1)], pad=False))
    g = load_gguf(path)
    assert g.tensors == {} and g.get("x.y") == 1


def test_baseline_of_hostile_tests_is_valid(tmp_path):
    path = tmp_path / "one.gguf"
    path.write_bytes(one_f32_tensor(8))
    assert load_gguf(path).tensor("t.weight").array().tolist() == list(range(8))


def test_missing_tensor_name_is_a_gguf_error(tmp_path):
    path = tmp_path / "one.gguf"
    path.write_bytes(one_f32_tensor(8))
    with pytest.raises(GGUFError, match="no tensor named 'nope'"):
        load_gguf(path).tensor("nope")


def test_array_refuses_block_types(tmp_path):
    path = tmp_path / "q.gguf"
    path.write_bytes(craft([], [tensor_info("q", [32], int(QT.Q8_0), 0)], b"\0" * 34))
    t = load_gguf(path).tensor("q")
    assert t.rows().shape == (34,) and t.block_size == 32 and t.type_size == 34
    with pytest.raises(GGUFError, match="Q8_0"):
        t.array()


def test_real_smollm2_if_cached():
    """The real model, only where it was fetched before (never downloaded by the tests)."""
    path = fetch.cached_path("smollm2-135m-instruct-q4_1")
    if path is None:
        pytest.skip("SmolLM2 not in the cache (forge.model.fetch.fetch_model fetches it)")
    g = load_gguf(path, verify=True)   # gguf's reader agrees on every key and tensor (~3 s)
    assert g.file_size == 98_362_432 and g.architecture == "llama"
    assert len(g.tensors) == 272 and g.tensor("token_embd.weight").ggml_type == QT.Q8_0
    assert g.tensor("blk.0.ffn_down.weight").ggml_type == QT.Q4_1
    assert len(g.get("tokenizer.ggml.tokens")) == 49152
