"""Rendering: deterministic, strict about undefined names, clear about syntax errors."""

import re
from pathlib import Path

import pytest

from forge.arch import ARCHS, get_arch
from forge.codegen import render as render_mod
from forge.codegen.render import render
from forge.codegen.spec import all_specs, get_spec, select_variants
from forge.errors import RenderError, SpecError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("arch", ["gfx1100", "gfx950", "sm_90", "emu", "emu64"])
def test_render_is_deterministic_and_symbols_valid(arch):
    a = get_arch(arch)
    seen = set()
    for v in select_variants(a):
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v.symbol), v.symbol
        assert v.symbol not in seen
        seen.add(v.symbol)
        one, two = render(v, a), render(v, a)
        assert one == two
        assert f"#define WAVE_SIZE {a.wave_size}" in one
        assert v.symbol in one


def test_wave_size_reaches_the_source():
    v = get_spec("rmsnorm").variant(get_arch("gfx950"), dtype="f32", block=256)
    assert "#define WAVE_SIZE 64" in render(v, get_arch("gfx950"))
    assert "#define WAVE_SIZE 32" in render(v, get_arch("gfx1100"))


def test_every_family_has_template_oracle_and_test_by_name():
    for spec in all_specs():
        stem = spec.family
        assert (render_mod.TEMPLATES / spec.template_name()).is_file(), stem
        assert (ROOT / "tests" / "oracles" / f"{spec.oracle_module()}.py").is_file(), f"no oracle for {stem}"
        assert (ROOT / "tests" / "kernels" / f"{spec.test_module()}.py").is_file(), f"no test for {stem}"
        assert (ROOT / "forge" / "codegen" / "specs" / f"{stem}.py").is_file(), f"no spec module for {stem}"


def test_variant_outside_space_is_refused():
    spec = get_spec("rmsnorm")
    with pytest.raises(SpecError):
        spec.variant(get_arch("gfx1100"), dtype="f64", block=256)
    with pytest.raises(SpecError):
        spec.variant(get_arch("gfx1100"), dtype="f32")
    with pytest.raises(SpecError):
        get_spec("no_such_family")


def _broken_templates(tmp_path, text):
    import shutil
    root = tmp_path / "templates"
    shutil.copytree(render_mod.TEMPLATES, root)
    (root / "rmsnorm.hip.j2").write_text(text)
    return root


def test_template_syntax_error_names_file_and_line(tmp_path):
    root = _broken_templates(tmp_path, "KERNEL(1) x() {\n{% if p.dtype %}\n}\n")
    v = get_spec("rmsnorm").variant(get_arch("gfx1100"), dtype="f32", block=256)
    with pytest.raises(RenderError, match=r"rmsnorm.hip.j2:\d+"):
        render(v, get_arch("gfx1100"), root=root)


def test_undefined_variable_is_an_error(tmp_path):
    root = _broken_templates(tmp_path, "KERNEL(1) x() { {{ p.no_such_param }} }\n")
    v = get_spec("rmsnorm").variant(get_arch("gfx1100"), dtype="f32", block=256)
    with pytest.raises(RenderError, match="no_such_param"):
        render(v, get_arch("gfx1100"), root=root)


def test_all_archs_render_all_families():
    for a in ARCHS.values():
        if a.is_gpu_semantics:  # the host target has kernels only for the families that need speed
            assert len(select_variants(a)) >= 10, a.name


def test_nvidia_kernels_open_with_the_pdl_entry():
    """Every NVIDIA kernel's first statement is forge_kernel_entry() (render.py), which on sm_90
    holds griddepcontrol.wait: the runtime links captured kernels by programmatic dependencies, so
    a kernel without the wait would read its predecessor's output early."""
    from forge.codegen.toolchain import nvrtc_toolchain
    arch = get_arch("sm_90")
    for spec in all_specs():
        for v in spec.variants(arch)[:2]:
            src = render(v, arch)
            assert f"{v.symbol}({', '.join(a.decl for a in v.args)}) {{ forge_kernel_entry();" in src
    tc = nvrtc_toolchain()
    if tc is None:
        pytest.skip("no NVRTC (pip install '.[cuda]')")
    import tempfile
    from pathlib import Path
    v = get_spec("rmsnorm").variant(arch, dtype="f32", block=256)
    with tempfile.TemporaryDirectory() as work:
        ptx = tc.compile(render(v, arch), arch, v.symbol, Path(work), True).asm
    assert ptx.index("griddepcontrol.wait") < ptx.index("ld.global")
    assert "griddepcontrol" not in render(v, get_arch("emu"))
