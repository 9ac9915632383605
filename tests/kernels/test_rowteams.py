"""The fusions of the GEMV-shaped kernels (common/rowteams.j2: gemv and matmul_q8 with fuse = add,
glu, multi) against the composition of their plain oracles (tests/oracles/gemv.py `fused` derives
the extra rounding). The plain products are tested in test_gemv.py and test_matmul_q8.py; here the
drawn cases stress what fusion adds: a second weight matrix read beside the first (glu), the grid
split among three matrices of different heights down to one row (multi, the grid forced as small
as 3 blocks and larger than the rows), the residual's indexing (add), several tokens (matmul_q8)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from forge.codegen.specs.gemv import RMAX
from forge.codegen.specs.matmul_q8 import TEAMS
from forge.codegen.wtypes import get_wtype
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.kernels.test_dequant import n_cols
from tests.oracles.dequant import random_weights
from tests.oracles.gemv import check, fused, gemv
from tests.oracles.matmul_q8 import matmul_q8
from tests.oracles.quantize_q8 import quantize_q8

CASES = [("gemv", "q4_0"), ("gemv", "f16"), ("gemv", "q6_k"), ("matmul_q8", "q4_0"), ("matmul_q8", "q4_k"),
         ("matmul_q8", "q8_0")]
N_MATS = {"add": 1, "glu": 2, "multi": 3}


def check_fused(kctx, family, wtype, fuse, data):
    """One drawn case of `family` with `fuse` agrees with its plain oracles composed."""
    rows = [data.draw(st.one_of(st.sampled_from([2 * RMAX + 3, 1, RMAX + 1]), st.integers(1, 6 * RMAX)),
                      label=f"rows{i}") for i in range(N_MATS[fuse])]
    if fuse == "glu":
        rows[1] = rows[0]
    rpt = data.draw(st.sampled_from([None, 1, 2 * RMAX, 1000]), label="rows_per_team")  # 1000: a 3-block grid
    toks = data.draw(st.sampled_from([1, 3]), label="tokens") if family == "matmul_q8" else 1
    wt = get_wtype(wtype)
    cols = (wt.qk * data.draw(st.integers(1, max(1, 512 // wt.qk)), label="blocks") if family == "matmul_q8"
            else data.draw(n_cols(wtype, 2), label="cols"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    ws = [random_weights(wtype, r, cols, rng) for r in rows]
    x = data.draw(arrays((toks, cols), np.float32), label="x")
    args, shapes = {"w": ws[0], "n_rows": rows[0], "n_cols": cols}, {"n_rows": rows[0], "n_cols": cols}
    if family == "matmul_q8":
        xq, xd = quantize_q8(x)
        args.update(xq=xq, xd=xd, n_tokens=toks)
        shapes["n_tokens"] = toks
        parts = [matmul_q8(wtype, w, cols, xq, xd) for w in ws]
    else:
        args["x"] = x[0]
        parts = [tuple(a[None] for a in gemv(wtype, w, cols, x[0])) for w in ws]
    outs = ["y"]
    args["y"] = np.full((toks, rows[0]), np.nan, np.float32)
    res = None
    if fuse == "add":
        res = args["res"] = data.draw(arrays((toks, rows[0]), np.float32), label="res")
    elif fuse == "glu":
        args["w2"] = ws[1]
    else:
        for i, name in ((1, "2"), (2, "3")):
            args["w" + name], args["y" + name] = ws[i], np.full((toks, rows[i]), np.nan, np.float32)
            args["n_rows" + name] = shapes["n_rows" + name] = rows[i]
            outs.append("y" + name)
    params = {"wtype": wtype, "fuse": fuse}
    if family == "matmul_q8":
        params["team"] = data.draw(st.sampled_from(TEAMS), label="team")
    got = run_kernel(kctx, family, params, args, outs, rows_per_team=rpt, **shapes)
    for name, (ref, tol) in zip(outs, fused(fuse, parts, res)):
        check(got[name].reshape(ref.shape), ref, tol)


@pytest.mark.parametrize("fuse", sorted(N_MATS))
@pytest.mark.parametrize("family,wtype", CASES)
@settings(max_examples=25)
@given(data=st.data())
def test_fused(gpu_kctx, family, wtype, fuse, data):
    check_fused(gpu_kctx, family, wtype, fuse, data)


MUTANTS = {
    # multi: the third matrix's blocks start one block late (its first rows never computed)
    "multi_split_off_by_one": ("B2 = (u32)((u64)(G - 3u) * (na + nb) / ntot) + 2u;",
                               "B2 = (u32)((u64)(G - 3u) * (na + nb) / ntot) + 1u;"),
    # glu: the up rows are read from the gate matrix (at the first of the per-live-count call sites)
    "glu_reads_gate_twice": ("(w2 + (u64)r0 * rb, rb,", "(w + (u64)r0 * rb, rb,"),
    # add: the residual of the first row of each round is used for every row
    "add_residual_index": ("(ym[i] = (s) + res[i])", "(ym[i] = (s) + res[i - lt])"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_property_test_catches_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    """Each plausible fusion mistake above, rendered into the real source, fails the property."""
    fuse = mutant.split("_")[0]
    assert_property_catches(emu_kctx, "gemv", {"wtype": "q4_0", "fuse": fuse}, MUTANTS[mutant],
                            lambda ctx, data: check_fused(ctx, "gemv", "q4_0", fuse, data), tmp_path, monkeypatch,
                            max_examples=30, once=fuse != "glu")
