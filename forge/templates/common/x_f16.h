// X rounded to f16 for the f16 matrix paths, with a power-of-two scale so that f16's range (65504)
// holds it: the one rule of the mma.sync gemm's f32-X path (gemm/mma_sync.j2's x_fill, per row of
// a K step's chunk) and of the x_f16 conversion (x_f16.hip.j2, per whole row, once per batch).
// The same rule on the same maximum gives the same exponent, hence the same f16 values.
//
// amax is the largest *finite* |x| of the chunk or row: Inf and NaN are not counted (they stay Inf
// and NaN in f16), so one infinity cannot let the row's finite values overflow. e > 0 only if amax
// reaches 2^15 (biased exponent 142); then amax 2^-e lies in [2^14, 2^15). e <= 254 - 141 = 113.
DEVICE float x_finite_abs(float v) { const float a = f_abs(v); return a < f_inf() ? a : 0.0f; }
DEVICE u32 x_scale_exp(float amax) { const u32 ex = f32_bits(amax) >> 23; return ex >= 142u ? ex - 141u : 0u; }
DEVICE float x_scale_down(u32 e) { return bits_f32((127u - e) << 23); }  // 2^-e, exact
DEVICE float x_scale_up(u32 e) { return bits_f32((127u + e) << 23); }    // 2^e, exact
// Two f32 as one .f16x2 word: lo in the low half (the layout mma.sync's registers and LDS tiles use).
DEVICE u32 f16x2(float lo, float hi) { return (u32)f32_to_f16(lo) | ((u32)f32_to_f16(hi) << 16); }
