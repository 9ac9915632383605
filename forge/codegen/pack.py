"""Kernel packs: the store entries an arch needs, in one tar, for machines without a compiler.

    m = export_pack(store, arch, variants, "gfx1100.tar")         # where forge builds: entries + manifest
    m = import_pack("gfx1100.tar", store, "gfx1100")              # anywhere: verified, then stored
    m.require(variants)                                           # PackError naming what is missing
    kernels = Dispatcher(device, arch, store, toolchain=m.pack_toolchain())   # finds entries, compiles nothing

A pack is an uncompressed tar:

    manifest.json                      pack format, arch, target, vendor, toolchain identity and the
                                       kernels' compile flags, forge version, store format; per entry
                                       its key, role (kernel, or library: a runtime the backend
                                       loads), symbol, family, params, key inputs, and the sha256
                                       of each of its files
    objects/<key[:2]>/<key>/<file>     object.bin, meta.json and the extra files, as in the store

A kernel's cache key includes the toolchain identity and flags. With no compiler present, the
manifest supplies them (PackToolchain), so each needed variant's key is computed exactly as where
the pack was built (render, sha256, key) and found in the store; a miss is a PackError, never a
compile.

import_pack refuses, in one message and before it writes anything: a pack for another arch,
toolchain or store format; a member that is absolute, contains `..`, is a link or anything but a
plain file, or is not where a pack member can be; a member the manifest does not list, or a listed
one that is missing; a file whose sha256 is not the manifest's (tampered); an entry whose key inputs
do not hash to its key. Entries are then published through the store (temp dir + rename, verified on
every read), so nothing is written outside it. What a pack cannot prove is who made it: the
manifest is checked against the members, not signed, so trust a pack as you would trust its code.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from ..arch import Arch, get_arch
from ..errors import PackError
from .build import compile_variant, key_inputs, source_for
from .spec import Variant
from .store import _FILE_RE, _KEY_RE, _RESERVED, META_FILE, OBJECT_FILE, STORE_FORMAT, BuildOutput, Entry, KeyInputs, Store
from .toolchain import Toolchain, toolchain_for

PACK_FORMAT = 1
MANIFEST = "manifest.json"
MAX_MEMBER_BYTES = 256 << 20  # one code object or source; far above any forge builds
MAX_PACK_BYTES = 4 << 30
ROLES = ("kernel", "library")
_MEMBER_RE = re.compile(r"objects/([0-9a-f]{2})/([0-9a-f]{64})/([A-Za-z0-9_][A-Za-z0-9_.+-]*)")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _forge_version() -> str:
    from .. import __version__
    return __version__


# ---------------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class PackEntry:
    """One store entry in a pack: `files` maps each file name to its sha256."""

    key: str
    role: str  # "kernel" | "library"
    symbol: str
    family: str
    params: dict
    key_inputs: dict
    files: dict

    def as_dict(self) -> dict:
        return dict(key=self.key, role=self.role, symbol=self.symbol, family=self.family, params=self.params,
                    key_inputs=self.key_inputs, files=self.files)


@dataclass(frozen=True)
class Manifest:
    """What a pack holds and what it was built with; `path` is where it was read or written."""

    path: str
    arch: str
    target: str
    vendor: str
    toolchain: str  # identity, as in every key
    flags: tuple  # the kernels' compile flags for `arch`
    forge_version: str
    store_format: int
    created: str
    entries: tuple  # PackEntry, kernels then libraries
    # Host packs: the CPU features of the machine that built them (-march=native code runs only
    # where every one of them is present; checked at import).
    cpu_flags: tuple = ()

    @property
    def kernels(self) -> list[PackEntry]:
        return [e for e in self.entries if e.role == "kernel"]

    def as_dict(self) -> dict:
        return dict(pack_format=PACK_FORMAT, arch=self.arch, target=self.target, vendor=self.vendor,
                    toolchain=self.toolchain, flags=list(self.flags), forge_version=self.forge_version,
                    store_format=self.store_format, created=self.created,
                    entries=[e.as_dict() for e in self.entries], cpu_flags=list(self.cpu_flags))

    def key_of(self, variant: Variant, arch: Arch | None = None) -> str:
        """The store key `variant` has under this pack's toolchain (rendered here, as at build)."""
        arch = arch or get_arch(self.arch)
        source, overridden = source_for(variant, arch)
        return key_inputs(variant, arch, PackToolchain(self), source, overridden).key()

    def require(self, variants: Iterable[Variant]) -> None:
        """PackError naming every variant whose entry this pack lacks; returns quietly when it has
        them all. Call it before running anything."""
        arch = get_arch(self.arch)
        have = {e.key for e in self.kernels}
        missing = sorted({v.symbol for v in variants if self.key_of(v, arch) not in have})
        if missing:
            raise PackError(self.missing_message(missing))

    def missing_message(self, symbols: Sequence[str]) -> str:
        """The one-line refusal for kernels this pack lacks, saying when the pack holds a kernel of
        that name built from other sources (another forge version, or FORGE_OVERRIDE_DIR)."""
        present = {e.symbol for e in self.kernels}
        stale = [s for s in symbols if s in present]
        shown = ", ".join(list(symbols)[:8]) + (f", ... ({len(symbols)} in all)" if len(symbols) > 8 else "")
        msg = (f"kernel pack {self.path} (for {self.arch}, built by {self.toolchain}, forge {self.forge_version}) "
               f"lacks {len(symbols)} kernel{'s' if len(symbols) != 1 else ''} needed here: {shown}")
        if stale:
            msg += (f"; its {', '.join(stale[:4])} {'was' if len(stale) == 1 else 'were'} built from other kernel "
                    f"sources (this is forge {_forge_version()})")
        return msg + f"; rebuild it with `forge build --arch {self.arch} --pack FILE`"

    def pack_toolchain(self) -> "PackToolchain":
        """A toolchain with this pack's identity and flags that compiles nothing: give it to
        Dispatcher (and to the runtime library loaders) to find the pack's entries in a store."""
        return PackToolchain(self)


class PackToolchain(Toolchain):
    """The toolchain a pack was built with, as far as finding its entries needs: identity, vendor,
    the kernels' flags. Asked to compile, it raises PackError naming the kernel the pack lacks."""

    name = "pack"
    cxx = None  # no compiler: a runtime library must come from the pack too (runtime/hostlib.py)

    def __init__(self, manifest: Manifest):
        super().__init__(manifest.toolchain)
        self.manifest = manifest
        self.vendor = manifest.vendor

    @property
    def identity(self) -> str:
        return self.manifest.toolchain

    def flags(self, arch: Arch) -> tuple[str, ...]:
        if arch.name != self.manifest.arch:
            raise PackError(f"kernel pack {self.manifest.path} is for {self.manifest.arch}, not {arch.name}")
        return tuple(self.manifest.flags)

    def compile(self, source, arch, symbol, workdir, keep_asm):
        shutil.rmtree(workdir, ignore_errors=True)  # nothing was written there worth reading
        raise PackError(self.manifest.missing_message([symbol]))


# -------------------------------------------------------------------------------------------- export
def _entry_files(entry: Entry) -> dict[str, bytes]:
    """object.bin, meta.json and the extra files of a valid entry, each checked against meta."""
    if not entry.valid:
        raise PackError(f"store entry {entry.path} is corrupt ({entry.problem}); rebuild it before packing")
    files = {OBJECT_FILE: entry.read_object(), META_FILE: (entry.path / META_FILE).read_bytes()}
    for name, sha in sorted((entry.meta.get("files") or {}).items()):
        data = (entry.path / name).read_bytes() if _FILE_RE.fullmatch(name) else b""
        if _sha256(data) != sha:
            raise PackError(f"store entry {entry.path}: {name} does not match its meta.json (edited?); "
                            f"`forge cache repair` then rebuild")
        files[name] = data
    return files


def _pack_entry(entry: Entry, role: str, files: dict[str, bytes]) -> PackEntry:
    m = entry.meta
    return PackEntry(entry.key, role, str(m.get("symbol", "")), str(m.get("family", "")), m.get("params") or {},
                     m["key_inputs"], {n: _sha256(d) for n, d in files.items()})


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # reproducible: no owners, no times
    return info


def _write_tar(path: Path, manifest: Manifest, members: list[tuple[str, bytes]]) -> None:
    """Write the pack to a temp file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tf:
            raw = json.dumps(manifest.as_dict(), indent=1, sort_keys=True).encode()
            for name, data in [(MANIFEST, raw)] + members:
                tf.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_pack(store: Store, arch: Arch | str, variants: Iterable[Variant], path: str | os.PathLike, *,
                extra: Iterable[Entry] = (), tc: Toolchain | None = None) -> Manifest:
    """Write the store entries of `variants` for `arch` into the tar `path` with a manifest, plus
    `extra` entries (libraries a backend loads, e.g. the emulator runtime, built by the same
    toolchain). A variant not yet in the store is compiled first (ToolchainError/CompileError when it
    cannot be). PackError for nothing to pack, a corrupt entry, or an extra entry built by another
    toolchain. Returns the manifest written."""
    arch = get_arch(arch)
    tc = tc or toolchain_for(arch)
    chosen: dict[str, tuple[str, Entry]] = {}
    for v in variants:
        entry, _ = compile_variant(v, arch, store, tc=tc)
        chosen.setdefault(entry.key, ("kernel", entry))
    if not chosen:
        raise PackError(f"no kernels to pack for {arch.name}")
    for e in extra:
        built_by = (e.meta or {}).get("key_inputs", {}).get("toolchain")
        if built_by != tc.identity:
            raise PackError(f"library {e.path} was built by {built_by}, the pack's kernels by {tc.identity}")
        chosen.setdefault(e.key, ("library", e))
    entries, members = [], []
    for key, (role, entry) in sorted(chosen.items(), key=lambda kv: (kv[1][0] != "kernel", kv[0])):
        files = _entry_files(entry)
        entries.append(_pack_entry(entry, role, files))
        members += [(f"objects/{key[:2]}/{key}/{name}", data) for name, data in files.items()]
    from .hostcc import cpu_flags
    manifest = Manifest(str(path), arch.name, arch.target, tc.vendor, tc.identity, tuple(tc.flags(arch)),
                        _forge_version(), STORE_FORMAT,
                        _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), tuple(entries),
                        tuple(sorted(cpu_flags())) if arch.vendor == "host" else ())
    _write_tar(Path(path), manifest, members)
    return manifest


# -------------------------------------------------------------------------------------------- import
def _member_problem(m: tarfile.TarInfo) -> str | None:
    """Why a tar member cannot be part of a pack, or None."""
    p = PurePosixPath(m.name)
    if m.name.startswith("/") or p.is_absolute():
        return "is an absolute path"
    if ".." in p.parts or "\\" in m.name:
        return "would escape the store (contains '..')"
    if m.issym() or m.islnk():
        return f"is a link (to {m.linkname!r})"
    if m.isdir():
        return None  # a re-tarred pack may list its folders; they carry nothing
    if not m.isreg():
        return "is not a plain file (a device, fifo or other special file)"
    if m.name != MANIFEST and not _MEMBER_RE.fullmatch(m.name):
        return f"is not where a pack member can be ({MANIFEST} or objects/<key[:2]>/<key>/<file>)"
    if m.size > MAX_MEMBER_BYTES:
        return f"is {m.size} bytes, more than a pack member may be ({MAX_MEMBER_BYTES})"
    return None


def _read_members(path: Path) -> dict[str, bytes]:
    """Every plain-file member of the tar, by name; PackError for an unreadable file, an unsafe or
    duplicate member, or too many bytes."""
    out: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, mode="r:") as tf:
            for m in tf:
                problem = _member_problem(m)
                if problem:
                    raise PackError(f"kernel pack {path}: member {m.name!r} {problem}; refusing the whole pack")
                if m.isdir():
                    continue
                if m.name in out:
                    raise PackError(f"kernel pack {path}: member {m.name!r} appears twice; refusing the whole pack")
                total += m.size
                if total > MAX_PACK_BYTES:
                    raise PackError(f"kernel pack {path} holds more than {MAX_PACK_BYTES} bytes")
                f = tf.extractfile(m)
                out[m.name] = f.read(m.size) if f is not None else b""
    except (tarfile.TarError, EOFError) as e:
        raise PackError(f"kernel pack {path} is not a readable tar file ({e})") from None
    except OSError as e:
        raise PackError(f"cannot read kernel pack {path}: {e.strerror or e}") from None
    return out


def _field(d: dict, key: str, kind, src: str, where: str = "manifest"):
    v = d.get(key) if isinstance(d, dict) else None
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise PackError(f"kernel pack {src}: {where} has {key} = {v!r}, expected {getattr(kind, '__name__', kind)}")
    return v


def _manifest(raw: bytes | None, src: str) -> Manifest:
    """The manifest, its fields type-checked; PackError for a missing or malformed one."""
    if raw is None:
        raise PackError(f"kernel pack {src} has no {MANIFEST} (not a forge kernel pack)")
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise PackError(f"kernel pack {src}: {MANIFEST} is not valid JSON ({e})") from None
    fmt = d.get("pack_format") if isinstance(d, dict) else None
    if fmt != PACK_FORMAT:
        raise PackError(f"kernel pack {src} has pack format {fmt!r}; this forge reads format {PACK_FORMAT}")
    entries = []
    for i, e in enumerate(_field(d, "entries", list, src)):
        where = f"manifest entry {i}"
        files = _field(e, "files", dict, src, where)
        if not all(isinstance(n, str) and _FILE_RE.fullmatch(n) and isinstance(s, str) and _KEY_RE.fullmatch(s)
                   for n, s in files.items()) or not {OBJECT_FILE, META_FILE} <= set(files):
            raise PackError(f"kernel pack {src}: {where} has malformed files {files!r}")
        role = _field(e, "role", str, src, where)
        if role not in ROLES or not _KEY_RE.fullmatch(_field(e, "key", str, src, where)):
            raise PackError(f"kernel pack {src}: {where} has role {role!r} or key {e.get('key')!r}")
        entries.append(PackEntry(e["key"], role, _field(e, "symbol", str, src, where),
                                 _field(e, "family", str, src, where), _field(e, "params", dict, src, where),
                                 _field(e, "key_inputs", dict, src, where), files))
    return Manifest(src, _field(d, "arch", str, src), _field(d, "target", str, src), _field(d, "vendor", str, src),
                    _field(d, "toolchain", str, src), tuple(_field(d, "flags", list, src)),
                    _field(d, "forge_version", str, src), _field(d, "store_format", int, src),
                    _field(d, "created", str, src), tuple(entries), tuple(d.get("cpu_flags") or ()))


def _refuse_mismatch(m: Manifest, arch: Arch, toolchain: str | None) -> None:
    """PackError when the pack is for another arch, toolchain or store format."""
    if m.arch != arch.name:
        raise PackError(f"kernel pack {m.path} is for {m.arch} (built by {m.toolchain}), not for {arch.name}")
    if toolchain is not None and m.toolchain != toolchain:
        raise PackError(f"kernel pack {m.path} was built by {m.toolchain}, not by {toolchain}: its entries "
                        f"would never be found under this toolchain's keys")
    if m.store_format != STORE_FORMAT:
        raise PackError(f"kernel pack {m.path} has store format {m.store_format} (forge {m.forge_version}); this "
                        f"forge ({_forge_version()}) keys entries with format {STORE_FORMAT}: rebuild the pack")


def _check_entry(m: Manifest, e: PackEntry, members: dict[str, bytes]) -> tuple[KeyInputs, dict]:
    """(key inputs, meta) of a pack entry whose files are all present and match the manifest's
    sha256, whose key inputs hash to its key and agree with the manifest; PackError otherwise."""
    where = f"kernel pack {m.path}: entry {e.symbol or e.key[:16]}"
    for name, sha in e.files.items():
        data = members.get(f"objects/{e.key[:2]}/{e.key}/{name}")
        if data is None:
            raise PackError(f"{where}: {name} is missing from the pack")
        if _sha256(data) != sha:
            raise PackError(f"{where}: {name} does not match the manifest's sha256 (tampered or damaged); "
                            f"refusing the whole pack")
    try:
        inputs = KeyInputs.from_dict(e.key_inputs)
        meta = json.loads(members[f"objects/{e.key[:2]}/{e.key}/{META_FILE}"])
    except (ValueError, TypeError) as err:
        raise PackError(f"{where}: malformed key inputs or {META_FILE} ({err})") from None
    if inputs.key() != e.key or not isinstance(meta, dict) or meta.get("key") != e.key \
            or meta.get("key_inputs") != e.key_inputs or meta.get("object_sha256") != e.files[OBJECT_FILE]:
        raise PackError(f"{where}: its key inputs, {META_FILE} and object do not agree with its key")
    if inputs.toolchain != m.toolchain or (e.role == "kernel" and (inputs.arch != m.arch or inputs.flags != m.flags)):
        raise PackError(f"{where}: built for {inputs.arch} by {inputs.toolchain}, the manifest says {m.arch} by "
                        f"{m.toolchain}")
    return inputs, meta


def pack_arch(path: str | os.PathLike) -> str:
    """The arch a pack is for, from its manifest (PackError for an unreadable pack)."""
    return _manifest(_read_members(Path(path)).get(MANIFEST), str(path)).arch


def _refuse_other_cpu(m: Manifest) -> None:
    """PackError when a host pack was built on a CPU with features this one lacks (its kernels are
    -march=native code and would die on an illegal instruction)."""
    from .hostcc import cpu_flags
    if get_arch(m.arch).vendor != "host":
        return
    here = cpu_flags()
    missing = sorted(set(m.cpu_flags) - here) if here else []
    if missing:
        raise PackError(f"kernel pack {m.path} was built for a CPU with {', '.join(missing[:6])}"
                        f"{' ...' if len(missing) > 6 else ''}, which this CPU lacks; build a pack here "
                        f"(`forge build --arch host --pack FILE`)")


def read_pack(path: str | os.PathLike, arch: Arch | str, toolchain: str | None = None) -> tuple[Manifest, dict]:
    """(manifest, members) of a pack, everything verified as import_pack describes; nothing is
    written. PackError for every refusal."""
    path = Path(path)
    members = _read_members(path)
    m = _manifest(members.get(MANIFEST), str(path))
    _refuse_mismatch(m, get_arch(arch), toolchain)
    _refuse_other_cpu(m)
    listed = {MANIFEST} | {f"objects/{e.key[:2]}/{e.key}/{n}" for e in m.entries for n in e.files}
    unlisted = sorted(set(members) - listed)
    if unlisted:
        raise PackError(f"kernel pack {path}: member {unlisted[0]!r} is not in the manifest; refusing the whole pack")
    for e in m.entries:
        _check_entry(m, e, members)
    return m, members


def import_pack(path: str | os.PathLike, store: Store, arch: Arch | str, toolchain: str | None = None) -> Manifest:
    """Verify the pack at `path` (read_pack: every refusal before anything is written), then put
    each entry into `store` (an entry already there stays). `toolchain`, when given, is the
    identity the pack must have been built by. Returns the manifest."""
    m, members = read_pack(path, arch, toolchain)
    for e in m.entries:
        inputs, meta = _check_entry(m, e, members)
        base = f"objects/{e.key[:2]}/{e.key}/"
        extras = {n: members[base + n] for n in e.files if n not in (OBJECT_FILE, META_FILE)}
        out = BuildOutput(members[base + OBJECT_FILE], extras, {k: v for k, v in meta.items() if k not in _RESERVED})
        store.get_or_build(inputs, lambda out=out: out)
    return m
