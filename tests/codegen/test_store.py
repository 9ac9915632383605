"""The code-object store: keys, hits and misses, corruption detected and rebuilt, one build per key
across processes, failed builds store nothing, unsafe roots refused, maintenance commands."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from forge.codegen import store as store_mod
from forge.codegen.store import BuildOutput, KeyInputs, Store, default_root
from forge.errors import StoreError


def inputs(source: str = "kernel source", **kw) -> KeyInputs:
    base = dict(source_sha256=hashlib.sha256(source.encode()).hexdigest(), arch="gfx1100", target="gfx1100",
                toolchain="zig-clang 22.1.8", flags=("-O3", "-mcode-object-version=5"))
    return KeyInputs(**{**base, **kw})


def output(payload: bytes = b"\x7fELF fake code object", symbol: str = "k_f32") -> BuildOutput:
    return BuildOutput(payload, {"source.hip": "extern \"C\" ...", "kernel.s": b"s_endpgm\n"},
                       {"symbol": symbol, "arch": "gfx1100", "family": "k", "resources": {"vgpr": 3, "lds": 0}})


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


# ---------------------------------------------------------------------------------------- keys
def test_key_changes_with_every_input_and_is_stable_otherwise():
    base = inputs()
    assert base.key() == inputs().key() == KeyInputs.from_dict(base.as_dict()).key()
    assert len(base.key()) == 64 and int(base.key(), 16) >= 0
    variants = [
        inputs("kernel source "),  # one more byte of source
        inputs(arch="gfx1101"),
        inputs(target="gfx1101"),
        inputs(toolchain="zig-clang 22.1.9"),
        inputs(flags=("-O2", "-mcode-object-version=5")),
        inputs(flags=("-mcode-object-version=5", "-O3")),  # order of flags matters to a compiler
        inputs(flags=("-O3",)),
        inputs(override=True),
    ]
    keys = {v.key() for v in variants}
    assert base.key() not in keys and len(keys) == len(variants)


def test_key_inputs_normalize_and_refuse_bad_fields():
    assert inputs(flags=["-O3"]).key() == inputs(flags=("-O3",)).key()  # a list is taken as the tuple
    with pytest.raises(ValueError):
        inputs(source_sha256="not-a-hash")
    with pytest.raises(ValueError):
        inputs(arch="")
    with pytest.raises(ValueError):
        KeyInputs.from_dict({**inputs().as_dict(), "extra": 1})


def test_entries_of_an_older_store_format_are_stale_not_loaded(store, monkeypatch):
    monkeypatch.setattr(store_mod, "STORE_FORMAT", store_mod.STORE_FORMAT - 1)
    old, _ = store.get_or_build(inputs(), output)
    monkeypatch.undo()
    assert store.verify() == [(old.key, f"stale: written in store format {store_mod.STORE_FORMAT - 1}, this forge "
                                        f"uses {store_mod.STORE_FORMAT} (never loaded; `forge cache repair` removes it)")]
    assert store.repair() == [str(old.path.relative_to(store.root))] and store.verify() == []


def test_store_format_version_enters_the_key(monkeypatch):
    before = inputs().key()
    monkeypatch.setattr(store_mod, "STORE_FORMAT", store_mod.STORE_FORMAT + 1)
    assert inputs().key() != before


# ------------------------------------------------------------------------------------ hit/miss
def test_miss_then_build_then_hit(store):
    ki = inputs()
    assert store.lookup(ki) is None
    calls = []
    entry, hit = store.get_or_build(ki, lambda: calls.append(1) or output())
    assert not hit and calls == [1]
    assert entry.read_object() == output().object_bytes
    assert entry.path == store.root / "objects" / ki.key()[:2] / ki.key()
    assert entry.meta["symbol"] == "k_f32" and entry.meta["resources"]["vgpr"] == 3
    assert entry.meta["key_inputs"] == ki.as_dict()
    assert entry.meta["object_sha256"] == hashlib.sha256(output().object_bytes).hexdigest()
    assert entry.meta["object_bytes"] == len(output().object_bytes) and "created" in entry.meta
    assert entry.file("source.hip").read_text().startswith("extern")
    assert entry.file("kernel.s").read_bytes() == b"s_endpgm\n"
    assert entry.file("missing.txt") is None and entry.file("../meta.json") is None

    again, hit = store.get_or_build(ki, lambda: pytest.fail("built on a hit"))
    assert hit and again.key == entry.key
    assert store.lookup(ki.key()).meta == entry.meta  # by key string too
    assert store.lookup(inputs(arch="gfx950")) is None
    assert not list(store.tmp.iterdir())  # the temp dir was renamed into place, not left behind


def test_lookup_refuses_a_key_that_is_not_hex(store):
    with pytest.raises(ValueError):
        store.lookup("../../etc")


def test_failing_build_stores_nothing(store):
    def boom():
        raise RuntimeError("compiler exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        store.get_or_build(inputs(), boom)
    assert store.lookup(inputs()) is None
    assert list(store.entries()) == [] and not list(store.tmp.iterdir())
    entry, hit = store.get_or_build(inputs(), output)  # the lock was released
    assert not hit and entry.valid


def test_build_meta_may_not_overwrite_store_fields(store):
    bad = BuildOutput(b"x", {}, {"object_sha256": "0" * 64})
    with pytest.raises(StoreError, match="object_sha256"):
        store.get_or_build(inputs(), lambda: bad)
    with pytest.raises(StoreError, match="names"):
        store.get_or_build(inputs(), lambda: BuildOutput(b"x", {"../escape": "x"}, {}))
    assert list(store.entries()) == []


# ---------------------------------------------------------------------------------- corruption
def _truncate(e):
    p = e.path / "object.bin"
    p.write_bytes(p.read_bytes()[:5])


def _edit_object(e):  # same length, one byte different: only the sha256 can tell
    p = e.path / "object.bin"
    b = bytearray(p.read_bytes())
    b[3] ^= 0x01
    p.write_bytes(bytes(b))


def _edit_meta(e):  # still valid JSON with a plausible value: only the meta checksum can tell
    p = e.path / "meta.json"
    m = json.loads(p.read_text())
    m["resources"]["vgpr"] = 1
    p.write_text(json.dumps(m))


def _edit_key_inputs(e):
    p = e.path / "meta.json"
    m = json.loads(p.read_text())
    m["key_inputs"]["arch"] = "gfx950"
    p.write_text(json.dumps(m))


def _garble_meta(e):
    (e.path / "meta.json").write_text("{not json")


def _delete_object(e):
    (e.path / "object.bin").unlink()


def _delete_meta(e):
    (e.path / "meta.json").unlink()


CORRUPTIONS = {
    "truncated object": (_truncate, "bytes"),
    "edited object": (_edit_object, "sha256"),
    "edited meta": (_edit_meta, "edited"),
    "edited key_inputs": (_edit_key_inputs, "edited"),
    "bad json": (_garble_meta, "JSON"),
    "deleted object": (_delete_object, "missing"),
    "deleted meta": (_delete_meta, "missing"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_named_by_verify_and_rebuilt(store, name):
    corrupt, words = CORRUPTIONS[name]
    ki = inputs()
    entry, _ = store.get_or_build(ki, output)
    other, _ = store.get_or_build(inputs("another kernel"), output)
    corrupt(entry)

    if name.endswith("object"):
        with pytest.raises(StoreError):
            entry.read_object()  # the Entry already handed out refuses the changed object too
    problems = store.verify()
    assert [k for k, _ in problems] == [ki.key()] and words in problems[0][1], problems
    assert store.verify() == problems  # verify deletes nothing
    assert store.stats()["corrupt"] == 1 and store.stats()["entries"] == 1

    assert store.lookup(ki) is None  # a miss, and the corrupt entry is gone
    assert not entry.path.exists() and store.verify() == []
    calls = []
    rebuilt, hit = store.get_or_build(ki, lambda: calls.append(1) or output())
    assert not hit and calls == [1] and rebuilt.read_object() == output().object_bytes
    assert store.lookup(other.key).valid  # the other entry was never touched


def test_get_or_build_replaces_a_corrupt_entry_without_a_separate_lookup(store):
    ki = inputs()
    entry, _ = store.get_or_build(ki, output)
    _edit_object(entry)
    rebuilt, hit = store.get_or_build(ki, lambda: output(b"fresh bytes"))
    assert not hit and rebuilt.read_object() == b"fresh bytes"


def test_stray_directory_and_files_are_reported_and_repaired_alone(store):
    good, _ = store.get_or_build(inputs(), output)
    (store.root / "objects" / "zz" / "not-a-key").mkdir(parents=True)
    (store.root / "objects" / "zz" / "notakey").write_text("junk")
    (store.root / "objects" / "stray.txt").write_text("junk")
    (good.path / "notes.txt").write_text("mine")  # an unlisted file inside a valid entry
    assert store.verify() == [(good.key, "notes.txt is not recorded in meta.json"),
                              ("not-a-key", "not a store entry (directory name is not a key in its shard)"),
                              ("objects/stray.txt", "stray: not a store entry"),
                              ("objects/zz/notakey", "stray: not a store entry")]
    assert store.lookup(good.key).valid  # loading needs only the object: the entry is still served
    removed = store.repair()
    assert sorted(removed) == sorted([str(good.path.relative_to(store.root)), "objects/zz/not-a-key",
                                      "objects/stray.txt", "objects/zz/notakey"])
    assert store.verify() == [] and store.lookup(good.key) is None


def test_repair_keeps_valid_entries_and_fresh_leftovers(store, monkeypatch):
    a, _ = store.get_or_build(inputs("a"), output)
    b, _ = store.get_or_build(inputs("b"), output)
    _truncate(b)
    work = store.workdir("k_f32")
    (work / "k_f32.hip").write_text("a failed compile's source")
    old_lock = store.locks / f"{a.key}.lock"  # the one-lock-per-key layout of store format 1
    old_lock.write_text("")
    assert sorted(store.repair()) == sorted([str(b.path.relative_to(store.root)), f"locks/{a.key}.lock"])
    assert store.lookup(a.key).valid and work.exists()  # a fresh work dir may be a build in progress
    monkeypatch.setattr(store_mod, "STALE_S", -1.0)
    assert store.repair() == [str(work.relative_to(store.root))]
    assert store.lookup(a.key).valid and store.verify() == []


def test_clear_removes_leftovers_too(store):
    store.get_or_build(inputs(), output)
    store.workdir("k_f32")
    (store.tmp / "new-leftover").mkdir()
    (store.objects / "zz").mkdir()
    (store.objects / "zz" / "junk").write_text("x")
    assert store.clear() == 1
    assert not any((store.root / "work").iterdir()) and not any(store.tmp.iterdir())
    assert not any(p.is_file() for p in store.objects.rglob("*"))


def test_locks_are_shared_by_key_prefix(store):
    for i in range(300):
        store.get_or_build(inputs(f"kernel {i}"), output)
    names = [p.name for p in store.locks.iterdir()]
    assert len(names) <= 256 and all(len(n) == len("ab.lock") for n in names)


# ------------------------------------------------------------------------- extra files recorded
def test_extra_files_are_recorded_and_verified(store):
    entry, _ = store.get_or_build(inputs(), output)
    assert set(entry.meta["files"]) == {"source.hip", "kernel.s"}
    with open(entry.path / "source.hip", "a") as f:
        f.write("// edited\n")
    assert store.verify() == [(entry.key, "source.hip sha256 does not match meta.json (edited or damaged)")]
    (entry.path / "source.hip").unlink()
    assert store.verify() == [(entry.key, "source.hip is missing")]


def test_add_file_records_it(store):
    entry, _ = store.get_or_build(inputs(), output)
    added = store.add_file(entry, "kernel.asm", "s_endpgm\n")
    assert added.meta["files"]["kernel.asm"] == hashlib.sha256(b"s_endpgm\n").hexdigest()
    assert store.verify() == [] and store.lookup(entry.key).file("kernel.asm").read_text() == "s_endpgm\n"
    assert store.lookup(entry.key).meta == added.meta and not list(store.tmp.iterdir())
    with pytest.raises(StoreError, match="unusable"):
        store.add_file(entry, "../x", "no")
    _truncate(entry)
    with pytest.raises(StoreError, match="changed while adding"):
        store.add_file(entry, "kernel.asm", "again")


def test_force_rebuilds_and_says_what_it_replaced(store):
    ki = inputs()
    first, _ = store.get_or_build(ki, output)
    assert first.replaced is None
    again, hit = store.get_or_build(ki, lambda: output(b"fresh bytes"), force=True)
    assert not hit and again.replaced == "forced" and again.read_object() == b"fresh bytes"
    _truncate(again)
    fixed, hit = store.get_or_build(ki, output)
    assert not hit and fixed.replaced.startswith("object.bin is") and fixed.read_object() == output().object_bytes


# ------------------------------------------------------------------------------ read-only stores
def test_read_only_store_serves_hits_and_says_why_it_cannot_build(store, monkeypatch):
    """What a read-only mount does (EROFS on every write; tests/test_cli.py mounts one for real)."""
    import errno
    import filelock
    hit, _ = store.get_or_build(inputs("a"), output)

    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(filelock.FileLock, "acquire", erofs)
    monkeypatch.setattr(os, "rename", erofs)
    monkeypatch.setattr(store_mod.tempfile, "mkstemp", erofs)
    monkeypatch.setattr(store_mod.tempfile, "mkdtemp", erofs)
    assert store.get_or_build(inputs("a"), lambda: pytest.fail("built on a hit"))[0].key == hit.key
    assert not store.writable()
    for attempt in (lambda: store.get_or_build(inputs("b"), output), lambda: store.clear(),
                    lambda: store.workdir("k"), lambda: store.add_file(hit, "kernel.asm", "x")):
        with pytest.raises(StoreError, match=r"cannot write to the store .*Read-only file system.*still served"):
            attempt()


def test_root_under_a_file_names_the_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(StoreError, match=f"{tmp_path / 'f'} is a file, not a directory"):
        Store(tmp_path / "f" / "x" / "y")


# --------------------------------------------------------------------------------- processes
def _worker(root: str, counter: str, sources: list[str]) -> list[bool]:
    """Build the same keys as its siblings; every build appends a line to the counter file."""
    s = Store(Path(root))
    hits = []
    for src in sources:
        def build(src=src):
            time.sleep(0.3)  # long enough that the siblings arrive while the build runs
            with open(counter, "a") as f:
                f.write(src + "\n")
            return output(f"object of {src}".encode(), symbol=src)
        entry, hit = s.get_or_build(inputs(src), build)
        assert entry.read_object() == f"object of {src}".encode()
        hits.append(hit)
    return hits


def test_processes_build_each_key_exactly_once(tmp_path):
    root, counter = tmp_path / "store", tmp_path / "builds.txt"
    Store(root)
    sources = ["kernel a", "kernel b", "kernel c"]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        # Each worker walks the keys in a different order, so locks are contended from every side.
        orders = [sources[i:] + sources[:i] for i in range(4)]
        results = pool.starmap(_worker, [(str(root), str(counter), o) for o in orders])
    built = counter.read_text().split("\n")[:-1]
    assert sorted(built) == sorted(sources)  # exactly one build per key
    assert sum(not h for r in results for h in r) == 3  # and three misses reported in all
    s = Store(root)
    assert s.verify() == [] and s.stats()["entries"] == 3
    assert not list(s.tmp.iterdir())


# ------------------------------------------------------------------------------------ safety
@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o722])
def test_root_writable_by_others_is_refused(tmp_path, mode):
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, mode)  # mode bits, not access(): the check holds even when tests run as root
    with pytest.raises(StoreError, match="writable by"):
        Store(root)


@pytest.mark.parametrize("sub", ["objects", "locks", "tmp"])
def test_group_writable_subfolder_is_refused(tmp_path, sub):
    Store(tmp_path / "s")
    os.chmod(tmp_path / "s" / sub, 0o775)
    with pytest.raises(StoreError, match=sub):
        Store(tmp_path / "s")


def test_root_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    Store(tmp_path / "s")
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(tmp_path).st_uid + 1)
    with pytest.raises(StoreError, match="owned by uid"):
        Store(tmp_path / "s")


def test_new_root_gets_mode_755_despite_umask(tmp_path):
    old = os.umask(0o000)
    try:
        s = Store(tmp_path / "fresh" / "store")
    finally:
        os.umask(old)
    for p in (s.root, s.root / "objects", s.root / "locks", s.root / "tmp"):
        assert os.stat(p).st_mode & 0o777 == 0o755, p


# ------------------------------------------------------------------------------- maintenance
def test_stats_and_clear(store):
    store.get_or_build(inputs("a"), output)
    store.get_or_build(inputs("b", arch="gfx950", target="gfx950"), output)
    store.get_or_build(inputs("c", toolchain="nvrtc 13.5", arch="sm_90", target="sm_90"), output)
    st = store.stats()
    assert st["entries"] == 3 and st["corrupt"] == 0 and st["bytes"] > 3 * len(output().object_bytes)
    assert st["by_arch"] == {"gfx1100": 1, "gfx950": 1, "sm_90": 1}
    assert st["by_toolchain"] == {"zig-clang 22.1.8": 2, "nvrtc 13.5": 1}
    assert len(list(store.entries())) == 3
    assert store.clear() == 3
    assert store.stats()["entries"] == 0 and store.lookup(inputs("a")) is None
    assert store.clear() == 0


def test_dump_dir_receives_new_builds_only(store, tmp_path, monkeypatch):
    dump = tmp_path / "dump"
    monkeypatch.setenv("FORGE_DUMP_DIR", str(dump))
    store.get_or_build(inputs(), output)
    got = dump / "k_f32.gfx1100"  # symbol and arch: one kernel built for two archs dumps twice
    assert (got / "source.hip").read_text().startswith("extern")
    assert (got / "kernel.s").exists() and json.loads((got / "meta.json").read_text())["symbol"] == "k_f32"
    (got / "meta.json").unlink()
    store.get_or_build(inputs(), output)  # a hit is not dumped again
    assert not (got / "meta.json").exists()


def test_default_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_CACHE_DIR", str(tmp_path / "env"))
    assert default_root(str(tmp_path / "cli")) == tmp_path / "cli"
    assert default_root() == tmp_path / "env"
    monkeypatch.delenv("FORGE_CACHE_DIR")
    checkout = Path(store_mod.__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "build_cache").is_dir():
        assert default_root() == checkout / "build_cache"
    else:
        import platformdirs
        assert default_root() == Path(platformdirs.user_cache_dir("forge"))
    fake_pkg = tmp_path / "elsewhere" / "forge" / "codegen" / "store.py"  # an installed copy
    monkeypatch.setattr(store_mod, "__file__", str(fake_pkg))
    import platformdirs
    assert default_root() == Path(platformdirs.user_cache_dir("forge"))


def test_frozen_key_inputs():
    with pytest.raises(dataclasses.FrozenInstanceError):
        inputs().arch = "gfx950"
