// ---- forge prelude: CPU emulator (host C++; the runtime is forge/runtime/cpu_emulator.cpp) ----
// Each emulated GPU thread is one call of the kernel function on its own fiber. No system headers:
// everything is on compiler builtins, so a kernel compiles in a fraction of a second.
{% include "common/emu_abi.h" %}
// Constant for the life of one emulated thread (one call of the kernel), so the compiler may hoist
// it; redeclared here, not in emu_abi.h, so the runtime that defines it is not affected.
extern "C" const struct forge_emu_thread* forge_emu_self(void) __attribute__((const));

{% include "common/types.h" %}

// The runtime's `forge_entry_<symbol>` (common/entry_emu.j2) calls the kernel once per thread.
#define KERNEL(max_threads) static void
#define DEVICE static inline
// A block runs entirely on one OS thread and blocks on one OS thread run one after another, so a
// thread_local static is exactly one block's shared memory.
#define SHARED static thread_local
#define RESTRICT __restrict__
#define DYN_SHARED(T, name) T* name = (T*)forge_emu_self()->dyn_smem

DEVICE u32 tid_x() { return forge_emu_self()->tid[0]; }
DEVICE u32 tid_y() { return forge_emu_self()->tid[1]; }
DEVICE u32 tid_z() { return forge_emu_self()->tid[2]; }
DEVICE u32 bid_x() { return forge_emu_self()->bid[0]; }
DEVICE u32 bid_y() { return forge_emu_self()->bid[1]; }
DEVICE u32 bid_z() { return forge_emu_self()->bid[2]; }
DEVICE u32 bdim_x() { return forge_emu_self()->bdim[0]; }
DEVICE u32 bdim_y() { return forge_emu_self()->bdim[1]; }
DEVICE u32 bdim_z() { return forge_emu_self()->bdim[2]; }
DEVICE u32 gdim_x() { return forge_emu_self()->gdim[0]; }
DEVICE u32 gdim_y() { return forge_emu_self()->gdim[1]; }
DEVICE u32 gdim_z() { return forge_emu_self()->gdim[2]; }
DEVICE u32 linear_tid() { return forge_emu_self()->linear; }
DEVICE u32 lane_id() { return forge_emu_self()->lane; }
DEVICE u32 wave_id() { return forge_emu_self()->wave; }

// The empty asm tells the compiler that other threads' writes to memory (shared arrays included)
// become visible across the call, which switches fibers.
#define FORGE_MEMORY_FENCE() __asm__ __volatile__("" ::: "memory")
DEVICE void sync_threads() {
  FORGE_MEMORY_FENCE();
  forge_emu_sync();
  FORGE_MEMORY_FENCE();
}

// ---- wave operations: every live lane of the wave publishes, then each reads its source ----
DEVICE const u64* forge_exchange(u64 v) {
  FORGE_MEMORY_FENCE();
  const u64* all = forge_emu_exchange(v);
  FORGE_MEMORY_FENCE();
  return all;
}
DEVICE u32 forge_lane_value(const u64* all, u32 src, u32 own) { return src < WAVE_SIZE ? (u32)all[src] : own; }
DEVICE u32 shfl(u32 v, u32 s) { return forge_lane_value(forge_exchange(v), s, v); }
DEVICE u32 shfl_xor(u32 v, u32 m) { return forge_lane_value(forge_exchange(v), lane_id() ^ m, v); }
DEVICE u32 shfl_down(u32 v, u32 d) { return forge_lane_value(forge_exchange(v), lane_id() + d, v); }
DEVICE u32 shfl_up(u32 v, u32 d) {
  const u64* all = forge_exchange(v);
  return lane_id() >= d ? (u32)all[lane_id() - d] : v;
}
DEVICE i32 shfl(i32 v, u32 s) { return (i32)shfl((u32)v, s); }
DEVICE i32 shfl_xor(i32 v, u32 m) { return (i32)shfl_xor((u32)v, m); }
DEVICE i32 shfl_down(i32 v, u32 d) { return (i32)shfl_down((u32)v, d); }
DEVICE i32 shfl_up(i32 v, u32 d) { return (i32)shfl_up((u32)v, d); }
DEVICE float shfl(float v, u32 s) { return __builtin_bit_cast(float, shfl(__builtin_bit_cast(u32, v), s)); }
DEVICE float shfl_xor(float v, u32 m) { return __builtin_bit_cast(float, shfl_xor(__builtin_bit_cast(u32, v), m)); }
DEVICE float shfl_down(float v, u32 d) { return __builtin_bit_cast(float, shfl_down(__builtin_bit_cast(u32, v), d)); }
DEVICE float shfl_up(float v, u32 d) { return __builtin_bit_cast(float, shfl_up(__builtin_bit_cast(u32, v), d)); }
// Predicates travel as 2|p: bit 1 marks a live lane (exited lanes read as poison, bits 0-1 clear).
DEVICE u64 wave_ballot(bool p) {
  const u64* all = forge_exchange(2u | (u32)p);
  u64 r = 0;
  for (u32 i = 0; i < WAVE_SIZE; ++i) r |= (all[i] & 1u) << i;
  return r;
}
DEVICE bool wave_any(bool p) { return wave_ballot(p) != 0; }
DEVICE bool wave_all(bool p) {
  const u64* all = forge_exchange(2u | (u32)p);
  for (u32 i = 0; i < WAVE_SIZE; ++i)
    if ((all[i] & 3u) == 2u) return false;
  return true;
}

{% include "common/atomics_cpu.h" %}

{% include "common/math_builtins.h" %}
{% include "common/bf16.h" %}
{% if arch.has("wmma_f16") or arch.has("mma_sync") or arch.has("mx_scaled_mfma") or arch.has("mx_cvt") or arch.has("mfma_f16") %}
{% include "common/mma_emu.h.j2" %}
{% endif %}
// ---- end of prelude ----
