"""Mutation testing for kernel property tests: render a variant's real source with one plausible
mistake in it, run it through FORGE_OVERRIDE_DIR and a private store, and require the family's
property to fail on it (an assertion, or a DeviceError: checking mode's out-of-bounds report)."""

from __future__ import annotations

import pytest
from hypothesis import Phase, given, settings, strategies as st

from forge.codegen.build import source_for
from forge.codegen.spec import get_spec
from forge.codegen.store import Store
from forge.errors import DeviceError
from forge.runtime.dispatch import Dispatcher
from tests.conftest import KernelContext


def mutant_context(kctx, family: str, params: dict, mutation: tuple[str, str], tmp_path, monkeypatch,
                   once: bool = True, device=None) -> KernelContext:
    """A kernel context (on `device`, default kctx's) whose `family` variant `params` is compiled
    from its real source with mutation[0] replaced by mutation[1] (its first occurrence; with
    `once`, the site must be unique)."""
    arch = kctx.arch
    variant = get_spec(family).variant(arch, **params)
    source, _ = source_for(variant, arch)
    old, new = mutation
    n = source.count(old)
    assert (n == 1 if once else n >= 1), f"mutation site not found ({n} matches): the template changed"
    (tmp_path / f"{variant.symbol}.hip").write_text(source.replace(old, new, 1))
    monkeypatch.setenv("FORGE_OVERRIDE_DIR", str(tmp_path))
    dev = device or kctx.device
    return KernelContext(dev, arch, Dispatcher(dev, arch, Store(tmp_path / "store")))


def property_fails(ctx, check, max_examples: int) -> bool:
    """Whether `check(ctx, data)` fails (AssertionError or DeviceError) within `max_examples`. No
    shrinking: the first failure answers the question."""
    @settings(max_examples=max_examples, database=None, phases=[Phase.generate])
    @given(data=st.data())
    def prop(data):
        check(ctx, data)

    try:
        prop()
    except (AssertionError, DeviceError):
        return True
    return False


def assert_property_catches(kctx, family: str, params: dict, mutation: tuple[str, str], check, tmp_path,
                            monkeypatch, max_examples: int, once: bool = True, device=None) -> None:
    """`check(ctx, data)` (one drawn case of the property) must fail within `max_examples` on the
    variant whose source has mutation[0] replaced by mutation[1] (see mutant_context)."""
    mctx = mutant_context(kctx, family, params, mutation, tmp_path, monkeypatch, once, device)
    assert property_fails(mctx, check, max_examples), f"the property test did not catch {mutation}"
