// ---- tiled attention over the paged KV cache: the pieces flash_attn and attn_decode share ----
// A block owns BQ query rows (each with its own query vector and last visible key) that all read
// one KV head, and walks keys in tiles of BK: the K/V tile is decoded into shared memory as f32,
// then scores, an online-softmax step and the rescaled P.V accumulation follow, each phase
// separated by a barrier. No wave operations: results do not depend on the wave size.
// Needs HD (head dim), BQ, BK, NT (threads per block) defined and common/kv.j2 included.
#define HDP (HD + 1)                     // padded K rows: lanes reading different keys hit different banks
#define OPT ((BQ * HD + NT - 1) / NT)    // output accumulators per thread
// Fully unrolled HD- and BK-long inner loops make clang hoist every shared-memory load and spill
// (256 VGPRs + scratch on gfx1100); unrolling by 8 keeps ~100 VGPRs and no spills.
#ifdef FORGE_TARGET_EMU
#define ATTN_UNROLL _Pragma("GCC unroll 8")
#else
#define ATTN_UNROLL _Pragma("unroll 8")
#endif

struct AttnSmem {
  float q[BQ * HD];
  float k[BK * HDP];
  float v[BK * HD];
  float s[BQ * BK];  // scores, then probabilities
  float m[BQ], l[BQ], alpha[BQ];  // running max, running sum, this tile's rescale factor
  i32 last[BQ];  // last key position row r may see (-1: padding row, sees nothing)
};

// Keys [k0, k0 + BK) of KV head `head`, decoded to f32; keys at or past k_end are zero (never
// garbage: a masked key has probability 0, and 0 * NaN would poison the row).
DEVICE void attn_load_tile(AttnSmem* sm, const u8* kc, const u8* vc, const i32* bt, u32 k0, u32 k_end,
                           u32 head, u32 n_kv_heads, u32 page_size) {
  const u32 rb = kv_row_bytes(HD);
  for (u32 e = tid_x(); e < BK * HD; e += NT) {
    const u32 j = e / HD, d = e % HD, key = k0 + j;
    float kx = 0.0f, vx = 0.0f;
    if (key < k_end) {
      kx = kv_load(kv_row(kc, bt, key, head, n_kv_heads, page_size, rb), d, HD);
      vx = kv_load(kv_row(vc, bt, key, head, n_kv_heads, page_size, rb), d, HD);
    }
    sm->k[j * HDP + d] = kx;
    sm->v[j * HD + d] = vx;
  }
}

// s[r][j] = scale * q_r . k_j, or -inf where key k0 + j is past row r's last visible key.
DEVICE void attn_scores(AttnSmem* sm, u32 k0, float scale) {
  for (u32 e = tid_x(); e < BQ * BK; e += NT) {
    const u32 r = e / BK, j = e % BK;
    float acc = -f_inf();
    if ((i64)(k0 + j) <= (i64)sm->last[r]) {
      acc = 0.0f;
ATTN_UNROLL
      for (u32 d = 0; d < HD; d++) acc = f_fma(sm->q[r * HD + d], sm->k[j * HDP + d], acc);
      acc *= scale;
    }
    sm->s[e] = acc;
  }
}

// Online softmax, one thread per row: new max m', alpha = exp(m - m'), p_j = exp(s_j - m'),
// l = l * alpha + sum p_j. A row with nothing visible so far keeps m = -inf, l = 0 and p = 0.
DEVICE void attn_softmax_step(AttnSmem* sm) {
  for (u32 r = tid_x(); r < BQ; r += NT) {
    float* s = sm->s + r * BK;
    float mt = -f_inf();
    for (u32 j = 0; j < BK; j++) mt = f_max(mt, s[j]);
    const float mo = sm->m[r], mn = f_max(mo, mt);
    if (mn == -f_inf()) {
      for (u32 j = 0; j < BK; j++) s[j] = 0.0f;
      sm->alpha[r] = 1.0f;
      continue;
    }
    float sum = 0.0f;
    for (u32 j = 0; j < BK; j++) {
      s[j] = f_exp(s[j] - mn);
      sum += s[j];
    }
    sm->alpha[r] = f_exp(mo - mn);  // 0 when mo is -inf
    sm->l[r] = sm->l[r] * sm->alpha[r] + sum;
    sm->m[r] = mn;
  }
}

// acc (thread's share of the BQ x HD output, element e = tid + t*NT) = acc * alpha_r + P_r . V.
DEVICE void attn_accumulate(const AttnSmem* sm, float* acc) {
  for (u32 t = 0; t < OPT; t++) {
    const u32 e = tid_x() + t * NT;
    if (e >= BQ * HD) break;
    const u32 r = e / HD, d = e % HD;
    float o = acc[t] * sm->alpha[r];
ATTN_UNROLL
    for (u32 j = 0; j < BK; j++) o = f_fma(sm->s[r * BK + j], sm->v[j * HD + d], o);
    acc[t] = o;
  }
}

// Attend the block's rows (q, last, m = -inf, l = 0 already in sm, then a barrier) to keys
// [k_begin, k_end): leaves the running max and sum in sm and the unnormalized output in acc.
DEVICE void attn_walk(AttnSmem* sm, float* acc, const u8* kc, const u8* vc, const i32* bt,
                      u32 k_begin, u32 k_end, u32 head, u32 n_kv_heads, u32 page_size, float scale) {
  for (u32 t = 0; t < OPT; t++) acc[t] = 0.0f;
  for (u32 k0 = k_begin; k0 < k_end; k0 += BK) {
    attn_load_tile(sm, kc, vc, bt, k0, k_end, head, n_kv_heads, page_size);
    sync_threads();
    attn_scores(sm, k0, scale);
    sync_threads();
    attn_softmax_step(sm);
    sync_threads();
    attn_accumulate(sm, acc);
    sync_threads();  // the next tile overwrites k, v and s
  }
}
