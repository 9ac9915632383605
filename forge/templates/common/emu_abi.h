// ---- the ABI between CPU-emulated kernels and the emulator runtime (forge/runtime/cpu_emulator.cpp) ----
// Included by prelude_emu.h (into every kernel) and by the runtime, so both agree on one layout.
#ifndef FORGE_EMU_ABI_H
#define FORGE_EMU_ABI_H
struct forge_emu_thread {
  unsigned tid[3], bid[3], bdim[3], gdim[3];
  unsigned linear, lane, wave;
  unsigned char* dyn_smem;  // the block's dynamic shared memory (poisoned with 0xff per block)
};
// A kernel's entry: unpack the argument slots (one u64 each) and run one emulated thread.
typedef void (*forge_emu_entry)(const unsigned long long* slots);
// forge_flags_<symbol>: the kernel's WAVE_SIZE in the low byte, FORGE_EMU_BARRIER_FREE if declared.
#define FORGE_EMU_BARRIER_FREE 0x100u
// Lanes that exited, or do not exist in a partial wave, read as this in a wave exchange (NaN as a
// float, and bit 0 clear so a ballot sees them inactive).
#define FORGE_EMU_POISON 0x7fc000007fc00000ull
extern "C" {
// The calling emulated thread's indices. Constant for the thread's life, which is one call of the
// kernel function, so the prelude may declare it `const` and the compiler hoist it.
const struct forge_emu_thread* forge_emu_self(void);
// Block-wide barrier.
void forge_emu_sync(void);
// Wave exchange: publish `v` for this lane, wait for every live lane of the wave, and get the
// wave's published values (indexed by lane; valid until this lane's next exchange).
const unsigned long long* forge_emu_exchange(unsigned long long v);
// Misuse the emulator detects inside a kernel (an instruction's precondition broken): fail the
// launch with the printf-style message, prefixed with the calling thread's block, thread, wave and
// lane. Never returns.
[[noreturn]] void forge_emu_fail(const char* fmt, ...);
}
#endif
