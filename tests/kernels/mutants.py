"""Mutation testing for kernel property tests: render a variant's real source with one plausible
mistake in it, run it through FORGE_OVERRIDE_DIR and a private store, and require the family's
property to fail on it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from forge.codegen.build import source_for
from forge.codegen.spec import get_spec
from forge.codegen.store import Store
from forge.runtime.dispatch import Dispatcher
from tests.conftest import KernelContext


def assert_property_catches(kctx, family: str, params: dict, mutation: tuple[str, str], check, tmp_path,
                            monkeypatch, max_examples: int, once: bool = True) -> None:
    """`check(ctx, data)` (one drawn case of the property) must fail within `max_examples` on the
    variant whose source has mutation[0] replaced by mutation[1] (its first occurrence; with
    `once`, the site must be unique)."""
    arch = kctx.arch
    variant = get_spec(family).variant(arch, **params)
    source, _ = source_for(variant, arch)
    old, new = mutation
    n = source.count(old)
    assert (n == 1 if once else n >= 1), f"mutation site not found ({n} matches): the template changed"
    (tmp_path / f"{variant.symbol}.hip").write_text(source.replace(old, new, 1))
    monkeypatch.setenv("FORGE_OVERRIDE_DIR", str(tmp_path))
    mctx = KernelContext(kctx.device, arch, Dispatcher(kctx.device, arch, Store(tmp_path / "store")))

    @settings(max_examples=max_examples, database=None)
    @given(data=st.data())
    def prop(data):
        check(mctx, data)

    with pytest.raises(AssertionError):
        prop()
