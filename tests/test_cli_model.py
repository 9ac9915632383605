"""The model commands of the CLI (forge/cli_model.py) on a tiny GGUF the test writes, on the host
CPU backend: exit status, output and one-line errors."""

import json

import pytest

from tests.test_cli import run_cli
from tests.helpers.tiny_gguf import write_tiny_gguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "tiny.gguf", n_embd=128, n_head=2, n_head_kv=1, n_ff=256,
                           weight_type="Q4_0")


def test_run_streams_the_continuation_and_reports_speed(capsys, tiny):
    code, out, err = run_cli(capsys, "run", tiny, "-p", "hello world", "-n", "5", "--temp", "0", "--backend", "cpu")
    assert code == 0 and out.startswith("hello world")
    assert "prefill" in err and "decode" in err and "t/s" in err


def test_run_seed_reproduces(capsys, tiny):
    runs = [run_cli(capsys, "run", tiny, "-p", "the", "-n", "8", "--temp", "1.5", "--seed", "4", "--backend", "cpu")[1]
            for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("argv, code, match", [
    (["run", "no-such.gguf", "-p", "x"], 1, "no model file 'no-such.gguf'"),
    (["run", "{tiny}", "-p", ""], 1, "prompt is empty"),
    (["run", "{tiny}", "-p", "x", "--top-p", "0"], 1, "top_p"),
    (["run", "{tiny}", "-p", "x", "--ctx", "0"], 1, "max_context"),
    (["run", "{tiny}", "-p", "x", "--backend", "tpu"], 2, "invalid choice"),
    (["fetch", "gpt5"], 1, "unknown model 'gpt5'"),
    (["build", "--arch", "host", "--model", "{tiny}"], 1, "use it with --pack"),
])
def test_bad_input_is_one_line(capsys, tiny, argv, code, match):
    with pytest.raises(SystemExit) if code == 2 else _nothing() as e:
        got, out, err = run_cli(capsys, *[a.format(tiny=tiny) for a in argv])
    if code == 2:
        assert e.value.code == 2 and match in capsys.readouterr().err
        return
    assert got == code and match in err and err.count("\n") == 1 and err.startswith("forge: error:")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_graph_prints_and_serializes(capsys, tiny):
    code, out, _ = run_cli(capsys, "graph", tiny)
    assert code == 0 and "= attention(" in out
    code, out, _ = run_cli(capsys, "graph", tiny, "--json")
    g = json.loads(out)
    assert code == 0 and g["name"] == "llama" and any(n["op"] == "matmul" for n in g["nodes"])


def test_bench_json(capsys, tiny):
    code, out, _ = run_cli(capsys, "bench", tiny, "--backend", "cpu", "-p", "16", "-n", "4", "--reps", "1", "--json")
    r = json.loads(out)
    assert code == 0 and r["decode_tps"] > 0 and r["prefill_tps"] > 0 and r["bytes_per_token"] > 0
    assert {k[0] for k in r["kernels"]} >= {"matmul_q8", "attn_decode", "sample"}
    # the prompt's last chunk (16 tokens here) kernel by kernel: attention is flash_attn, no sampler
    assert r["prefill_chunk"] == 16 and {k[0] for k in r["prefill_kernels"]} >= {"flash_attn", "rmsnorm"}
    assert "sample" not in {k[0] for k in r["prefill_kernels"]} and all(k[1] > 0 and k[2] > 0 for k in r["prefill_kernels"])
    code, out, _ = run_cli(capsys, "bench", tiny, "--backend", "cpu", "-p", "16", "-n", "4", "--reps", "1")
    assert code == 0 and "prefill, the last chunk of 16 tokens:" in out and out.count("(one by one)") == 2


def test_perplexity(capsys, tiny, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello world, the world is old. " * 40)
    code, out, err = run_cli(capsys, "perplexity", tiny, text, "--ctx", "16", "--chunks", "2", "--backend", "cpu")
    assert code == 0 and out.startswith("perplexity: ") and "2 windows of 16" in out
    code, _, err = run_cli(capsys, "perplexity", tiny, text, "--ctx", "4096", "--backend", "cpu")
    assert code == 1 and "needs at least 8192" in err


def test_build_pack_for_a_model_then_run_from_it(capsys, tiny, tmp_path):
    pack = tmp_path / "p.tar"
    code, out, err = run_cli(capsys, "build", "--arch", "host", "--pack", pack, "--model", tiny, "-q",
                             "--cache-dir", tmp_path / "store")
    assert code == 0 and pack.is_file() and f"what {tiny} needs" in out
    code, out, err = run_cli(capsys, "run", tiny, "-p", "hello", "-n", "3", "--temp", "0", "--kernels", pack)
    assert code == 0 and out.startswith("hello")
