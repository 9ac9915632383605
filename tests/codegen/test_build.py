"""Every registered variant compiles for gfx1100, gfx950 and sm_90 through the store; AMD objects
carry the right ELF machine; resource usage is recorded; a second build is all cache hits."""

import pytest

from forge.arch import get_arch
from forge.codegen.build import ASM_FILE, build_all, compile_variant
from forge.codegen.codeobject import read_code_object
from forge.codegen.spec import get_spec, select_variants
from forge.codegen.store import Store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("arch_name", ["gfx1100", "gfx950", "sm_90"])
def test_every_variant_compiles(store, arch_name):
    arch = get_arch(arch_name)
    records = build_all(arch, store, jobs=2)
    failed = [f"{r.variant.symbol}: {r.error[:2000]}" for r in records if r.status == "failed"]
    assert not failed, "\n".join(failed)
    assert len(records) == len(select_variants(arch))
    for r in records:
        res = r.entry.meta["resources"]
        assert res.get("vgpr") is not None, r.variant.symbol  # resource usage was read and recorded
        data = r.entry.read_object()
        if arch.vendor == "amd":
            co = read_code_object(data)
            assert co.mach == arch.elf_mach, (r.variant.symbol, hex(co.mach))
            assert any(k.name == r.variant.symbol for k in co.kernels)
            assert res["wave"] == arch.wave_size
        else:
            assert data[:4] == b"\x7fELF"  # a cubin, not PTX text
    again = build_all(arch, store, jobs=2)
    assert all(r.status == "cached" for r in again)


def test_keep_asm_adds_listing_to_cached_entry(store):
    arch = get_arch("gfx1100")
    v = get_spec("rmsnorm").variant(arch, dtype="f32", block=256)
    entry, _ = compile_variant(v, arch, store)
    entry, hit = compile_variant(v, arch, store, keep_asm=True)
    asm = entry.file(ASM_FILE).read_text()
    assert "s_barrier" in asm and "ds_bpermute_b32" in asm  # block barrier + wave shuffles on RDNA3


def test_override_dir_replaces_source_and_changes_key(store, tmp_path, monkeypatch):
    arch = get_arch("gfx1100")
    v = get_spec("swiglu").variant(arch, dtype="f32", block=256)
    plain, _ = compile_variant(v, arch, store)
    from forge.codegen.build import source_for
    src, _ = source_for(v, arch)
    (tmp_path / f"{v.symbol}.hip").write_text(src.replace("1.0f + f_exp(-gv)", "2.0f + f_exp(-gv)"))
    monkeypatch.setenv("FORGE_OVERRIDE_DIR", str(tmp_path))
    over, hit = compile_variant(v, arch, store)
    assert not hit and over.key != plain.key and over.meta["key_inputs"]["override"] is True


# ------------------------------------------------------------------------------ interruption
def _fake_toolchain(exit_code: int):
    from forge.codegen.toolchain import Toolchain
    from forge.errors import CompileError

    class Fake(Toolchain):
        name, vendor = "fake", "amd"

        def compile(self, source, arch, symbol, workdir, keep_asm):
            (workdir / f"{symbol}.hip").write_text(source)
            raise CompileError(f"clang for {arch.name} failed (exit {exit_code}); source: {workdir / symbol}.hip")
    return Fake("1")


@pytest.mark.parametrize("exit_code,status,kept", [(1, "failed", 1), (-2, "interrupted", 0)])
def test_a_compile_killed_by_ctrl_c_is_no_diagnosis_and_leaves_no_scratch(tmp_path, exit_code, status, kept):
    """A failed compile keeps its scratch dir (its error names the source there); one whose compiler
    died of SIGINT (a terminal's Ctrl-C reaches the compilers too) is an interruption: dir removed."""
    from forge.codegen.build import build_one
    store, arch = Store(tmp_path / "s"), get_arch("gfx1100")
    rec = build_one(get_spec("swiglu").variant(arch, dtype="f32", block=256), arch, store, False,
                    _fake_toolchain(exit_code))
    assert rec.status == status and len(list((store.root / "work").iterdir())) == kept


def test_interrupted_build_all_cancels_the_queue_and_reports_what_was_built(tmp_path):
    from forge.codegen.build import BuildInterrupted
    store, arch = Store(tmp_path / "s"), get_arch("gfx1100")

    def ctrl_c(record):
        raise KeyboardInterrupt  # what the main thread sees on Ctrl-C

    with pytest.raises(BuildInterrupted) as e:
        build_all(arch, store, ["swiglu*", "rmsnorm*", "softmax*"], jobs=1, progress=ctrl_c)
    statuses = [r.status for r in e.value.records]
    assert len(statuses) == len(select_variants(arch, ["swiglu*", "rmsnorm*", "softmax*"])) > 3
    assert 1 <= statuses.count("built") <= 2 and statuses.count("interrupted") == len(statuses) - statuses.count("built")
    assert len(list(store.entries())) == statuses.count("built")
    assert not any((store.root / "work").iterdir())


def test_jobs_below_one_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        build_all(get_arch("gfx1100"), Store(tmp_path / "s"), ["swiglu*"], jobs=0)


def test_force_rebuilds_a_stored_variant(store):
    arch = get_arch("gfx1100")
    v = get_spec("swiglu").variant(arch, dtype="f16", block=256)
    first, _ = compile_variant(v, arch, store)
    again, hit = compile_variant(v, arch, store, force=True)
    assert not hit and again.key == first.key and again.replaced == "forced"


def test_kill_compilers_stops_a_compiler_in_flight(tmp_path):
    """What build_all does on Ctrl-C: every compiler process forge started is killed at once (a
    SIGINT sent to forge alone never reaches them), and its _run reports the kill as a failure."""
    import threading
    import time

    from forge.codegen import toolchain
    from forge.errors import CompileError
    errors = []

    def compile_forever():
        try:
            toolchain._run(["sleep", "60"], tmp_path / "k.hip", "a slow compiler")
        except CompileError as e:
            errors.append(str(e))

    t = threading.Thread(target=compile_forever)
    t.start()
    for _ in range(100):
        if toolchain._running:
            break
        time.sleep(0.02)
    t0 = time.monotonic()
    assert toolchain.kill_compilers() == 1
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 5
    assert errors and "exit -9" in errors[0] and not toolchain._running


def test_asm_for_a_cached_entry_makes_only_the_listing(tmp_path, monkeypatch):
    """--asm on a stored entry asks the toolchain for the listing alone (assemble), no object."""
    from forge.arch import get_arch
    from forge.codegen import build
    from forge.codegen.spec import get_spec
    from forge.codegen.store import Store
    from forge.codegen.toolchain import toolchain_for
    arch = get_arch("gfx1100")
    v = get_spec("rmsnorm").variant(arch, dtype="f32", block=256)
    store = Store(tmp_path / "s")
    build.compile_variant(v, arch, store)
    tc = toolchain_for(arch)
    monkeypatch.setattr(type(tc), "compile", lambda *a, **k: (_ for _ in ()).throw(AssertionError("compiled")))
    entry, hit = build.compile_variant(v, arch, store, keep_asm=True)
    assert hit and "v_" in entry.file("kernel.asm").read_text()


def test_nvrtc_never_writes_into_shared_bytes_objects(tmp_path):
    """An NVRTC compile whose log is empty (the PTX listing: no ptxas report) hands NVRTC a 1-byte
    buffer; were it `b" " * 1`, CPython's shared b" " would become b"\\x00" for the whole process
    (it once turned a tokenizer's decoded spaces into NULs, tests later in the same worker)."""
    from forge.arch import get_arch
    from forge.codegen.spec import get_spec
    from forge.codegen.toolchain import nvrtc_toolchain
    tc = nvrtc_toolchain()
    if tc is None:
        pytest.skip("no NVRTC")
    arch = get_arch("sm_90")
    v = get_spec("elementwise").variant(arch, op="add", dtype="f32", block=256)
    from forge.codegen.build import source_for
    tc.assemble(source_for(v, arch)[0], arch, v.symbol, tmp_path)
    assert b" "[0] == 32 and b" ".decode() == " "
