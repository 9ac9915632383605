"""Render a variant's HIP source for an arch: header defines + the target's prelude + the family
template (+ the CPU entry wrapper). Deterministic: the same inputs give byte-identical source, and
the whole text (prelude included) is what the store's key hashes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ..arch import Arch
from ..errors import RenderError
from .matrix_layouts import LAYOUTS
from .spec import CTYPES, Variant

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@functools.lru_cache(maxsize=4)
def _env(root: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.globals["ctype"] = lambda dtype: CTYPES[dtype]
    # the matrix instructions' lane layouts: the tile helpers and the emulator render the same table
    env.globals["matrix_layouts"] = LAYOUTS
    return env


def environment(root: Path | None = None) -> jinja2.Environment:
    """The Jinja2 environment over forge/templates (or `root`), with StrictUndefined."""
    return _env(str(root or TEMPLATES))


@dataclass(frozen=True)
class KernelInfo:
    """What a template sees as `kernel`."""

    symbol: str
    family: str
    args: tuple
    barrier_free: bool

    @property
    def signature(self) -> str:
        return ", ".join(a.decl for a in self.args)


def _header(arch: Arch, kernel: KernelInfo) -> str:
    lines = [
        f"// forge kernel {kernel.symbol} for {arch.name} (generated; do not edit)",
        f"#define WAVE_SIZE {arch.wave_size}",
        f"#define FORGE_TARGET_{arch.prelude.upper()} 1",
    ]
    if kernel.barrier_free:
        lines.append("#define FORGE_BARRIER_FREE 1")
    return "\n".join(lines) + "\n"


def render(variant: Variant, arch: Arch, root: Path | None = None) -> str:
    """The complete source of `variant` for `arch`. Raises RenderError naming the template and line."""
    kernel = KernelInfo(variant.symbol, variant.family, tuple(variant.args), variant.spec.barrier_free)
    ctx = {"arch": arch, "p": variant.params, "kernel": kernel, "wave": arch.wave_size}
    ctx.update(variant.spec.context(variant.params, arch))
    return _assemble(environment(root), arch, kernel, ctx, variant.spec.template_name(arch), root)


def render_inline(body: str, arch: Arch, symbol: str, args, barrier_free: bool = False, **params) -> str:
    """Source for a kernel written inline (a template string against the vocabulary), with the same
    header, prelude and entry as a registered family: for experiments and the emulator's own tests.
    The body sees `kernel`, `arch`, `wave` and `p` (= params)."""
    kernel = KernelInfo(symbol, symbol, tuple(args), barrier_free)
    ctx = {"arch": arch, "p": params, "kernel": kernel, "wave": arch.wave_size}
    env = environment()
    return _assemble(env, arch, kernel, ctx, env.from_string(body), None)


def _assemble(env, arch: Arch, kernel: KernelInfo, ctx: dict, body, root) -> str:
    parts = [_header(arch, kernel)]
    names = [f"common/prelude_{arch.prelude}.h", body]  # body: a template name, or a compiled Template
    if arch.vendor in ("emu", "host"):  # host-compiled targets: a C entry the runtime calls
        names.append(f"common/entry_{arch.prelude}.j2")
    for name in names:
        try:
            parts.append((env.get_template(name) if isinstance(name, str) else name).render(ctx))
        except jinja2.TemplateSyntaxError as e:
            raise RenderError(f"{e.filename or name}:{e.lineno}: template syntax error: {e.message}") from None
        except jinja2.TemplateNotFound as e:
            raise RenderError(f"template {e.name} not found under {root or TEMPLATES}") from None
        except jinja2.UndefinedError as e:
            raise RenderError(f"{name} for {kernel.symbol}: {e.message}") from None
    src = "\n".join(parts)
    if arch.prelude == "cuda":
        src = _entry_hook(src, kernel)
    return src


def _entry_hook(src: str, kernel: KernelInfo) -> str:
    """NVIDIA: every kernel's first statement is forge_kernel_entry() (prelude_cuda.h): on Hopper the
    wait for the preceding kernel of a programmatic-dependent launch (and the early start of the next),
    a no-op elsewhere. Every template opens its kernel as `<symbol>(<signature>) {`."""
    opening = f"{kernel.symbol}({kernel.signature}) {{"
    if src.count(opening) != 1:
        raise RenderError(f"{kernel.symbol}: the kernel's opening `{opening[:60]}...` must appear once")
    return src.replace(opening, opening + " forge_kernel_entry();")


def override_source(symbol: str) -> str | None:
    """FORGE_OVERRIDE_DIR/<symbol>.hip, if present: a hand-edited source that replaces the rendered one."""
    d = os.environ.get("FORGE_OVERRIDE_DIR")
    if not d:
        return None
    path = Path(d) / f"{symbol}.hip"
    return path.read_text() if path.is_file() else None
