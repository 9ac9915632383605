"""attn_decode (split-K partials over the paged cache) + attn_combine vs float64 attention of one
query over the whole context, for every storage dtype (the oracle attends over the stored values,
so all share attention_bound), GQA ratios 1..8 and 12 (two row tiles), contexts from 1 token to
past several 32-key tiles, 1..6 splits — more splits than key tiles too, so some splits are
empty (the kernel reads the context length from device memory and cuts it itself). attn_combine alone is checked against the float64 merge,
empty splits included."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import sizes
from tests.oracles.quantize_q8 import assert_blocks_of
from tests.oracles.attention import KV_DTYPES, U32, attention, attention_bound, combine, paged_kv, shuffled_pages

HEAD_DIM = {"f32": 80, "f16": 64, "fp8": 128, "q8_0": 256, "mxfp6": 96}  # every dtype, each head dim


def decode(kctx, kv, q, k_st, v_st, table, page_size, kv_len, n_kv_heads, scale, ns):
    """Partials and the merged output of one decode step cut into `ns` splits."""
    n_heads, d = q.shape
    part = run_kernel(kctx, "attn_decode", {"head_dim": d, "kv": kv},
                      {"q": q, "k_cache": k_st, "v_cache": v_st, "block_table": table,
                       "part_o": np.full((ns, n_heads, d), np.nan, np.float32),
                       "part_ml": np.full((ns, n_heads, 2), np.nan, np.float32),
                       "n_heads": n_heads, "n_kv_heads": n_kv_heads, "page_size": page_size,
                       "kv_len": np.array([kv_len], np.int32), "scale": scale},
                      ["part_o", "part_ml"], n_splits=ns, n_heads=n_heads, n_kv_heads=n_kv_heads)
    o = run_kernel(kctx, "attn_combine", {"block": 128},
                   {"part_o": part["part_o"], "part_ml": part["part_ml"], "o": np.zeros_like(q),
                    "n_splits": ns, "n_heads": n_heads, "head_dim": d}, ["o"], n_heads=n_heads)["o"]
    return part, o, ns


@pytest.mark.parametrize("kv", KV_DTYPES)
@given(data=st.data())
def test_attn_decode(kctx, kv, data):
    check_attn_decode(kctx, kv, data)


def check_attn_decode(kctx, kv, data):
    """The property: one drawn decode step (decode + combine) agrees with the oracle."""
    d = HEAD_DIM[kv]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n_kv_heads, group = data.draw(st.integers(1, 2)), data.draw(st.sampled_from([12, 8, 1, 2, 3, 4, 5, 6, 7]))
    kv_len = data.draw(sizes(1, 150))
    page_size = data.draw(st.sampled_from([16, 1, 7]))  # powers of two take the shift path
    mag = data.draw(st.sampled_from([0.1, 1.0, 3.0]))
    q = (rng.standard_normal((n_kv_heads * group, d)) * mag).astype(np.float32)
    k = (rng.standard_normal((kv_len, n_kv_heads, d)) * mag).astype(np.float32)
    v = (rng.standard_normal((kv_len, n_kv_heads, d)) * data.draw(st.sampled_from([1e-2, 1.0, 1e2]))).astype(np.float32)
    scale = float(np.float32(data.draw(st.sampled_from([1 / np.sqrt(d), 0.5]))))
    n_pages, table = shuffled_pages(kv_len, page_size, rng)
    k_st, v_st, kq, vq = paged_kv(k, v, kv, page_size, table, n_pages, rng)
    part, got, ns = decode(kctx, kv, q, k_st, v_st, table, page_size, kv_len, n_kv_heads, scale,
                           data.draw(st.integers(1, 6)))
    wrote = not np.isnan(part["part_o"]).any() and not np.isnan(part["part_ml"]).any()  # every split wrote
    ref = attention(q[None], kq, vq, scale, False, 0)[0]
    # The merge adds ns terms and one division on top of a single walk: 4 * (ns + 2) more ulps.
    bound = attention_bound(q[None], kq, vq, scale, False, 0)[0] * (1 + (ns + 2) / (kv_len + d + 16))
    err = np.abs(got.astype(np.float64) - ref)
    # one assertion site, so that Hypothesis reports one failure, not a group of distinct ones
    assert wrote and np.all(err <= bound), "a split left its partials unwritten" if not wrote else float(np.max(err - bound))


def test_decode_same_for_any_page_order_and_split(kctx):
    """Shuffled pages give bit-identical partials; 1 and 5 splits agree to rounding."""
    d, rng = 64, np.random.default_rng(11)
    q = rng.standard_normal((4, d)).astype(np.float32)
    k, v = (rng.standard_normal((70, 2, d)).astype(np.float32) for _ in "kv")
    runs = []
    for order_seed, splits in ((1, 3), (2, 3), (2, 1)):
        n_pages, table = shuffled_pages(70, 16, np.random.default_rng(order_seed), spare=3)
        k_st, v_st, _, _ = paged_kv(k, v, "f16", 16, table, n_pages, rng)
        runs.append(decode(kctx, "f16", q, k_st, v_st, table, 16, 70, 2, 0.125, splits))
    np.testing.assert_array_equal(runs[0][0]["part_o"], runs[1][0]["part_o"])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == 3 and runs[2][2] == 1
    np.testing.assert_allclose(runs[0][1], runs[2][1], rtol=1e-5, atol=1e-6)


@given(data=st.data())
def test_attn_combine(kctx, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ns, heads = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 5))
    d = data.draw(st.sampled_from([1, 64, 80, 300]))
    m = (rng.standard_normal((ns, heads)) * data.draw(st.sampled_from([0.1, 10.0, 80.0]))).astype(np.float32)
    l = rng.uniform(0.5, 50, (ns, heads)).astype(np.float32)
    o = (rng.standard_normal((ns, heads, d)) * l[..., None]).astype(np.float32)
    empty = rng.random((ns, heads)) < 0.3  # splits past the context: (m, l, o) = (-inf, 0, 0)
    if data.draw(st.booleans()):
        empty[0] = False  # some heads keep a split; others may have none and must come out zero
    m[empty], l[empty], o[empty] = -np.inf, 0, 0
    ml = np.stack([m, l], axis=-1)
    got = run_kernel(kctx, "attn_combine", {"block": 128},
                     {"part_o": o, "part_ml": ml, "o": np.zeros((heads, d), np.float32), "n_splits": ns,
                      "n_heads": heads, "head_dim": d}, ["o"], n_heads=heads)["o"]
    ref = combine(o, ml)
    # Weights exp(m_s - M) carry a few ulp, the two ns-term sums ns ulp each, and the division one:
    # |err| <= (|ref| + sum w|o| / L) * (2 ns + 8) u, with a 2x margin.
    w = np.where(np.isneginf(m), 0, np.exp(m - np.where(np.isneginf(m.max(0)), 0, m.max(0))))
    den = (w * l).sum(0)
    spread = np.divide((w[..., None] * np.abs(o)).sum(0), den[:, None], out=np.zeros((heads, d)),
                       where=den[:, None] > 0)
    bound = 2 * (np.abs(ref) + spread) * (2 * ns + 8) * U32 + 1e-30
    assert np.all(np.abs(got - ref) <= bound), float(np.max(np.abs(got - ref) - bound))
    assert np.all(got[den == 0] == 0)  # a head with only empty splits comes out zero


MUTANTS = {
    # the softmax max reduction stops short of the segment: lanes of a row disagree on the max
    "softmax_max_half_segment": ("for (u32 o = BK / 2; o > 0; o >>= 1) v = f_max(v, shfl_xor(v, o));",
                                 "for (u32 o = BK / 4; o > 0; o >>= 1) v = f_max(v, shfl_xor(v, o));"),
    # the row sum of probabilities covers half the segment
    "softmax_sum_half_segment": ("for (u32 o = BK / 2; o > 0; o >>= 1) v += shfl_xor(v, o);",
                                 "for (u32 o = BK / 4; o > 0; o >>= 1) v += shfl_xor(v, o);"),
    # the prefetch of the next tile reads the current tile's row offsets
    "prefetch_wrong_rows": ("dec_fetch(sm.row[buf ^ 1u], k_cache", "dec_fetch(sm.row[buf], k_cache"),
    # the last key of every tile is masked out
    "tile_last_key_masked": ("sm.s[e] = k0 + j < k_end ?", "sm.s[e] = k0 + j + 1 < k_end ?"),
    # a full row tile drops its last head
    "last_head_dropped": ("const u32 live = group - g0 < BQ ? group - g0 : BQ;",
                          "const u32 live = group - g0 < BQ ? group - g0 : BQ - 1;"),
    # the slot inside a power-of-two page is off by one (wrapping inside the page: no out-of-bounds read)
    "page_slot_wrong": ("slot = pow2 ? key & (ps - 1u) : key % ps", "slot = pow2 ? (key + 1u) & (ps - 1u) : key % ps"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_property_test_catches_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    """Each plausible mistake above, rendered into the real f16 decode kernel, fails the property."""
    assert_property_catches(emu_kctx, "attn_decode", {"head_dim": HEAD_DIM["f16"], "kv": "f16"}, MUTANTS[mutant],
                            lambda ctx, data: check_attn_decode(ctx, "f16", data), tmp_path, monkeypatch,
                            max_examples=40)


# mxfp6 reads common/attn_decode_seg.j2's 8-value segments through the kernel's kv_fetch: the
# segment index slips to its pair's (the same row, the wrong 8 values)
MXFP6_MUTANT = ("{ return seg_fetch(row, s); }", "{ return seg_fetch(row, s ^ 1u); }")


def test_property_test_catches_mxfp6_segment_mutant(emu_kctx, tmp_path, monkeypatch):
    assert_property_catches(emu_kctx, "attn_decode", {"head_dim": HEAD_DIM["mxfp6"], "kv": "mxfp6"}, MXFP6_MUTANT,
                            lambda ctx, data: check_attn_decode(ctx, "mxfp6", data), tmp_path, monkeypatch,
                            max_examples=40)


def test_property_test_catches_combine_dropping_a_split(emu_kctx, tmp_path, monkeypatch):
    mutation = ("const u32 nc = ns - s0 < NT ? ns - s0 : NT;", "const u32 nc = ns - s0 < NT ? ns - s0 - 1 : NT;")
    assert_property_catches(emu_kctx, "attn_combine", {"block": 128}, mutation,
                            lambda ctx, data: check_attn_decode(ctx, "f16", data), tmp_path, monkeypatch,
                            max_examples=40)


def check_combine_q8(kctx, data):
    """quant q8: attn_combine's 8-bit blocks equal the quantize_q8 oracle applied to the plain
    variant's o on the same device, bit for bit (the same f32 o; quantization is exact given o)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ns, heads, d = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 5)), data.draw(st.sampled_from([32, 64, 128, 256]))
    m = (rng.standard_normal((ns, heads)) * 10).astype(np.float32)
    l = rng.uniform(0.5, 50, (ns, heads)).astype(np.float32)
    o = (rng.standard_normal((ns, heads, d)) * l[..., None]).astype(np.float32)
    empty = rng.random((ns, heads)) < 0.3
    m[empty], l[empty], o[empty] = -np.inf, 0, 0
    args = {"part_o": o, "part_ml": np.stack([m, l], axis=-1), "n_splits": ns, "n_heads": heads, "head_dim": d}
    plain = run_kernel(kctx, "attn_combine", {"block": 128}, {**args, "o": np.zeros((heads, d), np.float32)}, ["o"],
                       n_heads=heads)["o"]
    got = run_kernel(kctx, "attn_combine", {"block": 128, "quant": "q8"},
                     {**args, "xq": np.full((1, heads * d), 99, np.int8),
                      "xd": np.full((1, heads * d // 32, 2), 7.0, np.float32)}, ["xq", "xd"], n_heads=heads)
    assert_blocks_of(got["xq"], got["xd"], plain.reshape(1, -1))


@given(data=st.data())
def test_attn_combine_q8(gpu_kctx, data):
    check_combine_q8(gpu_kctx, data)


def test_property_test_catches_combine_q8_block_index(emu_kctx, tmp_path, monkeypatch):
    mutation = ("xq + c, xd + c / 32u * 2u", "xq + c, xd + d / 32u * 2u")  # every head's scales at head 0's
    assert_property_catches(emu_kctx, "attn_combine", {"block": 128, "quant": "q8"}, mutation, check_combine_q8,
                            tmp_path, monkeypatch, max_examples=30)
