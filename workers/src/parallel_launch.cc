// Launching parallel workers: fresh processes, warm pooled processes, or
// threads of a oneTBB task_arena; knowing whether each still runs; stopping
// them. The process-wide worker limit.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#define TBB_PREVIEW_GLOBAL_CONTROL 1
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include "grove/base/interrupts.h"
#include "grove/resowner/resowner.h"
#include "parallel_internal.h"

namespace grove {

using namespace parallel_internal;

/// A context's launcher state. Process mode: a pidfd per launched worker
/// (−1 if none, or once reaped), for waiting on exits.
struct ParallelRuntime {
  std::vector<int> pidfds;
};

namespace {

std::atomic<int> max_workers{8};
std::atomic<int> running_workers{0};

/// How long a worker told to stop may take before it is killed.
constexpr int kStopGraceMs = 5000;

extern "C" void HandleWorkerTerm(int) { RequestCancel(); }

// In a new worker process: die with the leader, cancel on SIGTERM or SIGINT,
// and own nothing of the leader's.
bool BecomeWorkerProcess(pid_t leader) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != leader) return false;  // the leader died before the line above
  struct sigaction sa {};
  sa.sa_handler = &HandleWorkerTerm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  CurrentResourceOwner = nullptr;
  InterruptPending.store(false);
  QueryCancelPending.store(false);
  ThisThreadCancel = ThreadCancel{};  // forked from a thread worker: its stop is not ours
  dsm_initialize_without_cleanup();   // the leader cleaned up after dead processes
  return true;
}

[[noreturn]] void ExitWorkerProcess(int code) {
  std::fflush(nullptr);
  dsm_process_exit();  // _exit runs no atexit handler: remove our own segments here
  _exit(code);
}

// --- pool ---------------------------------------------------------------------------------------

struct PoolJob {
  dsm_handle handle;
  std::int32_t worker;
};

struct PoolProcess {
  pid_t pid;
  int job_fd;  // write end of the process's job pipe
  bool busy;
};

struct Pool {
  std::mutex mutex;
  pid_t owner = 0;  // the process whose children these are
  std::vector<PoolProcess> processes;
};

Pool& ThePool() {
  static Pool* pool = new Pool;  // never destroyed: pool processes die with us
  return *pool;
}

void ForgetPoolIfForked(Pool& pool) {
  if (pool.owner == getpid()) return;
  pool.processes.clear();  // the parent's children, not ours
  pool.owner = getpid();
}

/// A pool process keeps its last job's segment mapped (and its reference)
/// for the next job on the same segment — a leader recycles its contexts'
/// segments — if the mapping is at most this long.
constexpr std::size_t kPoolKeptMappingMax = std::size_t{1} << 20;

[[noreturn]] void PoolProcessLoop(int job_fd) {
  dsm_segment* kept = nullptr;
  for (;;) {
    PoolJob job;
    std::size_t got = 0;
    while (got < sizeof job) {
      const ssize_t n = read(job_fd, reinterpret_cast<char*>(&job) + got, sizeof job - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ExitWorkerProcess(0);  // the leader closed the pipe or died
      got += static_cast<std::size_t>(n);
    }
    InterruptPending.store(false);  // a stop meant for the previous job
    QueryCancelPending.store(false);
    if (kept != nullptr && dsm_segment_handle(kept) != job.handle) {
      dsm_detach(kept);  // another segment now (its callbacks ran with its job)
      kept = nullptr;
    }
    if (kept == nullptr) {
      try {
        kept = dsm_attach(job.handle);
        dsm_pin_mapping(kept);
      } catch (const Error& e) {
        std::fprintf(stderr, "parallel worker %d: %s\n", job.worker, e.Format().c_str());
        ExitWorkerProcess(kWorkerFailedBeforeAttach);
      }
    }
    // A job that could not even find its slot told the leader nothing: the
    // process ends, and its exit is what the leader sees.
    if (ParallelWorkerMain(job.handle, kept, job.worker, ParallelLaunchMode::kPool) == kWorkerFailedBeforeAttach)
      ExitWorkerProcess(kWorkerFailedBeforeAttach);
    if (dsm_segment_map_length(kept) > kPoolKeptMappingMax) {
      dsm_detach(kept);
      kept = nullptr;
    }
  }
}

// Starts one pool process (pool lock held). -1 on failure.
int StartPoolProcess(Pool& pool) {
  pool.processes.reserve(pool.processes.size() + 1);  // the push_back below, after fork, cannot throw
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  std::fflush(nullptr);
  const pid_t leader = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    close(fds[1]);
    // Other pool processes' job pipes are close-on-exec but not closed by
    // fork: close them, or a dead leader's pipes would stay open here.
    for (const PoolProcess& p : pool.processes) close(p.job_fd);
    if (!BecomeWorkerProcess(leader)) _exit(1);
    PoolProcessLoop(fds[0]);
  }
  close(fds[0]);
  pool.processes.push_back({pid, fds[1], false});
  return static_cast<int>(pool.processes.size()) - 1;
}

// Writes a job to a pool process's pipe. A process that died between the
// liveness check and the write must not take the leader with it: SIGPIPE
// is blocked for the write and a pending one consumed.
bool WriteJob(int fd, const PoolJob& job) {
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  ssize_t n;
  do {
    n = write(fd, &job, sizeof job);
  } while (n < 0 && errno == EINTR);
  const bool ok = n == static_cast<ssize_t>(sizeof job);
  if (!ok && errno == EPIPE) {
    const timespec zero{0, 0};
    sigtimedwait(&pipe_only, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return ok;
}

void RemovePoolProcess(Pool& pool, int slot, bool kill_it) {
  PoolProcess& p = pool.processes[slot];
  close(p.job_fd);
  if (kill_it) kill(p.pid, SIGKILL);
  int status;
  while (waitpid(p.pid, &status, 0) < 0 && errno == EINTR) {
  }
  p = PoolProcess{-1, -1, false};  // slots keep their index: contexts refer to them
}

// --- threads ------------------------------------------------------------------------------------

struct ThreadArena {
  std::mutex mutex;
  int size = 0;
  std::unique_ptr<tbb::global_control> control;
  std::unique_ptr<tbb::task_arena> arena;
  std::vector<std::unique_ptr<tbb::task_arena>> retired;  // may still run tasks: never destroyed
};

ThreadArena& TheThreadArena() {
  static ThreadArena* a = new ThreadArena;  // never destroyed: TBB threads outlive main's statics
  return *a;
}

tbb::task_arena& ArenaFor(int workers) {
  ThreadArena& a = TheThreadArena();
  std::lock_guard<std::mutex> lock(a.mutex);
  if (a.arena == nullptr || a.size < workers) {
    // Every worker needs a thread of its own (workers may wait on each
    // other), so TBB must allow that many beyond the calling thread.
    if (a.arena != nullptr) a.retired.push_back(std::move(a.arena));
    a.control = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                      static_cast<std::size_t>(workers) + 1);
    a.arena = std::make_unique<tbb::task_arena>(workers, 0);
    a.size = workers;
  }
  return *a.arena;
}

}  // namespace

namespace parallel_internal {

bool ReserveWorkerSlot() {
  int now = running_workers.load();
  do {
    if (now >= max_workers.load()) return false;
  } while (!running_workers.compare_exchange_weak(now, now + 1));
  return true;
}
void ReleaseWorkerSlot() { running_workers.fetch_sub(1); }

bool LaunchOne(ParallelContext* pcxt, int i) {
  ParallelWorkerInfo& w = pcxt->worker[i];
  const dsm_handle handle = dsm_segment_handle(pcxt->seg);
  w.pid = -1;
  w.pool_slot = -1;
  switch (pcxt->mode) {
    case ParallelLaunchMode::kProcess: {
      // Everything that can throw comes before the fork: once a worker
      // runs, the launch must be recorded (an untracked worker would write
      // to a segment the leader reuses).
      if (pcxt->runtime == nullptr)
        pcxt->runtime = new ParallelRuntime{std::vector<int>(static_cast<std::size_t>(pcxt->nworkers), -1)};
      std::fflush(nullptr);
      const pid_t leader = getpid();
      const pid_t pid = fork();
      if (pid < 0) return false;
      if (pid == 0) {
        if (!BecomeWorkerProcess(leader)) _exit(1);
        ExitWorkerProcess(ParallelWorkerMain(handle, nullptr, i, ParallelLaunchMode::kProcess));
      }
      w.pid = pid;
      // Close-on-exec by itself. Without one (ENOSYS before Linux 5.3), the
      // leader learns of the exit by polling, as for a death.
      int& pidfd = pcxt->runtime->pidfds[static_cast<std::size_t>(i)];
      if (pidfd >= 0) close(pidfd);  // a previous round's, not reaped through WorkerRunning
      pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
      return true;
    }
    case ParallelLaunchMode::kPool: {
      Pool& pool = ThePool();
      std::lock_guard<std::mutex> lock(pool.mutex);
      ForgetPoolIfForked(pool);
      int slot = -1;
      for (int k = 0; k < static_cast<int>(pool.processes.size()) && slot < 0; ++k) {
        PoolProcess& p = pool.processes[k];
        if (p.pid <= 0 || p.busy) continue;
        int st;
        if (waitpid(p.pid, &st, WNOHANG) != 0) {
          // Died while idle (killed, say): reaped here, never handed a job.
          close(p.job_fd);
          p = PoolProcess{-1, -1, false};
          continue;
        }
        slot = k;
      }
      if (slot < 0) slot = StartPoolProcess(pool);
      if (slot < 0) return false;
      const PoolJob job{handle, i};
      if (!WriteJob(pool.processes[slot].job_fd, job)) {
        RemovePoolProcess(pool, slot, true);
        return false;
      }
      pool.processes[slot].busy = true;
      w.pid = pool.processes[slot].pid;
      w.pool_slot = slot;
      return true;
    }
    case ParallelLaunchMode::kThread: {
      dsm_segment* seg = pcxt->seg;
      auto done = std::make_shared<std::atomic<bool>>(false);
      w.thread_done = done;
      try {
        ArenaFor(MaxParallelWorkers()).enqueue([handle, seg, i, done] {
          ParallelWorkerMain(handle, seg, i, ParallelLaunchMode::kThread);
          done->store(true, std::memory_order_release);
          WakeLeader(nullptr, ParallelLaunchMode::kThread);  // the process's word: `shared` is not read
        });
      } catch (const std::exception&) {
        return false;
      }
      return true;
    }
  }
  return false;
}

bool WorkerRunning(ParallelContext* pcxt, int i, int* status) {
  ParallelWorkerInfo& w = pcxt->worker[i];
  const std::uint32_t state = pcxt->shared->workers[i].state.load(std::memory_order_acquire);
  switch (pcxt->mode) {
    case ParallelLaunchMode::kProcess: {
      if (w.pid <= 0) return false;
      int st = 0;
      const pid_t r = waitpid(w.pid, &st, WNOHANG);
      if (r == 0) return true;
      if (r == w.pid) *status = st;
      w.pid = -1;  // reaped (or not ours any more)
      if (pcxt->runtime != nullptr && pcxt->runtime->pidfds[static_cast<std::size_t>(i)] >= 0) {
        close(pcxt->runtime->pidfds[static_cast<std::size_t>(i)]);
        pcxt->runtime->pidfds[static_cast<std::size_t>(i)] = -1;
      }
      return false;
    }
    case ParallelLaunchMode::kPool: {
      if (w.pool_slot < 0) return false;
      Pool& pool = ThePool();
      std::lock_guard<std::mutex> lock(pool.mutex);
      if (w.pool_slot >= static_cast<int>(pool.processes.size()) || pool.processes[w.pool_slot].pid != w.pid) {
        // Its process was removed (the pool shut down, or it was killed):
        // gone, and already reaped.
        w.pool_slot = -1;
        return false;
      }
      PoolProcess& p = pool.processes[w.pool_slot];
      if (state >= kWorkerExited) {
        p.busy = false;  // back to the pool, warm
        w.pool_slot = -1;
        return false;
      }
      int st = 0;
      const pid_t r = waitpid(p.pid, &st, WNOHANG);
      if (r == 0) return true;
      *status = st;
      p.pid = -1;  // died: reaped; its slot is dead
      close(p.job_fd);
      p.job_fd = -1;
      w.pool_slot = -1;
      return false;
    }
    case ParallelLaunchMode::kThread:
      return state < kWorkerExited && !(w.thread_done && w.thread_done->load(std::memory_order_acquire));
  }
  return false;
}

void StopAndWait(ParallelContext* pcxt, int i) {
  ParallelWorkerInfo& w = pcxt->worker[i];
  int status = 0;
  // Processes are told to stop with SIGTERM (a cancel at their next
  // CHECK_FOR_INTERRUPTS); a pool process only if it is still on this job.
  if (pcxt->mode == ParallelLaunchMode::kProcess && w.pid > 0) kill(w.pid, SIGTERM);
  if (pcxt->mode == ParallelLaunchMode::kPool && w.pool_slot >= 0 &&
      pcxt->shared->workers[i].state.load() < kWorkerExited)
    kill(w.pid, SIGTERM);
  const auto grace_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStopGraceMs);
  LeaderWakeup* wakeup = LeaderWakeupOf(pcxt->shared, pcxt->mode);
  while (WorkerRunning(pcxt, i, &status)) {
    const std::uint32_t seen = wakeup->word.load(std::memory_order_acquire);
    if (!WorkerRunning(pcxt, i, &status)) break;
    WaitForLeaderWakeup(wakeup, seen, 10);
    // Measured, not counted: a wait often returns early (wake-ups, spins).
    if (pcxt->mode != ParallelLaunchMode::kThread && std::chrono::steady_clock::now() >= grace_end) {
      // Deaf to the stop: killed. (A thread cannot be; the context waits.)
      if (pcxt->mode == ParallelLaunchMode::kProcess) {
        kill(w.pid, SIGKILL);
      } else if (w.pool_slot >= 0) {
        Pool& pool = ThePool();
        std::lock_guard<std::mutex> lock(pool.mutex);
        if (w.pool_slot < static_cast<int>(pool.processes.size()) && pool.processes[w.pool_slot].pid == w.pid)
          RemovePoolProcess(pool, w.pool_slot, true);
        w.pool_slot = -1;
      }
    }
  }
}

bool WaitForWorkerProcessExit(ParallelContext* pcxt, int timeout_ms) {
  if (pcxt->mode != ParallelLaunchMode::kProcess || pcxt->runtime == nullptr) return false;
  std::vector<pollfd> fds;
  for (int i = 0; i < pcxt->nworkers_launched; ++i) {
    const ParallelWorkerInfo& w = pcxt->worker[i];
    if (w.done) continue;
    const int pidfd = pcxt->runtime->pidfds[static_cast<std::size_t>(i)];
    if (w.pid <= 0 || pidfd < 0 ||
        pcxt->shared->workers[i].state.load(std::memory_order_acquire) < kWorkerExited)
      return false;
    fds.push_back({pidfd, POLLIN, 0});
  }
  if (fds.empty()) return false;
  // Readable once the process has exited. EINTR (a cancel) returns early;
  // the caller checks for interrupts.
  poll(fds.data(), fds.size(), timeout_ms);
  return true;
}

void ReleaseRuntime(ParallelContext* pcxt) {
  if (pcxt->runtime == nullptr) return;
  for (const int fd : pcxt->runtime->pidfds)
    if (fd >= 0) close(fd);
  delete pcxt->runtime;
  pcxt->runtime = nullptr;
}

}  // namespace parallel_internal

void SetMaxParallelWorkers(int n) {
  if (n < 0 || n > 1024)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid maximum of parallel workers %d", n),
            errdetail("It must be between 0 and 1024."));
  max_workers.store(n);
}
int MaxParallelWorkers() { return max_workers.load(); }

void ShutdownParallelWorkerPool() {
  Pool& pool = ThePool();
  std::lock_guard<std::mutex> lock(pool.mutex);
  ForgetPoolIfForked(pool);
  // Slots stay (dead): contexts still running refer to them by index.
  for (int k = 0; k < static_cast<int>(pool.processes.size()); ++k)
    if (pool.processes[k].pid > 0) RemovePoolProcess(pool, k, pool.processes[k].busy);
}

int ParallelWorkerPoolSize() {
  Pool& pool = ThePool();
  std::lock_guard<std::mutex> lock(pool.mutex);
  ForgetPoolIfForked(pool);
  int n = 0;
  for (const PoolProcess& p : pool.processes) n += p.pid > 0;
  return n;
}

const char* ParallelLaunchModeName(ParallelLaunchMode mode) {
  switch (mode) {
    case ParallelLaunchMode::kProcess:
      return "process";
    case ParallelLaunchMode::kPool:
      return "pool";
    case ParallelLaunchMode::kThread:
      return "thread";
  }
  return "?";
}

bool ParseParallelLaunchMode(const char* text, ParallelLaunchMode* mode) {
  for (ParallelLaunchMode m : {ParallelLaunchMode::kProcess, ParallelLaunchMode::kPool, ParallelLaunchMode::kThread}) {
    if (std::strcmp(text, ParallelLaunchModeName(m)) == 0) {
      *mode = m;
      return true;
    }
  }
  return false;
}

}  // namespace grove
