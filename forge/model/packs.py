"""Kernel packs for a model (or a whole arch): what `forge build --pack FILE [--model M.gguf]`
writes. The kernels a model needs come from its layer graph, lowered for the arch
(forge.runtime.lower.kernel_set); a pack for a CPU target also carries the runtime library its
backend loads, so a machine with no compiler at all can run it (forge.load(..., kernels=FILE))."""

from __future__ import annotations

import os

from ..arch import Arch
from ..codegen.pack import Manifest, export_pack
from ..codegen.spec import select_variants
from ..codegen.store import Store
from ..codegen.toolchain import toolchain_for
from ..runtime.lower import LowerOptions, kernel_set


def model_kernels(model_path, arch: Arch, kv_dtype: str = "f16", weights: str | None = None,
                  acts: str | None = None) -> list:
    """The kernel variants running the GGUF model at `model_path` on `arch` needs, with its matrices
    converted to `weights` as forge.load(..., weights=...) does (None: the file's types) and their
    activations quantized to `acts` where the arch multiplies MX natively (None: the default)."""
    from .config import config_from_gguf
    from .convert import model_graph
    from .gguf import load_gguf
    g = load_gguf(model_path)
    graph, _ = model_graph(g, config_from_gguf(g), weights, acts)
    return kernel_set(graph, arch, LowerOptions(kv_dtype=kv_dtype))


def runtime_libraries(store: Store, arch: Arch) -> list:
    """Store entries of the runtime library a CPU backend loads for `arch` (none for GPUs)."""
    if arch.vendor == "emu":
        from ..runtime.hostlib import runtime_entry
        return [runtime_entry(store)]
    if arch.vendor == "host":
        from ..runtime.host import runtime_entry
        return [runtime_entry(store)]
    return []


def build_pack(store: Store, arch: Arch, path: str | os.PathLike, model_path=None, kv_dtype: str = "f16",
               weights: str | None = None, acts: str | None = None) -> Manifest:
    """Write a pack of the kernels `model_path` needs on `arch` with that KV dtype, `weights`
    conversion and `acts` (every registered variant of the arch without a model) plus the backend's runtime
    library; compiles what the store lacks."""
    variants = (model_kernels(model_path, arch, kv_dtype, weights, acts) if model_path is not None
                else select_variants(arch))
    return export_pack(store, arch, variants, path, extra=runtime_libraries(store, arch), tc=toolchain_for(arch))
