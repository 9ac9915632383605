"""The forge command under a careless user: clear one-line errors and the right exit status (1 for
errors, 2 for usage, 130 for Ctrl-C, 141 for a closed pipe), global options before or after the
subcommand, read-only stores, interrupted builds, the cache's maintenance actions.

Most tests run the real command in a subprocess (`python -m forge.cli`), as a user would; a few
call main(argv) where they need to patch something."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forge import __version__
from forge.cli import main
from forge.codegen import render as render_mod
from forge.codegen import store as store_mod
from tests.helpers.gguf_bytes import craft, kv_str

ROOT = Path(__file__).resolve().parents[1]


def forge(*argv, env: dict | None = None, prefix: list[str] = (), **kw) -> subprocess.CompletedProcess:
    """Run `forge ARGV` in a subprocess (FORGE_DEBUG unset, whatever the caller's environment)."""
    e = {k: v for k, v in os.environ.items() if k != "FORGE_DEBUG"}
    e.update(env or {})
    return subprocess.run([*prefix, sys.executable, "-m", "forge.cli", *map(str, argv)], capture_output=True,
                          text=True, env=e, cwd=ROOT, **kw)


def one_line_error(proc, *words) -> None:
    """exit 1, stderr's last line `forge: error: ...` containing `words`, no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("forge: error: "), proc.stderr
    for w in words:
        assert w in last, (w, last)


def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A store holding gfx1100's two rmsnorm variants."""
    root = tmp_path_factory.mktemp("built") / "store"
    assert forge("build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", root, "-q").returncode == 0
    return root


# ------------------------------------------------------------------------------- basic errors
def test_unknown_arch_is_one_line_error(capsys, tmp_path):
    code, out, err = run_cli(capsys, "build", "--arch", "nope", "--cache-dir", tmp_path)
    assert code == 1
    assert err.startswith("forge: error: unknown arch 'nope'")
    assert "gfx1100" in err and "gfx950" in err and "sm_90" in err
    assert "Traceback" not in err


def test_console_script_error_has_no_traceback(tmp_path):
    one_line_error(forge("build", "--arch", "nope", "--cache-dir", tmp_path), "unknown arch")


def test_usage_errors_exit_2():
    proc = forge("build")
    assert proc.returncode == 2 and "the following arguments are required: --arch" in proc.stderr
    assert forge("frobnicate").returncode == 2


def test_version():
    proc = forge("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"forge {__version__}"


# ------------------------------------------------------------ 1. global options, either side
def test_global_options_work_before_and_after_the_subcommand(tmp_path):
    for argv in (["--cache-dir", tmp_path / "a", "cache", "stats"], ["cache", "stats", "--cache-dir", tmp_path / "a"]):
        proc = forge(*argv)
        assert proc.returncode == 0 and f"root: {tmp_path / 'a'}" in proc.stdout, (argv, proc.stdout)
    # given on both sides, the one after the subcommand (the nearer) wins
    proc = forge("--cache-dir", tmp_path / "a", "cache", "stats", "--cache-dir", tmp_path / "b")
    assert f"root: {tmp_path / 'b'}" in proc.stdout


def test_debug_shows_the_traceback_before_or_after_the_subcommand_or_from_the_environment(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + b"\0" * 60)
    one_line_error(forge("info", bad), "not a GGUF file")
    for proc in (forge("--debug", "info", bad), forge("info", bad, "--debug"), forge("info", bad, env={"FORGE_DEBUG": "1"})):
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "GGUFError" in proc.stderr, proc.stderr


# --------------------------------------------------------------------- 2. a read-only store
def _readonly_prefix(root: Path) -> list[str] | None:
    """A command prefix that runs its command with `root` mounted read-only (a private mount
    namespace: nothing changes outside it), or None where that is not allowed."""
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"'
    prefix = ["unshare", "-m", "sh", "-c", script, str(root)]
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run([*prefix, "sh", "-c", f'! touch "{root}/probe" 2>/dev/null'], capture_output=True)
    return prefix if probe.returncode == 0 else None


@pytest.fixture
def readonly(tmp_path):
    """(store root, prefix): a store filled with the demo's kernels and gfx1100's rmsnorm, and the
    prefix that runs a command with it read-only (a read-only bind mount as root, which ignores
    permission bits; the permission bits otherwise)."""
    root = tmp_path / "store"
    assert forge("demo", "--cache-dir", root).returncode == 0
    assert forge("build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", root, "-q").returncode == 0
    if os.geteuid() != 0:
        for p in [root, *root.rglob("*")]:
            if p.is_dir():
                p.chmod(0o555)
        yield root, []
        for p in [root, *root.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        return
    prefix = _readonly_prefix(root)
    if prefix is None:
        pytest.skip("running as root and no mount namespace for a read-only bind mount here")
    yield root, prefix


def test_read_only_store_serves_hits_and_refuses_writes_in_one_line(readonly):
    root, ro = readonly
    proc = forge("build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", root, "-q", prefix=ro)
    assert proc.returncode == 0 and "2 cached" in proc.stdout, proc.stderr  # hits are served
    proc = forge("demo", env={"FORGE_CACHE_DIR": str(root)}, prefix=ro)
    assert proc.returncode == 0 and "all 6 results match" in proc.stdout, proc.stderr
    proc = forge("build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--kernels", "swiglu*", "--cache-dir", root,
                 "-q", prefix=ro)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "2 cached, 2 failed" in proc.stdout
    failures = [line for line in proc.stderr.splitlines() if "cannot write to the store" in line]
    assert len(failures) == 1 and "swiglu_f32_block256" in failures[0] and "swiglu_f16_block256" in failures[0]
    assert "Read-only file system" in failures[0] or "Permission denied" in failures[0]
    one_line_error(forge("cache", "clear", "--cache-dir", root, prefix=ro), "cannot write to the store")
    assert forge("cache", "verify", "--cache-dir", root, prefix=ro).returncode == 0  # nothing was lost


# --------------------------------------------------------------------------- 3. closed pipes
@pytest.mark.parametrize("argv", [["archs"], ["cache", "ls"], ["cache", "stats"]], ids=" ".join)
def test_a_closed_pipe_stops_quietly(built, argv):
    """`forge archs | head -1`: the reader is gone before forge writes; no traceback, status 141."""
    proc = subprocess.Popen([sys.executable, "-m", "forge.cli", *argv, "--cache-dir", str(built)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141 and err == "", err


# ----------------------------------------------------------------------------------- 4. Ctrl-C
def _interrupt(argv, tmp_path, first_entry: bool, sigints: int, to_group: bool):
    """Start `forge ARGV --cache-dir tmp/store`, wait until it has stored an entry (or compiled a
    while), send SIGINT `sigints` times (to its process group, as a terminal does, or to forge
    alone) and return (process result, seconds from the first SIGINT to the exit, store root)."""
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "forge.cli", *argv, "--cache-dir", str(root), "-j", "2"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if first_entry and any((root / "objects").glob("*/*/meta.json")):
            break
        if not first_entry and (root / "work").is_dir() and any((root / "work").iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build ended before it could be interrupted"
    t0 = time.monotonic()
    for _ in range(sigints):
        (os.killpg if to_group else os.kill)(proc.pid, signal.SIGINT)
        time.sleep(0.15)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, out, err, time.monotonic() - t0, root


def test_ctrl_c_stops_a_build_promptly_and_cleans_up(tmp_path):
    code, out, err, seconds, root = _interrupt(["build", "--arch", "gfx950"], tmp_path, True, 1, to_group=True)
    assert code == 130, err
    assert seconds < 10, seconds  # the in-flight compiles only (a whole gfx950 build takes ~13 s of 2 cores)
    assert "Traceback" not in err and "forge: interrupted" in err and "built" in err and "interrupted" in err
    total = int(err.split(" variants for gfx950")[0].split()[-1])
    stored = len(list((root / "objects").glob("*/*/meta.json")))
    assert 0 < stored < total and f"{stored} built" in err.replace("\n", " "), err
    assert not any((root / "work").iterdir()) and not any((root / "tmp").iterdir())  # no scratch left behind
    assert forge("cache", "verify", "--cache-dir", root).returncode == 0


def test_repeated_ctrl_c_during_an_in_process_compile_exits_cleanly(tmp_path):
    """NVRTC compiles inside the process: leaving while it runs crashed (double free); three
    SIGINTs to forge alone must still end in an orderly exit 130."""
    pytest.importorskip("cuda.bindings.nvrtc")
    code, out, err, seconds, root = _interrupt(["build", "--arch", "sm_80"], tmp_path, False, 3, to_group=False)
    assert code == 130, (code, err)
    assert "Traceback" not in err and "Exception ignored" not in err and "double free" not in err, err
    assert forge("cache", "verify", "--cache-dir", root).returncode == 0


# --------------------------------------------------------------------------- 5. --asm, warm
def test_asm_on_a_warm_store_says_what_it_compiled(tmp_path, capsys):
    root = tmp_path / "store"
    args = ("build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", root, "-q")
    assert run_cli(capsys, *args)[0] == 0
    code, out, _ = run_cli(capsys, *args, "--asm")
    assert code == 0 and out.count("cached+asm") == 2
    assert "2 cached, 0 failed (2 assembly listings compiled for cached entries)" in out
    code, out, _ = run_cli(capsys, *args, "--asm")  # now they have their listings: nothing to do
    assert code == 0 and "cached+asm" not in out and "assembly" not in out and "2 cached" in out
    assert run_cli(capsys, "cache", "verify", "--cache-dir", root)[0] == 0  # the listings are recorded


# ------------------------------------------------------------------------------------ 6. jobs
@pytest.mark.parametrize("jobs", ["0", "-3", "two"])
def test_job_counts_below_one_are_usage_errors(tmp_path, jobs):
    proc = forge("build", "--arch", "gfx1100", "--jobs", jobs, "--cache-dir", tmp_path)
    assert proc.returncode == 2 and "--jobs" in proc.stderr and ("at least 1" in proc.stderr or "integer" in proc.stderr)


# --------------------------------------------------------------------------------- 7. globs
def test_a_glob_that_matches_nothing_is_an_error_even_beside_one_that_does(tmp_path):
    proc = forge("build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--kernels", "rmsnrom*", "--cache-dir", tmp_path)
    one_line_error(proc, "no kernel variant for gfx1100 matches 'rmsnrom*'", "families: ")
    assert "[" not in proc.stderr and not (tmp_path / "objects").exists() or not any((tmp_path / "objects").iterdir())
    one_line_error(forge("build", "--arch", "gfx1100", "--kernels", "yy*", "--kernels", "zz*", "--cache-dir", tmp_path),
                   "matches 'yy*', 'zz*'")


def test_one_variant_is_singular(built):
    proc = forge("build", "--arch", "gfx1100", "--kernels", "rmsnorm_f32_block256", "--cache-dir", built, "-q")
    assert proc.returncode == 0 and "1 variant for gfx1100: 0 built, 1 cached" in proc.stdout
    assert "1 variants" not in proc.stdout + proc.stderr


# -------------------------------------------------------------------------------- 8. doctor
def test_doctor_exits_1_on_a_problem(tmp_path):
    proc = forge("doctor", "--cache-dir", tmp_path / "store")
    from forge.arch import ARCHS
    from forge.codegen.toolchain import toolchain_for
    missing = []
    for a in ARCHS.values():
        try:
            toolchain_for(a)
        except Exception:
            missing.append(a.name)
    assert proc.returncode == (1 if missing else 0) and ("all good" in proc.stdout) == (not missing), proc.stdout
    unsafe = tmp_path / "shared"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    proc = forge("doctor", "--cache-dir", unsafe)
    assert proc.returncode == 1 and "store    unusable" in proc.stdout and "problem" in proc.stdout
    proc = forge("doctor", "--cache-dir", tmp_path / "store", env={"CXX": "/nonexistent/g++"})
    assert proc.returncode == 1 and "emu      unavailable: CXX=/nonexistent/g++" in proc.stdout


# ------------------------------------------------------------- 9, 10. leftovers and strays
def test_repair_and_clear_remove_leftovers_and_strays_but_repair_keeps_good_entries(tmp_path, capsys, monkeypatch):
    from forge.arch import get_arch
    from forge.codegen.build import source_for
    from forge.codegen.spec import get_spec
    root = tmp_path / "store"
    assert run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", root, "-q")[0] == 0
    v = get_spec("swiglu").variant(get_arch("gfx1100"), dtype="f32", block=256)
    (tmp_path / "over").mkdir()
    (tmp_path / "over" / f"{v.symbol}.hip").write_text(source_for(v, get_arch("gfx1100"))[0] + "\nnot C++;\n")
    monkeypatch.setenv("FORGE_OVERRIDE_DIR", str(tmp_path / "over"))
    code, _, err = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", v.symbol, "--cache-dir", root, "-q")
    assert code == 1 and len(list((root / "work").iterdir())) == 1  # the failed compile's source is kept ...
    assert str(root / "work") in err  # ... and named
    (root / "objects" / "zz").mkdir()
    (root / "objects" / "zz" / "notakey").write_text("junk")
    (root / "objects" / "junk.txt").write_text("junk")
    (root / "locks" / ("ab" * 32 + ".lock")).write_text("")  # one lock per key: the old layout
    locks = sorted(p.name for p in (root / "locks").iterdir())
    assert all(len(n) == len("ab.lock") for n in locks if not n.startswith("abab"))  # a lock per 2-hex key prefix

    code, out, _ = run_cli(capsys, "cache", "verify", "--cache-dir", root)
    assert code == 1 and "objects/zz/notakey: stray" in out and "objects/junk.txt: stray" in out
    assert "2 problems" in out and "forge cache repair" in out
    code, out, _ = run_cli(capsys, "cache", "repair", "--cache-dir", root)
    assert code == 0 and "removed: objects/zz/notakey" in out and "removed: locks/" in out and "2 valid entries kept" in out
    assert (root / "work").is_dir() and any((root / "work").iterdir())  # a fresh leftover may be a build in progress
    assert run_cli(capsys, "cache", "verify", "--cache-dir", root)[0] == 0
    monkeypatch.setattr(store_mod, "STALE_S", -1.0)
    code, out, _ = run_cli(capsys, "cache", "repair", "--cache-dir", root)
    assert code == 0 and "removed: work/" in out and not any((root / "work").iterdir())
    (root / "objects" / "junk.txt").write_text("junk")
    code, out, _ = run_cli(capsys, "cache", "clear", "--cache-dir", root)
    assert code == 0 and "removed 2 entries" in out
    assert not any((root / "objects").rglob("*.*")) and not any((root / "tmp").iterdir())


# ---------------------------------------------------------------------- 11. a file as parent
def test_cache_dir_under_a_file_names_the_file(tmp_path):
    f = tmp_path / "passwd"
    f.write_text("root:x:0:0\n")
    one_line_error(forge("cache", "stats", "--cache-dir", f / "x"), f"{f} is a file, not a directory")
    one_line_error(forge("cache", "stats", "--cache-dir", f / "x" / "y"), f"{f} is a file, not a directory")
    one_line_error(forge("cache", "stats", "--cache-dir", f), f"store root {f} is not a directory")


# ------------------------------------------------------------------------- 12. CXX missing
def test_cxx_naming_a_missing_compiler_is_an_error(tmp_path):
    proc = forge("build", "--arch", "emu", "--kernels", "swiglu*", "--cache-dir", tmp_path, env={"CXX": "/nonexistent/g++"})
    one_line_error(proc, "CXX=/nonexistent/g++ is not a C++ compiler", "not found")
    assert not (tmp_path / "objects").exists() or not any((tmp_path / "objects").iterdir())  # g++ never stood in


# ------------------------------------------------------------------------- 13. GGUF counts
def test_gguf_counts_are_unsigned(tmp_path):
    bad = tmp_path / "flipped.gguf"
    bad.write_bytes(craft([kv_str("general.architecture", "llama")], n_tensors=(0xFF << 56) | 1))
    proc = forge("info", bad)
    one_line_error(proc, "header claims 18374686479671623681 tensors")
    assert "-72057594037927" not in proc.stderr


# --------------------------------------------------------- 14. verify covers the extra files
@pytest.mark.parametrize("name", ["source.hip", "kernel.asm"])
def test_verify_covers_source_and_assembly(tmp_path, capsys, name):
    root = tmp_path / "store"
    args = ("build", "--arch", "gfx1100", "--kernels", "rmsnorm_f32_block256", "--cache-dir", root, "-q", "--asm")
    assert run_cli(capsys, *args)[0] == 0
    (path,) = (root / "objects").glob(f"*/*/{name}")
    with open(path, "a") as f:
        f.write("// one more line\n")
    code, out, _ = run_cli(capsys, "cache", "verify", "--cache-dir", root)
    assert code == 1 and f"{name} sha256 does not match meta.json" in out
    code, out, _ = run_cli(capsys, "cache", "repair", "--cache-dir", root)
    assert code == 0 and path.parent.name in out and not path.exists()
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "1 built" in out and run_cli(capsys, "cache", "verify", "--cache-dir", root)[0] == 0


# ---------------------------------------------------------------------------- 15. friction
def test_build_progress_without_a_terminal(tmp_path, capsys, monkeypatch):
    """A log (no TTY) gets progress lines, not ~17 s of silence then a table."""
    import forge.cli as cli
    monkeypatch.setattr(cli, "PROGRESS_EVERY_S", 0.0)
    code, _, err = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", tmp_path)
    assert code == 0 and "forge build: 1/2 done (1 built)" in err
    code, _, err = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", tmp_path, "-q")
    assert code == 0 and "done" not in err


def test_build_table_then_all_cached_then_forced(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", tmp_path, "-q")
    assert code == 0 and "rmsnorm_f32_block256" in out and "built" in out and "VGPR" in out
    assert "occupancy" in out and "16/16" in out  # 11-20 VGPRs, 8 waves a block: every wave slot
    code, out, _ = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", tmp_path, "-q")
    assert code == 0 and " built" not in out.split("\n\n")[0] and "2 cached" in out
    code, out, _ = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", tmp_path, "-q",
                           "--force")
    assert code == 0 and "0 built, 2 rebuilt, 0 cached" in out
    code, out, _ = run_cli(capsys, "cache", "ls", "--cache-dir", tmp_path)
    assert "rmsnorm_f16_block256" in out and str(tmp_path / "objects") in out  # entries with their paths
    assert run_cli(capsys, "cache", "verify", "--cache-dir", tmp_path)[0] == 0


def test_a_replaced_corrupt_entry_is_reported_as_rebuilt(built, tmp_path, capsys):
    root = tmp_path / "store"
    shutil.copytree(built, root)
    obj = next((root / "objects").glob("*/*/object.bin"))
    obj.write_bytes(obj.read_bytes()[:-1])
    code, out, err = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "rmsnorm_f*_block256", "--cache-dir", root, "-q")
    assert code == 0 and "1 rebuilt, 1 cached" in out
    assert "rebuilt; the stored entry was corrupt (object.bin is" in err


def test_cache_help_explains_each_action():
    proc = forge("cache", "--help")
    assert proc.returncode == 0
    for action in ("ls", "stats", "verify", "repair", "clear"):
        assert f"  {action} " in proc.stdout
    assert "remove only what verify reports" in proc.stdout and "exit 1 if any" in proc.stdout


def test_demo_passes_with_a_verdict_and_fails_with_exit_1(tmp_path, capsys, monkeypatch):
    code, out, _ = run_cli(capsys, "demo", "--cache-dir", tmp_path)
    assert code == 0 and out.count(" ok ") == 6 and "forge demo: all 6 results match numpy" in out
    import forge.demo as demo
    monkeypatch.setattr(demo, "_softmax", lambda kern, dev, rng: ("softmax, off", 3e-3, 2e-6))
    code, out, _ = run_cli(capsys, "demo", "--cache-dir", tmp_path)
    assert code == 1 and out.count("FAIL ") == 2 and "FAILED: 2 of 6 results are off numpy" in out


def test_template_syntax_error_fails_and_stores_nothing(capsys, tmp_path, monkeypatch):
    root = tmp_path / "templates"
    shutil.copytree(render_mod.TEMPLATES, root)
    (root / "swiglu.hip.j2").write_text("{% for x in %}\n")
    monkeypatch.setattr(render_mod, "TEMPLATES", root)
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "swiglu*", "--cache-dir", store, "-q")
    assert code == 1
    assert "swiglu.hip.j2:1" in err and "syntax error" in err
    assert "2 failed" in out
    objects = store / "objects"
    assert not objects.exists() or not any(objects.rglob("object.bin"))


def test_compiler_failure_shows_diagnostics_and_source_path(capsys, tmp_path, monkeypatch):
    from forge.arch import get_arch
    from forge.codegen.spec import get_spec
    v = get_spec("swiglu").variant(get_arch("gfx950"), dtype="f32", block=256)
    (tmp_path / f"{v.symbol}.hip").write_text("this is not C++;\n")
    monkeypatch.setenv("FORGE_OVERRIDE_DIR", str(tmp_path))
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, "build", "--arch", "gfx950", "--kernels", v.symbol, "--cache-dir", store, "-q")
    assert code == 1 and "error:" in err
    path = [w for w in err.split() if w.endswith(".hip")][0]
    assert os.path.exists(path) and "not C++" in open(path).read()
    assert not any((store / "objects").rglob("object.bin")) if (store / "objects").exists() else True


def test_archs_lists_every_arch(capsys):
    code, out, _ = run_cli(capsys, "archs")
    assert code == 0
    for name in ["gfx1100", "gfx1101", "gfx1102", "gfx942", "gfx950", "sm_80", "sm_90", "emu", "emu64", "host"]:
        assert name in out
