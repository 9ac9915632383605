"""Oracles for attention and the KV cache: the storage formats of every KV dtype (encode to the
exact bytes a kernel must write, decode to float64), paged placement through a block table, and
float64 attention (GQA, causal with n_past, scale) plus the split-K merge.

The storage codecs are independent of the kernels: Q8_0 is gguf.quants (GGML's reference, ported),
FP8 E4M3 is a nearest-value search over the 256-code table (test_kv_append cross-checks it with
forge.quant.mx, the project's MX codec), MXFP6 is forge.quant.mx's quantize_mx itself (the format's
reference: OCP MX v1.0 block quantization, tested against the spec there), f16/f32 are numpy casts. So the oracle attends over
exactly the K/V values the cache holds."""

from __future__ import annotations

import numpy as np

KV_DTYPES = ("f32", "f16", "fp8", "q8_0", "mxfp6")
U32 = 2.0 ** -24


def row_bytes(dtype: str, d: int) -> int:
    """Bytes of one stored row (one token of one KV head) of d values."""
    return {"f32": 4 * d, "f16": 2 * d, "fp8": d + 4, "q8_0": d // 32 * 34,
            "mxfp6": 3 * d // 4 + (-(-d // 32) + 3) // 4 * 4}[dtype]


# ------------------------------------------------------------------------------------ FP8 E4M3
def _fp8_table() -> np.ndarray:
    """float64 value of each of the 256 E4M3 codes (bias 7, subnormals, S.1111.111 = NaN)."""
    c = np.arange(256)
    e, m = (c >> 3) & 15, c & 7
    mag = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8) * 2.0 ** (e - 7.0))
    mag = np.where((c & 0x7F) == 0x7F, np.nan, mag)
    return np.where(c & 0x80, -mag, mag)


FP8_VALUES = _fp8_table()
_POS = FP8_VALUES[:127]  # codes 0..126: the finite non-negative values, increasing


def fp8_decode(codes: np.ndarray) -> np.ndarray:
    return FP8_VALUES[np.asarray(codes, dtype=np.uint8)]


def fp8_encode(x: np.ndarray) -> np.ndarray:
    """Nearest E4M3 code by search over the value table, ties to the even code, saturating at
    448 (inf too); NaN -> 0x7F whatever its sign (forge.quant.mx's canonical NaN)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), 448.0)
    hi = np.clip(np.searchsorted(_POS, a), 1, 126)
    lo = hi - 1
    dl, dh = a - _POS[lo], _POS[hi] - a
    code = np.where(dl < dh, lo, np.where(dh < dl, hi, np.where(lo % 2 == 0, lo, hi)))
    code = np.where(a == _POS[hi], hi, code)
    code = np.where(np.isnan(x), 0x7F, code | np.where(np.signbit(x), 0x80, 0))
    return code.astype(np.uint8)


def fp8_scale(amax: float) -> np.float32:
    """The row scale: the smallest power of two s (>= 2^-126) with amax / s <= 448; 1 for a zero
    row or an infinite amax (amax is taken over the row's non-NaN values: NaN is stored as NaN
    and does not spoil the scale of the rest)."""
    if not np.isfinite(amax) or amax <= 0:
        return np.float32(1.0)
    e = int(np.ceil(np.log2(amax / 448.0)))
    while amax > 448.0 * 2.0 ** e:
        e += 1
    while e > -126 and amax <= 448.0 * 2.0 ** (e - 1):
        e -= 1
    return np.float32(2.0 ** max(e, -126))


# ------------------------------------------------------------------------------------- MXFP6
def mxfp6_encode(flat: np.ndarray) -> np.ndarray:
    """Rows [n, d] (d % 16 == 0) -> stored mxfp6 rows: forge.quant.mx's E2M3 codes of the row padded
    with zeros to whole blocks of 32 (zeros change no block's max or specials), the first d codes as
    a little-endian 6-bit stream (4 codes in 3 bytes), then the E8M0 scales, zero-padded to 4 bytes."""
    from forge.quant import mx
    n, d = flat.shape
    nb = -(-d // 32)
    scales, codes = mx.quantize_mx(np.pad(flat, ((0, 0), (0, 32 * nb - d))), mx.MXFP6_E2M3)
    g = codes[:, :d].reshape(n, d // 4, 4).astype(np.uint32)
    w = g[..., 0] | (g[..., 1] << 6) | (g[..., 2] << 12) | (g[..., 3] << 18)
    stream = np.stack([w & 0xFF, (w >> 8) & 0xFF, w >> 16], axis=-1).reshape(n, 3 * d // 4)
    out = np.zeros((n, row_bytes("mxfp6", d)), np.uint8)
    out[:, :3 * d // 4] = stream
    out[:, 3 * d // 4:3 * d // 4 + nb] = scales
    return out


def mxfp6_decode(flat: np.ndarray, d: int) -> np.ndarray:
    """Stored mxfp6 rows [n, row_bytes] -> float64 values [n, d] (forge.quant.mx's dequantize_mx)."""
    from forge.quant import mx
    n, nb = len(flat), -(-d // 32)
    b = flat[:, :3 * d // 4].reshape(n, d // 4, 3).astype(np.uint32)
    w = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    codes = np.stack([(w >> (6 * t)) & 0x3F for t in range(4)], axis=-1).reshape(n, d)
    codes = np.pad(codes, ((0, 0), (0, 32 * nb - d))).astype(np.uint8)
    vals = mx.dequantize_mx(flat[:, 3 * d // 4:3 * d // 4 + nb], codes, mx.MXFP6_E2M3)
    return vals[:, :d].astype(np.float64)


# ------------------------------------------------------------------------------ rows of a dtype
def kv_encode(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 rows [..., d] -> the stored bytes [..., row_bytes] a kernel must write."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    lead, d = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, d)
    if dtype == "f32":
        out = flat.view(np.uint8)
    elif dtype == "f16":
        out = flat.astype(np.float16).view(np.uint8)
    elif dtype == "q8_0":
        import gguf
        out = gguf.quants.quantize(flat, gguf.GGMLQuantizationType.Q8_0).reshape(len(flat), -1)
    elif dtype == "fp8":
        out = np.zeros((len(flat), d + 4), np.uint8)
        for i, row in enumerate(flat):
            s = fp8_scale(float(np.max(np.abs(row), initial=0.0, where=~np.isnan(row))))
            out[i, :d] = fp8_encode(row.astype(np.float64) / float(s))
            out[i, d:] = np.array([s], np.float32).view(np.uint8)
    elif dtype == "mxfp6":
        out = mxfp6_encode(flat)
    else:
        raise ValueError(dtype)
    return out.reshape(*lead, row_bytes(dtype, d))


def kv_decode(rows: np.ndarray, dtype: str, d: int) -> np.ndarray:
    """Stored bytes [..., row_bytes] -> float64 values [..., d]."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    lead = rows.shape[:-1]
    flat = rows.reshape(-1, rows.shape[-1])
    if dtype == "f32":
        out = flat.view(np.float32).astype(np.float64)
    elif dtype == "f16":
        out = flat.view(np.float16).astype(np.float64)
    elif dtype == "q8_0":
        import gguf
        out = gguf.quants.dequantize(flat, gguf.GGMLQuantizationType.Q8_0).astype(np.float64).reshape(len(flat), d)
    elif dtype == "fp8":
        scale = np.ascontiguousarray(flat[:, d:]).view(np.float32).astype(np.float64)
        out = fp8_decode(flat[:, :d]) * scale
    elif dtype == "mxfp6":
        out = mxfp6_decode(flat, d)
    else:
        raise ValueError(dtype)
    return out.reshape(*lead, d)


def kv_roundtrip(x: np.ndarray, dtype: str) -> np.ndarray:
    """The float64 values the cache holds after storing x."""
    return kv_decode(kv_encode(x, dtype), dtype, x.shape[-1])


# ---------------------------------------------------------------------------------------- pages
def place(rows: np.ndarray, block_table: np.ndarray, page_size: int, storage: np.ndarray,
          positions: np.ndarray | None = None) -> np.ndarray:
    """Write stored rows [n, n_kv_heads, rb] at positions (default 0..n-1) into a copy of storage
    [n_pages, n_kv_heads, page_size, rb] through the block table."""
    out = storage.copy()
    pos = np.arange(len(rows)) if positions is None else np.asarray(positions)
    for r, p in zip(rows, pos):
        out[block_table[p // page_size], :, p % page_size] = r
    return out


def gather(storage: np.ndarray, block_table: np.ndarray, page_size: int, n: int) -> np.ndarray:
    """Stored rows [n, n_kv_heads, rb] of positions 0..n-1, read through the block table."""
    return np.stack([storage[block_table[p // page_size], :, p % page_size] for p in range(n)])


# ------------------------------------------------------------------------------------ attention
def attention(q, k, v, scale: float, causal: bool, n_past: int):
    """float64 attention. q: [n_q, n_heads, d]; k, v: [n_kv, n_kv_heads, d]. Query i (position
    n_past + i) sees keys j < n_kv, and j <= n_past + i when causal; a query that sees no key
    gives zeros. Head h reads KV head h // (n_heads // n_kv_heads)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    group = q.shape[1] // k.shape[1]
    kh = np.repeat(k, group, axis=1)  # [n_kv, n_heads, d]
    vh = np.repeat(v, group, axis=1)
    s = np.einsum("ihd,jhd->hij", q, kh) * scale
    vis = np.ones((q.shape[0], k.shape[0]), bool)
    if causal:
        vis = np.arange(k.shape[0])[None, :] <= (n_past + np.arange(q.shape[0]))[:, None]
    s = np.where(vis[None], s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    p = np.where(vis[None], np.exp(s - np.where(np.isfinite(m), m, 0.0)), 0.0)
    den = p.sum(-1, keepdims=True)
    p = np.divide(p, den, out=np.zeros_like(p), where=den > 0)
    return np.einsum("hij,jhd->ihd", p, vh)


def attention_bound(q, k, v, scale: float, causal: bool, n_past: int):
    """Per-element error bound [n_q, n_heads, 1] of a float32 kernel against `attention`.

    A score is a d-term float32 dot product: |err| <= gamma_d * scale * sum|q||k| (gamma_d ~ d*u).
    Softmax weights then carry a relative error of at most 2*max|score err| plus a few ulp of exp
    and the running-sum/rescale rounding (<= (n_keys + 8)*u), and the P.V sum adds n_keys*u of
    sum p|v| <= max|v|. So |o - o_ref| <= max|v| * (4*ds + 4*(n_keys + d + 16)*u), with a 2x margin."""
    q, k, v = (np.abs(np.asarray(a, np.float64)) for a in (q, k, v))
    group = q.shape[1] // k.shape[1]
    kh, vh = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    d, n_kv = q.shape[-1], k.shape[0]
    vis = np.ones((q.shape[0], n_kv), bool)
    if causal:
        vis = np.arange(n_kv)[None, :] <= (n_past + np.arange(q.shape[0]))[:, None]
    absdot = np.where(vis[None], np.einsum("ihd,jhd->hij", q, kh), 0.0)  # [h, i, j]
    ds = 2 * (d + 2) * U32 * scale * absdot.max(-1)  # [h, i]
    vmax = np.where(vis[None, :, :, None], vh.transpose(1, 0, 2)[:, None], 0.0).max(axis=(2, 3))  # [h, i]
    bound = vmax * (4 * ds + 8 * (n_kv + d + 16) * U32)
    return bound.T[:, :, None] + 1e-30


def combine(part_o, part_ml):
    """float64 merge of split partials: part_o [S, H, d] (unnormalized), part_ml [S, H, 2] (m, l)."""
    part_o, part_ml = np.asarray(part_o, np.float64), np.asarray(part_ml, np.float64)
    m, l = part_ml[..., 0], part_ml[..., 1]
    mx = m.max(axis=0)
    w = np.where(np.isneginf(m), 0.0, np.exp(m - np.where(np.isfinite(mx), mx, 0.0)))
    den = (w * l).sum(0)
    num = (w[..., None] * part_o).sum(0)
    return np.divide(num, den[:, None], out=np.zeros_like(num), where=den[:, None] > 0)


def shuffled_pages(n_positions: int, page_size: int, rng, spare: int = 2) -> tuple[int, np.ndarray]:
    """(n_pages, block_table): enough pages for n_positions plus `spare`, the table a random
    choice of them in random order (pages of a sequence are never contiguous by design)."""
    used = max(1, -(-n_positions // page_size))
    n_pages = used + spare
    return n_pages, rng.permutation(n_pages)[:used].astype(np.int32)


def paged_kv(k, v, dtype: str, page_size: int, table: np.ndarray, n_pages: int, rng):
    """Stored K and V pages ([n_pages, n_kv_heads, page_size, rb] uint8) holding k, v ([n, n_kv_heads,
    d] float32) at positions 0..n-1, every other byte random (a kernel that reads outside the
    context sees garbage, NaN patterns included), and the float64 values the cache holds."""
    n, h, d = k.shape
    out = []
    for x in (k, v):
        rows = kv_encode(x, dtype)
        storage = rng.integers(0, 256, (n_pages, h, page_size, rows.shape[-1]), dtype=np.uint8)
        out.append(place(rows, table, page_size, storage))
    return out[0], out[1], kv_roundtrip(k, dtype), kv_roundtrip(v, dtype)


# ------------------------------------------------------------------- a bound tight where it matters
EXP_ULP = 2  # expf's accuracy on every backend (CUDA documents 2 ulp; glibc and AMD's are tighter)
_DYADIC = 6  # q and k values that are multiples of 2^-6 ...
_EXACT_ABSDOT = 2.0 ** (24 - 2 * _DYADIC)  # ... with sum |q||k| below this have exact float32 dots


def _dyadic(x: np.ndarray) -> np.ndarray:
    """Per row (last axis): every value a multiple of 2^-_DYADIC (so products are multiples of
    2^-2*_DYADIC and partial sums below _EXACT_ABSDOT are exact in float32)."""
    y = np.asarray(x, np.float64) * 2.0 ** _DYADIC
    return np.all(np.isfinite(y) & (y == np.round(y)), axis=-1)


def attention_bound_tiled(q, k, v, scale: float, causal: bool, n_past: int, key_tile: int):
    """Per-element error bound [n_q, n_heads, d] of a float32 kernel that walks keys in tiles of
    `key_tile` with an online softmax (common/attn.h), against `attention` over the same q, k, v.
    Unlike attention_bound it follows each key and each output element, so it is tight where the
    inputs allow: when q and k are short dyadic values the float32 scores are exact (only `* scale`
    rounds), and when v has few nonzeros per column the P.V sums are nearly exact, so what is left
    is the softmax itself, where a wrong exp shows.

    With w_j the exact softmax weights of row i, s_j its scores, M = max s_j, T = number of key
    tiles and u = 2^-24, the kernel's p_j = exp(s_j - m) (m the running max), rescaled by later
    tiles' alpha = exp(m_old - m_new), differ from the exact exp(s_j - M) (up to a factor common to
    the row, which the normalization cancels) by a relative eps_j, with
        |eps_j| <= expm1(D_j + u (M - s_j + 2 D) + (T + 1) * EXP_ULP * 2u)
    where D_j bounds the score error: u |s_j| for exact dots, else gamma_d * scale * sum|q||k|
    (+ u |s_j|); the subtractions s_j - m and m_old - m_new round by u times their size, and those
    sizes add up to M - s_j over the tiles. Then, exactly,
        o' - o = sum_j w_j eps_j (v_j - o) / (1 + sum_j w_j eps_j)
    and the float32 sums add gamma_(nnz + T) sum_j w_j |v_j| (P.V: nnz nonzero fma terms and T
    rescales per column), gamma_(n + 2T) |o| (the row sum l over n visible keys) and u |o| (the
    division). A 25 % margin covers the products of small terms."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    n_q, n_heads, d = q.shape
    n_kv, group = k.shape[0], q.shape[1] // k.shape[1]
    u = 2.0 ** -24
    gamma = lambda n: n * u / (1 - n * u)
    vis = np.ones((n_q, n_kv), bool)
    if causal:
        vis = np.arange(n_kv)[None, :] <= (n_past + np.arange(n_q))[:, None]
    tiles = -(-n_kv // key_tile)
    n_vis = vis.sum(1)  # [n_q]
    out = np.zeros_like(q)
    for h in range(n_heads):
        qh, kh, vh = q[:, h], k[:, h // group], v[:, h // group]  # [n_q, d], [n_kv, d], [n_kv, d]
        s = (qh @ kh.T) * scale  # [n_q, n_kv]: exact for dyadic inputs, else within 1e-16
        absdot = np.abs(qh) @ np.abs(kh).T
        exact = _dyadic(qh)[:, None] & _dyadic(kh)[None, :] & (absdot < _EXACT_ABSDOT)
        dlt = np.where(exact, 0.0, gamma(d) * scale * absdot) + 1.01 * u * np.abs(s)
        s = np.where(vis, s, -np.inf)
        m = s.max(1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        p = np.where(vis, np.exp(s - m), 0.0)
        den = p.sum(1, keepdims=True)
        w = np.divide(p, den, out=np.zeros_like(p), where=den > 0)
        o = w @ vh  # [n_q, d]
        dmax = np.where(vis, dlt, 0.0).max(1, keepdims=True)
        eps = np.expm1(dlt + u * (np.where(vis, m - s, 0.0) + 2 * dmax) + (tiles + 1) * EXP_ULP * 2 * u)
        eps = np.where(vis, eps, 0.0)
        emax = eps.max(1, keepdims=True)[:, :, None]
        soft = np.einsum("ij,ijc->ic", w * eps, np.abs(vh[None, :, :] - o[:, None, :])) / (1 - emax[:, :, 0])
        nnz = (vis.astype(np.float64) @ (vh != 0).astype(np.float64))  # [n_q, d]
        sums = gamma(nnz + tiles) * (w @ np.abs(vh)) + (gamma(n_vis + 2 * tiles)[:, None] + u) * np.abs(o)
        out[:, h] = 1.25 * (soft + sums * (1 + emax[:, :, 0]))
    return out + 1e-30
