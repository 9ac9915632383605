"""attn_decode (split-K partials over the paged cache) + attn_combine vs float64 attention of one
query over the whole context, for every storage dtype (the oracle attends over the stored values,
so all share attention_bound), GQA ratios 1..8 and 12 (a block takes 4 heads: up to three row tiles), contexts from 1 token to
past several tiles of every wave of a block (up to 300 keys), 1..6 splits — more splits than key tiles too, so some splits are
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


def check_attn_decode(kctx, kv, data, min_len=1, max_splits=6):
    """The property: one drawn decode step (decode + combine) agrees with the oracle. A GPU block's
    waves take 32-128 keys a round (attn_decode.hip.j2's NW * TK), so contexts up to 300 give a wave
    several tiles at few splits; mutant tests of the per-wave tile loop ask for that (min_len)."""
    c = draw_step(kv, data, min_len, max_splits)
    part, got, ns = decode(kctx, kv, c["q"], c["k_st"], c["v_st"], c["table"], c["page_size"], c["kv_len"],
                           c["n_kv_heads"], c["scale"], c["ns"])
    wrote = not np.isnan(part["part_o"]).any() and not np.isnan(part["part_ml"]).any()  # every split wrote
    err, bound = step_error(c, got)
    # one assertion site, so that Hypothesis reports one failure, not a group of distinct ones
    assert wrote and np.all(err <= bound), "a split left its partials unwritten" if not wrote else float(np.max(err - bound))


def step_error(c, got):
    """|got - oracle| and its bound for a drawn step merged from c["ns"] splits."""
    ref = attention(c["q"][None], c["kq"], c["vq"], c["scale"], False, 0)[0]
    # The merge adds ns terms and one division on top of a single walk: 4 * (ns + 2) more ulps.
    bound = attention_bound(c["q"][None], c["kq"], c["vq"], c["scale"], False, 0)[0] * (
        1 + (c["ns"] + 2) / (c["kv_len"] + c["q"].shape[1] + 16))
    return np.abs(got.astype(np.float64) - ref), bound


def draw_step(kv, data, min_len=1, max_splits=6, head_dim=None, groups=(12, 8, 1, 2, 3, 4, 5, 6, 7)):
    """One drawn decode step: q, the paged cache (stored and as the oracle sees it) and the splits."""
    d = head_dim or HEAD_DIM[kv]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n_kv_heads, group = data.draw(st.integers(1, 2)), data.draw(st.sampled_from(groups))
    kv_len = data.draw(sizes(min_len, 300))
    page_size = data.draw(st.sampled_from([16, 1, 7]))  # powers of two take the shift path
    mag = data.draw(st.sampled_from([0.1, 1.0, 3.0]))
    q = (rng.standard_normal((n_kv_heads * group, d)) * mag).astype(np.float32)
    k = (rng.standard_normal((kv_len, n_kv_heads, d)) * mag).astype(np.float32)
    v = (rng.standard_normal((kv_len, n_kv_heads, d)) * data.draw(st.sampled_from([1e-2, 1.0, 1e2]))).astype(np.float32)
    scale = float(np.float32(data.draw(st.sampled_from([1 / np.sqrt(d), 0.5]))))
    n_pages, table = shuffled_pages(kv_len, page_size, rng)
    k_st, v_st, kq, vq = paged_kv(k, v, kv, page_size, table, n_pages, rng)
    return {"q": q, "k_st": k_st, "v_st": v_st, "kq": kq, "vq": vq, "table": table, "page_size": page_size,
            "kv_len": kv_len, "n_kv_heads": n_kv_heads, "scale": scale, "ns": data.draw(st.integers(1, max_splits))}


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


# Mutants of the per-wave tile loop show only where a wave walks more than one tile: a long context
# in one or two splits (LONG).
LONG = {"min_len": 130, "max_splits": 2}
MUTANTS = {
    # a score's shuffle reduction stops at half of the key's lanes: each lane keeps a partial dot product
    "score_reduce_half_key": ("for (u32 o = LPK / 2; o > 0; o >>= 1) a += shfl_xor(a, o);",
                              "for (u32 o = LPK / 4; o > 0; o >>= 1) a += shfl_xor(a, o);"),
    # the tile max misses the farthest key groups of the wave: they run on different maxima, then are
    # added as if they shared one
    "tile_max_part_of_wave": ("for (u32 o = LPK; o < WAVE_SIZE; o <<= 1) mt = f_max(mt, shfl_xor(mt, o));",
                              "for (u32 o = LPK; o < WAVE_SIZE / 2; o <<= 1) mt = f_max(mt, shfl_xor(mt, o));"),
    # the next tile's K is fetched from this tile's rows
    "prefetch_k_wrong_rows": ("dec_rows(off, block_table, kn, k_end", "dec_rows(off, block_table, k0, k_end", LONG),
    # the next tile's V is never fetched: the wave reuses this tile's V
    "prefetch_v_missing": ("if (kn < k_end) dec_fetch(vr, v_cache, off);", "if (kn < 0u) dec_fetch(vr, v_cache, off);", LONG),
    # the output is not rescaled when the running max grows
    "pv_alpha_missing": ("for (u32 i = 0; i < 8; ++i) acc[h][i] *= al[h];", "for (u32 i = 0; i < 8; ++i) acc[h][i] *= 1.0f;", LONG),
    # the row sums of the wave's key groups are not added
    "key_groups_l_not_added": ("l[h] += shfl_xor(l[h], o);", "l[h] += 0.0f * shfl_xor(l[h], o);"),
    # the waves' outputs are merged without their weights exp(m_w - m)
    "wave_merge_unweighted": ("t = f_fma(f_exp(mv - mx), sm.o[", "t = f_fma(1.0f, sm.o["),
    # the last key of every step is masked out
    "last_key_masked": ("s[r][h] = k0 + r * KPW + lane_id() / LPK < k_end ?", "s[r][h] = k0 + r * KPW + lane_id() / LPK + 1 < k_end ?"),
    # a full row tile drops its last head
    "last_head_dropped": ("const u32 live = group - g0 < BQ ? group - g0 : BQ;",
                          "const u32 live = group - g0 < BQ ? group - g0 : BQ - 1;"),
    # the slot inside a power-of-two page is off by one (wrapping inside the page: no out-of-bounds read)
    "page_slot_wrong": ("slot = pow2 ? key & (ps - 1u) : key % ps", "slot = pow2 ? (key + 1u) & (ps - 1u) : key % ps"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_property_test_catches_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    """Each plausible mistake above, rendered into the real f16 decode kernel, fails the property."""
    old, new, *draw = MUTANTS[mutant]
    assert_property_catches(emu_kctx, "attn_decode", {"head_dim": HEAD_DIM["f16"], "kv": "f16"}, (old, new),
                            lambda ctx, data: check_attn_decode(ctx, "f16", data, **(draw[0] if draw else {})),
                            tmp_path, monkeypatch, max_examples=40)


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


# ---- combine=True: attn_decode merges its own splits (one launch) ----------------------------------
# The last block of each (KV head, row tile) merges; its counter must be back at 0 after every launch
# (a captured graph replays on the same counters with no memset), so every check runs the kernel
# twice on one counter buffer, zeroed once as lowering's is. The device-scope fences around the
# counter (attn_decode.hip.j2, dec_last_block) are not testable on the emulator: its blocks are OS
# threads on x86, whose stores are never reordered with later stores, so a missing fence still
# passes there; the memory-ordering argument is in the template.
def merged(kctx, kv, c, quant="none", runs=2):
    """The merged variant run `runs` times on the same counters: per run, its outputs (o, or xq and
    xd) and the counters after it. Outputs and partials start as NaN / junk every run."""
    from forge.codegen.specs.attn_decode import counters
    n_heads, d = c["q"].shape
    ns, nkv = c["ns"], c["n_kv_heads"]
    dev = kctx.device
    kernel = kctx.dispatcher.get("attn_decode", head_dim=d, kv=kv, combine=True, quant=quant)
    n_count = counters(n_heads, nkv)
    count = dev.alloc(4 * n_count)
    dev.upload(count, np.zeros(n_count, np.uint32))
    outs = ({"xq": np.full((1, n_heads * d), 99, np.int8), "xd": np.full((1, n_heads * d // 32, 2), 7.0, np.float32)}
            if quant == "q8" else {"o": np.full((n_heads, d), np.nan, np.float32)})
    arrays = {"q": c["q"], "k_cache": c["k_st"], "v_cache": c["v_st"], "block_table": c["table"],
              "part_o": np.full((ns, n_heads, d), np.nan, np.float32),
              "part_ml": np.full((ns, n_heads, 2), np.nan, np.float32),
              "kv_len": np.array([c["kv_len"]], np.int32), **outs}
    scalars = {"n_heads": n_heads, "n_kv_heads": nkv, "page_size": c["page_size"], "scale": c["scale"]}
    results = []
    try:
        for _ in range(runs):
            bufs = {}
            for name, arr in arrays.items():
                bufs[name] = dev.alloc(max(arr.nbytes, 1))
                dev.upload(bufs[name], np.ascontiguousarray(arr))
            kernel(*[count if a.name == "count" else bufs[a.name] if a.is_ptr else scalars[a.name] for a in kernel.args],
                   n_splits=ns, n_heads=n_heads, n_kv_heads=nkv)
            dev.synchronize()
            got = {k: np.frombuffer(dev.download(bufs[k], v.nbytes), v.dtype).reshape(v.shape).copy()
                   for k, v in outs.items()}
            got["count"] = np.frombuffer(dev.download(count, 4 * n_count), np.uint32).copy()
            results.append(got)
            for b in bufs.values():
                dev.free(b)
    finally:
        dev.free(count)
    return results


def check_merged(kctx, kv, data, min_len=1, max_splits=40):
    """The merged variant's o against the oracle (the same bound as decode + combine), on both runs
    of one counter buffer, bit-identical between them, every counter back at 0 after each. Up to 40
    splits (past the merge's 32-split chunk; many of them empty at short contexts), 1-3 row tiles."""
    c = draw_step(kv, data, min_len, max_splits)
    runs = merged(kctx, kv, c)
    err, bound = step_error(c, runs[0]["o"])
    same = np.array_equal(runs[0]["o"], runs[1]["o"], equal_nan=True)
    zeroed = all(not r["count"].any() for r in runs)
    assert zeroed and same and np.all(err <= bound), (
        f"counters {[r['count'].tolist() for r in runs]}" if not zeroed else "runs differ" if not same
        else float(np.nanmax(err - bound)) if not np.isnan(err).any() else "o unwritten (NaN)")


@pytest.mark.parametrize("kv", KV_DTYPES)
@given(data=st.data())
def test_attn_decode_merged(gpu_kctx, kv, data):
    check_merged(gpu_kctx, kv, data)


def check_merged_q8(kctx, data, kv="f16"):
    """combine + quant q8: the 8-bit blocks equal the quantize_q8 oracle applied to the plain merged
    variant's o of the same step on the same device, bit for bit (the merge is the same code and
    deterministic; quantization is exact given o); counters back at 0 after both runs."""
    c = draw_step(kv, data, max_splits=40)
    plain = merged(kctx, kv, c, runs=1)[0]["o"]
    runs = merged(kctx, kv, c, quant="q8")
    assert all(not r["count"].any() for r in runs), [r["count"].tolist() for r in runs]
    for r in runs:
        assert_blocks_of(r["xq"], r["xd"], plain.reshape(1, -1))


@pytest.mark.parametrize("kv", ["f16", "q8_0"])  # head_dim 64 and 256: multiples of 32
@given(data=st.data())
def test_attn_decode_merged_q8(gpu_kctx, kv, data):
    check_merged_q8(gpu_kctx, data, kv)


MERGED_MUTANTS = {
    # the last block leaves its counter where it is: the next launch never finds a last block
    "counter_not_reset": ("if (tid_x() == 0) *cnt = 0u;", "if (tid_x() == 0) *cnt = *cnt;"),
    # the last-block test off by one: the next-to-last block merges (before the last block's
    # partials are there) and resets; the last one's increment is left in the counter
    "last_block_off_by_one": ("sm.last = before == ns - 1u ? 1u : 0u;", "sm.last = before == ns - 2u ? 1u : 0u;"),
    # a merge chunk drops its last split
    "merge_drops_a_split": ("const u32 nc = ns - s0 < CH ? ns - s0 : CH;", "const u32 nc = ns - s0 < CH ? ns - s0 - 1u : CH;"),
    # the merge's max over the splits stops short of the last lanes' splits (wave max over half the wave)
    "merge_max_misses_splits": ("for (u32 s = lane_id(); s < ns; s += WAVE_SIZE)", "for (u32 s = lane_id(); s + 1u < ns; s += WAVE_SIZE)"),
}


@pytest.mark.parametrize("mutant", sorted(MERGED_MUTANTS))
def test_property_test_catches_merged_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    """Each mistake above, rendered into the merged f16 kernel, fails the merged property."""
    assert_property_catches(emu_kctx, "attn_decode", {"head_dim": HEAD_DIM["f16"], "kv": "f16", "combine": True},
                            MERGED_MUTANTS[mutant], lambda ctx, data: check_merged(ctx, "f16", data), tmp_path,
                            monkeypatch, max_examples=30)


def test_property_test_catches_merged_q8_block_index(emu_kctx, tmp_path, monkeypatch):
    mutation = ("xq + c, xd + c / 32u * 2u", "xq + c, xd + e / 32u * 2u")  # every tile's scales at tile 0's
    assert_property_catches(emu_kctx, "attn_decode", {"head_dim": HEAD_DIM["f16"], "kv": "f16", "combine": True,
                                                      "quant": "q8"},
                            mutation, check_merged_q8, tmp_path, monkeypatch, max_examples=30)
