// ---- forge prelude: AMD (clang HIP device mode, no HIP headers: everything on clang builtins) ----
{% include "common/types.h" %}

#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define KERNEL(max_threads) extern "C" __global__ __attribute__((amdgpu_flat_work_group_size(1, max_threads))) void
#define DEVICE static __device__ inline __attribute__((always_inline))
#define SHARED __shared__
#define RESTRICT __restrict__
// All DYN_SHARED pointers start at the block's dynamic shared memory (as HIP_DYNAMIC_SHARED).
#define DYN_SHARED(T, name) extern __shared__ __attribute__((aligned(16))) u8 forge_dyn_smem[]; T* name = (T*)forge_dyn_smem

DEVICE u32 tid_x() { return __builtin_amdgcn_workitem_id_x(); }
DEVICE u32 tid_y() { return __builtin_amdgcn_workitem_id_y(); }
DEVICE u32 tid_z() { return __builtin_amdgcn_workitem_id_z(); }
DEVICE u32 bid_x() { return __builtin_amdgcn_workgroup_id_x(); }
DEVICE u32 bid_y() { return __builtin_amdgcn_workgroup_id_y(); }
DEVICE u32 bid_z() { return __builtin_amdgcn_workgroup_id_z(); }
DEVICE u32 bdim_x() { return __builtin_amdgcn_workgroup_size_x(); }
DEVICE u32 bdim_y() { return __builtin_amdgcn_workgroup_size_y(); }
DEVICE u32 bdim_z() { return __builtin_amdgcn_workgroup_size_z(); }
// The dispatch packet holds the grid in work-items; forge always launches whole blocks.
DEVICE u32 gdim_x() { return __builtin_amdgcn_grid_size_x() / bdim_x(); }
DEVICE u32 gdim_y() { return __builtin_amdgcn_grid_size_y() / bdim_y(); }
DEVICE u32 gdim_z() { return __builtin_amdgcn_grid_size_z() / bdim_z(); }
DEVICE u32 linear_tid() { return tid_x() + bdim_x() * (tid_y() + bdim_y() * tid_z()); }
DEVICE u32 lane_id() { return linear_tid() % WAVE_SIZE; }
DEVICE u32 wave_id() { return linear_tid() / WAVE_SIZE; }

// __syncthreads as HIP spells it: release fence, s_barrier, acquire fence (workgroup scope).
DEVICE void sync_threads() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}

// ---- wave operations: ds_bpermute reads lane (addr/4) of the wave ----
DEVICE i32 forge_bperm(u32 src, i32 v) { return __builtin_amdgcn_ds_bpermute((i32)(src << 2), v); }
DEVICE i32 shfl(i32 v, u32 src) { i32 r = forge_bperm(src % WAVE_SIZE, v); return src < WAVE_SIZE ? r : v; }
DEVICE i32 shfl_xor(i32 v, u32 mask) { u32 s = lane_id() ^ mask; i32 r = forge_bperm(s % WAVE_SIZE, v); return s < WAVE_SIZE ? r : v; }
DEVICE i32 shfl_down(i32 v, u32 d) { u32 s = lane_id() + d; i32 r = forge_bperm(s % WAVE_SIZE, v); return s < WAVE_SIZE ? r : v; }
DEVICE i32 shfl_up(i32 v, u32 d) { u32 l = lane_id(); i32 r = forge_bperm((l - d) % WAVE_SIZE, v); return l >= d ? r : v; }
DEVICE u32 shfl(u32 v, u32 s) { return (u32)shfl((i32)v, s); }
DEVICE u32 shfl_xor(u32 v, u32 m) { return (u32)shfl_xor((i32)v, m); }
DEVICE u32 shfl_down(u32 v, u32 d) { return (u32)shfl_down((i32)v, d); }
DEVICE u32 shfl_up(u32 v, u32 d) { return (u32)shfl_up((i32)v, d); }
DEVICE float shfl(float v, u32 s) { return __builtin_bit_cast(float, shfl(__builtin_bit_cast(i32, v), s)); }
DEVICE float shfl_xor(float v, u32 m) { return __builtin_bit_cast(float, shfl_xor(__builtin_bit_cast(i32, v), m)); }
DEVICE float shfl_down(float v, u32 d) { return __builtin_bit_cast(float, shfl_down(__builtin_bit_cast(i32, v), d)); }
DEVICE float shfl_up(float v, u32 d) { return __builtin_bit_cast(float, shfl_up(__builtin_bit_cast(i32, v), d)); }
#if WAVE_SIZE == 32
DEVICE u64 wave_ballot(bool p) { return (u64)__builtin_amdgcn_ballot_w32(p); }
DEVICE bool wave_all(bool p) { return __builtin_amdgcn_ballot_w32(p) == __builtin_amdgcn_ballot_w32(true); }
#else
DEVICE u64 wave_ballot(bool p) { return __builtin_amdgcn_ballot_w64(p); }
DEVICE bool wave_all(bool p) { return __builtin_amdgcn_ballot_w64(p) == __builtin_amdgcn_ballot_w64(true); }
#endif
DEVICE bool wave_any(bool p) { return wave_ballot(p) != 0; }

// ---- atomics: device (agent) scope, relaxed ----
DEVICE float atomic_add(float* p, float v) { return __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT); }
DEVICE u32 atomic_add(u32* p, u32 v) { return __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT); }
DEVICE i32 atomic_add(i32* p, i32 v) { return __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT); }
DEVICE u32 atomic_max(u32* p, u32 v) { return __hip_atomic_fetch_max(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT); }
DEVICE u32 atomic_cas(u32* p, u32 expected, u32 desired) {
  __hip_atomic_compare_exchange_strong(p, &expected, desired, __ATOMIC_RELAXED, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
  return expected;
}

{% include "common/math_builtins.h" %}
{% include "common/bf16.h" %}
// ---- end of prelude ----
