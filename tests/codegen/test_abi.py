"""The ABI proof: for every registered variant for gfx1100 and gfx950, the kernel-argument segment
the runtime packs (forge/codegen/abi.py) is exactly the one the compiled code object reads
(offsets, sizes, value kinds, argument order, hidden arguments, segment size and alignment), and
the object's registers, LDS, scratch and wave size fit the arch. Mutants of the packing rules must
be caught by the same proof; packing itself is checked byte by byte."""

from __future__ import annotations

import dataclasses
import inspect
import struct
import tempfile
from pathlib import Path

import pytest

from forge.arch import get_arch
from forge.codegen import abi
from forge.codegen.abi import (abi_mismatches, kernel_problems, launch_problems, layout, layout_for,
                               require_abi, runtime_provided)
from forge.codegen.build import compile_variant
from forge.codegen.codeobject import read_code_object
from forge.codegen.render import render_inline
from forge.codegen.spec import Arg, select_variants
from forge.codegen.store import Store
from forge.codegen.toolchain import toolchain_for
from forge.errors import CodeObjectError, DeviceError, ToolchainError

AMD = ("gfx1100", "gfx950")
# One plausible shape per launch keyword, valid for every family (odd sizes where the family allows).
SHAPES = dict(n_heads=8, n_kv_heads=2, n_splits=4, n_rows=67, n_cols=1024, n=1001, n_tokens=3, n_q=5, m=7,
              rows=3, n_rot=64)


@pytest.fixture(scope="session")
def amd_store(tmp_path_factory):
    """One store for the whole session: each variant is compiled once, then read by every test."""
    return Store(tmp_path_factory.mktemp("abi-store"))


def _kernel(store, variant, arch):
    try:
        entry, _ = compile_variant(variant, arch, store)
    except ToolchainError as e:
        pytest.skip(f"no AMD compiler here: {e}")
    return read_code_object(entry.read_object(), variant.symbol).kernel(variant.symbol)


def _variants(arch_name: str):
    return select_variants(get_arch(arch_name))


VARIANTS = [(a, v.symbol) for a in AMD for v in _variants(a)]


def _launch(variant, arch):
    params = inspect.signature(variant.spec.launch).parameters
    return variant.launch(arch, **{k: v for k, v in SHAPES.items() if k in params})


# ------------------------------------------------------------------------------------- the proof
@pytest.mark.parametrize("arch_name,symbol", VARIANTS, ids=[f"{a}-{s}" for a, s in VARIANTS])
def test_packing_equals_the_code_object_and_resources_fit(amd_store, arch_name, symbol):
    arch = get_arch(arch_name)
    variant = next(v for v in _variants(arch_name) if v.symbol == symbol)
    k = _kernel(amd_store, variant, arch)
    lay = layout_for(symbol, variant.args, k)
    problems = abi_mismatches(lay, k) + [f"{symbol}: reads {x}" for x in runtime_provided(k)]
    problems += kernel_problems(k, arch)
    g = _launch(variant, arch)
    problems += launch_problems(k, arch, g.grid, g.block, g.shared_bytes)
    assert not problems, "\n".join(problems)
    require_abi(lay, k)  # the runtime's gate agrees
    assert len(lay.pack([0] * len(variant.args), g.grid, g.block, g.shared_bytes)) == k.kernarg_segment_size


# A kernel with every scalar kind, alignment gaps (i32 before i64, f32 before a pointer), grid and
# block reads (hidden arguments) and dynamic shared memory (hidden_dynamic_lds_size): the registered
# families use only pointers, i32 and f32, so this covers the rest of the packing rules.
MIXED = """
KERNEL(256) {{ kernel.symbol }}({{ kernel.signature }}) {
  DYN_SHARED(float, tile);
  const u32 t = tid_x() + bid_x() * bdim_x() + gdim_y();
  tile[tid_x()] = (float)a + (float)b + c + (float)d + (float)e;
  sync_threads();
  y[t] = (u64)tile[tid_x() ^ 1] + (u64)x[t];
}
"""
MIXED_ARGS = [Arg.scalar("a", "i32"), Arg.scalar("b", "i64"), Arg.scalar("c", "f32"), Arg.ptr("x", "f32", const=True),
              Arg.scalar("d", "u32"), Arg.scalar("e", "u64"), Arg.ptr("y", "u64")]


@pytest.fixture(scope="module", params=AMD)
def mixed(request):
    arch = get_arch(request.param)
    try:
        tc = toolchain_for(arch)
    except ToolchainError as e:
        pytest.skip(f"no AMD compiler here: {e}")
    with tempfile.TemporaryDirectory() as work:
        obj = tc.compile(render_inline(MIXED, arch, "mixed", MIXED_ARGS), arch, "mixed", Path(work), False).object_bytes
    return arch, read_code_object(obj).kernel("mixed")


def test_every_scalar_kind_and_dynamic_lds_follow_the_rules(mixed):
    arch, k = mixed
    lay = layout_for("mixed", MIXED_ARGS, k)
    assert abi_mismatches(lay, k) == []
    assert [s.offset for s in lay.explicit] == [0, 8, 16, 24, 32, 40, 48]  # gaps after a, c and d
    assert "hidden_dynamic_lds_size" in {a.value_kind for a in k.hidden_args}
    assert kernel_problems(k, arch) == []
    # The dynamic LDS a launch asks for counts against the arch, beside the static LDS.
    assert launch_problems(k, arch, (1, 1, 1), (256, 1, 1), arch.lds_bytes - k.group_segment_fixed_size) == []
    over = launch_problems(k, arch, (1, 1, 1), (256, 1, 1), arch.lds_bytes + 1)
    assert over and "LDS" in over[0] and "mixed" in over[0]


# ----------------------------------------------------------------------------------- the mutants
def _proof(store, arch_name: str) -> dict[str, list[str]]:
    """symbol -> the proof's problems, over every variant of the arch (objects from the store)."""
    arch = get_arch(arch_name)
    out = {}
    for v in _variants(arch_name):
        k = _kernel(store, v, arch)
        out[v.symbol] = abi_mismatches(layout_for(v.symbol, v.args, k), k)
    return out


def test_mutant_f32_packed_as_8_bytes_is_caught(amd_store, monkeypatch):
    monkeypatch.setitem(abi._EXPLICIT, "f32", ("d", 8, "by_value"))
    found = _proof(amd_store, "gfx1100")
    with_f32 = [v for v in _variants("gfx1100") if any(a.kind == "f32" for a in v.args)]
    assert with_f32
    for v in with_f32:
        name = next(a.name for a in v.args if a.kind == "f32")
        assert any(f"{v.symbol}: argument {name!r}" in p and "(8 bytes)" in p for p in found[v.symbol]), \
            (v.symbol, found[v.symbol])


def test_mutant_missing_hidden_argument_is_caught(amd_store, monkeypatch):
    monkeypatch.delitem(abi.HIDDEN, "hidden_group_size_x")
    found = _proof(amd_store, "gfx950")
    implicit = [s for s, _ in found.items() if any("hidden" in p for p in found[s])]
    assert implicit, "no kernel reads hidden arguments: the mutant cannot be seen"
    for s in implicit:
        assert any("hidden_group_size_x at offset" in p and "not in forge's packing" in p for p in found[s]), found[s]


def test_mutant_misaligned_implicit_block_is_caught(amd_store, monkeypatch):
    # The hidden block starts at an 8-byte boundary; a packer that starts it at 4 misplaces every
    # hidden argument of kernels whose explicit arguments end at 4 mod 8.
    monkeypatch.setattr(abi, "IMPLICIT_ALIGN", 4)
    found = _proof(amd_store, "gfx1100")
    assert any("hidden_block_count_x: packed at offset" in p for ps in found.values() for p in ps)


def test_mutant_swapped_arguments_of_equal_size_are_caught(amd_store):
    arch = get_arch("gfx1100")
    v = next(v for v in _variants("gfx1100") if sum(a.kind == "i32" for a in v.args) >= 2)
    k = _kernel(amd_store, v, arch)
    args = list(v.args)
    i, j = [n for n, a in enumerate(args) if a.kind == "i32"][:2]
    args[i], args[j] = args[j], args[i]
    problems = abi_mismatches(layout_for(v.symbol, args, k), k)
    assert any(f"argument {args[i].name!r}" in p and "order" in p for p in problems), problems
    with pytest.raises(CodeObjectError, match=v.symbol):
        require_abi(layout_for(v.symbol, args, k), k)


def test_mutant_short_implicit_block_is_caught(amd_store, monkeypatch):
    monkeypatch.setattr(abi, "IMPLICIT_BYTES", 128)
    found = _proof(amd_store, "gfx950")
    assert any("kernarg_segment_size" in p for ps in found.values() for p in ps)


def test_resource_mutants_are_caught(amd_store):
    arch = get_arch("gfx1100")
    v = _variants("gfx1100")[0]
    k = _kernel(amd_store, v, arch)
    for field, value, word in [("vgpr_count", arch.max_vgprs + 1, "VGPRs"), ("sgpr_count", 109, "SGPRs"),
                               ("private_segment_fixed_size", arch.max_scratch + 4, "scratch"),
                               ("group_segment_fixed_size", arch.lds_bytes + 16, "LDS"),
                               ("wavefront_size", 64, "wave")]:
        bad = dataclasses.replace(k, **{field: value})
        problems = kernel_problems(bad, arch)
        assert len(problems) == 1 and word in problems[0] and v.symbol in problems[0], problems
    # gfx950 (CDNA4, unified register file) allows twice the VGPRs and has AGPRs; RDNA3 has none.
    assert kernel_problems(dataclasses.replace(k, vgpr_count=300, wavefront_size=64), get_arch("gfx950")) == []
    assert kernel_problems(dataclasses.replace(k, agpr_count=1), arch)


def test_launch_problems_name_the_limit(amd_store):
    arch = get_arch("gfx950")
    v = _variants("gfx950")[0]
    k = _kernel(amd_store, v, arch)
    assert "max_flat_workgroup_size" in launch_problems(k, arch, (1, 1, 1), (k.max_flat_workgroup_size + 1, 1, 1))[0]
    assert "2^32" in launch_problems(k, arch, (1 << 26, 1, 1), (k.max_flat_workgroup_size, 1, 1))[0]
    assert "at least 1" in launch_problems(k, arch, (0, 1, 1), (64, 1, 1))[0]


# ---------------------------------------------------------------------------------------- packing
ARGS = [Arg.ptr("x", "f32"), Arg.scalar("n", "i32"), Arg.scalar("eps", "f32"), Arg.scalar("big", "u64"),
        Arg.scalar("neg", "i64"), Arg.ptr("y", "u8")]


def test_pack_puts_each_value_at_its_offset():
    lay = layout("k", ARGS, implicit=True)
    assert [(s.name, s.offset) for s in lay.explicit] == [("x", 0), ("n", 8), ("eps", 12), ("big", 16), ("neg", 24),
                                                          ("y", 32)]
    assert lay.hidden_base == 40 and lay.size == 40 + 256 and lay.align == 8
    data = lay.pack([0x7000_0000_1000, -3, 0.5, 2**64 - 1, -(2**40), 0x2000], (5, 6, 7), (64, 2, 1), 4096)
    assert len(data) == lay.size
    assert struct.unpack_from("<QifQqQ", data, 0) == (0x7000_0000_1000, -3, 0.5, 2**64 - 1, -(2**40), 0x2000)
    base = 40
    assert struct.unpack_from("<3I", data, base) == (5, 6, 7)  # hidden_block_count_x/y/z
    assert struct.unpack_from("<3H", data, base + 12) == (64, 2, 1)  # hidden_group_size_x/y/z
    assert struct.unpack_from("<3H", data, base + 18) == (0, 0, 0)  # remainders: whole blocks
    assert struct.unpack_from("<H", data, base + 64) == (3,)  # hidden_grid_dims
    assert struct.unpack_from("<I", data, base + 120) == (4096,)  # hidden_dynamic_lds_size
    written = set(range(base, base + 24)) | set(range(base + 64, base + 66)) | set(range(base + 120, base + 124))
    assert all(data[i] == 0 for i in range(base, lay.size) if i not in written)  # the rest is zero


def test_pack_without_implicit_block_ends_at_the_last_argument():
    lay = layout("k", [Arg.ptr("x", "f32"), Arg.scalar("n", "i32")], implicit=False)
    assert lay.size == 12 and lay.align == 8 and lay.hidden == ()
    assert layout("k", [Arg.scalar("n", "i32")], implicit=False).align == 4


def test_pack_refuses_values_naming_kernel_and_argument():
    lay = layout("rmsnorm_x", ARGS, implicit=True)
    good = [0, 1, 1.0, 1, 1, 0]
    with pytest.raises(DeviceError, match=r"rmsnorm_x: argument 'n': 2147483648 does not fit a i32"):
        lay.pack([0, 2**31, 1.0, 1, 1, 0], (1, 1, 1), (1, 1, 1))
    with pytest.raises(DeviceError, match=r"rmsnorm_x: argument 'x'"):
        lay.pack([-1] + good[1:], (1, 1, 1), (1, 1, 1))
    with pytest.raises(DeviceError, match=r"rmsnorm_x: 6 arguments expected \(x, n, eps, big, neg, y\), 5 given"):
        lay.pack(good[:5], (1, 1, 1), (1, 1, 1))
    with pytest.raises(DeviceError, match=r"hidden_group_size_x = 70000 does not fit 2 bytes"):
        lay.pack(good, (1, 1, 1), (70000, 1, 1))
