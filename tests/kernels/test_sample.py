"""sample (penalty, greedy / top-k / top-p / min-p / temperature draw, all on the device) vs the
numpy oracle of the same semantics (tests/oracles/sample.py): the drawn token must be one the
oracle accepts (exactly one, unless a cut or the draw lies within 1e-4 of a boundary, where the
kernel's float32 sums may fall either side); the penalized logits bit-exact; the state advanced
(draw counter, history ring). A frequency test checks the draws follow the softmax."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.codegen.specs.sample import HISTORY
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays, sizes
from tests.oracles.sample import make_state, penalized, sample

PARAMS = {"block": 256}


def run_sample(kctx, logits, state):
    out = run_kernel(kctx, "sample", PARAMS, {"logits": logits, "state": state,
                                              "token": np.full(1, -7, np.int32), "n_vocab": len(logits)},
                     ["logits", "state", "token"])
    return out["logits"], out["state"], int(out["token"][0])


def check_sample(kctx, data):
    n = data.draw(sizes(1, 3000), label="n_vocab")
    logits = data.draw(arrays((n,), np.float32, scale=data.draw(st.sampled_from([0.1, 3.0, 30.0]))), label="logits")
    if n > 4 and data.draw(st.booleans()):  # ties (mostly of the largest logit: greedy's tie rule) and NaN
        top = int(np.argmax(logits))
        logits[data.draw(st.integers(0, n - 1))] = logits[data.draw(st.one_of(st.just(top), st.integers(0, n - 1)))]
        logits[data.draw(st.integers(0, n - 1))] = np.nan
    greedy = data.draw(st.booleans(), label="greedy")
    hist = data.draw(st.lists(st.integers(-1, n + 2), max_size=HISTORY + 10), label="history")
    state = make_state(temperature=0.0 if greedy else data.draw(st.sampled_from([0.3, 0.8, 1.0, 2.5])),
                       top_k=data.draw(st.sampled_from([0, 1, 5, 40, n, n + 3])),
                       top_p=data.draw(st.sampled_from([1.0, 0.95, 0.5, 0.01])),
                       min_p=data.draw(st.sampled_from([0.0, 0.05, 0.5])),
                       penalty=data.draw(st.sampled_from([1.0, 1.1, 1.5])),
                       last_n=data.draw(st.sampled_from([0, 8, HISTORY])),
                       seed=data.draw(st.integers(0, 2**32 - 1)), draws=data.draw(st.integers(0, 2**32 - 2)),
                       history=hist)
    got_logits, got_state, tok = run_sample(kctx, logits, state)
    np.testing.assert_array_equal(got_logits, penalized(logits, state))
    ok = sample(logits, state)
    assert tok in ok, (tok, sorted(ok)[:10])
    assert got_state[7] == state[7] + 1 and got_state[8] == min(state[8] + 1, HISTORY)
    assert got_state[16 + (state[9] % HISTORY)] == tok and got_state[9] == (state[9] + 1) % HISTORY


@given(data=st.data())
def test_sample(kctx, data):
    check_sample(kctx, data)


def draws(kctx, logits, state, n):
    """n successive draws from `logits` (the kernel advances its own counter in `state`)."""
    dev, kern = kctx.device, kctx.dispatcher.get("sample", **PARAMS)
    bl, bs, bt = dev.alloc(logits.nbytes), dev.alloc(state.nbytes), dev.alloc(4)
    dev.upload(bl, logits)
    dev.upload(bs, state)
    toks = []
    for _ in range(n):
        kern(bl, bs, bt, len(logits))
        toks.append(int(np.frombuffer(dev.download(bt), np.int32)[0]))
    for b in (bl, bs, bt):
        dev.free(b)
    return toks


def check_top_k(kctx, data):
    """At a high temperature, 150 draws with top_k = k land on exactly the k largest logits."""
    n, k = data.draw(st.integers(8, 2000), label="n"), data.draw(st.integers(1, 6), label="k")
    logits = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).permutation(n).astype(np.float32)
    got = set(draws(kctx, logits, make_state(temperature=1e4, top_k=k, top_p=1.0, min_p=0.0, seed=n), 150))
    assert got == set(np.argsort(-logits)[:k].tolist()), (sorted(got), k)


@given(data=st.data())
def test_top_k_keeps_exactly_k(kctx, data):
    check_top_k(kctx, data)


def test_draws_follow_the_softmax(kctx):
    """400 successive draws (the kernel advances its own counter) over 6 logits at temperature 0.7:
    each id's count within 4.5 sigma of 400 p_i, and the same seed repeats the same tokens."""
    logits = np.array([1.0, 0.0, 2.0, -1.0, 1.5, 0.5], np.float32)
    p = np.exp(logits / 0.7) / np.exp(logits / 0.7).sum()
    runs = [draws(kctx, logits, make_state(temperature=0.7, top_k=0, top_p=1.0, min_p=0.0, seed=1234), 400)
            for _ in range(2)]
    assert runs[0] == runs[1]
    counts = np.bincount(runs[0], minlength=6)
    sigma = np.sqrt(400 * p * (1 - p))
    assert np.all(np.abs(counts - 400 * p) <= 4.5 * sigma), (counts, 400 * p)


MUTANTS = {
    # top-k's search wants one id too many above the threshold, so it keeps k + 1
    "top_k_strict": ("if (block_sum(c, scratch) >= (float)top_k) kmin = cand;",
                     "if (block_sum(c, scratch) > (float)top_k) kmin = cand;"),
    # the penalty multiplies positive logits (making repeated tokens more likely)
    "penalty_sign": ("return l > 0.0f ? l / pen : l * pen;", "return l > 0.0f ? l * pen : l / pen;"),
    # greedy ties go to the highest id
    "argmax_tie": ("(v == bv && i < bi)", "(v == bv && i > bi)"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_property_test_catches_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    check = check_top_k if mutant == "top_k_strict" else check_sample
    assert_property_catches(emu_kctx, "sample", PARAMS, MUTANTS[mutant], check, tmp_path, monkeypatch,
                            max_examples=60)


def test_a_draw_of_zero_skips_weights_that_underflow(kctx):
    """seed 0, draw 0 gives u = 0: the token is the first id whose float32 weight is not zero
    (exp(-200) is 0 in float32, not in float64)."""
    logits = np.array([-200.0, -190.0, -3.0, 0.0, -1.0], np.float32)
    state = make_state(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=0, draws=0)
    _, _, tok = run_sample(kctx, logits, state)
    assert sample(logits, state) == {2} and tok == 2
