"""The content-addressed code-object store.

    store = Store(default_root())
    entry, hit = store.get_or_build(KeyInputs(sha, "gfx1100", "gfx1100", "zig-clang 22.1.8", flags), build)
    code = entry.read_object()          # sha256-verified on every read

Layout under the root:

    objects/<key[:2]>/<key>/object.bin   the code object (cubin, .co, .so)
    objects/<key[:2]>/<key>/meta.json    key_inputs, object_sha256, object_bytes, files (sha256 of each
                                         extra file), created, build meta, and meta_sha256 (a
                                         checksum of the rest, so edits show)
    objects/<key[:2]>/<key>/<files>      extras kept for people: source, assembly
    locks/<key[:2]>.lock                 one compile per key across processes (256 files at most:
                                         keys that share a prefix share a lock, and wait for each
                                         other, rarely; a lock file is never deleted, so two
                                         processes can never hold two different files of one name)
    tmp/                                 entries being written, entries being deleted
    work/<symbol>-*/                     compiler scratch dirs; a failed compile's stays (its error
                                         names the source in it) until `repair` or `clear`

The store is dumb and atomic (as Triton's file cache): an entry is written complete into tmp/ and
published with one os.rename, so a reader sees all of an entry or none of it; a corrupt entry is
removed and rebuilt, never loaded. Loading a code object runs its code, so a root (or its objects/,
locks/, tmp/ folders) writable by group or others, or owned by another user, is refused. A
read-only store (a read-only mount) still serves hits: only a miss needs the lock and a write.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator

import filelock
import platformdirs

from ..errors import StoreError

# Bump when the layout or the meaning of a key changes: every old entry then simply misses.
STORE_FORMAT = 2  # 2: meta.json records the sha256 of every extra file
OBJECT_FILE = "object.bin"
META_FILE = "meta.json"
LOCK_TIMEOUT_S = 900  # longer than any compile; a holder stuck past this is reported, not waited on
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_FILE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
# Fields the store writes into meta.json itself; a build's meta may not set them.
_RESERVED = ("key", "key_inputs", "object_sha256", "object_bytes", "files", "created", "store_format",
             "meta_sha256")
# Leftovers (work/ and tmp/ dirs) older than this are not a build in progress: `repair` removes them.
STALE_S = 3600


def _canonical(obj) -> bytes:
    """The one JSON spelling of `obj` that keys and checksums hash (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------ key inputs
@dataclass(frozen=True)
class KeyInputs:
    """Everything that decides a compiled object; printed by `forge cache ls`, all of it hashed."""

    source_sha256: str  # sha256 hex of the complete rendered (or overridden) source
    arch: str  # e.g. "gfx1100"
    target: str  # e.g. "gfx1100", "sm_90", "host"
    toolchain: str  # identity: name + version, e.g. "zig-clang 22.1.8"
    flags: tuple[str, ...]  # compiler flags that affect the object
    override: bool = False  # source came from FORGE_OVERRIDE_DIR

    def __post_init__(self):
        # A list of flags would hash like the tuple but make the dataclass unhashable; normalize.
        object.__setattr__(self, "flags", tuple(self.flags))
        if not _KEY_RE.fullmatch(self.source_sha256 or ""):
            raise ValueError(f"KeyInputs.source_sha256 must be 64 lowercase hex digits, got {self.source_sha256!r}")
        for name in ("arch", "target", "toolchain"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"KeyInputs.{name} must be a non-empty string, got {getattr(self, name)!r}")
        if not all(isinstance(f, str) for f in self.flags):
            raise ValueError(f"KeyInputs.flags must be strings, got {self.flags!r}")
        if not isinstance(self.override, bool):
            raise ValueError(f"KeyInputs.override must be a bool, got {self.override!r}")

    def as_dict(self) -> dict:
        """The fields as JSON-ready data (flags as a list)."""
        d = asdict(self)
        d["flags"] = list(self.flags)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "KeyInputs":
        """The KeyInputs recorded in a meta.json; ValueError/TypeError when fields are missing or extra."""
        names = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) != names:
            raise ValueError(f"key_inputs must have exactly the fields {sorted(names)}")
        return cls(**d)

    def key(self) -> str:
        """sha256 hex of the canonical JSON of every field plus the store format version."""
        return _sha256(_canonical({"store_format": STORE_FORMAT, **self.as_dict()}))


@dataclass
class BuildOutput:
    """What a build callback hands the store."""

    object_bytes: bytes
    files: dict[str, bytes | str] = field(default_factory=dict)  # kept beside the object
    meta: dict = field(default_factory=dict)  # family, params, symbol, arch, toolchain, resources, ...


# ----------------------------------------------------------------------------------------- entry
class Entry:
    """One entry directory. `problem` is None for a valid entry, else why it is corrupt (entries()
    yields both kinds; lookup() and get_or_build() only valid ones). `meta` is None when meta.json
    could not be read."""

    def __init__(self, key: str, path: Path, meta: dict | None, problem: str | None = None):
        self.key, self.path, self.meta, self.problem = key, path, meta, problem
        # set by get_or_build when this entry replaced one: the old one's problem, or "forced"
        self.replaced: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None

    def read_object(self) -> bytes:
        """The object's bytes, re-read and checked against meta's sha256 on every call. Raises
        StoreError when the entry is corrupt, the object is gone or no longer matches."""
        if self.problem is not None or self.meta is None:
            raise StoreError(f"store entry {self.path} is corrupt: {self.problem}")
        try:
            data = (self.path / OBJECT_FILE).read_bytes()
        except OSError as e:
            raise StoreError(f"store entry {self.path}: cannot read {OBJECT_FILE}: {e.strerror or e}") from None
        if _sha256(data) != self.meta.get("object_sha256"):
            raise StoreError(f"store entry {self.path}: {OBJECT_FILE} no longer matches its sha256 "
                             f"(changed after it was stored); refusing to load it")
        return data

    def file(self, name: str) -> Path | None:
        """The path of extra file `name` kept beside the object, or None when there is none (or the
        name is not a plain file name)."""
        if not _FILE_RE.fullmatch(name):
            return None
        p = self.path / name
        return p if p.is_file() else None

    def __repr__(self) -> str:
        return f"<Entry {self.key[:16]} {'ok' if self.valid else self.problem}>"


def _check_entry(key: str, path: Path, files: bool = False) -> tuple[dict | None, str | None]:
    """(meta, problem) for the entry directory `path`: problem is None when meta.json is intact
    (its checksum matches), its key_inputs hash to `key`, and object.bin matches size and sha256.
    With `files`, the extra files (source, assembly) must match meta's sha256 too and nothing else
    may be in the directory: what `verify` checks. Loading needs only the object, so a lookup does
    not read the extras."""
    if not _KEY_RE.fullmatch(key) or path.parent.name != key[:2]:
        return None, "not a store entry (directory name is not a key in its shard)"
    try:
        raw = (path / META_FILE).read_bytes()
    except FileNotFoundError:
        return None, f"{META_FILE} is missing"
    except OSError as e:
        return None, f"{META_FILE} is unreadable: {e.strerror or e}"
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:
        return None, f"{META_FILE} is not valid JSON ({e})"
    if not isinstance(meta, dict):
        return None, f"{META_FILE} is not a JSON object"
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    if meta.get("meta_sha256") != _sha256(_canonical(body)):
        return meta, f"{META_FILE} was edited (its meta_sha256 does not match its contents)"
    if meta.get("store_format") != STORE_FORMAT:  # an older layout: its key means something else now
        return meta, (f"stale: written in store format {meta.get('store_format')}, this forge uses "
                      f"{STORE_FORMAT} (never loaded; `forge cache repair` removes it)")
    try:
        recorded = KeyInputs.from_dict(meta.get("key_inputs")).key()
    except (ValueError, TypeError) as e:
        return meta, f"{META_FILE} key_inputs are malformed ({e})"
    if recorded != key or meta.get("key") != key:
        return meta, f"{META_FILE} key_inputs hash to {recorded[:16]}…, not to this entry's key"
    try:
        data = (path / OBJECT_FILE).read_bytes()
    except FileNotFoundError:
        return meta, f"{OBJECT_FILE} is missing"
    except OSError as e:
        return meta, f"{OBJECT_FILE} is unreadable: {e.strerror or e}"
    if len(data) != meta.get("object_bytes"):
        return meta, f"{OBJECT_FILE} is {len(data)} bytes, {META_FILE} says {meta.get('object_bytes')} (truncated?)"
    if _sha256(data) != meta.get("object_sha256"):
        return meta, f"{OBJECT_FILE} sha256 does not match {META_FILE} (edited or damaged)"
    return meta, _check_files(path, meta) if files else None


def _check_files(path: Path, meta: dict) -> str | None:
    """Why the extra files of an entry do not match meta's `files` record, or None."""
    listed = meta.get("files")
    if not isinstance(listed, dict):
        return f"{META_FILE} has no files record"
    for name, sha in sorted(listed.items()):
        try:
            data = (path / name).read_bytes() if _FILE_RE.fullmatch(name) else None
        except FileNotFoundError:
            return f"{name} is missing"
        except OSError as e:
            return f"{name} is unreadable: {e.strerror or e}"
        if data is None or _sha256(data) != sha:
            return f"{name} sha256 does not match {META_FILE} (edited or damaged)"
    extra = sorted(p.name for p in path.iterdir() if p.name not in {OBJECT_FILE, META_FILE, *listed})
    if extra:
        return f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not recorded in {META_FILE}"
    return None


# ----------------------------------------------------------------------------------------- store
def _refuse_unsafe(path: Path, what: str) -> None:
    """StoreError when `path` is not a directory, is owned by another user, or is writable by group
    or others. Checks mode bits, not access(): root can write anything, yet the bits still say who
    else can."""
    try:
        st = path.stat()
    except OSError as e:
        raise StoreError(f"store {what} {path}: cannot stat: {e.strerror or e}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"store {what} {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise StoreError(f"store {what} {path} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()}); "
                         f"loading a code object runs its code, so forge only uses a store you own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StoreError(f"store {what} {path} is writable by {'others' if st.st_mode & stat.S_IWOTH else 'group'} "
                         f"(mode {stat.S_IMODE(st.st_mode):o}); loading a code object runs its code, so forge "
                         f"refuses it: chmod go-w {path}")


def _safe_dir(path: Path, what: str) -> Path:
    """Create `path` with mode 0o755 if missing (umask would otherwise decide), else check it."""
    try:
        path.mkdir(mode=0o755)
        os.chmod(path, 0o755)
    except FileExistsError:
        pass
    except OSError as e:
        raise StoreError(f"cannot create store {what} {path}: {e.strerror or e}") from None
    _refuse_unsafe(path, what)
    return path


def _write(path: Path, data: bytes | str) -> None:
    path.write_bytes(data.encode() if isinstance(data, str) else bytes(data))
    os.chmod(path, 0o644)


def _make_parents(root: Path) -> None:
    """Create the folders above `root`; StoreError naming the culprit when one is a file."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocker = next((p for p in [root.parent, *root.parent.parents] if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise StoreError(f"cannot create store root {root}: {blocker} is a file, not a directory") from None
        raise StoreError(f"cannot create store root {root}: {e.strerror or e}") from None


class Store:
    """A code-object store at `root`. Raises StoreError for an unsafe or unusable root."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().absolute()
        _make_parents(self.root)
        _safe_dir(self.root, "root")
        self.objects = _safe_dir(self.root / "objects", "objects folder")
        self.locks = _safe_dir(self.root / "locks", "locks folder")
        self.tmp = _safe_dir(self.root / "tmp", "tmp folder")

    def __repr__(self) -> str:
        return f"<Store {self.root}>"

    # -- paths and locks
    @staticmethod
    def _key_of(inputs_or_key: KeyInputs | str) -> str:
        """The key of `inputs_or_key`; ValueError for a string that is not a 64-hex key (it becomes
        a path, so nothing else may pass)."""
        key = inputs_or_key.key() if isinstance(inputs_or_key, KeyInputs) else inputs_or_key
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"not a store key (64 lowercase hex digits): {key!r}")
        return key

    def _path(self, key: str) -> Path:
        return self.objects / key[:2] / key

    def _lock(self, key: str) -> filelock.FileLock:
        return filelock.FileLock(self.locks / f"{key[:2]}.lock", timeout=LOCK_TIMEOUT_S, mode=0o644)

    def _not_writable(self, e: OSError) -> StoreError:
        return StoreError(f"cannot write to the store {self.root} ({e.strerror or e}): nothing new can be "
                          f"stored in it, though what it holds is still served; use --cache-dir or "
                          f"FORGE_CACHE_DIR for a writable one")

    def _remove(self, path: Path) -> None:
        """Delete an entry directory (or a stray file): first rename it into tmp/ (one atomic step,
        so nobody sees half of it), then delete it there. StoreError when the store is read-only."""
        trash = self.tmp / f"del-{path.name[:16]}-{uuid.uuid4().hex}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        except OSError as e:
            raise self._not_writable(e) from None
        _rmtree(trash)

    def writable(self) -> bool:
        """Whether new entries can be written (a read-only mount, or a store of another user's
        files, still serves hits)."""
        try:
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix="probe-")
        except OSError:
            return False
        os.close(fd)
        os.unlink(name)
        return True

    def workdir(self, prefix: str) -> Path:
        """A fresh scratch directory under work/ for a compiler; the caller removes it."""
        try:
            base = self.root / "work"
            base.mkdir(mode=0o755, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=base))
        except OSError as e:
            raise self._not_writable(e) from None

    # -- reading
    def _load(self, key: str) -> Entry | None:
        """The entry at `key` as found (valid or not), or None when there is no directory."""
        path = self._path(key)
        if not path.is_dir():
            return None
        _refuse_unsafe(path.parent, "shard folder")
        meta, problem = _check_entry(key, path)
        return Entry(key, path, meta, problem)

    def lookup(self, inputs_or_key: KeyInputs | str) -> Entry | None:
        """The valid entry for a KeyInputs or key, or None on a miss. A corrupt entry is removed
        (under its key's lock, after checking again, so a fresh entry another process just published
        is never the one deleted) and reported as a miss."""
        key = self._key_of(inputs_or_key)
        e = self._load(key)
        if e is None or e.valid:
            return e
        with self._locked(key):
            return self._lookup_locked(key)

    def _lookup_locked(self, key: str) -> Entry | None:
        """lookup() for a caller that holds the key's lock: removes a corrupt entry."""
        e = self._load(key)
        if e is not None and not e.valid:
            self._remove(e.path)
            return None
        return e

    def _locked(self, key: str):
        """The key's lock as a context manager; StoreError when it cannot be had in LOCK_TIMEOUT_S
        or cannot be created (a read-only store)."""
        lock = self._lock(key)
        try:
            return lock.acquire()  # a proxy whose __exit__ releases the lock
        except filelock.Timeout:
            raise StoreError(f"waited {LOCK_TIMEOUT_S} s for {lock.lock_file}: another process holds it "
                             f"(a stuck compile?)") from None
        except OSError as e:
            raise self._not_writable(e) from None

    # -- writing
    def get_or_build(self, inputs: KeyInputs, build: Callable[[], BuildOutput],
                     force: bool = False) -> tuple[Entry, bool]:
        """(entry, was_hit) for `inputs`, calling build() only on a miss (or always, with `force`),
        at most once per key across processes. An exception from build() propagates and nothing is
        stored. A new entry that replaced a corrupt (or forced-out) one says so in `entry.replaced`."""
        key = self._key_of(inputs)
        e = self._load(key)
        if e is not None and e.valid and not force:
            return e, True
        with self._locked(key):
            old = self._load(key)
            if old is not None and old.valid and not force:
                return old, True
            if old is not None and not old.valid:
                self._remove(old.path)  # a corrupt entry goes even if the build then fails
            out = build()
            e = self._publish(key, inputs, out)
        e.replaced = None if old is None else (old.problem or "forced")
        _dump(e)
        return e, False

    def add_file(self, entry: Entry, name: str, data: bytes | str) -> Entry:
        """Put extra file `name` into a valid entry and record its sha256 in meta.json (file first,
        then meta, each by rename). Returns the entry as re-read; StoreError when the entry went
        corrupt or away meanwhile, or the store is read-only."""
        if not _FILE_RE.fullmatch(name) or name in (OBJECT_FILE, META_FILE):
            raise StoreError(f"unusable extra file name {name!r}")
        with self._locked(entry.key):
            e = self._load(entry.key)
            if e is None or not e.valid:
                raise StoreError(f"store entry {entry.path} changed while adding {name}: "
                                 f"{e.problem if e else 'it is gone'}")
            meta = {k: v for k, v in e.meta.items() if k != "meta_sha256"}
            raw = data.encode() if isinstance(data, str) else bytes(data)
            meta["files"] = {**meta.get("files", {}), name: _sha256(raw)}
            meta["meta_sha256"] = _sha256(_canonical(meta))
            try:
                self._replace_file(e.path / name, raw)
                self._replace_file(e.path / META_FILE, json.dumps(meta, indent=1, sort_keys=True))
            except OSError as err:
                raise self._not_writable(err) from None
            return Entry(e.key, e.path, meta)

    def _replace_file(self, dest: Path, data: bytes | str) -> None:
        tmp = self.tmp / f"file-{uuid.uuid4().hex}"
        _write(tmp, data)
        os.replace(tmp, dest)

    def _publish(self, key: str, inputs: KeyInputs, out: BuildOutput) -> Entry:
        """Write `out` into a temp dir and rename it into place; the caller holds the key's lock."""
        if not isinstance(out, BuildOutput) or not isinstance(out.object_bytes, (bytes, bytearray)):
            raise StoreError(f"build for key {key[:16]} returned {type(out).__name__}, expected a BuildOutput "
                             f"with object_bytes")
        clash = [k for k in _RESERVED if k in out.meta]
        bad = [n for n in out.files if not _FILE_RE.fullmatch(n) or n in (OBJECT_FILE, META_FILE)]
        if clash or bad:
            raise StoreError(f"build for key {key[:16]}: meta sets store fields {clash} or files have "
                             f"unusable names {bad}")
        obj = bytes(out.object_bytes)
        extras = {n: d.encode() if isinstance(d, str) else bytes(d) for n, d in out.files.items()}
        meta = {**out.meta, "key": key, "key_inputs": inputs.as_dict(), "object_sha256": _sha256(obj),
                "object_bytes": len(obj), "files": {n: _sha256(d) for n, d in extras.items()},
                "store_format": STORE_FORMAT,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        try:
            meta["meta_sha256"] = _sha256(_canonical(meta))
        except (TypeError, ValueError) as e:
            raise StoreError(f"build for key {key[:16]}: meta is not JSON data ({e})") from None
        work = None
        try:
            work = Path(tempfile.mkdtemp(prefix=f"new-{key[:16]}-", dir=self.tmp))
            os.chmod(work, 0o755)
            _write(work / OBJECT_FILE, obj)
            for name, data in extras.items():
                _write(work / name, data)
            _write(work / META_FILE, json.dumps(meta, indent=1, sort_keys=True))
            shard = _safe_dir(self.objects / key[:2], "shard folder")
            final = shard / key
            if final.exists():  # a leftover nobody could validate; we hold the lock, so replace it
                self._remove(final)
            os.rename(work, final)
        except OSError as e:
            raise self._not_writable(e) from None
        finally:
            if work is not None and work.exists():
                shutil.rmtree(work, ignore_errors=True)
        return Entry(key, final, meta)

    # -- maintenance
    def entries(self, files: bool = False) -> Iterator[Entry]:
        """Every entry directory, valid or corrupt (check `entry.problem`), in key order. With
        `files`, an entry whose extra files do not match its meta.json counts as corrupt too."""
        for shard in sorted(p for p in self.objects.iterdir() if p.is_dir()):
            for path in sorted(p for p in shard.iterdir() if p.is_dir()):
                meta, problem = _check_entry(path.name, path, files)
                yield Entry(path.name, path, meta, problem)

    def strays(self) -> list[Path]:
        """Files under objects/ where no entry file can be: in objects/ itself or in a shard
        folder. (Folders in a shard that are not entries are corrupt entries: see entries().)"""
        out = []
        for p in sorted(self.objects.iterdir()):
            out.extend([p] if not p.is_dir() else sorted(q for q in p.iterdir() if not q.is_dir()))
        return out

    def verify(self) -> list[tuple[str, str]]:
        """(name, problem) for every corrupt entry (name: its key) and every stray under objects/
        (name: its path relative to the root); reads every file; deletes nothing."""
        bad = [(e.key, e.problem) for e in self.entries(files=True) if e.problem]
        return bad + [(str(p.relative_to(self.root)), "stray: not a store entry") for p in self.strays()]

    def repair(self) -> list[str]:
        """Remove what verify() reports, and leftovers no build is using: work/ and tmp/ items
        untouched for STALE_S, lock files of the old one-per-key layout. Valid entries stay.
        Returns what was removed (paths relative to the root)."""
        removed = []
        for e in self.entries(files=True):
            if e.problem:
                with self._locked(e.key):  # re-check under the lock: never remove a fresh entry
                    meta, problem = _check_entry(e.key, e.path, True)
                    if problem:
                        self._remove(e.path)
                        removed.append(str(e.path.relative_to(self.root)))
        for p in self.strays():
            self._remove(p)
            removed.append(str(p.relative_to(self.root)))
        return removed + self._sweep(time.time() - STALE_S)

    def _sweep(self, before: float) -> list[str]:
        """Remove work/ and tmp/ items last modified before `before`, and old-layout lock files."""
        removed = []
        for folder in (self.root / "work", self.tmp):
            for p in sorted(folder.iterdir()) if folder.is_dir() else []:
                if _mtime(p) < before:
                    _rmtree(p, self._not_writable)
                    removed.append(str(p.relative_to(self.root)))
        for p in sorted(self.locks.iterdir()):
            if _KEY_RE.fullmatch(p.stem):  # <64-hex key>.lock: before locks were shared by prefix
                _rmtree(p, self._not_writable)
                removed.append(str(p.relative_to(self.root)))
        return removed

    def stats(self) -> dict:
        """Counts: entries (valid), corrupt, bytes (all files of all entries), by_arch and
        by_toolchain (valid entries)."""
        out = {"entries": 0, "corrupt": 0, "bytes": 0, "by_arch": {}, "by_toolchain": {}}
        for e in self.entries():
            out["bytes"] += sum(f.stat().st_size for f in e.path.iterdir() if f.is_file())
            if not e.valid:
                out["corrupt"] += 1
                continue
            out["entries"] += 1
            ki = e.meta["key_inputs"]
            for group, name in (("by_arch", ki["arch"]), ("by_toolchain", ki["toolchain"])):
                out[group][name] = out[group].get(name, 0) + 1
        return out

    def clear(self) -> int:
        """Remove every entry (valid or corrupt), every stray under objects/ and every leftover in
        work/ and tmp/ (so do not clear a store while something builds into it); returns how many
        entries were removed."""
        n = 0
        for shard in [p for p in self.objects.iterdir() if p.is_dir()]:
            for path in [p for p in shard.iterdir() if p.is_dir()]:
                self._remove(path)
                n += 1
        for p in self.strays():
            self._remove(p)
        self._sweep(float("inf"))
        return n


def _mtime(p: Path) -> float:
    try:
        return p.lstat().st_mtime
    except OSError:
        return float("inf")  # gone already


def _rmtree(p: Path, fail: Callable[[OSError], Exception] | None = None) -> None:
    """Delete a file or a directory tree; an error raises fail(error), or is ignored without `fail`."""
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=fail is None)
        else:
            p.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        if fail is not None:
            raise fail(e) from None


def _dump(entry: Entry) -> None:
    """With FORGE_DUMP_DIR set, copy a newly built entry's files, object and meta into
    FORGE_DUMP_DIR/<symbol>.<arch>/ (or <key>/) for people to read. A failure to dump warns; it never fails
    the build that succeeded."""
    base = os.environ.get("FORGE_DUMP_DIR")
    if not base:
        return
    symbol, arch = entry.meta.get("symbol"), entry.meta.get("arch")
    name = f"{symbol}.{arch}" if isinstance(symbol, str) and isinstance(arch, str) else entry.key
    name = name if _FILE_RE.fullmatch(name) else entry.key
    dest = Path(base) / name
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for f in entry.path.iterdir():
            if f.is_file():
                shutil.copyfile(f, dest / f.name)
    except OSError as e:
        warnings.warn(f"FORGE_DUMP_DIR: cannot dump {name} into {dest}: {e}", stacklevel=3)


def default_root(cli_dir: str | os.PathLike | None = None) -> Path:
    """The store root: `cli_dir` (--cache-dir), else $FORGE_CACHE_DIR, else <checkout>/build_cache
    when forge runs from a source checkout (the folder above the package has pyproject.toml and
    build_cache/), else the user cache dir (platformdirs). Creates and checks nothing."""
    if cli_dir:
        return Path(cli_dir).expanduser()
    env = os.environ.get("FORGE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "build_cache").is_dir():
        return checkout / "build_cache"
    return Path(platformdirs.user_cache_dir("forge"))
