// forge host runtime: runs host-target kernels (templates/<family>.host.j2) on a thread pool.
//
// A launch is a grid of blocks; a block is one call of the kernel's entry with its block index,
// on one thread (host_abi.h). The pool is persistent: FORGE_HOST_THREADS threads in all (default:
// the CPUs this process may run on), the caller being one of them. A launch list (forge_host_run)
// is a packed array of launches run back to back in one call, so replaying a decode step of a few
// hundred kernels costs no Python per kernel.
//
// Work distribution: one 64-bit ticket holds (generation << 32 | next block). A launch publishes a
// new generation; every thread (the caller too) claims blocks by compare-and-swap on the ticket,
// which fails if the generation moved on, so a worker that wakes up late can never run a block of
// a launch that has already finished. The caller returns when the count of completed blocks
// reaches the grid size; it never waits for idle workers to check in. Launches of one block run
// on the caller alone. Idle workers spin for FORGE_HOST_SPIN_US microseconds (default 200: longer
// than the gap between two launches of a replayed list, so they are hot for the next one), then
// sleep on a futex.
//
// Built once per host compiler by forge/runtime/host.py into the store; kernels do not link
// against it (they are called through their entry addresses).
#include "host_abi.h"

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef unsigned long long u64;
typedef unsigned u32;

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

void futex_wait(std::atomic<u32>* word, u32 expected) {
  syscall(SYS_futex, (u32*)word, FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<u32>* word) {
  syscall(SYS_futex, (u32*)word, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// One launch as forge/runtime/host.py packs it: the entry, the grid, then one slot per argument.
struct Launch {
  u64 entry;
  u32 grid[3];
  u32 nargs;
  u64 slots[];
};

inline const Launch* next_launch(const Launch* l) {
  return (const Launch*)((const char*)l + sizeof(Launch) + l->nargs * sizeof(u64));
}

// Spread over cache lines: the ticket is the one contended word.
struct alignas(64) Pool {
  alignas(64) std::atomic<u64> ticket{0};  // generation << 32 | next block to claim
  alignas(64) std::atomic<u64> done{0};    // blocks of the current generation completed
  alignas(64) std::atomic<u32> gen32{0};   // the generation again, as a futex word for sleepers
  std::atomic<int> sleepers{0};
  // The current launch. Written by the caller before it publishes a generation and read by
  // workers before they claim; a successful claim proves what they read was this launch's.
  alignas(64) std::atomic<u64> entry{0}, slots{0}, nblocks{0};
  std::atomic<u32> gx{1}, gy{1};
  u32 gen = 0;
  unsigned nthreads = 1;
  long spin_ns = 200000;
  std::mutex one_at_a_time;  // one launch (or list) in flight per process

  // Claim and run blocks of generation `t >> 32` until there are none left; returns the ticket last seen.
  u64 work(u64 t) {
    for (;;) {
      const u64 nb = nblocks.load(std::memory_order_relaxed);
      const forge_host_entry fn = (forge_host_entry)entry.load(std::memory_order_relaxed);
      const u64* args = (const u64*)slots.load(std::memory_order_relaxed);
      const u32 x = gx.load(std::memory_order_relaxed), y = gy.load(std::memory_order_relaxed);
      if ((u32)t >= nb) return t;
      if (!ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        continue;  // t now holds the current ticket (maybe of a newer generation): re-read the launch
      }
      const u32 b = (u32)t;
      forge_host_block blk;
      blk.bid[0] = b % x;
      blk.bid[1] = b / x % y;
      blk.bid[2] = b / (x * y);
      blk.gdim[0] = x;
      blk.gdim[1] = y;
      blk.gdim[2] = (u32)(nb / ((u64)x * y));
      fn(args, &blk);
      done.fetch_add(1, std::memory_order_release);
      t = ticket.load(std::memory_order_acquire);
    }
  }

  void worker() {
    u32 seen = 0;
    for (;;) {
      u64 t = ticket.load(std::memory_order_acquire);
      if ((u32)(t >> 32) == seen) {
        // Idle: spin a while (the next launch of a list comes within microseconds), then sleep.
        const auto start = std::chrono::steady_clock::now();
        for (unsigned i = 1;; ++i) {
          cpu_relax();
          t = ticket.load(std::memory_order_acquire);
          if ((u32)(t >> 32) != seen) break;
          if (i % 256 == 0 && std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::steady_clock::now() - start).count() > spin_ns) {
            sleepers.fetch_add(1, std::memory_order_seq_cst);
            if (gen32.load(std::memory_order_seq_cst) == seen) futex_wait(&gen32, seen);
            sleepers.fetch_sub(1, std::memory_order_seq_cst);
            t = ticket.load(std::memory_order_acquire);
            if ((u32)(t >> 32) != seen) break;
          }
        }
      }
      seen = (u32)(t >> 32);
      work(t);
    }
  }

  void run_one(const Launch* l) {
    const u64 nb = (u64)l->grid[0] * l->grid[1] * l->grid[2];
    if (nb == 0) return;
    const forge_host_entry fn = (forge_host_entry)l->entry;
    if (nb == 1 || nthreads == 1) {  // no hand-off: the caller runs the grid
      forge_host_block blk;
      for (int d = 0; d < 3; ++d) blk.gdim[d] = l->grid[d];
      for (u64 b = 0; b < nb; ++b) {
        blk.bid[0] = (u32)(b % l->grid[0]);
        blk.bid[1] = (u32)(b / l->grid[0] % l->grid[1]);
        blk.bid[2] = (u32)(b / ((u64)l->grid[0] * l->grid[1]));
        fn(l->slots, &blk);
      }
      return;
    }
    entry.store(l->entry, std::memory_order_relaxed);
    slots.store((u64)l->slots, std::memory_order_relaxed);
    nblocks.store(nb, std::memory_order_relaxed);
    gx.store(l->grid[0], std::memory_order_relaxed);
    gy.store(l->grid[1], std::memory_order_relaxed);
    done.store(0, std::memory_order_relaxed);
    ++gen;
    ticket.store((u64)gen << 32, std::memory_order_release);
    gen32.store(gen, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) futex_wake_all(&gen32);
    work((u64)gen << 32);
    while (done.load(std::memory_order_acquire) != nb) cpu_relax();
  }

  void run(const Launch* l, u64 n) {
    std::lock_guard<std::mutex> lock(one_at_a_time);
    for (u64 i = 0; i < n; ++i, l = next_launch(l)) run_one(l);
  }

  static Pool& get() {
    static Pool* pool = make();  // never destroyed: its threads live as long as the process
    return *pool;
  }

  static Pool* make() {
    Pool* p = new Pool();
    cpu_set_t set;
    unsigned n = sched_getaffinity(0, sizeof set, &set) == 0 ? (unsigned)CPU_COUNT(&set)
                                                             : std::thread::hardware_concurrency();
    if (const char* env = getenv("FORGE_HOST_THREADS")) n = (unsigned)atoi(env);
    if (const char* env = getenv("FORGE_HOST_SPIN_US")) p->spin_ns = atol(env) * 1000;
    p->nthreads = n < 1 ? 1 : n > 256 ? 256 : n;
    for (unsigned i = 1; i < p->nthreads; ++i) std::thread([p] { p->worker(); }).detach();
    return p;
  }
};

constexpr u64 kHugeFrom = 2u << 20;  // buffers this large are mmapped and may use huge pages
u64 round_up(u64 n, u64 a) { return (n + a - 1) / a * a; }

}  // namespace

extern "C" {

// Run n launches, packed back to back (struct Launch), in order. Returns when all have finished.
void forge_host_run(const void* list, u64 n) { Pool::get().run((const Launch*)list, n); }

unsigned forge_host_threads(void) { return Pool::get().nthreads; }
unsigned forge_host_abi(void) { return FORGE_HOST_ABI; }

// Device memory: 64-byte aligned; large buffers get their own mapping, with transparent huge
// pages requested (weights are streamed: fewer TLB misses).
void* forge_host_alloc(u64 size) {
  if (size < kHugeFrom) return aligned_alloc(64, round_up(size ? size : 1, 64));
  void* p = mmap(nullptr, round_up(size, 4096), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
  madvise(p, round_up(size, 4096), MADV_HUGEPAGE);
#endif
  return p;
}

void forge_host_free(void* p, u64 size) {
  if (size < kHugeFrom) return free(p);
  munmap(p, round_up(size, 4096));
}

}  // extern "C"
