// ---- forge prelude: CUDA (NVRTC, no CUDA headers: NVRTC's built-in declarations only) ----
{% include "common/types.h" %}

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
{% include "common/bf16.h" %}
// ---- end of prelude ----
