"""kv_append vs the storage oracle. Without RoPE the kernel must write exactly the oracle's bytes
for every dtype (f16: numpy's RNE cast; q8_0: gguf.quants, GGML's reference; fp8: nearest E4M3 with
a power-of-two row scale, both exact in float32), in the pages the block table names and nowhere
else. V is always exact. With RoPE (n_rot > 0, normal or NeoX pairing) K's angle goes through the
kernel's exp2/sincos, so K is checked by value: the rope tolerance of test_rope plus half a storage
step of the dtype at that value.

Random rows almost never sit on a rounding decision, so some rows are built to: q8_0 rows whose
scaled values are exact halves (GGML rounds half away from zero, not to even) and fp8 rows whose
largest magnitude is exactly at a scale threshold (1.75 * 2^k, i.e. 448 after scaling, a power of
two, or 448 itself)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from forge.codegen.specs import rope as rope_spec
from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.kernels.test_rope import rotation_bound
from tests.oracles._fp import U16
from tests.oracles.attention import KV_DTYPES, kv_decode, kv_encode, place, shuffled_pages
from tests.oracles.rope import rope_base

DIMS = {"f32": [4, 38, 64, 80, 256], "f16": [4, 38, 64, 80, 256], "fp8": [4, 36, 64, 80, 256],
        "q8_0": [32, 64, 96, 256], "mxfp6": [16, 48, 64, 80, 128, 256]}


def tie_rows(x: np.ndarray, kv: str, rng) -> np.ndarray:
    """x with its rows replaced by rows that sit on a rounding decision of the storage format:
    q8_0: each block of 32 has amax 127 * 2^e (so d = 2^e and 1/d are exact) and every other value
    an odd multiple of 2^(e-1), i.e. x/d exactly halfway between two integers; fp8: the row's
    amax is exactly 1.75 * 2^k (the scale threshold), 2^k or 448 (sign random)."""
    x = x.copy()
    rows = x.reshape(-1, x.shape[-1])
    for row in rows:
        e = int(rng.integers(-6, 7))
        if kv == "q8_0":
            for b in range(0, len(row), 32):
                halves = (2 * rng.integers(-127, 127, 32) + 1) * 2.0 ** (e - 1)  # odd/2 within (-127, 127)
                halves[rng.integers(32)] = 127 * 2.0 ** e * rng.choice([-1, 1])
                row[b:b + 32] = halves
        elif kv == "fp8":
            amax = rng.choice([1.75 * 2.0 ** e, 2.0 ** e, 448.0])
            row[:] = rng.uniform(-amax, amax, len(row))
            row[rng.integers(len(row))] = amax * rng.choice([-1, 1])
        elif kv == "mxfp6":
            for b in range(0, len(row), 32):
                row[b:b + 32] = mxfp6_tie_block(min(32, len(row) - b), e, rng)
    return x


E2M3 = np.unique(np.abs(np.array([0.0] + [m / 8 for m in range(1, 8)] + [(1 + m / 8) * 2.0 ** k for k in range(3)
                                                                            for m in range(8)])))
E2M3_MIDS = (E2M3[:-1] + E2M3[1:]) / 2  # halfway between neighbouring magnitudes: ties to even


def mxfp6_tie_block(n: int, e: int, rng) -> np.ndarray:
    """n values of one MX block on rounding decisions: every value halfway between two E2M3
    magnitudes times X = 2^e, and the block's max at a scale edge: 4X (a power of two: scale X),
    just below it (scale X/2), 7.5X (the largest code), 7.75X (halfway to 8X: saturates) or just
    below 8X; signs random."""
    v = rng.choice(E2M3_MIDS, n) * 2.0 ** e
    amax = rng.choice([4.0, 4.0 * (1 - 2.0 ** -24), 7.5, 7.75, 8.0 * (1 - 2.0 ** -24)]) * 2.0 ** e
    v = np.minimum(v, amax)
    v[rng.integers(n)] = amax
    return v * rng.choice([-1, 1], n)


def storage_step(stored_rows, kv, d, mag):
    """Half a storage step at values of magnitude `mag` (elementwise), from the stored scales."""
    if kv == "f32":
        return np.zeros_like(mag)
    if kv == "f16":  # relative for normals, 2^-25 (half of 2^-24) among subnormals (< 2^-14)
        return np.maximum(mag * U16, 2.0 ** -25)
    if kv == "fp8":  # E4M3 has 3 mantissa bits: half a step is 2^-4 relative, 2^-10 * s in subnormals
        s = np.ascontiguousarray(stored_rows[..., d:]).view(np.float32).astype(np.float64)
        return np.maximum(mag * 2.0 ** -4, s * 2.0 ** -10)
    if kv == "mxfp6":
        # E2M3 has 3 mantissa bits: half a step is 2^-4 relative, and 2^-4 X (X the block's E8M0
        # scale) among its subnormals (below X); past 7.5 X it saturates: |v| - 7.5 X (< X / 2).
        n_blocks = -(-d // 32)
        sc = stored_rows[..., 3 * d // 4:3 * d // 4 + n_blocks].astype(np.float64)
        x = np.repeat(np.where(sc == 255, np.nan, 2.0 ** (sc - 127)), 32, axis=-1)[..., :d]
        return np.maximum(np.maximum(mag * 2.0 ** -4, x * 2.0 ** -4), mag - 7.5 * x)
    # q8_0: d/2 for the rounding of q, plus |q| times the f16 rounding of d (2^-11 relative, but
    # 2^-25 absolute once d is an f16 subnormal, below 2^-14: blocks of small values lose digits,
    # as in GGML). 1.01 covers x * (1/d) rounding in float32 and d vs its stored value.
    blocks = stored_rows.reshape(*stored_rows.shape[:-1], d // 32, 34)
    dd = np.ascontiguousarray(blocks[..., :2]).view(np.float16).astype(np.float64)[..., 0]
    q = np.abs(blocks[..., 2:].view(np.int8).astype(np.float64)).reshape(*stored_rows.shape[:-1], d)
    half_q = np.repeat((dd + 2.0 ** -25) * 0.5, 32, axis=-1)
    d_err = np.repeat(np.maximum(dd * 2.0 ** -11, 2.0 ** -25), 32, axis=-1)
    return (half_q + q * d_err) * 1.01


def append(kctx, kv, k, v, pos, table, page_size, k_st, v_st, n_rot=0, neox=0, fl=0.0, fs=1.0):
    """Run kv_append; returns the K and V storage after it."""
    n_tok, heads, d = k.shape
    args = {"k_new": k, "v_new": v, "pos": pos, "block_table": table, "k_cache": k_st, "v_cache": v_st,
            "n_tokens": n_tok, "n_kv_heads": heads, "head_dim": d, "page_size": page_size,
            "n_rot": n_rot, "rope_neox": neox, "freq_log2": fl, "freq_scale": fs}
    out = run_kernel(kctx, "kv_append", {"kv": kv, "block": 128}, args, ["k_cache", "v_cache"],
                     n_tokens=n_tok, n_kv_heads=heads)
    return out["k_cache"], out["v_cache"]


@pytest.mark.parametrize("rope_on", [False, True], ids=["norope", "rope"])
@pytest.mark.parametrize("kv", KV_DTYPES)
@given(data=st.data())
def test_kv_append(kctx, kv, rope_on, data):
    check_kv_append(kctx, kv, rope_on, data)


def check_kv_append(kctx, kv, rope_on, data):
    """The property: one drawn case agrees with the oracle (the mutant tests use it too)."""
    heads, d = data.draw(st.integers(1, 3)), data.draw(st.sampled_from(DIMS[kv]))
    page_size, n_tok = data.draw(st.sampled_from([1, 5, 16])), data.draw(st.integers(1, 20))
    n_ctx = n_tok + data.draw(st.integers(0, 40))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    if data.draw(st.booleans()):  # a run of new tokens after n_past, as in prefill/decode
        pos = np.arange(n_ctx - n_tok, n_ctx, dtype=np.int32)
    else:  # scattered positions: each must land in its own page and slot
        pos = np.sort(rng.choice(n_ctx, n_tok, replace=False)).astype(np.int32)
    n_pages, table = shuffled_pages(n_ctx, page_size, rng)
    rb = kv_encode(np.zeros((1, d), np.float32), kv).shape[-1]
    k_st, v_st = (rng.integers(0, 256, (n_pages, heads, page_size, rb), dtype=np.uint8) for _ in "kv")
    mag = data.draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3]))
    k = data.draw(arrays((n_tok, heads, d), np.float32, scale=mag))
    v = data.draw(arrays((n_tok, heads, d), np.float32))
    if kv in ("q8_0", "fp8", "mxfp6") and data.draw(st.booleans(), label="tie rows"):
        k, v = tie_rows(k, kv, rng), tie_rows(v, kv, rng)
    if kv == "mxfp6" and not rope_on and data.draw(st.booleans(), label="special rows"):
        k, v = special_rows(k, rng), special_rows(v, rng)
    if not rope_on:
        got_k, got_v = append(kctx, kv, k, v, pos, table, page_size, k_st, v_st)
        np.testing.assert_array_equal(got_v, place(kv_encode(v, kv), table, page_size, v_st, pos))
        np.testing.assert_array_equal(got_k, place(kv_encode(k, kv), table, page_size, k_st, pos))
        return
    mode = data.draw(st.sampled_from(["normal", "neox"]))
    n_rot = data.draw(st.sampled_from(sorted({2, d // 2 - d // 2 % 2 or 2, d})))
    base = data.draw(st.sampled_from([1e4, 1e5]))
    fs = data.draw(st.sampled_from([1.0, 0.25]))
    got_k, got_v = append(kctx, kv, k, v, pos, table, page_size, k_st, v_st, n_rot, int(mode == "neox"),
                          rope_spec.freq_log2(base, n_rot), fs)
    np.testing.assert_array_equal(got_v, place(kv_encode(v, kv), table, page_size, v_st, pos))
    # Every row other than the new tokens' is untouched ...
    written = np.zeros(k_st.shape[:3], bool)
    for p in pos:
        written[table[p // page_size], :, p % page_size] = True
    np.testing.assert_array_equal(got_k[~written], k_st[~written])
    # ... and the new rows hold rope(k) within the rope and storage tolerances.
    rows = np.stack([got_k[table[p // page_size], :, p % page_size] for p in pos])
    got = kv_decode(rows, kv, d)
    ref, theta = rope_base(k, pos, n_rot, base, fs, mode)
    rb_ = rotation_bound(k, theta, n_rot, base, mode)
    bound = rb_ + storage_step(rows, kv, d, np.abs(ref) + rb_) + 1e-30
    err = np.abs(got - ref)
    assert np.all(err <= bound), float(np.max(err - bound))


def test_fp8_specials(kctx):
    """NaN is stored as the canonical NaN code and does not spoil the row's scale; inf saturates
    to 448 with scale 1; a zero row has scale 1; tiny rows get tiny power-of-two scales; -0 keeps
    its sign. Bytes as the oracle's."""
    d = 8
    k = np.array([[[np.nan, 1.0, -3.0, 0.5, 0.0, -0.0, 2.0**-9, 100.0]],
                  [[np.inf, -1.0, 1e-3, 1e30, 5.0, -np.inf, 0.0, 1.0]],
                  [[0.0] * d],
                  [[1e-30, -3e-31, 2e-33, 0.0, 3e-32, 5e-31, -1e-30, 7e-31]]], np.float32)
    table = np.array([1, 0], np.int32)
    st_ = np.random.default_rng(0).integers(0, 256, (2, 1, 4, d + 4), dtype=np.uint8)
    pos = np.arange(4, dtype=np.int32)
    got_k, got_v = append(kctx, "fp8", k, -k, pos, table, 4, st_, st_)
    np.testing.assert_array_equal(got_k, place(kv_encode(k, "fp8"), table, 4, st_, pos))
    np.testing.assert_array_equal(got_v, place(kv_encode(-k, "fp8"), table, 4, st_, pos))
    row0 = got_k[1, 0, 0]
    assert row0[0] == 0x7F and np.frombuffer(row0[d:].tobytes(), np.float32)[0] == 2.0 ** -2  # 100/448 -> 1/4


MXFP6_SPECIAL_ROWS = [
    [np.nan] + [1.0] * 31 + [2.0] * 16,  # NaN: its block is all NaN (scale 0xFF), the next block is not
    [0.5] * 16 + [-np.inf] + [3.0] * 31,  # Inf: the same
    [0.0] * 48,  # zero blocks: scale 2^-127, zero codes
    [-0.0, 0.0, -1e-3, 1e-3] * 12,  # -0 and negatives rounding to 0 keep the sign bit
    [1e-40, -3e-41, 1e-45, 0.0] * 12,  # f32 subnormals: the clamped scale 2^-127
    [3.4e38, -1.7e38, 1e30, 1.0] * 12,  # the largest finite values: the largest scales
    [7.75, 7.5, 0.0625, -0.1875] * 12,  # saturation tie (7.75 -> 7.5) and subnormal ties
]


def special_rows(x: np.ndarray, rng) -> np.ndarray:
    """x with about half its rows replaced by MXFP6_SPECIAL_ROWS (tiled to the row length)."""
    x = x.copy()
    flat = x.reshape(-1, x.shape[-1])
    for r in range(len(flat)):
        if rng.random() < 0.5:
            flat[r] = np.resize(np.array(MXFP6_SPECIAL_ROWS[rng.integers(len(MXFP6_SPECIAL_ROWS))], np.float32),
                                x.shape[-1])
    return x


def test_mxfp6_specials(kctx):
    """The rows forge.quant.mx treats specially, stored as its codec does (bytes as the oracle's,
    which is quantize_mx itself): NaN / Inf blocks, zeros, signed zeros, subnormal and huge values.
    head_dim 48: a block of 32 and a block of 16."""
    d = 48
    k = np.array(MXFP6_SPECIAL_ROWS, np.float32)[:, None, :]
    n = len(k)
    table = np.array([1, 0], np.int32)
    rb = kv_encode(np.zeros((1, d), np.float32), "mxfp6").shape[-1]
    st_ = np.random.default_rng(0).integers(0, 256, (2, 1, 4, rb), dtype=np.uint8)
    pos = np.arange(n, dtype=np.int32)
    got_k, got_v = append(kctx, "mxfp6", k, -k, pos, table, 4, st_, st_)
    np.testing.assert_array_equal(got_k, place(kv_encode(k, "mxfp6"), table, 4, st_, pos))
    np.testing.assert_array_equal(got_v, place(kv_encode(-k, "mxfp6"), table, 4, st_, pos))
    row0 = got_k[1, 0, 0]
    assert list(row0[36:40]) == [0xFF, 127 - 2 + 1, 0, 0]  # NaN block; 2.0 = 2^1: scale 2^(1-2); padding


def test_mxfp6_oracle_is_forge_quant():
    """The oracle's row layout is forge.quant.mx's MXFP6 E2M3 blocks re-laid (payloads back to back,
    then the scales): the same codes and scales as quantize_rows, and decode inverts it."""
    from forge.quant import mx
    x = np.random.default_rng(3).standard_normal((6, 128)).astype(np.float32) * 10.0 ** np.arange(-3, 3)[:, None]
    rows = kv_encode(x, "mxfp6")
    packed = mx.quantize_rows(x, mx.MXFP6_E2M3).reshape(6, 4, 25)
    np.testing.assert_array_equal(rows[:, :96].reshape(6, 4, 24), packed[..., 1:])
    np.testing.assert_array_equal(rows[:, 96:], packed[..., 0])
    np.testing.assert_array_equal(kv_decode(rows, "mxfp6", 128),
                                  mx.dequantize_rows(mx.quantize_rows(x, mx.MXFP6_E2M3), mx.MXFP6_E2M3, 128))


def test_fp8_oracle_matches_forge_quant():
    """The oracle's table search agrees with forge.quant.mx's E4M3 codec on every code's value,
    every midpoint between codes (ties to even), out-of-range values, signed zeros and NaN."""
    mx = pytest.importorskip("forge.quant.mx")
    from tests.oracles.attention import FP8_VALUES, fp8_encode
    finite = FP8_VALUES[np.isfinite(FP8_VALUES)]
    mids = (FP8_VALUES[:126] + FP8_VALUES[1:127]) / 2
    rng = np.random.default_rng(5)
    x = np.concatenate([finite, mids, -mids, [448.0, 464.0, 480.0, 1e9, -1e9, np.inf, -np.inf, 0.0, -0.0,
                                              np.nan, -np.nan, 2.0**-10],
                        (rng.standard_normal(4000) * 10.0 ** rng.integers(-4, 3, 4000)).astype(np.float32)])
    np.testing.assert_array_equal(fp8_encode(x), mx.FP8_E4M3.encode(x))
    np.testing.assert_array_equal(fp8_encode(finite), np.arange(256)[np.isfinite(FP8_VALUES)])
    assert list(fp8_encode(np.array([464.0, 2.0**-10, 3 * 2.0**-10]))) == [0x7E, 0x00, 0x02]


# Plausible mistakes in the KV writer, rendered into kv_append's real source; each must be caught at
# both wave sizes (the tie rows above are what catch them: random rows almost never tie).
MUTANTS = {
    # q8_0 rounds half to even (the fp8 encoder's 2^23 trick) instead of away from zero as GGML does
    ("q8_0", "round_half_even"): ("const float r = fl + f_floor(2.0f * (a - fl));",
                                  "const float r = (a + 8388608.0f) - 8388608.0f;"),
    # fp8: a row whose amax is exactly 1.75 * 2^k (448 after scaling) gets twice the scale it needs
    ("fp8", "scale_threshold_inclusive"): ("(b & 0x7fffffu) > 0x600000u", "(b & 0x7fffffu) >= 0x600000u"),
    # mxfp6: FP8's emax (or E3M2's) in the shared exponent: scales twice too large
    ("mxfp6", "scale_emax"): ("eb > 2u ? eb - 2u : 0u", "eb > 3u ? eb - 3u : 0u"),
    # mxfp6: ties rounded away from zero instead of to even
    ("mxfp6", "ties_away"): ("b += 0x7ffffu + ((b >> 20) & 1u);", "b += 0x80000u;"),
    # mxfp6: no saturation: 7.75 X rounds up to 8 X, past the largest code
    ("mxfp6", "no_saturation"): ("const float a = f_min(f_abs(v), 7.5f);", "const float a = f_abs(v);"),
    # mxfp6: only the lane holding a NaN / Inf sees it: the rest of its block keeps a finite scale
    ("mxfp6", "special_per_lane"): ("const bool special = group32_max(fin ? 0.0f : 1.0f) > 0.0f;",
                                    "const bool special = !fin;"),
    # mxfp6: the 4-lane packing takes lane ^ 2's code for the third field twice (a shuffle slip)
    ("mxfp6", "pack_shuffle"): ("(u32)shfl_xor(c, 3u) << 18", "(u32)shfl_xor(c, 2u) << 18"),
    # mxfp6: the scale bytes' padding left as it was (garbage) instead of zeros
    ("mxfp6", "no_pad"): ("if (lane < (4u - nb % 4u) % 4u)", "if (false)"),
}


@pytest.mark.parametrize("kv,mutant", sorted(MUTANTS), ids=[f"{kv}-{m}" for kv, m in sorted(MUTANTS)])
def test_property_test_catches_mutant(emu_kctx, kv, mutant, tmp_path, monkeypatch):
    assert_property_catches(emu_kctx, "kv_append", {"kv": kv, "block": 128}, MUTANTS[kv, mutant],
                            lambda ctx, data: check_kv_append(ctx, kv, False, data), tmp_path, monkeypatch,
                            max_examples=30)


def check_rope_q(kctx, data):
    """rope_q: Q (n_heads rows per token, GQA: more than the K/V heads) comes back rotated as the
    rope oracle says, within rope's bound; the caches equal the plain variant's on the same device."""
    kv_heads = data.draw(st.integers(1, 3))
    heads, d = kv_heads * data.draw(st.integers(1, 3)), data.draw(st.sampled_from([8, 64, 80, 128]))
    n_tok, page_size = data.draw(st.integers(1, 4)), 16
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    pos = np.arange(3, 3 + n_tok, dtype=np.int32) * data.draw(st.sampled_from([1, 997]))
    n_pages, table = shuffled_pages(int(pos[-1]) + 1, page_size, rng)
    k_st, v_st = (np.zeros((n_pages, kv_heads, page_size, 2 * d), np.uint8) for _ in "kv")
    k, v = (data.draw(arrays((n_tok, kv_heads, d), np.float32)) for _ in "kv")
    q = data.draw(arrays((n_tok, heads, d), np.float32))
    mode = data.draw(st.sampled_from(["normal", "neox"]))
    n_rot = data.draw(st.sampled_from(sorted({2, d // 2 - d // 2 % 2 or 2, d})))
    args = {"k_new": k, "v_new": v, "pos": pos, "block_table": table, "k_cache": k_st, "v_cache": v_st,
            "n_tokens": n_tok, "n_kv_heads": kv_heads, "head_dim": d, "page_size": page_size, "n_rot": n_rot,
            "rope_neox": int(mode == "neox"), "freq_log2": rope_spec.freq_log2(1e4, n_rot), "freq_scale": 1.0}
    plain = run_kernel(kctx, "kv_append", {"kv": "f16", "block": 128}, args, ["k_cache", "v_cache"],
                       n_tokens=n_tok, n_kv_heads=kv_heads)
    got = run_kernel(kctx, "kv_append", {"kv": "f16", "block": 128, "rope_q": True},
                     {**args, "q": q, "n_heads": heads}, ["k_cache", "v_cache", "q"],
                     n_tokens=n_tok, n_kv_heads=kv_heads, n_heads=heads)
    for name in ("k_cache", "v_cache"):
        np.testing.assert_array_equal(got[name], plain[name])
    ref, theta = rope_base(q, pos, n_rot, 1e4, 1.0, mode)
    bound = rotation_bound(q, theta, n_rot, 1e4, mode) + 1e-30
    err = np.abs(got["q"].astype(np.float64) - ref)
    assert np.all(err <= bound), float(np.max(err - bound))


@given(data=st.data())
def test_kv_append_rope_q(gpu_kctx, data):
    check_rope_q(gpu_kctx, data)


@pytest.mark.parametrize("mutation", [
    ("const u32 j = first ? i1 : i0;", "const u32 j = i;"),  # a Q dim rotates with itself, not its partner
    ("(float)pos[qr / (u32)n_heads]", "(float)pos[qr / (u32)n_kv_heads]"),  # Q rows take a K row's token
], ids=["self_partner", "kv_token"])
def test_rope_q_catches_mutant(emu_kctx, mutation, tmp_path, monkeypatch):
    from tests.kernels.mutants import assert_property_catches
    assert_property_catches(emu_kctx, "kv_append", {"kv": "f16", "block": 128, "rope_q": True}, mutation,
                            check_rope_q, tmp_path, monkeypatch, max_examples=40)
