// ---- host vectors: GCC vector extensions, which the compiler maps onto AVX-512, AVX2+FMA, SSE or NEON
// (whatever -march says), so a loop over vf is vectorized by construction rather than by the
// auto-vectorizer's goodwill. Float reductions are written with explicit lanes because without
// -ffast-math the compiler may not reorder a scalar sum (and the oracles' bounds assume it does not
// reorder freely either: a vf accumulator is HV partial sums, then a halving tree). ----
#define HV 16
typedef float vf __attribute__((vector_size(4 * HV)));
typedef i32 vi __attribute__((vector_size(4 * HV)));
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));

DEVICE vf vf_load(const float* p) { vf v; __builtin_memcpy(&v, p, sizeof v); return v; }
DEVICE void vf_store(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
DEVICE vf vf_splat(float x) { return (vf){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }  // not {} + x: x + 0 is not x for -0
// The halves of a vf and back, as register shuffles (a memcpy through a local would make the
// compiler keep the vector, an accumulator included, in memory).
DEVICE vf8 vf_lo(vf v) { return __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7); }
DEVICE vf8 vf_hi(vf v) { return __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15); }
DEVICE vf vf_cat(vf8 a, vf8 b) { return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
// The first n < HV elements of p, zeros after (never reads past p + n).
DEVICE vf vf_load_n(const float* p, u32 n) {
  float t[HV] = {};
  for (u32 i = 0; i < n; ++i) t[i] = p[i];
  return vf_load(t);
}
DEVICE void vf_store_n(float* p, vf v, u32 n) {
  for (u32 i = 0; i < n; ++i) p[i] = v[i];
}
// a * b + c with one rounding per lane: the ISA's vector FMA through its builtin (a lane loop of
// __builtin_fmaf is vectorized only where gcc's SLP pass sees it whole, which inlining can defeat),
// else one fmaf per lane.
DEVICE vf8 vf8_fma(vf8 a, vf8 b, vf8 c) {
#ifdef __FMA__
  return __builtin_ia32_vfmaddps256(a, b, c);
#else
  vf8 r;
  for (int i = 0; i < 8; ++i) r[i] = __builtin_fmaf(a[i], b[i], c[i]);
  return r;
#endif
}
DEVICE vf vf_fma(vf a, vf b, vf c) {
#ifdef __AVX512F__
  return __builtin_ia32_vfmaddps512_mask(a, b, c, (unsigned short)-1, 4);
#else
  return vf_cat(vf8_fma(vf_lo(a), vf_lo(b), vf_lo(c)), vf8_fma(vf_hi(a), vf_hi(b), vf_hi(c)));
#endif
}
// Lane-wise max with f_max's rule (a NaN operand yields the other one).
DEVICE vf vf_max(vf a, vf b) { return (a > b || b != b) ? a : b; }
DEVICE vf vf_abs(vf a) { return (vf)((vi)a & 0x7fffffff); }
// Sum of the lanes: a halving tree (log2 HV additions per lane).
DEVICE float vf_sum(vf v) {
  const vf8 a = vf_lo(v) + vf_hi(v);
  const vf4 c = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (c[0] + c[2]) + (c[1] + c[3]);
}
// The lane sums of 16 vectors at once: lane j of the result is the sum of v[j]'s lanes. A butterfly
// of 15 folds (two shuffles and an add each) instead of 16 separate halving trees: fold k adds the
// two halves of every group of 2^(4-k) lanes of a and of b and packs the results side by side, so
// after four levels lane j holds v[j]'s total (a tree of log2 HV additions per lane, as vf_sum).
DEVICE vf vf_fold0(vf a, vf b) {
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
         __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
}
DEVICE vf vf_fold1(vf a, vf b) {
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
         __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
}
DEVICE vf vf_fold2(vf a, vf b) {
  return __builtin_shufflevector(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
         __builtin_shufflevector(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
}
DEVICE vf vf_fold3(vf a, vf b) {
  return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}
DEVICE vf vf_sum16(const vf* v) {
  vf u[8], w[4], x[2];
  for (int i = 0; i < 8; ++i) u[i] = vf_fold0(v[2 * i], v[2 * i + 1]);
  for (int i = 0; i < 4; ++i) w[i] = vf_fold1(u[2 * i], u[2 * i + 1]);
  for (int i = 0; i < 2; ++i) x[i] = vf_fold2(w[2 * i], w[2 * i + 1]);
  return vf_fold3(x[0], x[1]);
}
// f_max / f_min with the same rule (a NaN operand yields the other one) as compare-and-select:
// __builtin_fmaxf is a libm call on x86 (maxss is not symmetric in NaN), these are two instructions.
DEVICE float h_max(float a, float b) { return (a > b || b != b) ? a : b; }
DEVICE float h_min(float a, float b) { return (a < b || b != b) ? a : b; }
DEVICE float vf_hmax(vf v) {
  for (int w = HV / 2; w > 0; w /= 2)
    for (int i = 0; i < w; ++i) v[i] = h_max(v[i], v[i + w]);
  return v[0];
}

// exp(x) for every lane, within 2 ulp of the exact value on the whole float range (tested against
// float64 in tests/runtime/test_host.py): Cody-Waite reduction x = n ln2 + r (|r| <= ln2/2, the
// two-part ln2 makes n*ln2_hi exact), Cephes' degree-7 polynomial for e^r, and 2^n applied as two
// power-of-two factors so results in the subnormal range round once, correctly. NaN stays NaN,
// -inf gives 0, +inf and overflow give +inf. libm's expf is a call per element; this vectorizes.
DEVICE vf vf_exp(vf x) {
  x = x < -104.0f ? vf_splat(-104.0f) : x;  // e^-104 < 2^-150: 0 (a NaN fails both tests, stays NaN)
  x = x > 89.0f ? vf_splat(89.0f) : x;      // e^89 > FLT_MAX: inf
  const vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // rint(x / ln2), |.| < 2^22
  vf r = vf_fma(n, vf_splat(-0.693359375f), x);
  r = vf_fma(n, vf_splat(2.12194440e-4f), r);
  vf p = vf_splat(1.9875691500e-4f);
  p = vf_fma(p, r, vf_splat(1.3981999507e-3f));
  p = vf_fma(p, r, vf_splat(8.3334519073e-3f));
  p = vf_fma(p, r, vf_splat(4.1665795894e-2f));
  p = vf_fma(p, r, vf_splat(1.6666665459e-1f));
  p = vf_fma(p, r, vf_splat(5.0000001201e-1f));
  const vf y = vf_fma(p, r * r, r) + 1.0f;
  const vi ni = __builtin_convertvector(n, vi), h = ni >> 1;  // n in [-150, 129]: both halves normal
  return y * (vf)((h + 127) << 23) * (vf)((ni - h + 127) << 23);
}
DEVICE float h_exp(float x) { return vf_exp(vf_splat(x))[0]; }

// f16 storage <-> vf: F16C conversions where the ISA has them (gcc does not vectorize _Float16
// casts), else one element at a time. Both round to nearest even and keep NaN a NaN.
#ifdef __F16C__
typedef short vh8 __attribute__((vector_size(16)));
DEVICE vf vf_load_f16(const u16* p) {
  vh8 a, b;
  __builtin_memcpy(&a, p, 16);
  __builtin_memcpy(&b, p + 8, 16);
  return vf_cat(__builtin_ia32_vcvtph2ps256(a), __builtin_ia32_vcvtph2ps256(b));
}
DEVICE void vf_store_f16(u16* p, vf v) {
  const vh8 a = __builtin_ia32_vcvtps2ph256(vf_lo(v), 0), b = __builtin_ia32_vcvtps2ph256(vf_hi(v), 0);
  __builtin_memcpy(p, &a, 16);
  __builtin_memcpy(p + 8, &b, 16);
}
#else
DEVICE vf vf_load_f16(const u16* p) {
  vf v;
  for (int i = 0; i < HV; ++i) v[i] = f16_to_f32(p[i]);
  return v;
}
DEVICE void vf_store_f16(u16* p, vf v) {
  for (int i = 0; i < HV; ++i) p[i] = f32_to_f16(v[i]);
}
#endif
DEVICE vf vf_load_n_f16(const u16* p, u32 n) {
  vf v = {};
  for (u32 i = 0; i < n; ++i) v[i] = f16_to_f32(p[i]);
  return v;
}
DEVICE void vf_store_n_f16(u16* p, vf v, u32 n) {
  for (u32 i = 0; i < n; ++i) p[i] = f32_to_f16(v[i]);
}
