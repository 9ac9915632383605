"""flash_attn (prefill over the paged cache) vs float64 attention over exactly the K/V the cache
holds (tests/oracles/attention.py decodes the stored rows), so every storage dtype shares one
tolerance, attention_bound_tiled: the float32 error of the scores, the online softmax over key
tiles and the P.V sums, per key and per output element (derived in the oracle). What storing K/V
in f16/fp8/q8_0 costs is kv_append's test's business (exact bytes, or the storage step).

Values: gaussian, or "dyadic": q and k short multiples of 1/4 (their float32 dot products are
exact) and one nonzero per V row, so the bound is down to the softmax's own few ulp per weight and a
wrong exp (say exp2 with a truncated log2(e)) is caught. Shapes: GQA ratios 1..8, query counts and
contexts that are not multiples of the 16-row/32-key tiles, 1-token contexts, causal and not with
n_past, page sizes 1..16 with shuffled pages and random bytes everywhere outside the context."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from forge.codegen.spec import get_spec
from tests.oracles.attention import KV_DTYPES, attention, attention_bound_tiled, paged_kv, shuffled_pages

# Two head dims per storage dtype keep the emulator's compiles to 8 variants per wave size while
# every head dim (64, 80, 96, 128, 256) and every storage dtype is exercised (q8_0 has no 80).
VARIANTS = [(64, "f32"), (80, "f32"), (96, "f16"), (128, "f16"), (256, "fp8"), (64, "fp8"),
            (128, "q8_0"), (96, "q8_0")]


HOST_KEY_TILE = 16  # keys per online-softmax step of the host kernel: HV of templates/common/host_vec.h


def key_tile(arch, d: int) -> int:
    """Keys per online-softmax step (each adds a rescale to the bound): the GPU template's BK, the
    host kernel's vector width."""
    return get_spec("flash_attn").tiles({"head_dim": d})[1] if arch.is_gpu_semantics else HOST_KEY_TILE


def draw_case(data, d):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n_kv_heads, group = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 8))
    n_q = data.draw(st.one_of(st.sampled_from([1, 15, 16, 17, 33]), st.integers(1, 40)))
    n_past = data.draw(st.one_of(st.just(0), st.integers(0, 40)))
    if d == 256:  # the emulator is slowest here: a smaller case, the same tails
        n_q, group = min(n_q, 17), min(group, 4)
    kv_len = n_past + n_q
    vmag = data.draw(st.sampled_from([1e-2, 1.0, 1e2]))
    if data.draw(st.booleans(), label="dyadic"):
        q = (rng.integers(-8, 9, (n_q, n_kv_heads * group, d)) / 4).astype(np.float32)
        k = (rng.integers(-8, 9, (kv_len, n_kv_heads, d)) / 4).astype(np.float32)
        v = np.zeros((kv_len, n_kv_heads, d), np.float32)  # one nonzero per row, in a random column
        idx = np.indices(v.shape[:2])
        v[idx[0], idx[1], rng.integers(0, d, v.shape[:2])] = rng.standard_normal(v.shape[:2]) * vmag
    else:
        mag = data.draw(st.sampled_from([0.1, 1.0, 3.0]))
        q = (rng.standard_normal((n_q, n_kv_heads * group, d)) * mag).astype(np.float32)
        k = (rng.standard_normal((kv_len, n_kv_heads, d)) * mag).astype(np.float32)
        v = (rng.standard_normal((kv_len, n_kv_heads, d)) * vmag).astype(np.float32)
    scale = data.draw(st.sampled_from([1 / np.sqrt(d), 0.5]))
    page_size = data.draw(st.sampled_from([1, 7, 16]))
    return rng, q, k, v, float(np.float32(scale)), n_past, page_size


def run_flash(kctx, kv, causal, q, k_st, v_st, table, page_size, kv_len, n_past, scale, n_kv_heads):
    n_q, n_heads, d = q.shape
    args = {"q": q, "k_cache": k_st, "v_cache": v_st, "block_table": table, "o": np.full_like(q, np.nan),
            "n_q": n_q, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "page_size": page_size,
            "kv_len": kv_len, "n_past": n_past, "causal": int(causal), "scale": scale}
    return run_kernel(kctx, "flash_attn", {"head_dim": d, "kv": kv}, args, ["o"],
                      n_q=n_q, n_heads=n_heads, n_kv_heads=n_kv_heads)["o"]


def check(kctx, kv, causal, q, k, v, scale, n_past, page_size, rng):
    kv_len, n_kv_heads = k.shape[0], k.shape[1]
    n_pages, table = shuffled_pages(kv_len, page_size, rng)
    k_st, v_st, kq, vq = paged_kv(k, v, kv, page_size, table, n_pages, rng)
    got = run_flash(kctx, kv, causal, q, k_st, v_st, table, page_size, kv_len, n_past, scale, n_kv_heads)
    ref = attention(q, kq, vq, scale, causal, n_past)
    bound = attention_bound_tiled(q, kq, vq, scale, causal, n_past, key_tile(kctx.arch, q.shape[-1]))
    err = np.abs(got.astype(np.float64) - ref)
    assert np.all(err <= bound), float(np.max(err - bound))  # NaN (an unwritten output) fails too


def check_flash(kctx, d, kv, data):
    """The property: one drawn case agrees with the oracle (the mutant test below uses it too)."""
    rng, q, k, v, scale, n_past, page_size = draw_case(data, d)
    check(kctx, kv, data.draw(st.booleans(), label="causal"), q, k, v, scale, n_past, page_size, rng)


@pytest.mark.parametrize("d,kv", VARIANTS, ids=[f"{kv}-d{d}" for d, kv in VARIANTS])
@given(data=st.data())
def test_flash_attn(kctx, d, kv, data):
    check_flash(kctx, d, kv, data)


# Plausible mistakes in the shared attention code, rendered into flash_attn's real source; the
# property test must catch each at both wave sizes.
MUTANTS = {
    # the causal mask lets a row see one key too few
    "mask_off_by_one": ("if ((i64)(k0 + j) <= (i64)sm->last[r]) {", "if ((i64)(k0 + j) < (i64)sm->last[r]) {"),
    # the last, partial key tile is skipped
    "tail_tile_dropped": ("for (u32 k0 = k_begin; k0 < k_end; k0 += BK) {",
                          "for (u32 k0 = k_begin; k0 + BK <= k_end; k0 += BK) {"),
    # the accumulator is not rescaled when the running max grows
    "no_rescale": ("float o = acc[t] * sm->alpha[r];", "float o = acc[t];"),
    # GQA: a query head reads the wrong KV head's group slot
    "gqa_head_map": ("const u64 head = kvh * group + rr % group;\n    sm.q",
                     "const u64 head = kvh + rr % group;\n    sm.q"),
    # no barrier between decoding the K/V tile and the scores that read it
    "tile_barrier_removed": ("page_size);\n    sync_threads();\n    attn_scores", "page_size);\n    attn_scores"),
    # exp as exp2 with log2(e) truncated to 1.4427f: each weight off by 3.4e-6 * (m - s_j), some
    # 60 ulp where it matters (it survived the old bound, ~1000x looser than a correct kernel's error)
    "exp2_truncated_log2e": ("s[j] = f_exp(s[j] - mn);", "s[j] = f_exp2((s[j] - mn) * 1.4427f);"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_property_test_catches_mutant(emu_kctx, mutant, tmp_path, monkeypatch):
    assert_property_catches(emu_kctx, "flash_attn", {"head_dim": 64, "kv": "f16"}, MUTANTS[mutant],
                            lambda ctx, data: check_flash(ctx, 64, "f16", data), tmp_path, monkeypatch,
                            max_examples=30)


@pytest.mark.parametrize("kv", KV_DTYPES)
def test_one_token_context(kctx, kv):
    """One query, one key, every dtype and both masks: the output is that key's V row (as stored)."""
    d = {"f32": 80, "f16": 96, "fp8": 64, "q8_0": 96}[kv]
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, n, d)).astype(np.float32) for n in (3, 1, 1))
    for causal in (False, True):
        check(kctx, kv, causal, q, k, v, 0.125, 0, 16, rng)


@pytest.mark.parametrize("d,kv", [(128, "f16"), (128, "q8_0")])
def test_page_order_does_not_matter(kctx, d, kv):
    """The same K/V behind two different page permutations gives bit-identical outputs."""
    rng = np.random.default_rng(7)
    q = rng.standard_normal((19, 6, d)).astype(np.float32)
    k, v = (rng.standard_normal((45, 2, d)).astype(np.float32) for _ in "kv")
    for causal in (False, True):
        outs = []
        for order_seed in (1, 2):
            n_pages, table = shuffled_pages(45, 4, np.random.default_rng(order_seed), spare=5)
            k_st, v_st, _, _ = paged_kv(k, v, kv, 4, table, n_pages, rng)
            outs.append(run_flash(kctx, kv, causal, q, k_st, v_st, table, 4, 45, 26, 0.125, 2))
        assert not np.array_equal(*[shuffled_pages(45, 4, np.random.default_rng(s), spare=5)[1] for s in (1, 2)])
        np.testing.assert_array_equal(outs[0], outs[1])


def test_causal_is_not_full_attention(kctx):
    """Guards the oracle comparison itself: causal and non-causal outputs differ where the mask
    hides keys, and agree on the last query, which sees every key."""
    d, rng = 64, np.random.default_rng(3)
    q = rng.standard_normal((5, 2, d)).astype(np.float32)
    k, v = (rng.standard_normal((9, 1, d)).astype(np.float32) for _ in "kv")
    n_pages, table = shuffled_pages(9, 16, rng)
    k_st, v_st, _, _ = paged_kv(k, v, "f32", 16, table, n_pages, rng)
    full = run_flash(kctx, "f32", False, q, k_st, v_st, table, 16, 9, 4, 0.125, 1)
    masked = run_flash(kctx, "f32", True, q, k_st, v_st, table, 16, 9, 4, 0.125, 1)
    assert np.all(np.abs(full[:-1] - masked[:-1]).max(axis=-1) > 1e-3)
    np.testing.assert_allclose(full[-1], masked[-1], rtol=1e-5, atol=1e-6)


def test_heads_must_divide():
    from forge.arch import emu_arch
    from forge.codegen.spec import get_spec
    from forge.errors import SpecError
    v = get_spec("flash_attn").variant(emu_arch(32), head_dim=64, kv="f16")
    with pytest.raises(SpecError, match="must divide"):
        v.launch(emu_arch(32), n_q=3, n_heads=6, n_kv_heads=4)
