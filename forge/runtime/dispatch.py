"""JIT dispatch: (family, params) → in-memory cache → store → compile on a miss → load → a
callable kernel whose launch geometry comes from the family's `launch()`.

    kernels = Dispatcher(device, arch)
    rms = kernels.get("rmsnorm", dtype="f32", block=256)   # compiled or loaded once
    rms(x_buf, w_buf, y_buf, ncols, eps, rows=n_rows)       # launch
"""

from __future__ import annotations

import threading

from ..arch import Arch
from ..codegen.build import compile_variant
from ..codegen.spec import Variant, get_spec
from ..codegen.store import Store, default_root


class Kernel:
    """A loaded variant, ready to launch: `kernel(*args, stream=None, **shapes)`."""

    __slots__ = ("variant", "args", "arch", "device", "fn", "_launch", "_params")

    def __init__(self, variant: Variant, arch: Arch, device, fn):
        self.variant, self.arch, self.device, self.fn = variant, arch, device, fn
        self.args = variant.args
        self._params = variant.params
        self._launch = variant.spec.launch

    @property
    def symbol(self) -> str:
        return self.variant.symbol

    def __call__(self, *values, stream=None, **shapes):
        if len(values) != len(self.args):
            raise TypeError(f"{self.symbol} takes {len(self.args)} arguments "
                            f"({', '.join(a.name for a in self.args)}), got {len(values)}")
        g = self._launch(self._params, self.arch, **shapes)
        self.device.launch(self.fn, g.grid, g.block, g.shared_bytes, values, self.args, stream)


class Dispatcher:
    """Hands out Kernels for one device and arch; compiles each variant at most once per process
    (and once per store across processes). `toolchain` overrides the arch's compiler: a kernel
    pack's PackToolchain (forge/codegen/pack.py) finds the pack's entries and compiles nothing."""

    def __init__(self, device, arch: Arch, store: Store | None = None, toolchain=None):
        self.device, self.arch, self.toolchain = device, arch, toolchain
        self.store = store or Store(default_root())
        self._cache: dict[tuple, Kernel] = {}
        self._lock = threading.Lock()

    def get(self, family: str, **params) -> Kernel:
        """The kernel of `family` with exactly these parameters (SpecError when there is none)."""
        key = (family, tuple(sorted(params.items())))
        k = self._cache.get(key)
        if k is None:
            with self._lock:
                k = self._cache.get(key) or self._load(family, params)
                self._cache[key] = k
        return k

    def _load(self, family: str, params: dict) -> Kernel:
        variant = get_spec(family).variant(self.arch, **params)
        entry, _ = compile_variant(variant, self.arch, self.store, tc=self.toolchain)
        module = self.device.load_module(entry.read_object())
        return Kernel(variant, self.arch, self.device, module.function(variant.symbol))
