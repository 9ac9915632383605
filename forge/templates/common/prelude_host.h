// ---- forge prelude: the host CPU target (host C++, -O3 with this machine's ISA) ----
// A host kernel is plain C++ for a CPU: the runtime (forge/runtime/host_runtime.cpp) calls it once
// per block of the grid, blocks spread over a thread pool, with block = (1,1,1). There are no
// threads inside a block, so no barriers, shared memory or wave operations: calling one of them is
// a compile error below, which keeps a GPU idiom from slipping into a host template. No system
// headers here (a kernel compiles in well under a second); a template that gains from intrinsics
// includes <immintrin.h> itself, under #ifdef __AVX2__ with a portable fallback.
{% include "common/host_abi.h" %}
{% include "common/types.h" %}

// A host kernel is declared `KERNEL(1) name(HOST_BLOCK, args...)`: its block index arrives as the
// first parameter, so bid_*() / gdim_*() are valid in the kernel body (a helper takes what it
// needs as arguments). The entry (common/entry_host.j2) passes it.
#define KERNEL(max_threads) static inline __attribute__((always_inline)) void
#define HOST_BLOCK const forge_host_block& forge_blk
#define DEVICE static inline
#define RESTRICT __restrict__
#define bid_x() (forge_blk.bid[0])
#define bid_y() (forge_blk.bid[1])
#define bid_z() (forge_blk.bid[2])
#define gdim_x() (forge_blk.gdim[0])
#define gdim_y() (forge_blk.gdim[1])
#define gdim_z() (forge_blk.gdim[2])

// ---- the GPU-only vocabulary: a compile error on this target ----
// Functions are declared with GCC's error attribute rather than deleted, so a shared helper that
// uses them (common/kv_store.j2's wave writer beside its scalar codecs) can still be included for
// its other functions: only a call that survives into a kernel is an error.
#define SHARED _Pragma("GCC error \"SHARED: the host target has no shared memory (a block is one call on one thread)\"")
#define DYN_SHARED(T, name) _Pragma("GCC error \"DYN_SHARED: the host target has no shared memory\"")
#define FORGE_GPU_ONLY(what) __attribute__((error(what ": the host target has no threads within a block (block = (1,1,1)), no barriers and no waves")))
u32 tid_x() FORGE_GPU_ONLY("tid_x");
u32 tid_y() FORGE_GPU_ONLY("tid_y");
u32 tid_z() FORGE_GPU_ONLY("tid_z");
u32 bdim_x() FORGE_GPU_ONLY("bdim_x");
u32 bdim_y() FORGE_GPU_ONLY("bdim_y");
u32 bdim_z() FORGE_GPU_ONLY("bdim_z");
u32 lane_id() FORGE_GPU_ONLY("lane_id");
u32 wave_id() FORGE_GPU_ONLY("wave_id");
void sync_threads() FORGE_GPU_ONLY("sync_threads");
template <class T> T shfl(T, u32) FORGE_GPU_ONLY("shfl");
template <class T> T shfl_xor(T, u32) FORGE_GPU_ONLY("shfl_xor");
template <class T> T shfl_down(T, u32) FORGE_GPU_ONLY("shfl_down");
template <class T> T shfl_up(T, u32) FORGE_GPU_ONLY("shfl_up");
u64 wave_ballot(bool) FORGE_GPU_ONLY("wave_ballot");
bool wave_any(bool) FORGE_GPU_ONLY("wave_any");
bool wave_all(bool) FORGE_GPU_ONLY("wave_all");

{% include "common/atomics_cpu.h" %}

{% include "common/math_builtins.h" %}
{% include "common/bf16.h" %}
{% include "common/host_vec.h" %}
// ---- end of prelude ----
