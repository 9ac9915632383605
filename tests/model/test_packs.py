"""A model from a kernel pack: `build_pack` for the host target and a tiny GGUF, then
forge.load(..., kernels=pack) in a subprocess with no compiler anywhere (PATH emptied, CXX unset)
gives the same greedy tokens as with one; packs for another arch, lacking a kernel, or built on a
CPU with features this one lacks are refused before anything runs."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import forge
from forge.arch import get_arch
from forge.codegen.store import Store
from forge.errors import PackError
from forge.model.packs import build_pack, model_kernels
from tests.helpers.tiny_gguf import write_tiny_gguf

SHAPE = dict(n_embd=128, n_head=2, n_head_kv=1, n_ff=256, weight_type="Q4_0")
RUN = """
import json, os, shutil, sys
assert shutil.which("g++") is None and shutil.which("c++") is None and "CXX" not in os.environ
import forge
m = forge.load(sys.argv[1], kernels=sys.argv[2], max_context=32)
print(json.dumps({"backend": m.backend, "tokens": m.generate("hello world", 6, temperature=0).tokens}))
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "tiny.gguf", **SHAPE)


@pytest.fixture(scope="module")
def host_pack(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("pack")
    m = build_pack(Store(d / "store"), get_arch("host"), d / "host.tar", model)
    assert {e.symbol for e in m.kernels} == {v.symbol for v in model_kernels(model, get_arch("host"))}
    assert [e.role for e in m.entries].count("library") == 1 and m.cpu_flags
    return d / "host.tar"


def test_a_model_runs_from_a_pack_with_no_compiler(model, host_pack, tmp_path):
    want = forge.load(model, backend="cpu", max_context=32).generate("hello world", 6, temperature=0).tokens
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env.update(PATH=str(tmp_path / "empty"), FORGE_CACHE_DIR=str(tmp_path / "fresh-store"),
               PYTHONPATH=os.pathsep.join([str(Path(forge.__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, "-c", RUN, str(model), str(host_pack)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"backend": "cpu", "tokens": want}


def test_a_pack_for_another_arch_is_refused(model, host_pack):
    with pytest.raises(PackError, match="host"):
        forge.load(model, kernels=host_pack, arch="emu")


def test_a_pack_lacking_a_kernel_is_refused(model, host_pack, tmp_path):
    other = write_tiny_gguf(tmp_path / "q8.gguf", **{**SHAPE, "weight_type": "Q8_0"})  # needs q8_0 matmuls
    with pytest.raises(PackError, match="lacks .* kernel"):
        forge.load(other, kernels=host_pack)


def test_a_host_pack_from_a_cpu_with_other_features_is_refused(model, host_pack, tmp_path):
    bad = tmp_path / "other-cpu.tar"
    with tarfile.open(host_pack) as src, tarfile.open(bad, "w") as dst:
        for m in src:
            data = src.extractfile(m).read()
            if m.name == "manifest.json":
                d = json.loads(data)
                d["cpu_flags"].append("avx1024_imaginary")
                data = json.dumps(d).encode()
                m.size = len(data)
            import io
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(PackError, match="avx1024_imaginary"):
        forge.load(model, kernels=bad)


def test_an_amd_pack_for_a_model_holds_exactly_its_kernels(model, tmp_path):
    """`forge build --arch gfx1100 --pack p.tar --model M` on a machine with no GPU: the pack holds
    exactly the kernels M's graph lowers to on gfx1100 (the integer decode path, gemm for prefill)."""
    from forge.errors import ToolchainError
    arch = get_arch("gfx1100")
    try:
        m = build_pack(Store(tmp_path / "store"), arch, tmp_path / "gfx1100.tar", model)
    except ToolchainError as e:
        pytest.skip(f"no AMD compiler: {e}")
    want = {v.symbol for v in model_kernels(model, arch)}
    assert {e.symbol for e in m.kernels} == want and len(m.kernels) == len(want)
    assert {"gemm_q4_0", "flash_attn_head_dim64_f16", "sample_block256"} <= want
    assert any(s.startswith("matmul_q8_q4_0") for s in want)  # the integer decode path
    assert m.arch == "gfx1100" and not [e for e in m.entries if e.role == "library"]
