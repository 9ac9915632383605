"""`forge info`: architecture, hyper-parameters and per-type tensor counts/bytes; clean errors."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from forge.cli import main as forge_main
from forge.model import fetch
from forge.model.gguf import load_gguf
from forge.model.info import describe
from tests.helpers.tiny_gguf import write_tiny_gguf


def run_info(capsys, path) -> tuple[int, str, str]:
    code = forge_main(["info", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def type_rows(out: str) -> dict[str, tuple[int, int]]:
    """type name -> (count, bytes) from the tensor table of the output."""
    rows = re.findall(r"^    (\w+)\s+(\d+) tensors?\s+([\d,]+) bytes", out, re.M)
    return {t: (int(n), int(b.replace(",", ""))) for t, n, b in rows}


def test_describes_a_tiny_llama(tmp_path, capsys):
    path = write_tiny_gguf(tmp_path / "m.gguf", weight_type="Q8_0", embd_type="F16", n_layer=2)
    code, out, err = run_info(capsys, path)
    assert code == 0 and err == ""
    assert "architecture llama" in out and "forge-tiny" in out
    assert "layers       2, n_embd 64, n_ff 96, vocab 274, trained context 128" in out
    assert "4 heads, 2 KV heads (GQA 2), head_dim 16, qkv bias no" in out
    assert "rope         normal, base 10000" in out and "separate output.weight" in out
    assert "gpt2 (pre gpt-2), 274 tokens, 15 merges; bos 1, eos 2; add_bos false" in out
    g = load_gguf(path)
    counts, nbytes = Counter(), Counter()
    for t in g.tensors.values():
        counts[t.type_name] += 1
        nbytes[t.type_name] += t.nbytes
    assert type_rows(out) == {k: (counts[k], nbytes[k]) for k in counts}
    assert set(counts) == {"Q8_0", "F16", "F32"} and counts["F16"] == 1
    assert f"tensors      {len(g.tensors)}" in out
    assert f"total          {g.tensor_bytes:,} bytes" in out


def test_describe_qwen2(tmp_path):
    text, problem = describe(write_tiny_gguf(tmp_path / "q.gguf", arch="qwen2", tied=True))
    assert problem is None
    assert "architecture qwen2" in text and "qkv bias yes" in text and "rope         neox" in text
    assert "tied to token_embd" in text


def test_unsupported_model_is_described_then_refused(tmp_path, capsys):
    path = write_tiny_gguf(tmp_path / "g.gguf", arch="gemma3")
    code, out, err = run_info(capsys, path)
    assert code == 1 and "architecture gemma3" in out and "unsupported" in out
    assert type_rows(out)["F32"][0] > 0   # the tensor table is still there
    assert err.count("\n") == 1 and err.startswith("forge: error: ")
    assert "architecture 'gemma3' is not supported" in err


def test_non_standard_names_exit_non_zero_with_the_hint(tmp_path, capsys):
    path = write_tiny_gguf(tmp_path / "m.gguf",
                           rename_tensors={"output_norm.weight": "model.norm.weight"})
    code, out, err = run_info(capsys, path)
    assert code == 1 and err.count("\n") == 1
    assert "'model.norm.weight'" in err and "convert_hf_to_gguf.py" in err


def test_hostile_names_cannot_break_the_one_line_error(tmp_path, capsys):
    path = write_tiny_gguf(tmp_path / "m.gguf", rename_tensors={"output_norm.weight": "a\nb\x1b["})
    code, out, err = run_info(capsys, path)
    assert code == 1 and err.count("\n") == 1 and "\x1b" not in out + err


@pytest.mark.parametrize("target", ["absent", "dir", "text"])
def test_not_a_gguf_file(tmp_path, capsys, target):
    path = {"absent": tmp_path / "nope.gguf", "dir": tmp_path, "text": tmp_path / "t.gguf"}[target]
    if target == "text":
        path.write_text("this is a README, not a model\n" * 4)
    code, out, err = run_info(capsys, path)
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("forge: error: ")


def test_real_smollm2_if_cached(capsys):
    """DESIGN.md's facts about SmolLM2-135M-Instruct Q4_1, where the file was fetched before."""
    path = fetch.cached_path("smollm2-135m-instruct-q4_1")
    if path is None:
        pytest.skip("SmolLM2 not in the cache (forge.model.fetch.fetch_model fetches it)")
    code, out, err = run_info(capsys, path)
    assert code == 0 and err == ""
    assert "98,362,432 bytes" in out and "architecture llama" in out
    assert "layers       30, n_embd 576, n_ff 1536, vocab 49152" in out
    assert "9 heads, 3 KV heads (GQA 3), head_dim 64" in out
    assert "base 100000" in out and "tied to token_embd" in out
    assert "gpt2 (pre smollm), 49152 tokens" in out and "add_bos false" in out
    rows = type_rows(out)
    assert rows["Q4_1"][0] == 210 and rows["Q8_0"][0] == 1 and rows["F32"][0] == 61
