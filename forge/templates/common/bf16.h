// ---- bf16 on top of bits_f32/f32_bits/f_isnan, the same on every target ----
DEVICE float bf16_to_f32(u16 h) { return bits_f32((u32)h << 16); }
DEVICE u16 f32_to_bf16(float f) {
  u32 b = f32_bits(f);
  if (f_isnan(f)) return (u16)((b >> 16) | 0x40);  // keep sign and payload top, force quiet
  return (u16)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);  // round to nearest even
}
