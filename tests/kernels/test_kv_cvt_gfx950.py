"""gfx950's KV conversions on the cvt_scalef32 instructions (mx_cvt), on emu-gfx950 where
common/mx_emu.h.j2 emulates them bit-exactly: the same rows and pages through emu-gfx950 (the
builtins: mxfp6's 2xpk16_fp6_f32 encode and pk32_f32_fp6 decodes, fp8's pk_f32_fp8 decodes) and
through emu64 (the portable bit operations, the same wave size) must give bit-identical bytes
(kv_append) and bit-identical attention outputs (flash_attn through kv_load, attn_decode through its
segment loads), and the bytes must be the oracle's (forge.quant.mx for mxfp6). The conversions
take exact inputs (values pre-scaled by a power of two, clamped to E2M3's max) and produce exact
outputs (a code's value times a power of two), so identity, not a tolerance, is the property."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.strategies import arrays
from tests.kernels.test_gemm import emulator_target
from tests.kernels.test_kv_append import MXFP6_SPECIAL_ROWS, append, tie_rows
from tests.oracles.attention import kv_encode, paged_kv, place, shuffled_pages

CVT_DTYPES = ("fp8", "mxfp6")


@pytest.fixture(scope="module")
def cvt_ctx(request):
    return emulator_target(request, "emu-gfx950")


@pytest.fixture(scope="module")
def plain_ctx(request):
    return emulator_target(request, "emu64")


def draw_rows(data, kv, n_tok, heads, d, rng):
    """K or V rows: random at a drawn magnitude, rows on rounding decisions, or the special rows."""
    kind = data.draw(st.sampled_from(["random", "ties", "specials"]), label="rows")
    x = data.draw(arrays((n_tok, heads, d), np.float32, scale=data.draw(st.sampled_from([1e-3, 1.0, 1e3]))))
    if kind == "ties":
        x = tie_rows(x, kv, rng)
    elif kind == "specials":
        specials = np.array(MXFP6_SPECIAL_ROWS, np.float32)  # 48 wide: tiled to d
        flat = x.reshape(-1, d)
        for r in range(len(flat)):
            if rng.random() < 0.5:
                flat[r] = np.resize(specials[rng.integers(len(specials))], d)
    return x


def check_append(cvt, plain, kv, data):
    """One drawn append on both targets: equal bytes, and the oracle's."""
    heads, d = data.draw(st.integers(1, 2)), data.draw(st.sampled_from([16, 48, 64, 80, 128, 256]))
    n_tok, page_size = data.draw(st.integers(1, 6)), data.draw(st.sampled_from([1, 4]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    pos = np.arange(n_tok, dtype=np.int32)
    n_pages, table = shuffled_pages(n_tok, page_size, rng)
    rb = kv_encode(np.zeros((1, d), np.float32), kv).shape[-1]
    k_st, v_st = (rng.integers(0, 256, (n_pages, heads, page_size, rb), dtype=np.uint8) for _ in "kv")
    k, v = (draw_rows(data, kv, n_tok, heads, d, rng) for _ in "kv")
    if kv == "fp8":  # the fp8 row scale treats Inf as its own case; NaN/Inf rows are test_fp8_specials'
        k, v = np.nan_to_num(k, posinf=448.0, neginf=-448.0), np.nan_to_num(v, posinf=1.0, neginf=-1.0)
    got = append(cvt, kv, k, v, pos, table, page_size, k_st, v_st)
    ref = append(plain, kv, k, v, pos, table, page_size, k_st, v_st)
    for g, r, x in zip(got, ref, (k, v)):
        np.testing.assert_array_equal(g, r)
        np.testing.assert_array_equal(g, place(kv_encode(x, kv), table, page_size, k_st if x is k else v_st, pos))


@pytest.mark.parametrize("kv", CVT_DTYPES)
@given(data=st.data())
def test_kv_append_cvt_is_portable(cvt_ctx, plain_ctx, kv, data):
    check_append(cvt_ctx, plain_ctx, kv, data)


def run_attention(ctx, family, kv, q, k_st, v_st, table, page_size, kv_len, n_kv_heads):
    """flash_attn (all queries at the context's end, not causal) or attn_decode (one query, one
    split) over the stored pages; the output rows."""
    n_q, n_heads, d = q.shape
    if family == "flash_attn":
        args = {"q": q, "k_cache": k_st, "v_cache": v_st, "block_table": table, "o": np.full_like(q, np.nan),
                "n_q": n_q, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "page_size": page_size,
                "kv_len": kv_len, "n_past": kv_len - n_q, "causal": 0, "scale": 0.125}
        return run_kernel(ctx, "flash_attn", {"head_dim": d, "kv": kv}, args, ["o"],
                          n_q=n_q, n_heads=n_heads, n_kv_heads=n_kv_heads)["o"]
    args = {"q": q[0], "k_cache": k_st, "v_cache": v_st, "block_table": table,
            "part_o": np.full((1, n_heads, d), np.nan, np.float32), "part_ml": np.full((1, n_heads, 2), np.nan, np.float32),
            "n_heads": n_heads, "n_kv_heads": n_kv_heads, "page_size": page_size,
            "kv_len": np.array([kv_len], np.int32), "scale": 0.125}
    out = run_kernel(ctx, "attn_decode", {"head_dim": d, "kv": kv}, args, ["part_o", "part_ml"],
                     n_splits=1, n_heads=n_heads, n_kv_heads=n_kv_heads)
    return np.concatenate([out["part_o"], out["part_ml"]], axis=-1)


def check_attention(cvt, plain, family, kv, data, d=None):
    """The same stored pages read on both targets: bit-identical outputs, finite where the rows are.
    d: pin the head dim (a mutant's variant), else drawn. flash_attn runs at 256 only, its scalar path
    on both targets; at 64-128 gfx950's MFMA path reads K/V through the same kv_load and is held to
    the f16 bound by tests/kernels/test_flash_attn.py, not bit for bit."""
    if family == "flash_attn":  # 256: the scalar path on both targets (gfx950's f16 MFMA path takes 64-128
        d = 256                  # and rounds Q, K, P, V to f16), so only the KV decodes differ
    d = d or data.draw(st.sampled_from([64, 80, 128, 256]), label="d")
    n_kv, group = data.draw(st.integers(1, 2)), data.draw(st.sampled_from([1, 4]))
    kv_len, page_size = data.draw(st.integers(1, 40), label="kv_len"), data.draw(st.sampled_from([4, 16]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n_q = 1 if family == "attn_decode" else min(kv_len, data.draw(st.integers(1, 3)))
    q = rng.standard_normal((n_q, n_kv * group, d)).astype(np.float32)
    k, v = (rng.standard_normal((kv_len, n_kv, d)).astype(np.float32) * 10.0 ** rng.integers(-3, 3) for _ in "kv")
    n_pages, table = shuffled_pages(kv_len, page_size, rng)
    k_st, v_st, _, _ = paged_kv(k, v, kv, page_size, table, n_pages, rng)
    got = run_attention(cvt, family, kv, q, k_st, v_st, table, page_size, kv_len, n_kv)
    ref = run_attention(plain, family, kv, q, k_st, v_st, table, page_size, kv_len, n_kv)
    assert np.all(np.isfinite(ref))
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("family", ["flash_attn", "attn_decode"])
@pytest.mark.parametrize("kv", CVT_DTYPES)
@given(data=st.data())
def test_attention_cvt_reads_are_portable(cvt_ctx, plain_ctx, family, kv, data):
    check_attention(cvt_ctx, plain_ctx, family, kv, data)


# Plausible slips in the gfx950 branches, each rendered into the emu-gfx950 variant (mx_emu.h.j2
# executes the builtins) and caught by the identity with the portable path; and slips in the
# portable decodes, rendered into the emu64 variant and caught the same way.
CVT_MUTANTS = {
    # the 2xpk16 encode's interleave ignored: elements 1 and 2 swap fields
    ("emu-gfx950", "kv_append", "mxfp6", "interleave"): ("s0[0] = yc, s1[0] = y1, s0[1] = y2, s1[1] = y3;",
                                                         "s0[0] = yc, s0[1] = y1, s1[0] = y2, s1[1] = y3;"),
    # kv_load hands the pk32 decode a code without its sign bit
    ("emu-gfx950", "flash_attn", "mxfp6", "sign_dropped"): ("w[0] = fp6_field(row, i);", "w[0] = fp6_field(row, i) & 31u;"),
    # kv_load's fp8 word select off by a factor of two
    ("emu-gfx950", "flash_attn", "fp8", "word_sel"): ("(i / 2) % 2 ? __builtin", "(i / 4) % 2 ? __builtin"),
    # attn_decode's fp8 fetch (4 codes) decodes its low word twice
    ("emu-gfx950", "attn_decode", "fp8", "word_swap"): ("pk_f32_fp8(r.c, r.sc, true)", "pk_f32_fp8(r.c, r.sc, false)"),
    # attn_decode's mxfp6 segment loses the top byte of its second word
    ("emu-gfx950", "attn_decode", "mxfp6", "seg_words"): ("w[0] = r.lo, w[1] = r.hi;", "w[0] = r.lo, w[1] = r.hi & 0xffu;"),
    # the portable 6-bit field read misses the straddle of fields at bit 4 of a byte (e.g. field 2, bits 12..17)
    ("emu64", "flash_attn", "mxfp6", "straddle"): ("b % 8u > 2u ?", "b % 8u > 4u ?"),
    # the portable segment decode takes field 5's high bits from the wrong place
    ("emu64", "attn_decode", "mxfp6", "seg_straddle"): ("(r.hi << 2)", "(r.hi << 1)"),
}
MUTANT_D = {"flash_attn": 256, "attn_decode": 64}  # the mutants' variants' head dims (check_attention's)


@pytest.mark.parametrize("target,family,kv,mutant", sorted(CVT_MUTANTS), ids=["-".join(k[1:]) for k in sorted(CVT_MUTANTS)])
def test_cvt_identity_catches_mutant(cvt_ctx, plain_ctx, target, family, kv, mutant, tmp_path, monkeypatch):
    mutated, other = (cvt_ctx, plain_ctx) if target == "emu-gfx950" else (plain_ctx, cvt_ctx)
    if family == "kv_append":
        params = {"kv": kv, "block": 128}
        check = lambda ctx, data: check_append(ctx, other, kv, data) if target == "emu-gfx950" else check_append(other, ctx, kv, data)  # noqa: E731
    else:
        params = {"head_dim": MUTANT_D[family], "kv": kv}
        check = lambda ctx, data: (check_attention(ctx, other, family, kv, data, MUTANT_D[family])  # noqa: E731
                                   if target == "emu-gfx950" else check_attention(other, ctx, family, kv, data,
                                                                                  MUTANT_D[family]))
    # The reference target's kernel is loaded before FORGE_OVERRIDE_DIR is set: both targets name
    # the variant alike, so compiled later it would be built from the mutated source too.
    other.dispatcher.get(family, **params)
    assert_property_catches(mutated, family, params, CVT_MUTANTS[target, family, kv, mutant], check, tmp_path,
                            monkeypatch, max_examples=30)
