// forge host runtime: runs host-target kernels (templates/<family>.host.j2) on a thread pool.
//
// A launch is a grid of blocks; a block is one call of the kernel's entry with its block index,
// on one thread (host_abi.h). The pool is persistent: FORGE_HOST_THREADS threads in all (default:
// the CPUs this process may run on), the caller being one of them. A launch list (forge_host_run)
// is a packed array of launches run back to back in one call, so replaying a decode step of a few
// hundred kernels costs no Python per kernel.
//
// Work distribution: a launch splits its blocks into one contiguous share per thread (thread 0 is
// the caller), publishes them and bumps a generation counter that idle workers watch. A thread
// takes blocks one at a time from the front of its own share (so it streams through adjacent
// rows, which the hardware prefetchers follow), then steals single blocks from the back of the
// others' (so a thread the OS preempted, or one still asleep, delays the launch by at most the
// block it is running). Claims are compare-and-swaps on a share's word; a launch cannot end while
// a claimed block runs, so a claim is always of the current launch, however late the thread.
// The caller returns when the count of completed blocks reaches the grid size; it never waits for
// idle workers to check in (it spins 30 us for blocks still running, then sleeps on a futex until
// the last one ends). Launches of one block run on the caller alone. Idle workers spin for FORGE_HOST_SPIN_US microseconds (default
// 200: longer than the gap between two launches of a replayed list, so they are hot for the next
// one), then sleep on a futex.
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

constexpr long kWaitSpinNs = 30000;  // the caller spins this long for other threads' blocks, then sleeps
// Signs that the machine is busier than this pool: the caller waited this long for another thread's
// block (the OS took that thread off its core mid-block), or the caller ran every block of
// kAbsentLaunches launches in a row itself (the workers were not on a core to take their shares).
// Then the caller runs launches alone for a back-off period (doubling while it recurs, up to
// kSoloMaxNs; the idle workers fall asleep): on an oversubscribed machine a spinning worker only
// takes CPU time the caller needs, and a straggler can cost a scheduler time slice (milliseconds).
constexpr long long kStraggleNs = 50000, kSoloMinNs = 2000000, kSoloMaxNs = 256000000;
constexpr unsigned kAbsentLaunches = 4;

long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
constexpr unsigned kMaxThreads = 256;

// A thread's share of a launch: blocks [front, back) as one word, front << 32 | back. The owner
// takes blocks from the front, one at a time; a thread whose share is empty steals from the back
// of another's. On its own cache line: the owner's claims touch nobody else's.
struct alignas(64) Share {
  std::atomic<u64> range{0};
};

struct alignas(64) Pool {
  alignas(64) std::atomic<u32> gen32{0};  // launch generation: workers wait for it to change (a futex word)
  std::atomic<int> sleepers{0};
  alignas(64) std::atomic<u32> done{0};   // blocks of the current launch completed (a futex word)
  std::atomic<int> waiter{0};             // the caller sleeps on `done`
  // The current launch. Written before the shares are published; a thread reads it only after it
  // has claimed a block, and a launch cannot end (so the caller cannot overwrite it) while one of
  // its blocks is claimed but not done.
  alignas(64) std::atomic<u64> entry{0}, slots{0}, nblocks{0};
  std::atomic<u32> gx{1}, gy{1};
  Share share[kMaxThreads];
  u32 gen = 0;
  unsigned nthreads = 1;
  long spin_ns = 200000;
  std::atomic<long long> solo_until{0};  // caller-only launches until then (idle workers sleep at once)
  long long solo_ns = kSoloMinNs;        // the next back-off
  u64 straggles = 0;                     // solo periods begun
  unsigned absent = 0;                   // launches in a row whose blocks the caller ran alone
  unsigned good = 0;                     // parallel launches in a row that went well
  bool adapt = true;                     // FORGE_HOST_ADAPT=0: never go solo (for measurements)
  std::mutex one_at_a_time;  // one launch (or list) in flight per process

  // The next block for thread `me`: the front of its share, else the back of another's; false
  // when every share is empty.
  bool claim(unsigned me, u32* block) {
    for (unsigned k = 0; k < nthreads; ++k) {
      const unsigned v = (me + k) % nthreads;
      std::atomic<u64>& r = share[v].range;
      u64 w = r.load(std::memory_order_acquire);
      for (;;) {
        const u32 front = (u32)(w >> 32), back = (u32)w;
        if (front >= back) break;
        const u64 next = k == 0 ? w + (1ull << 32) : w - 1;  // own: front + 1; stolen: back - 1
        if (r.compare_exchange_weak(w, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
          *block = k == 0 ? front : back - 1;
          return true;
        }
      }
    }
    return false;
  }

  // Run blocks of the current launch until none is left to claim; returns how many this thread ran.
  u32 work(unsigned me) {
    u32 b, ran = 0;
    while (claim(me, &b)) {
      ++ran;
      const forge_host_entry fn = (forge_host_entry)entry.load(std::memory_order_relaxed);
      const u64* args = (const u64*)slots.load(std::memory_order_relaxed);
      const u64 nb = nblocks.load(std::memory_order_relaxed);
      const u32 x = gx.load(std::memory_order_relaxed), y = gy.load(std::memory_order_relaxed);
      forge_host_block blk;
      blk.bid[0] = b % x;
      blk.bid[1] = b / x % y;
      blk.bid[2] = b / (x * y);
      blk.gdim[0] = x;
      blk.gdim[1] = y;
      blk.gdim[2] = (u32)(nb / ((u64)x * y));
      fn(args, &blk);
      if (done.fetch_add(1, std::memory_order_seq_cst) + 1 == (u32)nb && waiter.load(std::memory_order_seq_cst))
        futex_wake_all(&done);
    }
    return ran;
  }

  void worker(unsigned me) {
    u32 seen = 0;
    for (;;) {
      u32 g = gen32.load(std::memory_order_acquire);
      if (g == seen) {
        // Idle: spin a while (the next launch of a list comes within microseconds), then sleep.
        const auto start = std::chrono::steady_clock::now();
        for (unsigned i = 1;; ++i) {
          cpu_relax();
          if ((g = gen32.load(std::memory_order_acquire)) != seen) break;
          if (i % 256 == 0 && (std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now() - start).count() > spin_ns ||
                               solo_until.load(std::memory_order_relaxed) > now_ns())) {
            sleepers.fetch_add(1, std::memory_order_seq_cst);
            if (gen32.load(std::memory_order_seq_cst) == seen) futex_wait(&gen32, seen);
            sleepers.fetch_sub(1, std::memory_order_seq_cst);
            if ((g = gen32.load(std::memory_order_acquire)) != seen) break;
          }
        }
      }
      seen = g;
      work(me);
    }
  }

  void run_one(const Launch* l) {
    const u64 nb = (u64)l->grid[0] * l->grid[1] * l->grid[2];
    if (nb == 0) return;
    const forge_host_entry fn = (forge_host_entry)l->entry;
    const long long solo = solo_until.load(std::memory_order_relaxed);
    if (nb == 1 || nthreads == 1 || (solo && now_ns() < solo)) {  // the caller runs the grid alone
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
    // Contiguous shares, so each thread streams through adjacent rows (the shares of the previous
    // launch are all empty: it ended when its last block did).
    for (unsigned i = 0; i < nthreads; ++i) {
      const u64 front = nb * i / nthreads, back = nb * (i + 1) / nthreads;
      share[i].range.store(front << 32 | back, std::memory_order_release);
    }
    gen32.store(++gen, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) futex_wake_all(&gen32);
    const u32 mine = work(0);
    // Wait for blocks still running elsewhere: spin a little (they usually end within
    // microseconds), then sleep, so that a worker the OS preempted can be moved onto this core
    // rather than wait for its own to be free.
    const long long start = now_ns();
    for (unsigned i = 1; done.load(std::memory_order_acquire) != (u32)nb; ++i) {
      cpu_relax();
      if (i % 256 == 0 && now_ns() - start > kWaitSpinNs) {
        waiter.store(1, std::memory_order_seq_cst);
        const u32 d = done.load(std::memory_order_seq_cst);
        if (d != (u32)nb) futex_wait(&done, d);
        waiter.store(0, std::memory_order_seq_cst);
      }
    }
    const long long end = now_ns();
    absent = mine == (u32)nb ? absent + 1 : 0;
    if (adapt && (end - start > kStraggleNs || absent >= kAbsentLaunches)) {  // go solo for a while, longer each time
      absent = good = 0;
      ++straggles;
      solo_until.store(end + solo_ns, std::memory_order_relaxed);
      solo_ns = solo_ns * 2 < kSoloMaxNs ? solo_ns * 2 : kSoloMaxNs;
    } else if (mine < (u32)nb && ++good >= 256) {  // many helped launches in a row: shorten the back-off
      good = 0;
      solo_ns = solo_ns / 2 > kSoloMinNs ? solo_ns / 2 : kSoloMinNs;
    }
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
    if (const char* env = getenv("FORGE_HOST_ADAPT")) p->adapt = atoi(env) != 0;
    p->nthreads = n < 1 ? 1 : n > kMaxThreads ? kMaxThreads : n;
    for (unsigned i = 1; i < p->nthreads; ++i) std::thread([p, i] { p->worker(i); }).detach();
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
// Solo periods begun so far: a caller that waited past kStraggleNs for another thread, or ran
// kAbsentLaunches launches in a row without help.
unsigned long long forge_host_straggles(void) { return Pool::get().straggles; }
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
