"""The forge command: clear one-line errors, non-zero exits, a build table, cache commands."""

import os
import shutil
import subprocess
import sys

import pytest

from forge.cli import main
from forge.codegen import render as render_mod


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unknown_arch_is_one_line_error(capsys, tmp_path):
    code, out, err = run_cli(capsys, "build", "--arch", "nope", "--cache-dir", str(tmp_path))
    assert code == 1
    assert err.startswith("forge: error: unknown arch 'nope'")
    assert "gfx1100" in err and "gfx950" in err and "sm_90" in err
    assert "Traceback" not in err


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "forge.cli", "build", "--arch", "nope", "--cache-dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "forge: error:" in proc.stderr and "Traceback" not in proc.stderr


def test_build_table_then_all_cached(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "rmsnorm*", "--cache-dir", str(tmp_path), "-q")
    assert code == 0 and "rmsnorm_f32_block256" in out and "built" in out and "VGPR" in out
    code, out, _ = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "rmsnorm*", "--cache-dir", str(tmp_path), "-q")
    assert code == 0 and " built" not in out.split("\n\n")[0] and "2 cached" in out
    code, out, _ = run_cli(capsys, "cache", "ls", "--cache-dir", str(tmp_path))
    assert "rmsnorm_f16_block256" in out
    code, out, _ = run_cli(capsys, "cache", "verify", "--cache-dir", str(tmp_path))
    assert code == 0


def test_template_syntax_error_fails_and_stores_nothing(capsys, tmp_path, monkeypatch):
    root = tmp_path / "templates"
    shutil.copytree(render_mod.TEMPLATES, root)
    (root / "swiglu.hip.j2").write_text("{% for x in %}\n")
    monkeypatch.setattr(render_mod, "TEMPLATES", root)
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, "build", "--arch", "gfx1100", "--kernels", "swiglu*", "--cache-dir", str(store), "-q")
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
    code, out, err = run_cli(capsys, "build", "--arch", "gfx950", "--kernels", v.symbol, "--cache-dir", str(store), "-q")
    assert code == 1 and "error:" in err
    path = [w for w in err.split() if w.endswith(".hip")][0]
    assert os.path.exists(path) and "not C++" in open(path).read()
    assert not any((store / "objects").rglob("object.bin")) if (store / "objects").exists() else True


def test_archs_lists_every_arch(capsys):
    code, out, _ = run_cli(capsys, "archs")
    assert code == 0
    for name in ["gfx1100", "gfx1101", "gfx1102", "gfx942", "gfx950", "sm_80", "sm_90", "emu", "emu64", "host"]:
        assert name in out
