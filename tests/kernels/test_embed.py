"""embed vs the oracle: token ids (repeats, any order, and sometimes ids outside [0, n_rows), which
must give NaN rows) gather rows of any weight type, dequantized bit-exactly to f32."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.codegen.wtypes import WTYPE_NAMES
from tests.kernels.harness import run_kernel
from tests.kernels.test_dequant import n_cols, units_past_grid, weights
from tests.oracles.dequant import bits_equal
from tests.oracles.embed import embed


@pytest.mark.parametrize("wtype", WTYPE_NAMES)
@given(data=st.data())
def test_embed(kctx, wtype, data):
    rows = data.draw(st.integers(1, 9), label="vocab rows")
    cols = data.draw(n_cols(wtype, units_past_grid(wtype)), label="cols")
    raw = weights(data, wtype, rows, cols)
    n_tok = data.draw(st.integers(1, 6), label="tokens")
    bad = data.draw(st.booleans(), label="with bad ids")
    lo, hi = (-3, rows + 2) if bad else (0, rows - 1)
    ids = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n_tok, max_size=n_tok), label="ids"), np.int32)
    got = run_kernel(kctx, "embed", {"wtype": wtype},
                     {"w": raw, "ids": ids, "y": np.zeros((n_tok, cols), np.float32),
                      "n_tokens": n_tok, "n_rows": rows, "n_cols": cols},
                     ["y"], n_tokens=n_tok, n_cols=cols)["y"]
    same = bits_equal(got, embed(wtype, raw, cols, ids))
    assert same.all(), f"{(~same).sum()} values differ, first at {np.argwhere(~same)[0]} (ids {ids})"
