// forge CPU emulator runtime: runs a kernel's grid on the host with GPU semantics.
//
// Blocks are spread over a pool of OS threads (the caller takes part). The threads of a block run
// as fibers on one OS thread, so sync_threads() is a true barrier and shared memory is per block.
// The scheduler runs one wave at a time until every lane of it waits at a barrier (or exited), then
// the next wave: a missing barrier shows up as a wave reading shared memory another wave has not
// written yet. The order of the waves between two barriers is ascending, descending or a seeded
// shuffle per block and barrier (the launch says which): ascending alone never shows a race whose
// writer is a lower wave than its reader. Wave operations rendezvous only the lanes of one wave (32 or 64, the kernel's
// WAVE_SIZE). Kernels that declare themselves barrier-free run on a fast path with no fibers.
//
// Built once per host compiler by forge/runtime/hostlib.py and loaded RTLD_GLOBAL; kernels
// link against forge_emu_self/sync/exchange (emu_abi.h).
#include "emu_abi.h"

#include <atomic>
#include <condition_variable>
#include <csetjmp>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <link.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__x86_64__) && !defined(FORGE_FIBER_UCONTEXT)
#define FORGE_FIBER_ASM 1
#else
#define FORGE_FIBER_ASM 0
#endif

typedef unsigned long long u64;

namespace {

constexpr unsigned kMaxThreads = 1024;
constexpr unsigned kMaxWave = 64;
constexpr size_t kStackBytes = 128 * 1024;

// ------------------------------------------------------------------------------------ fibers
struct Fiber {
#if FORGE_FIBER_ASM
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
};

#if FORGE_FIBER_ASM
// Save the callee-saved registers on the current stack, store its pointer in *save, switch to
// `next` and pop its registers: a switch costs a handful of instructions and no system call
// (swapcontext also saves the signal mask with a syscall).
extern "C" void forge_fiber_swap(void** save, void* next) __attribute__((visibility("hidden")));
asm(R"(
    .text
    .p2align 4
    .globl forge_fiber_swap
    .hidden forge_fiber_swap
    .type forge_fiber_swap, @function
forge_fiber_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size forge_fiber_swap, .-forge_fiber_swap
)");

// A fresh stack that `forge_fiber_swap` "returns" into `fn`, 16-byte aligned as at a call.
void fiber_init(Fiber* f, char* stack, size_t size, void (*fn)()) {
  void** sp = (void**)(((uintptr_t)(stack + size)) & ~(uintptr_t)15);
  *--sp = nullptr;     // fn's return address: it never returns
  *--sp = (void*)fn;   // popped by `ret`
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp rbx r12 r13 r14 r15
  f->sp = sp;
}
inline void fiber_swap(Fiber* from, Fiber* to) { forge_fiber_swap(&from->sp, to->sp); }
const char* kFiberKind = "x86-64 assembly switch";
#else
void fiber_init(Fiber* f, char* stack, size_t size, void (*fn)()) {
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = stack;
  f->uc.uc_stack.ss_size = size;
  f->uc.uc_link = nullptr;
  makecontext(&f->uc, fn, 0);
}
inline void fiber_swap(Fiber* from, Fiber* to) { swapcontext(&from->uc, &to->uc); }
const char* kFiberKind = "ucontext (swapcontext)";
#endif

// Fiber stacks in one mapping, each with a PROT_NONE guard page below it (stacks grow down).
struct Stacks {
  char* base = nullptr;
  unsigned count = 0;
  size_t slot() const { return kStackBytes + (size_t)getpagesize(); }
  char* stack(unsigned i) const { return base + i * slot() + getpagesize(); }
  bool ensure(unsigned n) {
    if (n <= count) return true;
    n = (n + 255) & ~255u;
    if (base) munmap(base, count * slot());
    void* m = mmap(nullptr, n * slot(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) { base = nullptr; count = 0; return false; }
    base = (char*)m;
    count = n;
    for (unsigned i = 0; i < n; ++i) mprotect(base + i * slot(), getpagesize(), PROT_NONE);
    return true;
  }
};

// ------------------------------------------------------------------------------ jobs, lanes
typedef void* (*TlsTouch)(void);

enum WaveOrder : unsigned { kAscending = 0, kDescending = 1, kRandom = 2 };

struct Job {
  forge_emu_entry entry;
  TlsTouch tls_touch;  // the kernel library's forge_tls_<symbol>: its static shared memory
  const u64* slots;
  unsigned grid[3], block[3];
  size_t shared;
  unsigned wave;
  unsigned order, seed;  // WaveOrder, and the seed of kRandom
  bool fibers, check;
  u64 nblocks;
  std::atomic<u64> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  char err[1024] = {0};
  // set by the fault handler (checking mode): address, 1 write / 0 read / -1 unknown, block, thread
  volatile u64 fault[8] = {0};
  volatile bool faulted = false;
};

enum State : unsigned char { kReady, kAtWave, kAtBarrier, kDone };

struct Lane {
  forge_emu_thread ctx;
  Fiber fiber;
  State state;
  unsigned char parity;  // which of the wave's two exchange buffers this lane's next op uses
};

struct Wave {
  unsigned first, count, live, arrived;
  // Two buffers, alternated per op: a lane can only reach op k+2 (reusing op k's buffer) after
  // every lane has arrived at op k+1, i.e. after all of them have read op k's values.
  u64 slots[2][kMaxWave];
};

struct Worker {
  std::unique_ptr<Lane[]> lanes{new Lane[kMaxThreads]};
  Wave waves[kMaxThreads / 32];
  Stacks stacks;
  std::vector<unsigned char> dyn;
  Fiber sched;
  Lane* cur = nullptr;  // the running lane (fiber mode)
  bool fibers = false;
  unsigned nwaves = 0, live = 0;
  Job* job = nullptr;
  sigjmp_buf escape;
  forge_emu_thread fast;  // the context of the fast path's current thread
  std::unordered_map<TlsTouch, std::pair<unsigned char*, size_t>> tls;  // per kernel library
};

thread_local Worker* tls_worker = nullptr;
thread_local const forge_emu_thread* tls_self = nullptr;

Worker* this_worker() {
  thread_local std::unique_ptr<Worker> owned;
  if (!owned) owned.reset(new Worker());
  return tls_worker = owned.get();
}

void job_fail(Job* j, const char* fmt, ...) {
  std::lock_guard<std::mutex> lock(j->mu);
  if (j->failed.load()) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->err, sizeof j->err, fmt, ap);
  va_end(ap);
  j->failed.store(true);
}

// Leave the block (and the job) from anywhere inside it, fiber or scheduler.
[[noreturn]] void escape(Worker* w) { siglongjmp(w->escape, 1); }

Worker* running_worker(const char* what) {
  Worker* w = tls_worker;
  if (!w || !w->job) {
    fprintf(stderr, "forge emulator: %s called outside a kernel launch\n", what);
    abort();
  }
  if (!w->fibers) {
    job_fail(w->job, "the kernel is declared barrier_free but calls %s: remove barrier_free from its spec", what);
    escape(w);
  }
  return w;
}

void set_running(Worker* w, Lane* l) {
  w->cur = l;
  tls_self = l ? &l->ctx : nullptr;
}

// The calling lane waits: run the next ready lane of its wave, else go back to the scheduler.
void block_lane(Worker* w, Lane* me) {
  const Wave& wv = w->waves[me->ctx.wave];
  for (unsigned k = 1; k < wv.count; ++k) {
    Lane* l = &w->lanes[wv.first + (me->ctx.lane + k) % wv.count];
    if (l->state == kReady) {
      set_running(w, l);
      fiber_swap(&me->fiber, &l->fiber);
      return;
    }
  }
  set_running(w, nullptr);
  fiber_swap(&me->fiber, &w->sched);
}

void release_wave(Worker* w, Wave& wv) {
  wv.arrived = 0;
  for (unsigned i = wv.first; i < wv.first + wv.count; ++i)
    if (w->lanes[i].state == kAtWave) w->lanes[i].state = kReady;
}

void fiber_main() {
  Worker* w = tls_worker;
  Lane* me = w->cur;
  w->job->entry(w->job->slots);
  me->state = kDone;
  w->live--;
  Wave& wv = w->waves[me->ctx.wave];
  wv.live--;
  wv.slots[me->parity][me->ctx.lane] = FORGE_EMU_POISON;  // an exited lane reads as inactive
  if (wv.arrived && wv.arrived == wv.live) release_wave(w, wv);
  block_lane(w, me);
  abort();  // a finished lane is never resumed
}

void fill_ctx(forge_emu_thread* c, const Job* j, const unsigned bid[3], unsigned linear, unsigned char* dyn) {
  c->tid[0] = linear % j->block[0];
  c->tid[1] = linear / j->block[0] % j->block[1];
  c->tid[2] = linear / (j->block[0] * j->block[1]);
  for (int d = 0; d < 3; ++d) {
    c->bid[d] = bid[d];
    c->bdim[d] = j->block[d];
    c->gdim[d] = j->grid[d];
  }
  c->linear = linear;
  c->lane = linear % j->wave;
  c->wave = linear / j->wave;
  c->dyn_smem = dyn;
}

void run_block_fast(Worker* w, Job* j, const unsigned bid[3], unsigned n) {
  for (unsigned t = 0; t < n; ++t) {
    fill_ctx(&w->fast, j, bid, t, w->dyn.data());
    tls_self = &w->fast;
    j->entry(j->slots);
  }
}

// Run the ready lanes of one wave until none is ready; lanes left waiting at a wave op mean the
// op was not reached by every live lane (a shuffle in divergent code): report it.
void run_wave(Worker* w, unsigned wi, const unsigned bid[3]) {
  Wave& wv = w->waves[wi];
  for (;;) {
    Lane* next = nullptr;
    for (unsigned i = wv.first; i < wv.first + wv.count && !next; ++i)
      if (w->lanes[i].state == kReady) next = &w->lanes[i];
    if (!next) break;
    set_running(w, next);
    fiber_swap(&w->sched, &next->fiber);
  }
  if (wv.arrived) {
    job_fail(w->job, "block (%u,%u,%u) wave %u: %u of %u live lanes wait at a wave operation (shfl/ballot/"
             "any/all) that the others never reach (they wait at sync_threads or exited): a wave "
             "operation in divergent code", bid[0], bid[1], bid[2], wi, wv.arrived, wv.live);
    escape(w);
  }
}

u64 mix(u64 x) {  // splitmix64's finalizer: a well-spread hash of x
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The order in which the scheduler runs the waves of block `b` before barrier number `phase`. A
// shuffle depends only on (seed, block, phase), not on which OS thread runs the block or when, so
// a failure it provokes reproduces with the same seed.
void wave_order(const Job* j, u64 b, u64 phase, unsigned n, unsigned* out) {
  for (unsigned i = 0; i < n; ++i) out[i] = j->order == kDescending ? n - 1 - i : i;
  if (j->order != kRandom) return;
  u64 s = mix(mix(mix(j->seed) ^ b) ^ phase);
  for (unsigned i = n - 1; i > 0; --i) {  // Fisher-Yates
    s = mix(s);
    const unsigned k = (unsigned)(s % (i + 1)), t = out[i];
    out[i] = out[k];
    out[k] = t;
  }
}

void run_block_fibers(Worker* w, Job* j, const unsigned bid[3], u64 b, unsigned n) {
  if (!w->stacks.ensure(n)) {
    job_fail(j, "cannot map %u fiber stacks", n);
    escape(w);
  }
  w->nwaves = (n + j->wave - 1) / j->wave;
  for (unsigned i = 0; i < w->nwaves; ++i) {
    Wave& wv = w->waves[i];
    wv.first = i * j->wave;
    wv.count = wv.live = n - wv.first < j->wave ? n - wv.first : j->wave;
    wv.arrived = 0;
    for (unsigned k = 0; k < kMaxWave; ++k) wv.slots[0][k] = wv.slots[1][k] = FORGE_EMU_POISON;
  }
  for (unsigned t = 0; t < n; ++t) {
    Lane& l = w->lanes[t];
    fill_ctx(&l.ctx, j, bid, t, w->dyn.data());
    l.state = kReady;
    l.parity = 0;
    fiber_init(&l.fiber, w->stacks.stack(t), kStackBytes, fiber_main);
  }
  w->live = n;
  unsigned order[kMaxThreads / 32];
  for (u64 phase = 0; w->live; ++phase) {
    wave_order(j, b, phase, w->nwaves, order);
    for (unsigned i = 0; i < w->nwaves; ++i) run_wave(w, order[i], bid);
    // Every live lane now waits at sync_threads (exited lanes count as arrived, as on hardware).
    for (unsigned t = 0; t < n; ++t)
      if (w->lanes[t].state == kAtBarrier) w->lanes[t].state = kReady;
  }
}

// Static shared memory (SHARED) is the kernel library's thread-local segment, which holds nothing
// else: find this thread's instance once, so every block can start with it poisoned.
struct TlsQuery {
  uintptr_t anchor;
  unsigned char* block;
  size_t size;
};
int find_tls(struct dl_phdr_info* info, size_t, void* data) {
  TlsQuery* q = (TlsQuery*)data;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const uintptr_t base = (uintptr_t)info->dlpi_tls_data, size = info->dlpi_phdr[i].p_memsz;
    if (info->dlpi_phdr[i].p_type == PT_TLS && base && q->anchor >= base && q->anchor < base + size) {
      q->block = (unsigned char*)info->dlpi_tls_data;
      q->size = size;
      return 1;
    }
  }
  return 0;
}

std::pair<unsigned char*, size_t> static_shared(Worker* w, TlsTouch touch) {
  auto it = w->tls.find(touch);
  if (it != w->tls.end()) return it->second;
  TlsQuery q = {(uintptr_t)touch(), nullptr, 0};  // touching allocates the segment for this thread
  dl_iterate_phdr(find_tls, &q);
  return w->tls[touch] = {q.block, q.size};
}

void run_block(Worker* w, Job* j, u64 b) {
  const unsigned bid[3] = {(unsigned)(b % j->grid[0]), (unsigned)(b / j->grid[0] % j->grid[1]),
                           (unsigned)(b / ((u64)j->grid[0] * j->grid[1]))};
  const unsigned n = j->block[0] * j->block[1] * j->block[2];
  // Uninitialized shared memory reads as NaN (and a missing barrier gives the same wrong answer
  // on every run, whatever ran before).
  memset(w->dyn.data(), 0xff, w->dyn.size());
  if (j->tls_touch) {
    const auto smem = static_shared(w, j->tls_touch);
    if (smem.first) memset(smem.first, 0xff, smem.second);
  }
  if (j->fibers) run_block_fibers(w, j, bid, b, n);
  else run_block_fast(w, j, bid, n);
}

void run_job(Worker* w, Job* j) {
  w->job = j;
  w->fibers = j->fibers;
  if (w->dyn.size() < j->shared + 16) w->dyn.resize(j->shared + 16);
  if (sigsetjmp(w->escape, 0) == 0) {  // no mask save: SA_NODEFER leaves it as is
    for (;;) {
      const u64 b = j->next.fetch_add(1);
      if (b >= j->nblocks || j->failed.load(std::memory_order_relaxed)) break;
      run_block(w, j, b);
    }
  }
  set_running(w, nullptr);
  w->job = nullptr;
}

// --------------------------------------------------------------------------------- the pool
class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // never destroyed: its threads live as long as the process
    return *pool;
  }
  unsigned size() const { return (unsigned)threads_.size() + 1; }

  void run(Job* j) {
    std::lock_guard<std::mutex> one_launch_at_a_time(launch_mu_);
    if (threads_.empty() || j->nblocks < 2) {
      run_job(this_worker(), j);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = j;
      ++gen_;
      busy_ = (unsigned)threads_.size();
    }
    work_cv_.notify_all();
    run_job(this_worker(), j);
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return busy_ == 0; });
  }

 private:
  Pool() {
    unsigned n = std::thread::hardware_concurrency();
    if (const char* env = getenv("FORGE_EMU_THREADS")) n = (unsigned)atoi(env);
    n = n < 1 ? 1 : n > 64 ? 64 : n;
    for (unsigned i = 1; i < n; ++i) threads_.emplace_back([this] { loop(); });
    for (auto& t : threads_) t.detach();
  }
  void loop() {
    u64 seen = 0;
    for (;;) {
      Job* j;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [&] { return gen_ != seen; });
        seen = gen_;
        j = job_;
      }
      run_job(this_worker(), j);
      std::lock_guard<std::mutex> lock(mu_);
      if (--busy_ == 0) done_cv_.notify_all();
    }
  }
  std::vector<std::thread> threads_;
  std::mutex launch_mu_, mu_;
  std::condition_variable work_cv_, done_cv_;
  Job* job_ = nullptr;
  u64 gen_ = 0;
  unsigned busy_ = 0;
};

// ------------------------------------------------------------------------ checking mode faults
struct sigaction g_old_segv, g_old_bus;
std::mutex g_check_mu;

void on_fault(int sig, siginfo_t* si, void* uc) {
  Worker* w = tls_worker;
  Job* j = w ? w->job : nullptr;
  if (!j || !j->check) {  // not a checked kernel's fault: hand it to whoever was there before
    sigaction(sig, sig == SIGSEGV ? &g_old_segv : &g_old_bus, nullptr);
    return;
  }
  if (!j->failed.exchange(true)) {
    j->fault[0] = (u64)si->si_addr;
    j->fault[1] = (u64)-1;
#if defined(__x86_64__)
    j->fault[1] = (((ucontext_t*)uc)->uc_mcontext.gregs[REG_ERR] & 2) ? 1 : 0;  // page-fault W bit
#else
    (void)uc;
#endif
    const forge_emu_thread* c = tls_self;
    for (int d = 0; d < 3; ++d) {
      j->fault[2 + d] = c ? c->bid[d] : 0;
      j->fault[5 + d] = c ? c->tid[d] : 0;
    }
    j->faulted = true;
  }
  siglongjmp(w->escape, 2);
}

struct FaultTrap {  // installs the handler for one checked launch
  std::unique_lock<std::mutex> lock{g_check_mu};
  FaultTrap() {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    sigaction(SIGBUS, &sa, &g_old_bus);
  }
  ~FaultTrap() {
    sigaction(SIGSEGV, &g_old_segv, nullptr);
    sigaction(SIGBUS, &g_old_bus, nullptr);
  }
};

size_t page() { return (size_t)getpagesize(); }
size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
constexpr unsigned char kCanary = 0xcd;

}  // namespace

// ------------------------------------------------------------------------------ the C API
extern "C" {

const forge_emu_thread* forge_emu_self(void) { return tls_self; }

void forge_emu_sync(void) {
  Worker* w = running_worker("sync_threads");
  Lane* me = w->cur;
  me->state = kAtBarrier;
  block_lane(w, me);
}

const unsigned long long* forge_emu_exchange(unsigned long long v) {
  Worker* w = running_worker("a wave operation");
  Lane* me = w->cur;
  Wave& wv = w->waves[me->ctx.wave];
  const unsigned p = me->parity;
  me->parity ^= 1;
  wv.slots[p][me->ctx.lane] = v;
  if (++wv.arrived == wv.live) {
    release_wave(w, wv);
  } else {
    me->state = kAtWave;
    block_lane(w, me);
  }
  return wv.slots[p];
}

void forge_emu_fail(const char* fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  Worker* w = tls_worker;
  const forge_emu_thread* c = tls_self;
  if (!w || !w->job || !c) {
    fprintf(stderr, "forge emulator: forge_emu_fail called outside a kernel launch: %s\n", msg);
    abort();
  }
  job_fail(w->job, "block (%u,%u,%u) thread (%u,%u,%u) (wave %u, lane %u): %s", c->bid[0], c->bid[1], c->bid[2],
           c->tid[0], c->tid[1], c->tid[2], c->wave, c->lane, msg);
  escape(w);
}

// One launch, as the Python side packs it (struct format _DESC in forge/runtime/emu.py): one pointer
// argument instead of a dozen keeps the ctypes call cheap.
struct LaunchDesc {
  u64 entry, tls_touch;    // forge_entry_<symbol>, forge_tls_<symbol>
  u64 err, err_len, fault; // where to report: a message buffer; u64[8] fault record
  unsigned flags, check;
  unsigned grid[3], block[3];
  unsigned order, seed;    // WaveOrder and its seed
  u64 shared_bytes, nargs;
  u64 slots[];             // one per kernel argument (emu_abi.h)
};

// Run a whole grid. Returns 0, or 1 with a message in err, or 2 for a checking-mode fault with
// fault[] = {address, write (1/0/-1), block x y z, thread x y z}.
int forge_emu_launch(const LaunchDesc* d) {
  char* err = (char*)d->err;
  Job j;
  j.entry = (forge_emu_entry)d->entry;
  j.tls_touch = (TlsTouch)d->tls_touch;
  j.slots = d->slots;
  for (int k = 0; k < 3; ++k) {
    j.grid[k] = d->grid[k];
    j.block[k] = d->block[k];
  }
  j.shared = d->shared_bytes;
  j.wave = d->flags & 0xffu;
  j.fibers = !(d->flags & FORGE_EMU_BARRIER_FREE);
  j.check = d->check != 0;
  j.order = d->order;
  j.seed = d->seed;
  j.nblocks = (u64)j.grid[0] * j.grid[1] * j.grid[2];
  const u64 n = (u64)j.block[0] * j.block[1] * j.block[2];
  if (n == 0 || n > kMaxThreads || (j.wave != 32 && j.wave != 64) || j.order > kRandom) {
    snprintf(err, d->err_len, "bad launch: %llu threads per block (1..%u), wave size %u, wave order %u", n,
             kMaxThreads, j.wave, j.order);
    return 1;
  }
  if (j.nblocks == 0) return 0;
  if (j.check) {
    FaultTrap trap;
    Pool::get().run(&j);
  } else {
    Pool::get().run(&j);
  }
  if (j.faulted) {
    for (int k = 0; k < 8; ++k) ((u64*)d->fault)[k] = j.fault[k];
    return 2;
  }
  if (j.failed.load()) {
    snprintf(err, d->err_len, "%s", j.err);
    return 1;
  }
  return 0;
}

// Device memory. Checked buffers end at a PROT_NONE page (size rounded up to 16 for alignment;
// the rounding slack and the rest of the first page hold canaries checked after each launch).
void* forge_emu_alloc(u64 size, int guarded) {
  if (!guarded) return aligned_alloc(64, round_up(size ? size : 1, 64));
  const size_t data = round_up(size ? size : 1, 16), pages = round_up(data, page()) / page();
  char* m = (char*)mmap(nullptr, (pages + 2) * page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  mprotect(m, page(), PROT_NONE);
  mprotect(m + (pages + 1) * page(), page(), PROT_NONE);
  char* p = m + (pages + 1) * page() - data;
  memset(m + page(), kCanary, pages * page());
  return p;
}

void forge_emu_free(void* p, u64 size, int guarded) {
  if (!guarded) return free(p);
  const size_t data = round_up(size ? size : 1, 16), pages = round_up(data, page()) / page();
  munmap((char*)p + data - (pages + 1) * page(), (pages + 2) * page());
}

// First damaged canary byte of a checked buffer, as an offset from its start (negative: before
// it); INT64_MIN when all are intact.
long long forge_emu_canary(const void* p, u64 size) {
  const unsigned char* d = (const unsigned char*)p;
  const size_t data = round_up(size ? size : 1, 16), pages = round_up(data, page()) / page();
  const size_t before = pages * page() - data;
  for (size_t i = 0; i < before; ++i)
    if (d[-(long long)before + (long long)i] != kCanary) return -(long long)before + (long long)i;
  for (size_t i = size; i < data; ++i)
    if (d[i] != kCanary) return (long long)i;
  return INT64_MIN;
}

unsigned forge_emu_threads(void) { return Pool::get().size(); }
const char* forge_emu_fiber_kind(void) { return kFiberKind; }

// Nanoseconds per fiber switch: a fiber and the caller ping-pong `iters` times.
static Fiber g_bench_main, g_bench_fiber;
static void bench_fiber() {
  for (;;) fiber_swap(&g_bench_fiber, &g_bench_main);
}
double forge_emu_bench_switch(u64 iters) {
  Stacks s;
  if (!s.ensure(1)) return -1;
  fiber_init(&g_bench_fiber, s.stack(0), kStackBytes, bench_fiber);
  timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (u64 i = 0; i < iters; ++i) fiber_swap(&g_bench_main, &g_bench_fiber);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  munmap(s.base, s.count * s.slot());
  return ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (2.0 * iters);
}

}  // extern "C"
