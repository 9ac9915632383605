"""Kernel specs: what a kernel family is, which variants exist, how it is called and launched.

A family subclasses KernelSpec in `forge/codegen/specs/<family>.py` and registers an instance. A
*variant* is one point of the family's parameter space: compile-time choices (dtype, block size,
causal or not). Runtime sizes are kernel arguments, and `launch()` turns them into geometry.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass
from typing import Any, Iterable

from ..arch import Arch
from ..errors import SpecError

# Element types a pointer argument may point at, and their C spelling in the vocabulary.
CTYPES = {
    "f32": "float", "f16": "f16", "bf16": "bf16",
    "u8": "u8", "i8": "i8", "u16": "u16", "i16": "i16",
    "u32": "u32", "i32": "i32", "u64": "u64", "i64": "i64",
}
DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4,
               "u64": 8, "i64": 8}
# Scalar argument kinds: C spelling and byte size (also the ABI size checked against metadata).
SCALARS = {"i32": ("i32", 4), "u32": ("u32", 4), "f32": ("float", 4), "i64": ("i64", 8), "u64": ("u64", 8)}
POINTER_BYTES = 8


@dataclass(frozen=True)
class Arg:
    """One kernel argument: a pointer to `dtype` elements, or a scalar of kind i32/u32/f32/i64/u64."""

    name: str
    kind: str  # "ptr" or a key of SCALARS
    dtype: str = ""  # pointee element type, for pointers
    const: bool = False  # pointer to read-only data

    @staticmethod
    def ptr(name: str, dtype: str, const: bool = False) -> "Arg":
        if dtype not in CTYPES:
            raise SpecError(f"argument {name}: unknown element type {dtype!r}")
        return Arg(name, "ptr", dtype, const)

    @staticmethod
    def scalar(name: str, kind: str) -> "Arg":
        if kind not in SCALARS:
            raise SpecError(f"argument {name}: unknown scalar kind {kind!r}")
        return Arg(name, kind)

    @property
    def is_ptr(self) -> bool:
        return self.kind == "ptr"

    @property
    def size(self) -> int:
        return POINTER_BYTES if self.is_ptr else SCALARS[self.kind][1]

    @property
    def ctype(self) -> str:
        """The C type of the parameter as the kernel declares it."""
        if self.is_ptr:
            return f"{'const ' if self.const else ''}{CTYPES[self.dtype]}* RESTRICT"
        return SCALARS[self.kind][0]

    @property
    def decl(self) -> str:
        return f"{self.ctype} {self.name}"


@dataclass(frozen=True)
class Launch:
    """Launch geometry: blocks in the grid, threads in a block, dynamic shared-memory bytes."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int = 0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class KernelSpec:
    """Base class of a kernel family. Subclasses set the class attributes and override `args` and
    `launch`; `valid` and `context` are optional."""

    family: str = ""
    template: str = ""  # file under forge/templates; defaults to "<family>.hip.j2"
    # The family has a host-CPU kernel, forge/templates/<family>.host.j2, written for a CPU (plain
    # loops, no waves or barriers) with the same arguments and meaning as the GPU kernel; the host
    # arch has no variants of a family without one.
    host: bool = False
    # The family has GPU-model variants (GPUs and the emulator); False for a host-only family.
    gpu: bool = True
    space: dict[str, tuple] = {}  # parameter name -> allowed values (order fixes symbol spelling)
    # Parameters a caller may leave out (a fusion added to a family later: its old calls and kernel
    # symbols stay as they were; a value at its default is not spelled in the symbol).
    defaults: dict[str, Any] = {}
    barrier_free: bool = False  # no sync_threads and no wave ops: the emulator may skip fibers
    doc: str = ""
    # Families that share an oracle or a test module name it here (default: the family's stem),
    # so tests/oracles/<oracle>.py and tests/kernels/<test>.py are still found by name.
    oracle: str = ""
    test: str = ""

    def valid(self, p: dict, arch: Arch) -> bool:
        """Whether this parameter point exists for `arch` (e.g. a block size over the arch's max)."""
        return True

    def args(self, p: dict) -> list[Arg]:
        raise NotImplementedError

    def launch(self, p: dict, arch: Arch, **shapes: int) -> Launch:
        raise NotImplementedError

    def context(self, p: dict, arch: Arch) -> dict[str, Any]:
        """Extra template variables derived from the parameters."""
        return {}

    # --- derived behaviour, not overridden -------------------------------------------------
    def template_name(self, arch: Arch | None = None) -> str:
        """The template file of the family for `arch`: `<family>.host.j2` on the host target (and,
        with no arch, for a host-only family)."""
        if (arch is not None and not arch.is_gpu_semantics) or (arch is None and not self.gpu):
            return f"{self.family}.host.j2"
        return self.template or f"{self.family}.hip.j2"

    def targets(self, arch: Arch) -> bool:
        """Whether the family has kernels for `arch` at all (a host kernel, or GPU-model ones)."""
        return self.host if not arch.is_gpu_semantics else self.gpu

    def oracle_module(self) -> str:
        return self.oracle or self.family

    def test_module(self) -> str:
        return self.test or f"test_{self.family}"

    def variants(self, arch: Arch) -> list["Variant"]:
        """Every valid variant of the family for `arch`, in a stable order."""
        if not self.targets(arch):
            return []
        names = list(self.space)
        out = []
        for values in itertools.product(*(self.space[n] for n in names)):
            p = dict(zip(names, values))
            if self.valid(p, arch):
                out.append(Variant(self, tuple(p.items())))
        return out

    def variant(self, arch: Arch, **params: Any) -> "Variant":
        """The variant with these parameters; SpecError when it is outside the space or invalid."""
        params = {**self.defaults, **params}
        missing = [n for n in self.space if n not in params]
        extra = [n for n in params if n not in self.space]
        if missing or extra:
            raise SpecError(f"{self.family}: parameters must be exactly {list(self.space)}; "
                            f"missing {missing}, unexpected {extra}")
        for n, v in params.items():
            if v not in self.space[n]:
                raise SpecError(f"{self.family}: {n}={v!r} is not one of {list(self.space[n])}")
        p = {n: params[n] for n in self.space}
        if not self.targets(arch):
            raise SpecError(f"{self.family}: no kernel for {arch.name} "
                            f"({'no host kernel' if not arch.is_gpu_semantics else 'host only'})")
        if not self.valid(p, arch):
            raise SpecError(f"{self.family}: variant {p} does not exist for {arch.name}")
        return Variant(self, tuple(p.items()))


def _spell(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return name if value else f"no{name}"
    if isinstance(value, str):
        return value
    return f"{name}{value}"


@dataclass(frozen=True)
class Variant:
    """One compilable kernel: a family and a point of its parameter space."""

    spec: KernelSpec
    items: tuple  # ((name, value), ...) in the spec's space order

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.items)

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def symbol(self) -> str:
        """The kernel's C symbol: family and parameter values, e.g. rmsnorm_f32_block256."""
        skip = self.spec.defaults
        return "_".join([self.spec.family] + [_spell(n, v) for n, v in self.items if n not in skip or skip[n] != v])

    @property
    def args(self) -> list[Arg]:
        return self.spec.args(self.params)

    def launch(self, arch: Arch, **shapes: int) -> Launch:
        return self.spec.launch(self.params, arch, **shapes)

    def __str__(self) -> str:
        return self.symbol


_REGISTRY: dict[str, KernelSpec] = {}


def register(spec: KernelSpec) -> KernelSpec:
    """Add a family to the registry (once per family name)."""
    if not spec.family:
        raise SpecError(f"{type(spec).__name__} has no family name")
    if spec.family in _REGISTRY and type(_REGISTRY[spec.family]) is not type(spec):
        raise SpecError(f"kernel family {spec.family!r} registered twice")
    _REGISTRY[spec.family] = spec
    return spec


def _load_all() -> None:
    from . import specs  # noqa: F401  (importing registers every family)


def get_spec(family: str) -> KernelSpec:
    """The registered spec of `family`; SpecError listing the families otherwise."""
    _load_all()
    try:
        return _REGISTRY[family]
    except KeyError:
        raise SpecError(f"unknown kernel family {family!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def all_specs() -> list[KernelSpec]:
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def select_variants(arch: Arch, patterns: Iterable[str] | None = None) -> list[Variant]:
    """Every registered variant for `arch` whose symbol or family matches one of the glob patterns."""
    pats = list(patterns or ["*"])
    out = []
    for spec in all_specs():
        for v in spec.variants(arch):
            if any(fnmatch.fnmatchcase(v.symbol, p) or fnmatch.fnmatchcase(v.family, p) for p in pats):
                out.append(v)
    return out


ceil_div = _ceil_div
