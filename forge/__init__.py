"""forge: AOT-compiled, JIT-dispatched GPU kernels for LLM inference on AMD GPUs.

The public surface is thin: `build()` fills the code-object store for an arch (what `forge build`
does); `load()` puts a GGUF model on a backend, ready for `.generate()` and `.logits()`.
"""

from __future__ import annotations

__version__ = "0.1.0"


def build(arch: str, kernels: list[str] | None = None, cache_dir: str | None = None, jobs: int | None = None,
          keep_asm: bool = False):
    """Compile every registered kernel variant for `arch` (optionally only those matching the
    `kernels` globs) into the store. Returns the list of BuildRecords (status built/cached/failed).
    Raises ArchError for an unknown arch and ToolchainError when no compiler serves it."""
    from .arch import get_arch
    from .codegen.build import build_all
    from .codegen.store import Store, default_root

    return build_all(get_arch(arch), Store(default_root(cache_dir)), kernels, jobs, keep_asm)


def load(path, *, backend: str = "auto", arch=None, kv_dtype: str = "f16", max_context: int | None = None,
         kernels=None, weights: str | None = None, acts: str | None = None):
    """A GGUF model on a backend: forge.model.model.load (see there for what it refuses);
    `weights="mxfp4"|"mxfp6"|"mxfp8"` converts its F32/F16/BF16/Q8_0 matrices to that MX type;
    `acts="mxfp8"|"mxfp6"` is what the matmuls on MX weights quantize their activations to on gfx950."""
    from .model.model import load as _load

    return _load(path, backend=backend, arch=arch, kv_dtype=kv_dtype, max_context=max_context, kernels=kernels,
                 weights=weights, acts=acts)
