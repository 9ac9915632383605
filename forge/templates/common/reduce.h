// ---- reductions over a wave and over a block, on the vocabulary's shuffles ----
DEVICE float wave_sum(float v) {
  for (u32 o = WAVE_SIZE / 2; o > 0; o >>= 1) v += shfl_xor(v, o);
  return v;
}
DEVICE float wave_max(float v) {
  for (u32 o = WAVE_SIZE / 2; o > 0; o >>= 1) v = f_max(v, shfl_xor(v, o));
  return v;
}
// Block-wide reductions: every thread gets the result. `scratch` is shared memory with room for
// one float per wave; the trailing barrier lets callers reuse it at once.
DEVICE float block_sum(float v, float* scratch) {
  const u32 nwaves = (bdim_x() * bdim_y() * bdim_z() + WAVE_SIZE - 1) / WAVE_SIZE;
  v = wave_sum(v);
  if (lane_id() == 0) scratch[wave_id()] = v;
  sync_threads();
  float r = lane_id() < nwaves ? scratch[lane_id()] : 0.0f;
  r = wave_sum(r);
  sync_threads();
  return r;
}
DEVICE float block_max(float v, float* scratch) {
  const u32 nwaves = (bdim_x() * bdim_y() * bdim_z() + WAVE_SIZE - 1) / WAVE_SIZE;
  v = wave_max(v);
  if (lane_id() == 0) scratch[wave_id()] = v;
  sync_threads();
  float r = lane_id() < nwaves ? scratch[lane_id()] : -f_inf();
  r = wave_max(r);
  sync_threads();
  return r;
}
