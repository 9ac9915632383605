// forge kernel attn_decode_head_dim128_f32 for sm_90 (generated; do not edit)
#define WAVE_SIZE 32
#define FORGE_TARGET_CUDA 1

// ---- forge prelude: CUDA (NVRTC, no CUDA headers: NVRTC's built-in declarations only) ----
// ---- the vocabulary's types, the same on every target ----
typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef short i16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;
typedef u16 f16;
typedef u16 bf16;
struct __attribute__((aligned(16))) f32x4 { float v[4]; };
struct __attribute__((aligned(16))) u32x4 { u32 v[4]; };
struct __attribute__((aligned(8))) u32x2 { u32 v[2]; };

#define KERNEL(max_threads) extern "C" __global__ void __launch_bounds__(max_threads)
#define DEVICE static __device__ __forceinline__
#define SHARED __shared__
#define RESTRICT __restrict__
#define DYN_SHARED(T, name) extern __shared__ __align__(16) u8 forge_dyn_smem[]; T* name = (T*)forge_dyn_smem

DEVICE u32 tid_x() { return threadIdx.x; }
DEVICE u32 tid_y() { return threadIdx.y; }
DEVICE u32 tid_z() { return threadIdx.z; }
DEVICE u32 bid_x() { return blockIdx.x; }
DEVICE u32 bid_y() { return blockIdx.y; }
DEVICE u32 bid_z() { return blockIdx.z; }
DEVICE u32 bdim_x() { return blockDim.x; }
DEVICE u32 bdim_y() { return blockDim.y; }
DEVICE u32 bdim_z() { return blockDim.z; }
DEVICE u32 gdim_x() { return gridDim.x; }
DEVICE u32 gdim_y() { return gridDim.y; }
DEVICE u32 gdim_z() { return gridDim.z; }
DEVICE u32 linear_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
DEVICE u32 lane_id() { return linear_tid() % WAVE_SIZE; }
DEVICE u32 wave_id() { return linear_tid() / WAVE_SIZE; }
DEVICE void sync_threads() { __syncthreads(); }
// Every kernel's first statement (forge/codegen/render.py adds it). Hopper's programmatic dependent
// launch (the runtime's captured decode step, forge/runtime/cuda.py) lets a kernel start while the one
// before it drains: wait until that one has finished and its writes are visible, then allow the next
// kernel to start its blocks as ours finish. Without such a launch both instructions return at once.
DEVICE void forge_kernel_entry() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// ---- wave (warp) operations; out-of-wave sources keep the lane's own value ----
#define FORGE_FULL 0xffffffffu
DEVICE i32 shfl(i32 v, u32 s) { i32 r = __shfl_sync(FORGE_FULL, v, (int)(s % WAVE_SIZE)); return s < WAVE_SIZE ? r : v; }
DEVICE i32 shfl_xor(i32 v, u32 m) { u32 s = lane_id() ^ m; i32 r = __shfl_sync(FORGE_FULL, v, (int)(s % WAVE_SIZE)); return s < WAVE_SIZE ? r : v; }
DEVICE i32 shfl_down(i32 v, u32 d) { return __shfl_down_sync(FORGE_FULL, v, d); }
DEVICE i32 shfl_up(i32 v, u32 d) { return __shfl_up_sync(FORGE_FULL, v, d); }
DEVICE u32 shfl(u32 v, u32 s) { return (u32)shfl((i32)v, s); }
DEVICE u32 shfl_xor(u32 v, u32 m) { return (u32)shfl_xor((i32)v, m); }
DEVICE u32 shfl_down(u32 v, u32 d) { return __shfl_down_sync(FORGE_FULL, v, d); }
DEVICE u32 shfl_up(u32 v, u32 d) { return __shfl_up_sync(FORGE_FULL, v, d); }
DEVICE float shfl(float v, u32 s) { return __int_as_float(shfl(__float_as_int(v), s)); }
DEVICE float shfl_xor(float v, u32 m) { return __int_as_float(shfl_xor(__float_as_int(v), m)); }
DEVICE float shfl_down(float v, u32 d) { return __shfl_down_sync(FORGE_FULL, v, d); }
DEVICE float shfl_up(float v, u32 d) { return __shfl_up_sync(FORGE_FULL, v, d); }
DEVICE u64 wave_ballot(bool p) { return (u64)__ballot_sync(FORGE_FULL, p); }
DEVICE bool wave_any(bool p) { return __any_sync(FORGE_FULL, p); }
DEVICE bool wave_all(bool p) { return __all_sync(FORGE_FULL, p); }

// ---- atomics (device scope, relaxed) ----
DEVICE float atomic_add(float* p, float v) { return atomicAdd(p, v); }
DEVICE u32 atomic_add(u32* p, u32 v) { return atomicAdd(p, v); }
DEVICE i32 atomic_add(i32* p, i32 v) { return atomicAdd(p, v); }
DEVICE u32 atomic_max(u32* p, u32 v) { return atomicMax(p, v); }
DEVICE u32 atomic_cas(u32* p, u32 expected, u32 desired) { return atomicCAS(p, expected, desired); }

// ---- math (IEEE-accurate library versions, not the fast intrinsics) ----
DEVICE float f_exp(float x) { return expf(x); }
DEVICE float f_exp2(float x) { return exp2f(x); }
DEVICE float f_log(float x) { return logf(x); }
DEVICE float f_log2(float x) { return log2f(x); }
DEVICE float f_sqrt(float x) { return sqrtf(x); }
DEVICE float f_rsqrt(float x) { return 1.0f / sqrtf(x); }
DEVICE float f_abs(float x) { return fabsf(x); }
DEVICE float f_floor(float x) { return floorf(x); }
DEVICE float f_max(float a, float b) { return fmaxf(a, b); }
DEVICE float f_min(float a, float b) { return fminf(a, b); }
DEVICE float f_fma(float a, float b, float c) { return fmaf(a, b, c); }
DEVICE bool f_isnan(float x) { return isnan(x); }
DEVICE bool f_isinf(float x) { return isinf(x); }
DEVICE float f_inf() { return __int_as_float(0x7f800000); }
DEVICE float f_nan() { return __int_as_float(0x7fc00000); }

// ---- conversions (PTX cvt: exact, round to nearest even) ----
DEVICE float bits_f32(u32 b) { return __uint_as_float(b); }
DEVICE u32 f32_bits(float f) { return __float_as_uint(f); }
DEVICE float f16_to_f32(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
DEVICE u16 f32_to_f16(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
// ---- bf16 on top of bits_f32/f32_bits/f_isnan, the same on every target ----
DEVICE float bf16_to_f32(u16 h) { return bits_f32((u32)h << 16); }
DEVICE u16 f32_to_bf16(float f) {
  u32 b = f32_bits(f);
  if (f_isnan(f)) return (u16)((b >> 16) | 0x40);  // keep sign and payload top, force quiet
  return (u16)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);  // round to nearest even
}
// ---- end of prelude ----

// ---- KV storage, dtype f32 ----
// A layer's K (or V) storage is [n_pages][n_kv_heads][page_size][row bytes]; block_table maps a
// sequence's page index (position / page_size) to a physical page.
DEVICE const u8* kv_row(const u8* cache, const i32* block_table, u32 pos, u32 head, u32 n_kv_heads,
                        u32 page_size, u32 row_bytes) {
  const u64 page = (u64)(u32)block_table[pos / page_size];
  return cache + ((page * n_kv_heads + head) * page_size + pos % page_size) * row_bytes;
}
DEVICE u32 kv_row_bytes(u32 d) { return 4 * d; }
DEVICE float kv_load(const u8* row, u32 i, u32 d) { return ((const float*)row)[i]; }
#define HD 128
#define BQ 8
#define BK 32
#define NT 128
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
// Decode attention, split-K (flash-decoding): one new query per head (q: [n_heads][HD] f32) at the
// last position attends keys [0, n) of the paged cache (f32), which it all sees; n = kv_len[0]
// is read from device memory, so a captured decode step needs no new arguments per token. The grid's
// gdim_x() splits cut the context into chunks of whole BK-key tiles; block (split, kv head, row tile)
// covers keys [split * chunk, (split + 1) * chunk) for up to BQ heads of the KV head's group and
// writes partials, merged by attn_combine:
//   part_o[split][head][HD] = sum_j exp(s_j - m) v_j,  part_ml[split][head] = (m, l = sum_j exp(s_j - m)).
// A split with no keys writes (m, l, o) = (-inf, 0, 0).
//
// Speed (a decode step reads the whole cache once): each tile's K and V rows are fetched with the
// widest loads the row layout allows (KV_S values per load), one page-table lookup per key row
// (a shift when the page size is a power of two), all of a thread's loads issued together, and the
// next tile's loads in flight in registers while this tile's scores, softmax and P.V run. Only the
// group's live heads are computed; the softmax is a reduction over BK-lane segments (xor shuffles
// below BK stay inside a segment at wave 32 and 64 alike).
#define KV_S 4                          // values per fetched segment
#define SPR (HD / KV_S)                       // segments per row
#define NSEG ((BK * SPR + NT - 1) / NT)       // segments per thread per tile
#define NO_ROW (~(u64)0)
typedef u32x4 KvRaw;
DEVICE KvRaw kv_zero() { KvRaw r; for (u32 i = 0; i < 4; ++i) r.v[i] = 0u; return r; }
DEVICE KvRaw kv_fetch(const u8* row, u32 s) { return ((const u32x4*)row)[s]; }
DEVICE void kv_unpack(KvRaw r, float* o) {
  for (u32 i = 0; i < 4; ++i) o[i] = bits_f32(r.v[i]);
}

#define KP (HD + 4)  // K row stride in floats: 16-byte rows, and 16-byte reads of 8 lanes' rows hit distinct banks
#define HD4 (HD / 4)
#define SLICES (NT / BK)    // scores: thread (slice, key j) takes a 1/SLICES slice of the dimensions
#define SW4 (HD4 / SLICES)  //   float4s of its slice
#define NKS (NT / HD4)      // P.V: thread (key slice, dimension float4) takes keys ks, ks + NKS, ...
struct DecSmem {
  f32x4 q[BQ * HD4];
  f32x4 k[BK * KP / 4];  // k then v: after the last tile they hold the key slices' partial outputs
  f32x4 v[BK * HD4];
  float s[BQ * BK];  // scores, then probabilities
  float red[SLICES * BQ * BK];  // the dimension slices' partial scores
  float m[BQ], l[BQ], alpha[BQ];
  u64 row[2][BK];  // byte offset of each key row of a tile in the cache (NO_ROW: past the end)
};

// Row offsets of the BK keys of the tile at k0 (threads 0..BK-1): one page lookup per key.
DEVICE void dec_rows(u64* row, const i32* bt, u32 k0, u32 k_end, u32 head, u32 nkv, u32 ps, u32 shift, bool pow2,
                     u32 rb) {
  for (u32 j = tid_x(); j < BK; j += NT) {
    const u32 key = k0 + j;
    u64 off = NO_ROW;
    if (key < k_end) {
      const u32 pi = pow2 ? key >> shift : key / ps, slot = pow2 ? key & (ps - 1u) : key % ps;
      off = (((u64)(u32)bt[pi] * nkv + head) * ps + slot) * rb;
    }
    row[j] = off;
  }
}

// This thread's segments of a tile's K and V rows into registers (zero past the end).
DEVICE void dec_fetch(const u64* row, const u8* kc, const u8* vc, KvRaw* kr, KvRaw* vr) {
  for (u32 i = 0; i < NSEG; ++i) {
    const u32 e = tid_x() + i * NT, j = e / SPR;
    const u64 off = e < BK * SPR ? row[j] : NO_ROW;
    kr[i] = off != NO_ROW ? kv_fetch(kc + off, e % SPR) : kv_zero();
    vr[i] = off != NO_ROW ? kv_fetch(vc + off, e % SPR) : kv_zero();
  }
}

DEVICE void dec_store(DecSmem* sm, const KvRaw* kr, const KvRaw* vr) {
  for (u32 i = 0; i < NSEG; ++i) {
    const u32 e = tid_x() + i * NT, j = e / SPR, c = (e % SPR) * (KV_S / 4);  // c: first float4 of the segment
    if (e < BK * SPR) {
      float kf[KV_S], vf[KV_S];
      kv_unpack(kr[i], kf);
      kv_unpack(vr[i], vf);
      for (u32 t = 0; t < KV_S / 4; ++t) {
        f32x4 a, b;
        for (u32 u = 0; u < 4; ++u) a.v[u] = kf[4 * t + u], b.v[u] = vf[4 * t + u];
        sm->k[j * (KP / 4) + c + t] = a;
        sm->v[j * HD4 + c + t] = b;
      }
    }
  }
}

// xor-shuffle reductions over aligned segments of BK lanes (BK a power of two <= 32).
DEVICE float seg_max(float v) {
  for (u32 o = BK / 2; o > 0; o >>= 1) v = f_max(v, shfl_xor(v, o));
  return v;
}
DEVICE float seg_sum(float v) {
  for (u32 o = BK / 2; o > 0; o >>= 1) v += shfl_xor(v, o);
  return v;
}

// Two blocks per SM are all a decode step has (splits x KV heads blocks): let ptxas use the registers
// of two blocks rather than spill to keep more resident (its default with a bare launch bound).
extern "C" __global__ void __launch_bounds__(NT, 2) attn_decode_head_dim128_f32(const float* RESTRICT q, const u8* RESTRICT k_cache, const u8* RESTRICT v_cache, const i32* RESTRICT block_table, float* RESTRICT part_o, float* RESTRICT part_ml, i32 n_heads, i32 n_kv_heads, i32 page_size, const i32* RESTRICT kv_len, float scale) { forge_kernel_entry();
  SHARED DecSmem sm;
  const u32 split = bid_x(), kvh = bid_y(), group = (u32)n_heads / (u32)n_kv_heads, g0 = bid_z() * BQ;
  const u32 live = group - g0 < BQ ? group - g0 : BQ;  // heads of this block (the rest is padding)
  const u32 n = (u32)kv_len[0], ns = gdim_x(), nkv = (u32)n_kv_heads, ps = (u32)page_size;
  const u32 chunk = ((n + ns - 1) / ns + BK - 1) / BK * BK;
  const bool pow2 = (ps & (ps - 1u)) == 0u;
  u32 shift = 0;
  while ((1u << shift) < ps) ++shift;
  const u32 rb = kv_row_bytes(HD);
  for (u32 e = tid_x(); e < BQ * HD; e += NT) {
    const u32 g = g0 + e / HD;
    sm.q[e / 4].v[e % 4] = g < group ? q[((u64)kvh * group + g) * HD + e % HD] : 0.0f;
  }
  for (u32 r = tid_x(); r < BQ; r += NT) {
    sm.m[r] = -f_inf();
    sm.l[r] = 0.0f;
  }
  const u64 k_begin = (u64)split * chunk;
  const u32 k_end = k_begin + chunk < (u64)n ? (u32)(k_begin + chunk) : n;
  const u32 dq = tid_x() % HD4, ks = tid_x() / HD4;  // this thread's P.V share
  f32x4 acc[BQ];
  for (u32 h = 0; h < BQ; h++) acc[h].v[0] = acc[h].v[1] = acc[h].v[2] = acc[h].v[3] = 0.0f;
  KvRaw kr[NSEG], vr[NSEG];
  if (k_begin < k_end) dec_rows(sm.row[0], block_table, (u32)k_begin, k_end, kvh, nkv, ps, shift, pow2, rb);
  sync_threads();
  if (k_begin < k_end) dec_fetch(sm.row[0], k_cache, v_cache, kr, vr);
  u32 buf = 0;
  for (u32 k0 = (u32)k_begin; k0 < k_end; k0 += BK, buf ^= 1u) {
    dec_store(&sm, kr, vr);
    if (k0 + BK < k_end) dec_rows(sm.row[buf ^ 1u], block_table, k0 + BK, k_end, kvh, nkv, ps, shift, pow2, rb);
    sync_threads();
    if (k0 + BK < k_end) dec_fetch(sm.row[buf ^ 1u], k_cache, v_cache, kr, vr);  // in flight from here on
    // scores of the live heads: s[h][j] = scale * q_h . k_j (-inf past the end). Thread (slice, j)
    // reads its slice of key j once for all the heads (q reads are broadcasts), then the SLICES
    // partial dot products of each (h, j) are added.
    {
      const u32 j = tid_x() % BK, sl = tid_x() / BK;
      float a[BQ];
      for (u32 h = 0; h < BQ; ++h) a[h] = 0.0f;
ATTN_UNROLL
      for (u32 d = 0; d < SW4; ++d) {
        const f32x4 kv = sm.k[j * (KP / 4) + sl * SW4 + d];
        for (u32 h = 0; h < BQ; ++h) {
          if (h < live) {
            const f32x4 qv = sm.q[h * HD4 + sl * SW4 + d];
            a[h] = f_fma(qv.v[0], kv.v[0], f_fma(qv.v[1], kv.v[1], f_fma(qv.v[2], kv.v[2], f_fma(qv.v[3], kv.v[3], a[h]))));
          }
        }
      }
      for (u32 h = 0; h < BQ; ++h)
        if (h < live) sm.red[(sl * BQ + h) * BK + j] = a[h];
    }
    sync_threads();
    for (u32 e = tid_x(); e < live * BK; e += NT) {
      const u32 h = e / BK, j = e % BK;
      float t = 0.0f;
      for (u32 sl = 0; sl < SLICES; ++sl) t += sm.red[(sl * BQ + h) * BK + j];
      sm.s[e] = k0 + j < k_end ? t * scale : -f_inf();
    }
    sync_threads();
    // online softmax: the BK scores of row r sit in one segment of BK lanes
    for (u32 e0 = 0; e0 < BQ * BK; e0 += NT) {
      const u32 e = e0 + tid_x(), r = e / BK;
      const bool on = e < live * BK;
      const float s = on ? sm.s[e] : -f_inf();
      const float mo = on ? sm.m[r] : -f_inf();
      const float mn = f_max(mo, seg_max(s));
      const float pr = mn == -f_inf() ? 0.0f : f_exp(s - mn);
      const float sum = seg_sum(pr);
      if (on) {
        sm.s[e] = pr;
        if (e % BK == 0) {
          const float alpha = mn == -f_inf() ? 1.0f : f_exp(mo - mn);  // 0 when mo is -inf
          sm.alpha[r] = alpha;
          sm.l[r] = sm.l[r] * alpha + sum;
          sm.m[r] = mn;
        }
      }
    }
    sync_threads();
    // P.V: thread (ks, d) keeps, for every live head, the partial output of keys ks, ks + NKS, ...
    // (rescaled by alpha like the whole): each V float4 is read once for all the heads.
    if (ks < NKS) {
      for (u32 h = 0; h < BQ; ++h) {
        if (h < live) {
          const float al = sm.alpha[h];
          for (u32 i = 0; i < 4; ++i) acc[h].v[i] *= al;
        }
      }
ATTN_UNROLL
      for (u32 j = ks; j < BK; j += NKS) {
        const f32x4 vv = sm.v[j * HD4 + dq];
        for (u32 h = 0; h < BQ; ++h) {
          if (h < live) {
            const float pj = sm.s[h * BK + j];
            for (u32 i = 0; i < 4; ++i) acc[h].v[i] = f_fma(pj, vv.v[i], acc[h].v[i]);
          }
        }
      }
    }
    sync_threads();  // the next tile overwrites k, v, s and a row buffer
  }
  const u64 row0 = (u64)split * (u32)n_heads + kvh * group + g0;  // partial row of this block's head g0
  // the key slices' partial outputs, added through shared memory (the k and v tiles' space)
  f32x4* red = sm.k;
  sync_threads();
  if (ks < NKS)
    for (u32 h = 0; h < BQ; ++h)
      if (h < live) red[(ks * BQ + h) * HD4 + dq] = acc[h];
  sync_threads();
  for (u32 c = tid_x(); c < live * HD4; c += NT) {
    const u32 h = c / HD4, d = c % HD4;
    f32x4 t = red[h * HD4 + d];
    for (u32 k = 1; k < NKS; ++k)
      for (u32 i = 0; i < 4; ++i) t.v[i] += red[(k * BQ + h) * HD4 + d].v[i];
    for (u32 i = 0; i < 4; ++i) part_o[(row0 + h) * HD + 4 * d + i] = t.v[i];
  }
  for (u32 r = tid_x(); r < live; r += NT) {
    part_ml[(row0 + r) * 2] = sm.m[r];
    part_ml[(row0 + r) * 2 + 1] = sm.l[r];
  }
}
