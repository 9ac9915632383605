// ---- atomics on the CPU targets (emulator and host): device scope, relaxed, as on the GPU
// targets; blocks run on several OS threads at once. Included by prelude_emu.h and prelude_host.h. ----
DEVICE float atomic_add(float* p, float v) {
  u32* q = (u32*)p;
  u32 old = __atomic_load_n(q, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(q, &old, __builtin_bit_cast(u32, __builtin_bit_cast(float, old) + v),
                                      true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return __builtin_bit_cast(float, old);
}
DEVICE u32 atomic_add(u32* p, u32 v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
DEVICE i32 atomic_add(i32* p, i32 v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
DEVICE u32 atomic_max(u32* p, u32 v) {
  u32 old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
DEVICE u32 atomic_cas(u32* p, u32 expected, u32 desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;
}
