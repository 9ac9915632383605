// ---- the ABI between host-target kernels and the host runtime (forge/runtime/host_runtime.cpp) ----
// Included by prelude_host.h (into every host kernel) and by the runtime, so both agree on one layout.
#ifndef FORGE_HOST_ABI_H
#define FORGE_HOST_ABI_H
// Which block of the grid a call runs, and the grid's size in blocks.
struct forge_host_block {
  unsigned bid[3], gdim[3];
};
// A kernel's entry, forge_entry_<symbol>: unpack the argument slots (one u64 each: pointers as
// addresses, scalars in the low bytes) and run one block. The runtime calls it once per block,
// from any thread of its pool; blocks of one launch may run concurrently and in any order.
typedef void (*forge_host_entry)(const unsigned long long* slots, const struct forge_host_block* block);
#define FORGE_HOST_ABI 1
#endif
