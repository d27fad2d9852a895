// W1, W2, W4, W5 and W6 of BENCH.md against the dynamic shared area, glibc
// malloc and Boost.Interprocess. Each workload is one function template over
// a policy whose pointers may be offsets (dsa_pointer), so the three run the
// same instructions around their calls and the ratios compare allocators.
//
// Policy surface (W1-W5: one per benchmark run; W6: one per worker process):
//   using Pointer = ...;                 // value-initialized = no chunk
//   Pointer Alloc(std::size_t size);
//   void* Address(Pointer p);            // where to write the byte
//   void Free(Pointer p);
//   void Finish();                       // end of a run; may raise a grove ERROR
#include "dsa_workloads.h"

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include "grove/base/error.h"
#include "grove/contexts/memutils.h"
#include "grove/dsa/dsa.h"
#include "workloads.h"

namespace grove::bench {

namespace {

namespace bip = boost::interprocess;

// Inputs are built once, at registration, before any timed region, by the
// generators of workloads.h (each with its own SplitMix64(42)).
struct DsaInputs {
  std::vector<uint32_t> batch_sizes = W2Sizes();
  std::vector<uint32_t> batch_perm = W2Perm();
  std::vector<uint32_t> fifo_ring = W4Ring();
  std::vector<uint32_t> slab_ring = W5Ring();
  std::vector<std::pair<uint32_t, uint32_t>> shared_ring = W6Ring();
};

const DsaInputs& GetInputs() {
  static const DsaInputs inputs;
  return inputs;
}

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// --- policies -------------------------------------------------------------------

/// An area of its own per run: dsa_create before the timed loop, dsa_detach
/// (which destroys it) after.
class DsaPolicy {
 public:
  using Pointer = dsa_pointer;

  DsaPolicy() {
    MemoryContextInit();
    area_ = dsa_create();
  }
  ~DsaPolicy() {
    if (area_ == nullptr) return;
    try {
      dsa_detach(area_);
    } catch (...) {  // an ERROR is already being reported
    }
  }
  DsaPolicy(const DsaPolicy&) = delete;
  DsaPolicy& operator=(const DsaPolicy&) = delete;

  Pointer Alloc(std::size_t size) { return dsa_allocate(area_, size); }
  void* Address(Pointer p) { return dsa_get_address(area_, p); }
  void Free(Pointer p) { dsa_free(area_, p); }
  void Finish() {
    dsa_area* area = area_;
    area_ = nullptr;
    dsa_detach(area);
  }

 private:
  dsa_area* area_ = nullptr;
};

struct MallocPolicy {
  using Pointer = void*;
  Pointer Alloc(std::size_t size) { return std::malloc(size); }
  void* Address(Pointer p) { return p; }
  void Free(Pointer p) { std::free(p); }
  void Finish() {}
};

/// A managed_shared_memory segment in /dev/shm named after the pid and a
/// counter; the name is removed when this goes, whatever happened (the
/// remover is constructed before the segment and destroyed after it).
class BoostSegment {
 public:
  explicit BoostSegment(std::size_t size) : remover_(NextName()), segment_(bip::create_only, remover_.name.c_str(), size) {}

  bip::managed_shared_memory& get() { return segment_; }
  const std::string& name() const { return remover_.name; }

 private:
  struct Remover {
    explicit Remover(std::string n) : name(std::move(n)) { bip::shared_memory_object::remove(name.c_str()); }
    ~Remover() { bip::shared_memory_object::remove(name.c_str()); }
    Remover(const Remover&) = delete;
    Remover& operator=(const Remover&) = delete;
    std::string name;
  };

  static std::string NextName() {
    static std::atomic<unsigned> counter{0};
    return "grove_bench_boost." + std::to_string(getpid()) + "." + std::to_string(counter.fetch_add(1));
  }

  Remover remover_;
  bip::managed_shared_memory segment_;
};

/// Boost.Interprocess in one segment per run (one process: W1-W5).
class BoostPolicy {
 public:
  using Pointer = void*;
  static constexpr std::size_t kSegmentSize = std::size_t{64} << 20;

  BoostPolicy() : segment_(kSegmentSize) {}
  BoostPolicy(const BoostPolicy&) = delete;
  BoostPolicy& operator=(const BoostPolicy&) = delete;

  Pointer Alloc(std::size_t size) { return segment_.get().allocate(size); }
  void* Address(Pointer p) { return p; }
  void Free(Pointer p) { segment_.get().deallocate(p); }
  void Finish() {}

 private:
  BoostSegment segment_;
};

// --- W1, W2, W4, W5 --------------------------------------------------------------

// The one byte BENCH.md has every chunk written at offset 0, through the
// address the policy gives; the address escapes so the store stays.
template <class P>
inline void Touch(P& policy, typename P::Pointer chunk, char value) {
  char* address = static_cast<char*>(policy.Address(chunk));
  address[0] = value;
  benchmark::DoNotOptimize(address);
}

// W1 pair64: alloc(64), write, free. One item = one pair.
template <class P>
void W1Pair64(benchmark::State& state, P& policy) {
  char value = 0;
  for (auto _ : state) {
    const typename P::Pointer chunk = policy.Alloc(64);
    Touch(policy, chunk, ++value);
    policy.Free(chunk);
  }
  state.SetItemsProcessed(state.iterations());
}

// W2 batch512: allocate all sizes in order, free in perm order. One round
// per iteration; one item = one alloc+free.
template <class P>
void W2Batch512(benchmark::State& state, P& policy) {
  const DsaInputs& in = GetInputs();
  const uint32_t* sizes = in.batch_sizes.data();
  const uint32_t* perm = in.batch_perm.data();
  std::vector<typename P::Pointer> ptrs(kBatchCount);
  typename P::Pointer* slots = ptrs.data();
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatchCount; ++i) {
      const typename P::Pointer chunk = policy.Alloc(sizes[i]);
      Touch(policy, chunk, static_cast<char>(i));
      slots[i] = chunk;
    }
    for (std::size_t i = 0; i < kBatchCount; ++i) policy.Free(slots[perm[i]]);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatchCount));
}

// W4 fifo: 1,000 live chunks, step t frees live[t % 1000] and allocates
// ring[(1000 + t) % 4096] in its place. Pre-fill and final frees untimed.
template <class P>
void W4Fifo(benchmark::State& state, P& policy) {
  const uint32_t* ring = GetInputs().fifo_ring.data();
  std::vector<typename P::Pointer> live_storage(kFifoLive);
  typename P::Pointer* live = live_storage.data();
  for (std::size_t k = 0; k < kFifoLive; ++k) {
    live[k] = policy.Alloc(ring[k]);
    Touch(policy, live[k], static_cast<char>(k));
  }
  std::size_t k = 0;
  std::size_t r = kFifoLive;
  for (auto _ : state) {
    policy.Free(live[k]);
    const typename P::Pointer chunk = policy.Alloc(ring[r]);
    Touch(policy, chunk, static_cast<char>(r));
    live[k] = chunk;
    if (++k == kFifoLive) k = 0;
    r = (r + 1) & (kFifoRingSize - 1);
  }
  for (std::size_t i = 0; i < kFifoLive; ++i) policy.Free(live[i]);
  state.SetItemsProcessed(state.iterations());
}
static_assert((kFifoRingSize & (kFifoRingSize - 1)) == 0);

// W5 slab96: toggle slot ring[t % 65536] between empty and a 96-byte chunk.
// Slots start empty at the start of each run and carry across iterations.
template <class P>
void W5Slab96(benchmark::State& state, P& policy) {
  const uint32_t* ring = GetInputs().slab_ring.data();
  std::vector<typename P::Pointer> slot_storage(kSlabSlots, typename P::Pointer{});
  typename P::Pointer* slots = slot_storage.data();
  std::size_t t = 0;
  for (auto _ : state) {
    const uint32_t s = ring[t];
    if (slots[s] != typename P::Pointer{}) {
      policy.Free(slots[s]);
      slots[s] = typename P::Pointer{};
    } else {
      const typename P::Pointer chunk = policy.Alloc(96);
      Touch(policy, chunk, static_cast<char>(t));
      slots[s] = chunk;
    }
    t = (t + 1) & (kSlabRingSize - 1);
  }
  for (std::size_t s = 0; s < kSlabSlots; ++s) {
    if (slots[s] != typename P::Pointer{}) policy.Free(slots[s]);
  }
  state.SetItemsProcessed(state.iterations());
}
static_assert((kSlabRingSize & (kSlabRingSize - 1)) == 0);

// --- W6 shared ----------------------------------------------------------------------

// The coordinator's side of each W6 implementation makes one Worker per
// worker process (after fork, in the child) and checks the shared state
// between iterations.

/// One area per run, created by the coordinator; workers dsa_attach it by
/// handle after fork and dsa_detach at the end.
class DsaShared {
 public:
  DsaShared() {
    MemoryContextInit();
    area_ = dsa_create();
    handle_ = dsa_get_handle(area_);
  }
  ~DsaShared() {
    try {
      dsa_detach(area_);
    } catch (...) {
    }
  }
  DsaShared(const DsaShared&) = delete;
  DsaShared& operator=(const DsaShared&) = delete;

  void BeforeIteration() {}
  /// Every worker freed its chunks and detached (giving back its cache), so
  /// nothing may be left allocated in the area.
  std::string CheckAfterIteration() {
    const DsaStats stats = dsa_get_stats(area_);
    std::size_t allocated = 0;
    for (const auto& c : stats.classes) allocated += c.allocated;
    if (allocated == 0 && stats.large_objects == 0) return {};
    return "W6: " + std::to_string(allocated) + " small and " + std::to_string(stats.large_objects) +
           " large objects still allocated in the area after every worker freed its chunks and detached";
  }

  class Worker {
   public:
    using Pointer = dsa_pointer;
    explicit Worker(DsaShared& shared) : area_(dsa_attach(shared.handle_)) {}
    Pointer Alloc(std::size_t size) { return dsa_allocate(area_, size); }
    void* Address(Pointer p) { return dsa_get_address(area_, p); }
    void Free(Pointer p) { dsa_free(area_, p); }
    void Finish() { dsa_detach(area_); }
    /// Right before _exit: what the atexit handler would do for DSM.
    static void ProcessExit() { dsm_process_exit(); }

   private:
    dsa_area* area_;
  };

 private:
  dsa_area* area_ = nullptr;
  dsa_handle handle_ = DSA_HANDLE_INVALID;
};

/// BENCH.md: managed_shared_memory(create_only, name, 512 MiB) made by the
/// coordinator before it forks; the workers use the inherited mapping.
/// Check: the segment's free memory after an iteration equals that before.
class BoostShared {
 public:
  BoostShared() : segment_(kSharedBoostSegmentSize) {}

  void BeforeIteration() { free_before_ = segment_.get().get_free_memory(); }
  std::string CheckAfterIteration() {
    const std::size_t free_after = segment_.get().get_free_memory();
    if (free_after == free_before_) return {};
    return "W6: Boost segment free memory " + std::to_string(free_after) + " bytes after the run, " +
           std::to_string(free_before_) + " before";
  }

  class Worker {
   public:
    using Pointer = void*;
    explicit Worker(BoostShared& shared) : segment_(shared.segment_.get()) {}
    Pointer Alloc(std::size_t size) { return segment_.allocate(size); }
    void* Address(Pointer p) { return p; }
    void Free(Pointer p) { segment_.deallocate(p); }
    void Finish() {}
    static void ProcessExit() {}

   private:
    bip::managed_shared_memory& segment_;
  };

 private:
  BoostSegment segment_;
  std::size_t free_before_ = 0;
};

/// Each worker on its own private heap (glibc malloc after fork).
class MallocShared {
 public:
  void BeforeIteration() {}
  std::string CheckAfterIteration() { return {}; }
  class Worker : public MallocPolicy {
   public:
    explicit Worker(MallocShared&) {}
    static void ProcessExit() {}
  };
};

// Coordination in a MAP_SHARED anonymous mapping made before fork.
constexpr int kMaxSharedWorkers = 64;
constexpr std::size_t kWorkerErrorBytes = 480;
static_assert(std::atomic<int>::is_always_lock_free);

struct alignas(64) SharedWorkerStatus {
  std::atomic<int> ready;  ///< set up, spinning on start
  std::atomic<int> done;   ///< ops done, leftovers freed, detached
  int64_t end_ns;          ///< CLOCK_MONOTONIC after the last timed op
  char error[kWorkerErrorBytes];
};

struct SharedControl {
  alignas(64) std::atomic<int> start;
  alignas(64) std::atomic<int> abort;
  SharedWorkerStatus workers[kMaxSharedWorkers];
};

class SharedControlMapping {
 public:
  SharedControlMapping() {
    void* p = mmap(nullptr, sizeof(SharedControl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error(Errno("W6: mmap of the control block"));
    control_ = new (p) SharedControl{};
  }
  ~SharedControlMapping() { munmap(control_, sizeof(SharedControl)); }
  SharedControlMapping(const SharedControlMapping&) = delete;
  SharedControlMapping& operator=(const SharedControlMapping&) = delete;

  SharedControl* Reset(int processes) {
    control_->start.store(0);
    control_->abort.store(0);
    for (int w = 0; w < processes; ++w) {
      SharedWorkerStatus& s = control_->workers[w];
      s.ready.store(0);
      s.done.store(0);
      s.end_ns = 0;
      s.error[0] = '\0';
    }
    return control_;
  }

 private:
  SharedControl* control_ = nullptr;
};

/// The CPUs this process may run on; worker w is pinned to the
/// (w % count)-th of them (CPU w % ncpus on an unrestricted machine).
std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
  }
  if (cpus.empty()) {
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long cpu = 0; cpu < std::max(n, 1L); ++cpu) cpus.push_back(static_cast<int>(cpu));
  }
  return cpus;
}

void WriteWorkerError(SharedWorkerStatus& status, const std::string& message) {
  const std::size_t n = std::min(message.size(), kWorkerErrorBytes - 1);
  std::memcpy(status.error, message.data(), n);
  status.error[n] = '\0';
}

// Ends a worker process: no atexit handler, no destructor, no return into
// the harness; the implementation's process-exit duties are done first.
template <class Shared>
[[noreturn]] void ExitWorker(int code) {
  try {
    Shared::Worker::ProcessExit();
  } catch (...) {
  }
  _exit(code);
}

// A worker process: never returns into the harness.
template <class Shared>
[[noreturn]] void RunSharedWorker(Shared& shared, SharedControl* control, int w, int cpu,
                                  const std::pair<uint32_t, uint32_t>* ring) {
  SharedWorkerStatus& me = control->workers[w];
  int code = 0;
  try {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) throw std::runtime_error(Errno("sched_setaffinity"));

    typename Shared::Worker worker(shared);
    using Pointer = typename Shared::Worker::Pointer;
    std::vector<Pointer> slot_storage(kSharedSlots, Pointer{});
    Pointer* slots = slot_storage.data();

    me.ready.store(1, std::memory_order_release);
    while (control->start.load(std::memory_order_acquire) == 0) {
      if (control->abort.load(std::memory_order_relaxed) != 0) ExitWorker<Shared>(3);
      sched_yield();
    }
    for (std::size_t t = 0; t < kSharedOpsPerWorker; ++t) {
      const auto [slot, size] = ring[t & (kSharedRingSize - 1)];
      if (slots[slot] != Pointer{}) {
        worker.Free(slots[slot]);
        slots[slot] = Pointer{};
      } else {
        const Pointer chunk = worker.Alloc(size);
        char* address = static_cast<char*>(worker.Address(chunk));
        address[0] = static_cast<char>(t);
        benchmark::DoNotOptimize(address);
        slots[slot] = chunk;
      }
    }
    me.end_ns = MonotonicNs();
    for (std::size_t s = 0; s < kSharedSlots; ++s) {
      if (slots[s] != Pointer{}) worker.Free(slots[s]);
    }
    worker.Finish();
    me.done.store(1, std::memory_order_release);
  } catch (const grove::Error& e) {
    WriteWorkerError(me, e.Format());
    code = 1;
  } catch (const std::exception& e) {
    WriteWorkerError(me, e.what());
    code = 1;
  } catch (...) {
    WriteWorkerError(me, "unknown exception");
    code = 1;
  }
  ExitWorker<Shared>(code);
}
static_assert((kSharedRingSize & (kSharedRingSize - 1)) == 0);

/// The worker processes of one iteration: whatever happens, every one is
/// reaped (killed first if still running) before this goes.
class WorkerProcesses {
 public:
  ~WorkerProcesses() { KillRemaining(); }

  void Add(pid_t pid) { workers_.push_back({pid, false, 0, 0}); }
  /// User + system CPU seconds of all reaped workers, their whole lives.
  double CpuSeconds() const {
    double total = 0;
    for (const auto& w : workers_) total += w.cpu_seconds;
    return total;
  }
  std::size_t size() const { return workers_.size(); }

  /// Reaps any worker that has exited; true if one had exited before it
  /// was expected to (i.e. any reaped here).
  bool ReapExited() {
    bool any = false;
    for (auto& w : workers_) {
      if (w.reaped) continue;
      int status = 0;
      rusage usage{};
      const pid_t r = wait4(w.pid, &status, WNOHANG, &usage);
      if (r == w.pid) {
        w.reaped = true;
        w.status = status;
        w.cpu_seconds = CpuSeconds(usage);
        any = true;
      }
    }
    return any;
  }

  /// Blocks until every worker is reaped (call once they are known to exit).
  void ReapAll() {
    for (auto& w : workers_) {
      if (w.reaped) continue;
      int status = 0;
      rusage usage{};
      pid_t r;
      do {
        r = wait4(w.pid, &status, 0, &usage);
      } while (r < 0 && errno == EINTR);
      w.reaped = true;
      w.status = r == w.pid ? status : -1;
      w.cpu_seconds = r == w.pid ? CpuSeconds(usage) : 0;
    }
  }

  void KillRemaining() {
    for (auto& w : workers_) {
      if (!w.reaped) kill(w.pid, SIGKILL);
    }
    ReapAll();
  }

  bool Signaled(std::size_t i) const { return workers_[i].status != -1 && WIFSIGNALED(workers_[i].status); }

  /// What went wrong with worker `i`, or "" if it exited with status 0.
  std::string Describe(std::size_t i, const SharedWorkerStatus& status) const {
    const Worker& w = workers_[i];
    const std::string who = "W6 worker " + std::to_string(i) + " (pid " + std::to_string(w.pid) + ")";
    if (w.status == -1) return who + ": could not be reaped";
    if (WIFSIGNALED(w.status)) return who + " killed by signal " + std::to_string(WTERMSIG(w.status)) + " (" +
                                      strsignal(WTERMSIG(w.status)) + ")";
    if (WIFEXITED(w.status) && WEXITSTATUS(w.status) == 0) {
      return status.done.load() != 0 ? std::string() : who + " exited without finishing";
    }
    if (status.error[0] != '\0') return who + ": " + status.error;
    return who + " exited with status " + std::to_string(WEXITSTATUS(w.status));
  }

 private:
  static double CpuSeconds(const rusage& u) {
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }

  struct Worker {
    pid_t pid;
    bool reaped;
    int status;
    double cpu_seconds;
  };
  std::vector<Worker> workers_;
};

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  ~FileDescriptor() { Close(); }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

/// Waits until every holder of the pipe's write end (the workers) has
/// exited, at most `timeout_ms`. False on timeout.
bool WaitForPipeClosed(int read_fd, int64_t timeout_ms) {
  const int64_t deadline = MonotonicNs() + timeout_ms * 1000000;
  for (;;) {
    const int64_t left_ms = (deadline - MonotonicNs()) / 1000000;
    if (left_ms <= 0) return false;
    pollfd p{read_fd, POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left_ms, 1000)));
    if (r < 0 && errno != EINTR) return false;
    if (r <= 0) continue;
    char buf[64];
    const ssize_t n = read(read_fd, buf, sizeof buf);
    if (n == 0) return true;  // EOF: no writer left
    if (n < 0 && errno != EINTR && errno != EAGAIN) return false;
  }
}

constexpr int64_t kReadyTimeoutMs = 60 * 1000;
constexpr int64_t kRunTimeoutMs = 600 * 1000;
constexpr int64_t kAbortTimeoutMs = 10 * 1000;

struct SharedIteration {
  double seconds = 0;              ///< max(end) - t0
  double worker_cpu_seconds = 0;   ///< user + system time of all workers, set-up and clean-up included
};

/// One W6 iteration: forks `processes` workers, starts them together, reaps
/// them. Sets `error` if anything went wrong.
template <class Shared>
SharedIteration RunSharedIteration(Shared& shared, SharedControlMapping& mapping, int processes,
                          const std::vector<int>& cpus, std::string* error) {
  const std::pair<uint32_t, uint32_t>* ring = GetInputs().shared_ring.data();
  SharedControl* control = mapping.Reset(processes);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *error = Errno("W6: pipe");
    return {};
  }
  FileDescriptor read_end(fds[0]);
  FileDescriptor write_end(fds[1]);
  WorkerProcesses workers;

  std::fflush(nullptr);  // nothing buffered is written twice
  for (int w = 0; w < processes; ++w) {
    const pid_t pid = fork();
    if (pid < 0) {
      *error = Errno("W6: fork");
      control->abort.store(1);
      return {};  // ~WorkerProcesses kills and reaps the ones started
    }
    if (pid == 0) {
      close(fds[0]);
      RunSharedWorker(shared, control, w, cpus[static_cast<std::size_t>(w) % cpus.size()], ring);
    }
    workers.Add(pid);
  }
  write_end.Close();

  // All ready, or a worker that died or failed before it got there.
  const int64_t ready_deadline = MonotonicNs() + kReadyTimeoutMs * 1000000;
  bool failed = false;
  for (;;) {
    int ready = 0;
    for (int w = 0; w < processes; ++w) ready += control->workers[w].ready.load(std::memory_order_acquire);
    if (ready == processes) break;
    if (workers.ReapExited()) {
      failed = true;
      break;
    }
    if (MonotonicNs() > ready_deadline) {
      *error = "W6: workers not ready after " + std::to_string(kReadyTimeoutMs / 1000) + " s";
      failed = true;
      break;
    }
    sched_yield();
  }

  int64_t t0 = 0;
  if (!failed) {
    t0 = MonotonicNs();
    control->start.store(1, std::memory_order_release);
    if (!WaitForPipeClosed(read_end.get(), kRunTimeoutMs)) {
      *error = "W6: workers still running after " + std::to_string(kRunTimeoutMs / 1000) + " s; killed";
      failed = true;
    }
  } else {
    control->abort.store(1, std::memory_order_release);
    WaitForPipeClosed(read_end.get(), kAbortTimeoutMs);
  }
  workers.KillRemaining();

  // A timeout message is kept; otherwise the first worker that reported an
  // error or was killed says why, before those that only obeyed the abort.
  for (const bool first_pass : {true, false}) {
    for (int w = 0; w < processes && error->empty(); ++w) {
      const SharedWorkerStatus& status = control->workers[w];
      if (first_pass && status.error[0] == '\0' && !workers.Signaled(static_cast<std::size_t>(w))) continue;
      *error = workers.Describe(static_cast<std::size_t>(w), status);
    }
  }
  if (failed && error->empty()) *error = "W6: a worker exited before the start";
  if (!error->empty()) return {};

  int64_t max_end = t0;
  for (int w = 0; w < processes; ++w) max_end = std::max(max_end, control->workers[w].end_ns);
  return {static_cast<double>(max_end - t0) / 1e9, workers.CpuSeconds()};
}

// W6 shared: P worker processes, 2,000,000 ops each, timed from the start
// flag to the last worker's end. Manual time = that wall time, so
// items_per_second = P × 2,000,000 / (max end − t0); also as "Mops/s".
template <class Shared>
void W6Shared(benchmark::State& state, int processes) {
  if (processes < 1 || processes > kMaxSharedWorkers) {
    state.SkipWithError("W6: bad process count");
    return;
  }
  const std::vector<int> cpus = AllowedCpus();
  SharedControlMapping mapping;
  Shared shared;
  double seconds_total = 0;
  double cpu_seconds_total = 0;
  for (auto _ : state) {
    shared.BeforeIteration();
    std::string error;
    const SharedIteration run = RunSharedIteration(shared, mapping, processes, cpus, &error);
    if (error.empty()) error = shared.CheckAfterIteration();
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    state.SetIterationTime(run.seconds);
    seconds_total += run.seconds;
    cpu_seconds_total += run.worker_cpu_seconds;
  }
  const int64_t ops = state.iterations() * processes * static_cast<int64_t>(kSharedOpsPerWorker);
  state.SetItemsProcessed(ops);
  if (seconds_total > 0) state.counters["Mops/s"] = static_cast<double>(ops) / seconds_total / 1e6;
  // CPU the workers spent per operation: unlike Mops/s, it does not improve
  // with more CPUs nor suffer from other load on them, so a rise from P:1 to
  // P:2 is cost of sharing (contended locks and cache lines).
  if (ops > 0) state.counters["worker_cpu_ns/op"] = cpu_seconds_total * 1e9 / static_cast<double>(ops);
}

// --- registration ---------------------------------------------------------------

// A grove ERROR (or any exception) skips the benchmark with the report
// instead of aborting the suite.
template <class Body>
void Guarded(benchmark::State& state, const Body& body) {
  try {
    body();
  } catch (const grove::Error& e) {
    state.SkipWithError(e.Format().c_str());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

template <class Policy, class Workload>
void Register(const std::string& name, const Workload& workload, benchmark::TimeUnit unit) {
  benchmark::RegisterBenchmark(name.c_str(), [workload](benchmark::State& state) {
    Guarded(state, [&] {
      Policy policy;
      workload(state, policy);
      policy.Finish();
    });
  })->Unit(unit);
}

template <class Shared>
void RegisterShared(const std::string& implementation, int processes) {
  const std::string name = "W6_shared/" + implementation + "/P:" + std::to_string(processes);
  benchmark::RegisterBenchmark(name.c_str(), [processes](benchmark::State& state) {
    Guarded(state, [&] { W6Shared<Shared>(state, processes); });
  })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

template <class Workload>
void RegisterWorkload(const char* workload, const Workload& body, benchmark::TimeUnit unit) {
  const std::string prefix = std::string(workload) + "/";
  Register<DsaPolicy>(prefix + "dsa", body, unit);
  Register<MallocPolicy>(prefix + "malloc", body, unit);
  Register<BoostPolicy>(prefix + "boost_ipc", body, unit);
}

constexpr auto kW1 = [](benchmark::State& state, auto& policy) { W1Pair64(state, policy); };
constexpr auto kW2 = [](benchmark::State& state, auto& policy) { W2Batch512(state, policy); };
constexpr auto kW4 = [](benchmark::State& state, auto& policy) { W4Fifo(state, policy); };
constexpr auto kW5 = [](benchmark::State& state, auto& policy) { W5Slab96(state, policy); };

void RegisterAll() {
  (void)GetInputs();
  constexpr auto ns = benchmark::kNanosecond;
  RegisterWorkload("W1_pair64", kW1, ns);
  RegisterWorkload("W2_batch512", kW2, benchmark::kMicrosecond);  // a 10,000-chunk round
  RegisterWorkload("W4_fifo", kW4, ns);
  RegisterWorkload("W5_slab96", kW5, ns);
  // By process count, so each figure is measured close in time to those it
  // is compared with.
  for (const int processes : kSharedProcessCounts) {
    RegisterShared<DsaShared>("dsa", processes);
    RegisterShared<BoostShared>("boost_ipc", processes);
    RegisterShared<MallocShared>("malloc", processes);
  }
  benchmark::AddCustomContext("grove_memory_checking", GroveMemoryCheckingBuild() ? "on" : "off");
  benchmark::AddCustomContext("w6_cpus", std::to_string(AllowedCpus().size()));
}

}  // namespace

void RegisterDsaBenchmarks() {
  static const bool registered = (RegisterAll(), true);
  (void)registered;
}

}  // namespace grove::bench
