"""The lane-layout table of the matrix instructions (forge/codegen/matrix_layouts.py) against the
sources. The table is what both the kernels and the emulator render, so a wrong entry would pass
every emulated test; here each entry is compared with each source's own formula, transcribed
literally."""

import pytest

from forge.codegen.matrix_layouts import LAYOUTS, Expr, get_layout
from forge.errors import SpecError


# ------------------------------------------------------------------------------- the table
def test_rdna3_wmma_layout_matches_each_source():
    L = get_layout("wmma_f32_16x16x16_f16")
    assert (L.builtin, L.feature, L.wave, L.m, L.n, L.k) == (
        "__builtin_amdgcn_wmma_f32_16x16x16_f16_w32", "wmma_f16", 32, 16, 16, 16)
    assert (L.a.elems, L.b.elems, L.d.elems) == (16, 16, 8)  # V16h, V16h, V8f (BuiltinsAMDGPU.def)
    for lane in range(32):
        for i in range(16):
            # tinygrad ops_python.py: a_elem(x, k, row, goff) = x[k][goff + row] (register element k
            # of lane row holds A[row][k]); b_elem(x, col, k, goff) = a_elem(x, k, col, goff)
            assert L.a.element(lane, i) == (lane % 16, i)
            assert L.b.element(lane, i) == (i, lane % 16)
        for v in range(8):
            # tinygrad: c_map(lane, elem) = (lane % 16, lane // 16 + elem * 2) as (column, row);
            # Modular's get_rdna_fragment_layout: D[row = v*2 + l//16, col = l%16]
            assert L.d.element(lane, v) == (lane // 16 + v * 2, lane % 16)
    # GPUOpen / tinygrad: lanes 16-31 replicate lanes 0-15's A and B; one home per accumulator
    for op in ("a", "b"):
        for holders in L.holders(op).values():
            assert [lane for lane, _ in holders] == [holders[0][0], holders[0][0] + 16]
    assert all(len(h) == 1 for h in L.holders("d").values())


def test_every_layout_is_consistent():
    for layout in LAYOUTS.values():
        layout.check()


def test_layout_expressions_render_to_the_same_unsigned_c():
    e = Expr("2 * i + lane // 16")
    assert e(lane=17, i=3) == 7 and e.names == {"i", "lane"}
    assert e.c(lane="l", i="e") == "((2u * (e)) + ((l) / 16u))"
    for bad in ("lane - 1", "lane / 2", "f(lane)", "-1", "lane ** 2", "1.5"):
        with pytest.raises(SpecError):
            Expr(bad)
