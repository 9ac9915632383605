// ---- math and f16 conversions on compiler builtins: the same text for clang (AMD) and the host
// compiler (CPU emulator), so both targets compute with the same functions ----
DEVICE float f_exp(float x) { return __builtin_expf(x); }
DEVICE float f_exp2(float x) { return __builtin_exp2f(x); }
DEVICE float f_log(float x) { return __builtin_logf(x); }
DEVICE float f_log2(float x) { return __builtin_log2f(x); }
DEVICE float f_sqrt(float x) { return __builtin_sqrtf(x); }
DEVICE float f_rsqrt(float x) { return 1.0f / __builtin_sqrtf(x); }
DEVICE float f_abs(float x) { return __builtin_fabsf(x); }
DEVICE float f_floor(float x) { return __builtin_floorf(x); }
DEVICE float f_max(float a, float b) { return __builtin_fmaxf(a, b); }
DEVICE float f_min(float a, float b) { return __builtin_fminf(a, b); }
DEVICE float f_fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
DEVICE bool f_isnan(float x) { return __builtin_isnan(x); }
DEVICE bool f_isinf(float x) { return __builtin_isinf(x); }
DEVICE float f_inf() { return __builtin_inff(); }
DEVICE float f_nan() { return __builtin_nanf(""); }

// ---- conversions ----
DEVICE float bits_f32(u32 b) { return __builtin_bit_cast(float, b); }
DEVICE u32 f32_bits(float f) { return __builtin_bit_cast(u32, f); }
DEVICE float f16_to_f32(u16 h) { return (float)__builtin_bit_cast(_Float16, h); }
DEVICE u16 f32_to_f16(float f) { return __builtin_bit_cast(u16, (_Float16)f); }
