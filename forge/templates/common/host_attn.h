// ---- attention over the paged KV cache on the host: what flash_attn.host.j2 and attn_decode.host.j2
// share. Keys go in tiles of HV (one vf of scores): the K tile is decoded to f32 and transposed
// (kt[d][j]), so a query row's HV scores are HD vector fmas with no horizontal sums; the V tile
// stays row-major (vt[j][d]) for the P.V update. Each row keeps its running max m, sum l and
// unnormalized output o[HD] (online softmax, as common/attn.h on the GPU). Needs HD defined and
// common/kv.j2 included.
struct AttnRow {
  const float* q;  // HD values
  i64 last;        // last key position the row may see (-1: none)
  float m, l;
  float o[HD];
};
struct AttnTile {
  float kt[HD][HV];  // K transposed; keys past the tile's end are zeros
  float vt[HV][HD];
  u32 k0, nk;        // first key, keys in the tile
};

DEVICE void attn_row_init(AttnRow* r, const float* q, i64 last) {
  r->q = q;
  r->last = last;
  r->m = -f_inf();
  r->l = 0.0f;
  for (u32 d = 0; d < HD; ++d) r->o[d] = 0.0f;
}

// Keys [k0, k0 + nk) of KV head `head`, nk <= HV, decoded from the cache's storage dtype.
DEVICE void attn_load_tile(AttnTile* t, const u8* kc, const u8* vc, const i32* bt, u32 k0, u32 nk, u32 head,
                           u32 n_kv_heads, u32 page_size) {
  const u32 rb = kv_row_bytes(HD);
  t->k0 = k0;
  t->nk = nk;
  for (u32 j = 0; j < HV; ++j) {
    float k[HD];
    if (j < nk) {
      const u8* kr = kv_row(kc, bt, k0 + j, head, n_kv_heads, page_size, rb);
      const u8* vr = kv_row(vc, bt, k0 + j, head, n_kv_heads, page_size, rb);
      for (u32 d = 0; d < HD; ++d) k[d] = kv_load(kr, d, HD);
      for (u32 d = 0; d < HD; ++d) t->vt[j][d] = kv_load(vr, d, HD);
    } else {  // zeros, never garbage: a masked key has weight 0, and 0 * NaN would poison the row
      for (u32 d = 0; d < HD; ++d) k[d] = 0.0f, t->vt[j][d] = 0.0f;
    }
    for (u32 d = 0; d < HD; ++d) t->kt[d][j] = k[d];
  }
}

// One tile for one row: scores s_j = scale * q.k_j (an fma chain over d per key, as on the GPU),
// keys past the row's last or the tile's end masked; then the online-softmax step and o = o * alpha
// + sum_j p_j v_j. A row that has seen nothing keeps m = -inf, l = 0, o = 0.
DEVICE void attn_row_tile(AttnRow* r, const AttnTile* t, float scale) {
  vf s = {};
  for (u32 d = 0; d < HD; ++d) s = vf_fma(vf_splat(r->q[d]), vf_load(t->kt[d]), s);
  s *= scale;
  vi key = {};
  for (int j = 0; j < HV; ++j) key[j] = j;
  const vi visible = (key < (i32)t->nk) & ((key + (i32)t->k0) <= (vi){} + (i32)(r->last < 0 ? -1 : r->last));
  s = visible ? s : vf_splat(-f_inf());
  const float mt = vf_hmax(s), mn = f_max(r->m, mt);
  if (mn == -f_inf()) return;
  const vf p = visible ? vf_exp(s - mn) : vf_splat(0.0f);
  const float alpha = r->m == -f_inf() ? 0.0f : h_exp(r->m - mn);
  r->l = r->l * alpha + vf_sum(p);
  r->m = mn;
  for (u32 d = 0; d < HD; d += HV) {
    vf o = vf_load(r->o + d) * alpha;
    for (u32 j = 0; j < t->nk; ++j) o = vf_fma(vf_splat(p[j]), vf_load(t->vt[j] + d), o);
    vf_store(r->o + d, o);
  }
}
