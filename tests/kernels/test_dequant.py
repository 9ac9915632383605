"""dequant vs the oracle (forge.quant: gguf.quants for GGML types, forge.quant.mx for forge's MX
layouts), bit for bit: every weight type, f32 and f16 output, valid random weights and uniformly
random bytes (which reach f16 scales that are subnormal, Inf or NaN, E8M0 0x00/0xFF, FP8 NaN/Inf),
odd row counts, rows of one block and rows long enough for several blocks of the launch grid."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.arch import emu_arch
from forge.codegen.spec import get_spec
from forge.codegen.wtypes import WTYPE_NAMES, get_wtype
from forge.errors import SpecError
from tests.kernels.harness import run_kernel
from tests.oracles.dequant import bits_equal, dequant, random_bytes, random_weights, row_bytes


def n_cols(wtype: str, max_units: int):
    """Row lengths for `wtype`: whole blocks for block types; for float types any length (tails of
    the 8-element unit). Biased to 1 unit, exactly `max_units` and one past it."""
    wt = get_wtype(wtype)
    units = st.one_of(st.sampled_from([1, 2, max_units - 1, max_units, max_units + 1]), st.integers(1, max_units + 1))
    if wt.is_float:
        return st.builds(lambda u, cut: max(1, u * wt.unit_qk - cut), units, st.integers(0, wt.unit_qk - 1))
    return units.map(lambda u: u * wt.qk)


def weights(data, wtype: str, rows: int, cols: int) -> np.ndarray:
    """Random rows of `wtype`: valid encodings, or (for bit-exact decoders only) arbitrary bytes."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    if data.draw(st.booleans(), label="arbitrary bytes"):
        return random_bytes(wtype, rows, cols, rng)
    return random_weights(wtype, rows, cols, rng)


def units_past_grid(wtype: str, block: int = 256) -> int:
    """Units in a row whose groups just fill `block` threads: one more spills into grid y = 1."""
    return max(2, block // get_wtype(wtype).groups_per_unit)


@pytest.mark.parametrize("out", ["f32", "f16"])
@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_dequant(kctx, wtype, out, data):
    rows = data.draw(st.sampled_from([1, 2, 3, 7]), label="rows")
    cols = data.draw(n_cols(wtype, units_past_grid(wtype)), label="cols")
    raw = weights(data, wtype, rows, cols)
    npd = np.float32 if out == "f32" else np.float16
    got = run_kernel(kctx, "dequant", {"wtype": wtype, "out": out},
                     {"w": raw, "y": np.zeros((rows, cols), npd), "n_rows": rows, "n_cols": cols},
                     ["y"], n_rows=rows, n_cols=cols)["y"]
    ref = dequant(wtype, raw, cols, out)
    same = bits_equal(got, ref)
    assert same.all(), f"{(~same).sum()} values differ, first at {np.argwhere(~same)[0]}: " \
                       f"{got[~same][0]!r} vs {ref[~same][0]!r}"


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
def test_layout_facts_agree_with_forge_quant(wtype):
    """wtypes.py's block sizes are forge.quant's (which are gguf's for the GGML types)."""
    wt = get_wtype(wtype)
    for cols in (wt.qk, 3 * wt.qk, 256 * wt.qk):
        assert wt.row_bytes(cols) == row_bytes(wtype, cols)
    assert wt.unit_qk % wt.group_values == 0 and wt.span % wt.group_values == 0
    if not wt.is_float:
        with pytest.raises(SpecError):
            wt.row_bytes(wt.qk + 1)


@pytest.mark.parametrize("family,params,shapes", [
    ("dequant", {"out": "f32"}, {"n_rows": 2}), ("embed", {}, {"n_tokens": 2}),
    ("gemv", {}, {"n_rows": 2}), ("gemm", {}, {"m": 2, "n_rows": 2})])
def test_launch_refuses_bad_shapes(family, params, shapes):
    """A row that is not whole blocks, or an empty launch, is a SpecError before anything runs."""
    arch = emu_arch(32)
    v = get_spec(family).variant(arch, wtype="q4_k", **params)
    with pytest.raises(SpecError, match="multiple of 256"):
        v.launch(arch, n_cols=300, **shapes)
    for k in shapes:
        with pytest.raises(SpecError, match=k):
            v.launch(arch, n_cols=256, **{**shapes, k: 0})
    assert v.launch(arch, n_cols=512, **shapes).grid[0] >= 1
