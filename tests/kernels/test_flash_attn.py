"""flash_attn (prefill over the paged cache) vs float64 attention over exactly the K/V the cache
holds (tests/oracles/attention.py decodes the stored rows), so every storage dtype shares one
tolerance, attention_bound_tiled: the float32 error of the scores, the online softmax over key
tiles and the P.V sums, per key and per output element (derived in the oracle). What storing K/V
in f16/fp8/q8_0 costs is kv_append's test's business (exact bytes, or the storage step).

Values: gaussian, or "dyadic": q and k short multiples of 1/4 (their float32 dot products are
exact) and one nonzero per V row, so the bound is down to the softmax's own few ulp per weight and a
wrong exp (say exp2 with a truncated log2(e)) is caught. Shapes: GQA ratios 1..8, query counts and
contexts that are not multiples of the 16-row/32-key tiles, 1-token contexts, causal and not with
n_past, page sizes 1..16 with shuffled pages and random bytes everywhere outside the context.

The matrix paths (specs/flash_attn.py path(): mma.sync on emu-sm90, WMMA on emu-gfx1100, the f16
MFMA on emu-gfx950 (wave64), head dims 64-128) round Q, K, P and V to f16 and multiply on the
emulated instruction; attention_bound_f16 below derives their bound, and the property runs on the
three emulator targets (mma_ctx, wmma_ctx, mfma_ctx). On
mma.sync the kernel version (the spec's v: 2 keeps S in registers, double-buffers K/V) is drawn,
and pinned to 2 in test_flash_attn_mma_sync_v2 and V2_MUTANTS."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.kernels.harness import run_kernel
from tests.kernels.mutants import assert_property_catches
from tests.kernels.test_gemm import emulator_target
from forge.codegen.spec import get_spec
from forge.codegen.specs.flash_attn import MMA_HEAD_DIMS, rounds_to_f16
from tests.oracles.attention import (EXP_ULP, KV_DTYPES, _EXACT_ABSDOT, _dyadic, attention, attention_bound_tiled,
                                     paged_kv, shuffled_pages)

# Two head dims per storage dtype (one for mxfp6) keep the emulator's compiles to 9 variants per wave size while
# every head dim (64, 80, 96, 128, 256) and every storage dtype is exercised (q8_0 has no 80).
VARIANTS = [(64, "f32"), (80, "f32"), (96, "f16"), (128, "f16"), (256, "fp8"), (64, "fp8"),
            (128, "q8_0"), (96, "q8_0"), (128, "mxfp6")]


HOST_KEY_TILE = 16  # keys per online-softmax step of the host kernel: HV of templates/common/host_vec.h


def key_tile(arch, d: int) -> int:
    """Keys per online-softmax step (each adds a rescale to the bound): the GPU template's BK, the
    host kernel's vector width."""
    return get_spec("flash_attn").arch_tiles({"head_dim": d}, arch)[1] if arch.is_gpu_semantics else HOST_KEY_TILE


UH = 2.0 ** -11  # f16 unit roundoff
EH = 2.0 ** -25  # f16's absolute rounding error below its smallest normal 2^-14 (half of 2^-24)
UA = 2.0 ** -21  # relative error allowed per addition inside the matrix unit (test_gemm.py's u_a)
F16_MAX = 65504.0


def q_row_exponent(q: np.ndarray) -> np.ndarray:
    """The kernel's per-row exponent e (templates/flash_attn/matrix.j2 fa_row_exponent): max|q_row|
    2^-e in [2^14, 2^15), 0 for a zero row, within [-100, 100]. q: [..., d] -> [...]."""
    amax = np.abs(q.astype(np.float64)).max(-1)
    e = np.frexp(amax)[1] - 15  # amax = f 2^E, f in [0.5, 1): floor(log2 amax) = E - 1
    return np.where(amax > 0, np.clip(e, -100, 100), 0)


def attention_bound_f16(q, k, v, scale: float, causal: bool, n_past: int, key_tile: int):
    """Per-element error bound [n_q, n_heads, d] of the matrix paths against `attention` over the
    same q, k, v (k, v: the values the cache holds), following attention_bound_tiled (the oracle's
    f32 bound, whose derivation this extends) with what f16 and the matrix unit add.

    Roundings, with u_h = 2^-11, e_h = 2^-25 (f16's absolute error below 2^-14), u = 2^-24:
    - q^ = 2^e fl16(q 2^-e), e per row with max|q| 2^-e in [2^14, 2^15): |q^ - q| <= u_h |q| + e_q,
      e_q = e_h 2^e; k^ = fl16(k): |k^ - k| <= u_h |k| + e_h (0 for an f16 cache; |k| <= 65504).
    - A score is sum_d q^ k^ (products exact in f32: 11 x 11 bits) summed by the unit with relative
      error u_a = 2^-21 per addition (neither vendor documents its sums; test_gemm.py's reasoning),
      then times scale 2^e (2^e exact, one rounding). Per term |q^k^ - qk| <= (2u_h + u_h^2)|q||k|
      + (1 + u_h)(e_h |q| + e_q |k|) + e_q e_h, so with A_j = sum|q||k_j| and gamma_d(u_a):
        D_j = scale ((gamma_d + (1 + gamma_d)(2u_h + u_h^2)) A_j
              + (1 + gamma_d)((1 + u_h)(e_h sum|q| + e_q sum|k_j|) + d e_q e_h)) + 1.01 u |s_j|,
      or only 1.01 u |s_j| where q and k are dyadic, exact in f16 (after the row scaling) and
      A_j < 2^12: then every partial sum is an exact f32 (as in the f32 bound).
    - p^_j = fl16(exp(s'_j - m)): a relative u_h on top of the f32 bound's eps_j (exp, the
      subtractions, the rescales), eps''_j = (1 + eps_j)(1 + u_h) - 1, or below 2^-14 an absolute
      e_h, which at the row's final scale (exact weights w_j = exp(s_j - M) / L, L >= 1) is at most
      a_j = e_h / L. The row sum l adds the same p^_j, so the kernel's output is
      o' = sum_j p'_j v^_j / sum_j p'_j with p'_j = w_j (1 + eps''_j) + a_j, and exactly
        o' - o = sum_j (p'_j - w_j)(v_j - o) / sum_j p'_j + sum_j p'_j (v^_j - v_j) / sum_j p'_j.
      With P_j = w_j eps''_j + a_j and P = sum P_j: the first term is at most
      soft = sum_j P_j |v_j - o| / (1 - P), the second (v^ = fl16(v): u_h |v| + e_h) at most
      vround = (u_h sum_j (w_j + P_j)|v_j| + e_h (1 + P)) / (1 - P).
      These are worst cases (every rounding of a score the same way): with |q| ~ 3, d = 128 and
      scale 1/2, D_j reaches ~0.4 and P exceeds 1. Whatever P, o' is a convex combination of the
      v^_j (p'_j >= 0), so |o' - o| <= max_j |v_j - o| + u_h |v_j| + e_h caps both terms (hull).
    - f32 sums: P.V in the unit, n_t keys (every key of the walked tiles) plus T rescales per
      element: gamma_(n_t + T)(u_a) sum_j p'_j |v^_j| / sum p'_j; the row sum l and the division as
      in the f32 bound: (gamma_(n + 2T)(u) + u) |o'|, |o'| <= |o| + (soft + vround or hull).
    A 25 % margin covers the products of small terms."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    assert np.abs(k).max(initial=0) <= F16_MAX and np.abs(v).max(initial=0) <= F16_MAX, "K/V beyond f16's range"
    n_q, n_heads, d = q.shape
    n_kv, group = k.shape[0], q.shape[1] // k.shape[1]
    u = 2.0 ** -24
    gamma = lambda n, r=u: n * r / (1 - n * r)
    gd = gamma(d, UA)
    vis = np.ones((n_q, n_kv), bool)
    if causal:
        vis = np.arange(n_kv)[None, :] <= (n_past + np.arange(n_q))[:, None]
    tiles = -(-n_kv // key_tile)
    n_vis = vis.sum(1)
    eq_all = EH * 2.0 ** q_row_exponent(q)  # [n_q, n_heads]
    qe = q_row_exponent(q)[..., None]
    q_exact = np.all((q * 2.0 ** -qe).astype(np.float16).astype(np.float64) * 2.0 ** qe == q, axis=-1)
    k_exact = np.all(k.astype(np.float16).astype(np.float64) == k, axis=-1)  # [n_kv, n_kv_heads]
    out = np.zeros_like(q)
    for h in range(n_heads):
        qh, kh, vh = q[:, h], k[:, h // group], v[:, h // group]
        s = (qh @ kh.T) * scale
        aq, ak = np.abs(qh), np.abs(kh)
        absdot = aq @ ak.T
        eq = eq_all[:, h][:, None]
        dlt = scale * ((gd + (1 + gd) * (2 * UH + UH ** 2)) * absdot
                       + (1 + gd) * ((1 + UH) * (EH * aq.sum(1)[:, None] + eq * ak.sum(1)[None, :]) + d * eq * EH))
        exact = (_dyadic(qh) & q_exact[:, h])[:, None] & (_dyadic(kh) & k_exact[:, h // group])[None, :] \
            & (absdot < _EXACT_ABSDOT)
        dlt = np.where(exact, 0.0, dlt) + 1.01 * u * np.abs(s)
        s = np.where(vis, s, -np.inf)
        m = s.max(1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        e_s = np.where(vis, np.exp(s - m), 0.0)
        big_l = e_s.sum(1, keepdims=True)
        w = np.divide(e_s, big_l, out=np.zeros_like(e_s), where=big_l > 0)
        o = w @ vh
        dmax = np.where(vis, dlt, 0.0).max(1, keepdims=True)
        # (capped where it is meaningless anyway: past P = 1 only the hull below holds)
        eps = np.expm1(np.minimum(dlt + u * (np.where(vis, m - s, 0.0) + 2 * dmax) + (tiles + 1) * EXP_ULP * 2 * u, 50))
        eps2 = (1 + eps) * (1 + UH) - 1
        pj = np.where(vis, w * eps2 + 1.01 * EH / np.maximum(big_l, 1.0), 0.0)  # P_j
        ptot = pj.sum(1, keepdims=True)
        ok = ptot < 1  # else the first-order terms say nothing: only the convex-hull cap below holds
        den = np.where(ok, 1 - ptot, 1.0)
        soft = np.einsum("ij,ijc->ic", pj, np.abs(vh[None, :, :] - o[:, None, :])) / den
        wv = (w + pj) @ np.abs(vh)
        vround = (UH * wv + EH * (1 + ptot)) / den
        # o' is a convex combination of the v^_j: never further from o than the farthest of them.
        hull = np.where(vis[:, :, None], np.abs(vh[None, :, :] - o[:, None, :]) + UH * np.abs(vh)[None] + EH,
                        0.0).max(1)
        dev = np.where(ok, np.minimum(soft + vround, hull), hull)
        vabs = np.where(ok, ((1 + UH) * wv + EH * (1 + ptot)) / den, np.abs(o) + dev)  # sum_j p'_j |v^_j| / sum p'_j
        sums = gamma(tiles * key_tile + tiles, UA) * vabs + (gamma(n_vis + 2 * tiles)[:, None] + u) * (np.abs(o) + dev)
        out[:, h] = 1.25 * (dev + sums)
    return out + 1e-30


def flash_bound(arch, q, k, v, scale, causal, n_past):
    """The bound of the path flash_attn takes on `arch` for these head dims."""
    d = q.shape[-1]
    if arch.is_gpu_semantics and rounds_to_f16(arch, d):
        return attention_bound_f16(q, k, v, scale, causal, n_past, key_tile(arch, d))
    return attention_bound_tiled(q, k, v, scale, causal, n_past, key_tile(arch, d))


def draw_case(data, d, q_scales=(1.0,), pin=False):
    """One case. The gaussian branch's queries are multiplied by a factor drawn from q_scales (the
    matrix paths get 2^20 at times: f16's range must not limit them); `pin` skips the dyadic branch
    (a mutant test's way to draw the case its mutation shows in, instead of hoping hypothesis
    draws it)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n_kv_heads, group = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 8))
    n_q = data.draw(st.one_of(st.sampled_from([1, 15, 16, 17, 33]), st.integers(1, 40)))
    n_past = data.draw(st.one_of(st.just(0), st.integers(0, 40)))
    if d == 256:  # the emulator is slowest here: a smaller case, the same tails
        n_q, group = min(n_q, 17), min(group, 4)
    kv_len = n_past + n_q
    vmag = data.draw(st.sampled_from([1e-2, 1.0, 1e2]))
    if not pin and data.draw(st.booleans(), label="dyadic"):
        q = (rng.integers(-8, 9, (n_q, n_kv_heads * group, d)) / 4).astype(np.float32)
        k = (rng.integers(-8, 9, (kv_len, n_kv_heads, d)) / 4).astype(np.float32)
        v = np.zeros((kv_len, n_kv_heads, d), np.float32)  # one nonzero per row, in a random column
        idx = np.indices(v.shape[:2])
        v[idx[0], idx[1], rng.integers(0, d, v.shape[:2])] = rng.standard_normal(v.shape[:2]) * vmag
    else:
        mag = data.draw(st.sampled_from([0.1, 1.0, 3.0]))
        # at times queries far beyond f16's range (the matrix paths must scale them: 2^20 is exact)
        qmag = mag * (q_scales[0] if len(q_scales) == 1 else data.draw(st.sampled_from(q_scales), label="q_scale"))
        q = (rng.standard_normal((n_q, n_kv_heads * group, d)) * qmag).astype(np.float32)
        k = (rng.standard_normal((kv_len, n_kv_heads, d)) * mag).astype(np.float32)
        v = (rng.standard_normal((kv_len, n_kv_heads, d)) * vmag).astype(np.float32)
    scale = data.draw(st.sampled_from([1 / np.sqrt(d), 0.5]))
    page_size = data.draw(st.sampled_from([1, 7, 16]))
    return rng, q, k, v, float(np.float32(scale)), n_past, page_size


def versions(arch, d: int) -> list[int]:
    """The flash_attn versions (the spec's `v`) that exist for head dim d on `arch`: 2 only on mma.sync."""
    spec = get_spec("flash_attn")
    return [v for v in spec.space["v"] if spec.valid({"head_dim": d, "kv": "f16", "v": v}, arch)]


def run_flash(kctx, kv, causal, q, k_st, v_st, table, page_size, kv_len, n_past, scale, n_kv_heads, v=1):
    n_q, n_heads, d = q.shape
    args = {"q": q, "k_cache": k_st, "v_cache": v_st, "block_table": table, "o": np.full_like(q, np.nan),
            "n_q": n_q, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "page_size": page_size,
            "kv_len": kv_len, "n_past": n_past, "causal": int(causal), "scale": scale}
    return run_kernel(kctx, "flash_attn", {"head_dim": d, "kv": kv, "v": v}, args, ["o"],
                      n_q=n_q, n_heads=n_heads, n_kv_heads=n_kv_heads)["o"]


def check(kctx, kv, causal, q, k, v, scale, n_past, page_size, rng, version=1):
    kv_len, n_kv_heads = k.shape[0], k.shape[1]
    n_pages, table = shuffled_pages(kv_len, page_size, rng)
    k_st, v_st, kq, vq = paged_kv(k, v, kv, page_size, table, n_pages, rng)
    got = run_flash(kctx, kv, causal, q, k_st, v_st, table, page_size, kv_len, n_past, scale, n_kv_heads, version)
    ref = attention(q, kq, vq, scale, causal, n_past)
    bound = flash_bound(kctx.arch, q, kq, vq, scale, causal, n_past)
    err = np.abs(got.astype(np.float64) - ref)
    assert np.all(err <= bound), float(np.max(err - bound))  # NaN (an unwritten output) fails too


def check_flash(kctx, d, kv, data, q_scale=None, version=None):
    """The property: one drawn case agrees with the oracle (the mutant test below uses it too).
    q_scale: pin the gaussian branch with this query factor; version: pin the kernel version (else
    drawn from those the arch has: versions())."""
    # 2^20 only where Q is rounded to f16: the f32 paths have no range to test, and the scalar
    # bound (attention_bound_tiled) is not meant for scores of 1e5 (its first-order premise fails)
    scales = (1.0, 1.0, 1.0, 2.0 ** 20) if kctx.arch.is_gpu_semantics and rounds_to_f16(kctx.arch, d) else (1.0,)
    rng, q, k, v, scale, n_past, page_size = draw_case(data, d, (q_scale,) if q_scale else scales, q_scale is not None)
    version = version or data.draw(st.sampled_from(versions(kctx.arch, d)), label="v")
    check(kctx, kv, data.draw(st.booleans(), label="causal"), q, k, v, scale, n_past, page_size, rng, version)


@pytest.mark.parametrize("d,kv", VARIANTS, ids=[f"{kv}-d{d}" for d, kv in VARIANTS])
@given(data=st.data())
def test_flash_attn(kctx, d, kv, data):
    check_flash(kctx, d, kv, data)


@pytest.fixture(scope="module")
def mma_ctx(request):
    """The emulator carrying sm_90's features (emu-sm90): flash_attn's mma.sync path."""
    return emulator_target(request, "emu-sm90")


@pytest.fixture(scope="module")
def wmma_ctx(request):
    """The emulator carrying gfx1100's features (emu-gfx1100): flash_attn's WMMA path."""
    return emulator_target(request, "emu-gfx1100")


@pytest.fixture(scope="module")
def mfma_ctx(request):
    """The emulator carrying gfx950's features (emu-gfx950, wave64): flash_attn's MFMA path."""
    return emulator_target(request, "emu-gfx950")


MATRIX_VARIANTS = [(d, kv) for d, kv in VARIANTS if d in MMA_HEAD_DIMS]


@pytest.mark.parametrize("d,kv", MATRIX_VARIANTS, ids=[f"{kv}-d{d}" for d, kv in MATRIX_VARIANTS])
@given(data=st.data())
def test_flash_attn_mma_sync(mma_ctx, d, kv, data):
    check_flash(mma_ctx, d, kv, data)


@pytest.mark.parametrize("d,kv", MATRIX_VARIANTS, ids=[f"{kv}-d{d}" for d, kv in MATRIX_VARIANTS])
@given(data=st.data())
def test_flash_attn_mma_sync_v2(mma_ctx, d, kv, data):
    """The second mma.sync version pinned (the test above draws it half the time): every head dim and
    KV dtype at full example count, contexts of several key tiles (double buffer, rescales)."""
    check_flash(mma_ctx, d, kv, data, version=2)


@pytest.mark.parametrize("d,kv", MATRIX_VARIANTS, ids=[f"{kv}-d{d}" for d, kv in MATRIX_VARIANTS])
@given(data=st.data())
def test_flash_attn_wmma(wmma_ctx, d, kv, data):
    check_flash(wmma_ctx, d, kv, data)


@pytest.mark.parametrize("d,kv", MATRIX_VARIANTS, ids=[f"{kv}-d{d}" for d, kv in MATRIX_VARIANTS])
@given(data=st.data())
def test_flash_attn_mfma(mfma_ctx, d, kv, data):
    check_flash(mfma_ctx, d, kv, data)


def test_matrix_paths_round_to_f16(mma_ctx, wmma_ctx, mfma_ctx):
    """Guards the choice of bound: the matrix paths really carry f16's error (well over the f32
    bound), so the property above judges the instruction, not a scalar fallback."""
    rng = np.random.default_rng(5)
    q = rng.standard_normal((40, 4, 128)).astype(np.float32)
    k, v = (rng.standard_normal((40, 2, 128)).astype(np.float32) for _ in "kv")
    n_pages, table = shuffled_pages(40, 16, rng)
    k_st, v_st, kq, vq = paged_kv(k, v, "f32", 16, table, n_pages, rng)
    f32_bound = attention_bound_tiled(q, kq, vq, 0.125, True, 0, 32)
    for ctx, version in ((mma_ctx, 1), (mma_ctx, 2), (wmma_ctx, 1), (mfma_ctx, 1)):
        assert rounds_to_f16(ctx.arch, 128)
        got = run_flash(ctx, "f32", True, q, k_st, v_st, table, 16, 40, 0, 0.125, 2, version)
        err = np.abs(got - attention(q, kq, vq, 0.125, True, 0))
        assert np.all(err <= attention_bound_f16(q, kq, vq, 0.125, True, 0, 32))
        assert np.max(err / f32_bound) > 10, (ctx.arch.name, version)


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


# Plausible mistakes in the matrix paths (templates/flash_attn/matrix.j2, shared by all three), caught
# on emu-sm90, emu-gfx1100 and emu-gfx950 alike; then each path's own tile code.
MATRIX_MUTANTS = {
    # the scores not multiplied back by 2^e (nor by scale): every score off by a factor ~2^14
    "q_scale_not_undone": ("sm->qs[r] = scale * bits_f32((u32)(127 + e) << 23);", "sm->qs[r] = scale;"),
    # no per-row scaling: queries beyond 65504 become infinite in f16 (only the q_scale 2^20 cases
    # show it; hypothesis draws them rarely, so its test pins that draw: MUTANT_Q_SCALE)
    "q_not_scaled": ("return e < -100 ? -100 : e > 100 ? 100 : e;", "return 0;"),
    # the accumulators not rescaled when the running max grows (needs two key tiles)
    "no_rescale": ("o[jn][e] *= sm->alpha[wr + fa_d_row(lane, e)];", ""),
    # no barrier between decoding the K/V tile and the scores that read it
    "tile_barrier_removed": ("page_size);\n    sync_threads();\n    fa_scores", "page_size);\n    fa_scores"),
    # V stored row-major where the fragment loads expect it transposed
    "v_not_transposed": ("sm->u.t.vt[d * LDV + j] = f32_to_f16(vx);", "sm->u.t.vt[(j * HD + d) % (HD * LDV)] = f32_to_f16(vx);"),
}
MUTANT_Q_SCALE = {"q_not_scaled": 2.0 ** 20}
PATH_MUTANTS = {
    # accumulator element e of a lane taken as the other half's row (g + 8 for g)
    "mma_sync": {"d_row_halves_swapped": ("{ return mma_d_row(lane, e); }", "{ return mma_d_row(lane, e ^ 2u); }")},
    "wmma": {
        # accumulator rows of a lane's pairs swapped (2e + l/16 taken for 2(e ^ 1) + l/16)
        "d_rows_swapped": ("{ return wmma_d_row(lane, e); }", "{ return wmma_d_row(lane, e ^ 1u); }"),
        # the upper half-wave skips its A load (as if the unit read lanes 0-15 only): the emulated
        # instruction refuses the unreplicated operand (a DeviceError)
        "a_not_replicated": ("f[i] = __builtin_bit_cast(_Float16, t[wmma_a_row(lane, i)",
                             "f[i] = lane >= 16u ? (_Float16)0.0f : __builtin_bit_cast(_Float16, t[wmma_a_row(lane, i)"),
    },
    "mfma": {
        # the accumulator elements of the wave's two 16-row blocks attributed to each other's rows
        "d_row_blocks_swapped": ("{ return e / MFMA_D_ELEMS * MFMA_M + mfma_d_row",
                                 "{ return (1u - e / MFMA_D_ELEMS) * MFMA_M + mfma_d_row"),
        # the second row block's A fragment loaded from the first block's rows (rows 16-31 of a
        # wave's Q and P never reach the unit)
        "a_second_block_rows": ("(*a)[1] = mfma_load_a(t + MFMA_M * ld, ld);", "(*a)[1] = mfma_load_a(t, ld);"),
        # a lane's four K taken from the next lane group's (4 (l / 16) + i read as 4 ((l / 16 + 1) % 4) + i)
        # for B only: A and B no longer pair the same K
        "b_k_group_shifted": ("t[mfma_b_col(lane, i) * ld + mfma_b_k(lane, i)]",
                              "t[mfma_b_col(lane, i) * ld + (mfma_b_k(lane, i) + 4u) % 16u]"),
    },
}
MATRIX_CASES = ([(path, m, MATRIX_MUTANTS[m]) for path in ("mma_sync", "wmma", "mfma") for m in sorted(MATRIX_MUTANTS)]
                + [(path, m, mut) for path, ms in PATH_MUTANTS.items() for m, mut in sorted(ms.items())])


@pytest.mark.parametrize("path, mutant, mutation", MATRIX_CASES, ids=[f"{p}-{m}" for p, m, _ in MATRIX_CASES])
def test_matrix_property_catches_mutant(request, path, mutant, mutation, tmp_path, monkeypatch):
    ctx = emulator_target(request, {"mma_sync": "emu-sm90", "wmma": "emu-gfx1100", "mfma": "emu-gfx950"}[path])
    assert_property_catches(ctx, "flash_attn", {"head_dim": 64, "kv": "f16"}, mutation,
                            lambda c, data: check_flash(c, 64, "f16", data, MUTANT_Q_SCALE.get(mutant), version=1),
                            tmp_path, monkeypatch, max_examples=30)


# Plausible mistakes in mma.sync's second version (templates/flash_attn/mma_sync_v2.j2): the register
# softmax, the P fragments built from S's registers, the double buffer. The property is pinned to v=2.
V2_MUTANTS = {
    # the row max reduced over half of the lanes sharing the row (the xor-2 shuffle dropped): the
    # lanes of a row exponentiate against different maxima
    "row_max_half_quad": ("    mt[r] = f_max(mt[r], shfl_xor(mt[r], 2u));\n", ""),
    # the lanes' shares of l not summed at the end (each lane divides by its own columns' sum)
    "row_sum_not_reduced": ("    l[r] += shfl_xor(l[r], 1u);\n", ""),
    # l not rescaled when the running max grows (needs two key tiles)
    "l_not_rescaled": ("    l[r] *= alpha[r];\n", ""),
    # O not rescaled when the running max grows
    "o_not_rescaled": ("o[dn][e] *= alpha[fa_slot(e)];", ""),
    # P's A fragment takes its upper k half (register 2) from the wrong score tile
    "p_frag_wrong_tile": ("a[2] = (u32)ph[(MMA_K / MMA_N) * kk + 1u]", "a[2] = (u32)ph[(MMA_K / MMA_N) * kk + 0u]"),
    # the causal mask lets a row see one key too few
    "mask_off_by_one": ("<= (i64)last[r];", "< (i64)last[r];"),
    # single buffer: the next tile written over the one other warps may still be multiplying
    "next_tile_same_buffer": ("FaBuf* next = &sm.u.buf[cur ^ 1u];", "FaBuf* next = &sm.u.buf[cur];"),
    # the buffers never swap: every tile after the first reads the first tile's buffer
    "buffer_not_toggled": ("    cur ^= 1u;\n", ""),
    # no barrier at the end of a key tile (the next tile's buffer read before every warp filled it)
    "tile_barrier_removed": ("    cur ^= 1u;\n    sync_threads();", "    cur ^= 1u;"),
    # shared with v1 (flash_attn/qrow.j2 and the staging): the scores not multiplied back by 2^e
    "q_scale_not_undone": MATRIX_MUTANTS["q_scale_not_undone"],
    "q_not_scaled": MATRIX_MUTANTS["q_not_scaled"],
}


@pytest.mark.parametrize("mutant", sorted(V2_MUTANTS))
def test_v2_property_catches_mutant(request, mutant, tmp_path, monkeypatch):
    ctx = emulator_target(request, "emu-sm90")
    assert_property_catches(ctx, "flash_attn", {"head_dim": 64, "kv": "f16", "v": 2}, V2_MUTANTS[mutant],
                            lambda c, data: check_flash(c, 64, "f16", data, MUTANT_Q_SCALE.get(mutant), version=2),
                            tmp_path, monkeypatch, max_examples=30)


@pytest.mark.parametrize("kv", KV_DTYPES)
def test_one_token_context(kctx, kv):
    """One query, one key, every dtype and both masks: the output is that key's V row (as stored)."""
    d = {"f32": 80, "f16": 96, "fp8": 64, "q8_0": 96, "mxfp6": 64}[kv]
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
