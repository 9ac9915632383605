// ---- sampling helpers shared by the GPU and host sample kernels (pure functions) ----
#define SMP_HISTORY {{ history }}u
// Floats ordered as unsigned keys: a < b exactly when key(a) < key(b) (for non-NaN values).
DEVICE u32 smp_key(float v) {
  const u32 b = f32_bits(v);
  return (b >> 31) ? ~b : b | 0x80000000u;
}
// The counter-based random number of draw `n` under `seed`: 24 bits, as a float in [0, 1).
DEVICE float smp_uniform(u32 seed, u32 n) {
  u32 x = seed * 0x9e3779b9u + n * 0x85ebca6bu;
  x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
  return (float)(x >> 8) * 5.9604644775390625e-8f;  // 2^-24
}
// llama.cpp's repetition penalty of one logit.
DEVICE float smp_penalize(float l, float pen) { return l > 0.0f ? l / pen : l * pen; }
// The history entry j steps back from the newest (j = 0: the last token).
DEVICE i32 smp_hist(const u32* state, u32 j) {
  return (i32)state[16 + (state[9] + SMP_HISTORY - 1 - j) % SMP_HISTORY];
}
// Append `tok` to the history ring and count the draw.
DEVICE void smp_commit(u32* state, i32 tok) {
  state[16 + state[9] % SMP_HISTORY] = (u32)tok;
  state[9] = (state[9] + 1) % SMP_HISTORY;
  state[8] = state[8] + 1 < SMP_HISTORY ? state[8] + 1 : SMP_HISTORY;
  state[7] += 1;
}
