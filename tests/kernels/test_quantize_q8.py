"""quantize_q8 vs its oracle (tests/oracles/quantize_q8.py), bit for bit: xq and both xd floats.
Rows of one to many 32-column blocks, values of any magnitude with planted extremes, all-zero
blocks (d = 0, q = 0), blocks of exact ties (x = (k + 1/2) d with d a power of two: x / d is
exactly k + 1/2 and must round away from zero, both signs), and blocks with a NaN or an infinity
(loud: d NaN or inf, q = 0)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.codegen.specs.quantize_q8 import BPB
from forge.runtime.lower import has_variant
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.oracles.dequant import bits_equal
from tests.oracles.quantize_q8 import quantize_q8


@pytest.fixture
def host_kctx(kctx):
    if kctx.arch.vendor != "host":
        pytest.skip(f"host-template mutants; {kctx.arch.name} runs the GPU template")
    return kctx


def run(kctx, x, params=None):
    t, n = x.shape
    out = run_kernel(kctx, "quantize_q8", params or {},
                     {"x": x, "xq": np.full((t, n), 99, np.int8), "xd": np.full((t, n // 32, 2), np.nan, np.float32),
                      "n_cols": n}, ["xq", "xd"], rows=t,
                     n_cols=n if n % 64 else None)  # GPU: a thread per block (n_cols given) or one block a row
    return out["xq"], out["xd"]


def tie_block(rng, sign_mix=True) -> np.ndarray:
    """32 values with amax = 127 d (d = 2^e) and the rest exact halves (k + 1/2) d."""
    d = np.float32(2.0 ** int(rng.integers(-20, 10)))
    k = rng.integers(0, 127, 32).astype(np.float64) + 0.5
    k[rng.integers(0, 32)] = 127.0
    s = rng.choice([-1.0, 1.0], 32) if sign_mix else np.ones(32)
    return (s * k * np.float64(d)).astype(np.float32)


def check_quantize(kctx, data):
    """The property: one drawn case agrees with the oracle bit for bit (the mutant test uses it)."""
    # many rows (prefill: every row a grid row) with few blocks, or few rows with up to 4 thread blocks
    # of 32 blocks a row (odd counts: n_cols given, a grid column per 32 blocks; even: one thread block
    # a row that loops; 33, 65, 66: one block past a thread block's)
    t = data.draw(st.one_of(st.integers(1, 4), st.integers(5, 40)), label="rows")
    few = [1, 2, 3, 18, 33] if t > 4 else [1, 2, 18, 33, 48, 65, 66, 127]
    nb = data.draw(st.one_of(st.sampled_from(few), st.integers(1, 24 if t > 4 else 130)), label="blocks")
    x = data.draw(arrays((t, 32 * nb), np.float32), label="x")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    blocks = x.reshape(t, nb, 32)
    for _ in range(data.draw(st.integers(0, 3), label="special blocks")):
        r, b = rng.integers(0, t), rng.integers(0, nb)
        kind = data.draw(st.sampled_from(["ties", "ties", "zero", "nan", "inf"]), label="kind")
        if kind == "ties":
            blocks[r, b] = tie_block(rng)
        elif kind == "zero":
            blocks[r, b] = 0
        else:
            blocks[r, b, rng.integers(0, 32)] = np.nan if kind == "nan" else -np.inf
    bpb = [b for b in BPB if has_variant("quantize_q8", kctx.arch, bpb=b)]  # wave64: 16 only
    q, d = run(kctx, x, {"bpb": data.draw(st.sampled_from(bpb), label="bpb")})
    rq, rd = quantize_q8(x)
    assert np.array_equal(q, rq), f"{(q != rq).sum()} q differ, first at {np.argwhere(q != rq)[0]}"
    same = bits_equal(d, rd)
    assert same.all(), f"xd differs at {np.argwhere(~same)[0]}: {d[~same][0]!r} vs {rd[~same][0]!r}"


@given(data=st.data())
def test_quantize_q8(kctx, data):
    check_quantize(kctx, data)


def test_ties_round_away_from_zero(kctx):
    """x / d = k + 1/2 exactly: q = k + 1 for positive x, -(k + 1) for negative."""
    d = np.float32(0.25)
    k = np.arange(32, dtype=np.float64) * 4 % 127
    x = np.stack([(k + 0.5) * 0.25, -(k + 0.5) * 0.25]).astype(np.float32)
    x[:, 7] = np.float32(127 * 0.25) * np.array([1, -1], np.float32)  # amax = 127 d
    q, xd = run(kctx, x)
    want = np.where(np.arange(32) == 7, 127, k + 1)
    assert np.array_equal(q[0], want) and np.array_equal(q[1], -want)
    assert np.all(xd[:, 0, 0] == d) and np.array_equal(xd[:, 0, 1], d * np.float32(want.sum()) * np.array([1, -1]))


MUTANTS = {
    # ties to even instead of away from zero (the exact halves catch it)
    "ties_to_even": ("t -= (vi)(f >= 0.5f);", "t -= (vi)(f > 0.5f || (f == 0.5f && (t & 1)));"),
    # the scale uses 128 steps instead of 127
    "scale_128": ("/ 127.0f;", "/ 128.0f;"),
    # the sum of q misses the second half of the block
    "half_sum": ("const vi qs = qa + qc;", "const vi qs = qa;"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_property_test_catches_mutant(host_kctx, mutant, tmp_path, monkeypatch):
    assert_property_catches(host_kctx, "quantize_q8", {}, MUTANTS[mutant], check_quantize, tmp_path, monkeypatch,
                            max_examples=30)


GPU_MUTANTS = {
    # an exact half rounds toward zero
    "ties_toward_zero": ("(f >= 0.5f ? 1 : 0)", "(f > 0.5f ? 1 : 0)"),
    # the sum of q covers half the block's lanes (xd[1] wrong; one assertion site fails)
    "half_sum": ("for (u32 o = 4u; o > 0u; o >>= 1) s += shfl_xor(s, o);",
                 "for (u32 o = 2u; o > 0u; o >>= 1) s += shfl_xor(s, o);"),
    # amax covers half the block's lanes (d too small where the max is in the other half)
    "half_amax": ("for (u32 o = 4u; o > 0u; o >>= 1) {", "for (u32 o = 2u; o > 0u; o >>= 1) {"),
    # an infinity counts as a NaN (d NaN instead of inf)
    "inf_is_nan": ("m > 0x7f800000u ?", "m >= 0x7f800000u ?"),
    # the upper half of a block's xq is never stored
    "half_stored": ("      *(u32*)(xq + c) = packed;", "      if (j < 4u) *(u32*)(xq + c) = packed;"),
    # the 4 int8 of a lane packed in reverse byte order
    "byte_order": ("<< (8u * k);", "<< (24u - 8u * k);"),
}


@pytest.mark.parametrize("mutant", sorted(GPU_MUTANTS))
def test_property_test_catches_gpu_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    """The GPU kernel's plausible mistakes, run on the emulator, fail the same property."""
    assert_property_catches(emu_kctx, "quantize_q8", {}, GPU_MUTANTS[mutant], check_quantize, tmp_path, monkeypatch,
                            max_examples=30)
