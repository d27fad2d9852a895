// Parallel contexts, the leader's side: the segment and its fixed state,
// launch, waiting for attach and finish (with every worker's messages
// re-raised or forwarded here), and teardown.
#include <chrono>
#include <csignal>
#include <cstring>
#include <mutex>
#include <new>
#include <pthread.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "grove/base/interrupts.h"
#include "grove/contexts/context_switch.h"
#include "grove/contexts/memutils.h"
#include "grove/contexts/palloc.h"
#include "grove/resowner/resowner.h"
#include "grove/workers/latch.h"
#include "parallel_internal.h"

namespace grove {

using namespace parallel_internal;

namespace {

void ReleaseContextFromOwner(Datum res) {
  auto* pcxt = DatumGetPointer<ParallelContext>(res);
  pcxt->owner = nullptr;  // already forgotten by the owner
  DestroyParallelContext(pcxt);
}
char* PrintContext(Datum res) {
  const auto* pcxt = DatumGetPointer<ParallelContext>(res);
  return psprintf("parallel context \"%s\" (%d workers)", pcxt->entry_name, pcxt->nworkers);
}
// Destroyed before DSM segments are detached (it detaches its own).
const ResourceOwnerDesc kParallelContextResourceKind = {"parallel context", RESOURCE_RELEASE_BEFORE_LOCKS,
                                                        RELEASE_PRIO_DSMS - 10, &ReleaseContextFromOwner,
                                                        &PrintContext};

std::string DescribeExit(int status) {
  if (WIFSIGNALED(status)) return "was terminated by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with exit code " + std::to_string(WEXITSTATUS(status));
  return "ended";
}

[[noreturn]] void WorkerFailed(ParallelContext* pcxt, int i, int status, bool attached) {
  const ParallelWorkerInfo& w = pcxt->worker[i];
  const std::string how = status != 0 ? DescribeExit(status) : std::string("ended without reporting");
  if (!attached)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("parallel worker failed to initialize"),
            errdetail("Parallel worker %d (%s mode%s) %s before attaching.", i, ParallelLaunchModeName(pcxt->mode),
                      w.pid > 0 ? (", pid " + std::to_string(w.pid)).c_str() : "", how.c_str()),
            errhint("More details may be available in the server log."));
  ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR), errmsg("lost connection to parallel worker"),
          errdetail("Parallel worker %d (%s mode) %s.", i, ParallelLaunchModeName(pcxt->mode), how.c_str()));
  __builtin_unreachable();
}

// Handles everything worker i has sent so far. Throws a worker's ERROR.
void DrainMessages(ParallelContext* pcxt, int i) {
  ParallelWorkerInfo& w = pcxt->worker[i];
  if (w.error_queue == nullptr || w.got_terminate) return;
  for (;;) {
    std::size_t n = 0;
    void* data = nullptr;
    const shm_mq_result r = shm_mq_receive(w.error_queue, &n, &data, true);
    if (r != SHM_MQ_SUCCESS) return;  // WOULD_BLOCK, or DETACHED: decided by the caller
    const char* bytes = static_cast<const char*>(data);
    if (n == 1 && bytes[0] == kMessageTerminate) {
      w.got_terminate = true;
      return;
    }
    ErrorData report;
    if (!DeserializeReport(bytes, n, &report))
      ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR), errmsg("invalid message from parallel worker %d", i));
    report.context.push_back("parallel worker " + std::to_string(i));
    if (report.elevel >= ERROR) {
      report.elevel = ERROR;  // a worker's FATAL ends the worker, not the leader
      throw Error(std::move(report));
    }
    EmitErrorReport(report);
  }
}

// One pass over the workers not yet done: messages, then liveness. Returns
// whether all are done. `need_attach_only`: done = attached.
bool PollWorkers(ParallelContext* pcxt, bool need_attach_only) {
  bool all = true;
  for (int i = 0; i < pcxt->nworkers_launched; ++i) {
    ParallelWorkerInfo& w = pcxt->worker[i];
    if (w.done) continue;
    const std::uint32_t state = pcxt->shared->workers[i].state.load(std::memory_order_acquire);
    if (need_attach_only && state >= kWorkerAttached) continue;
    DrainMessages(pcxt, i);
    int status = 0;
    const bool running = WorkerRunning(pcxt, i, &status);
    if (!running) {
      DrainMessages(pcxt, i);  // what it sent just before it went
      const bool attached = pcxt->shared->workers[i].state.load() >= kWorkerAttached;
      w.done = true;
      ReleaseWorkerSlot();
      if (!w.got_terminate) WorkerFailed(pcxt, i, status, attached);
      continue;
    }
    all = false;
  }
  return all;
}

void WaitForWorkers(ParallelContext* pcxt, bool attach_only) {
  LeaderWakeup* wakeup = LeaderWakeupOf(pcxt->shared, pcxt->mode);
  for (;;) {
    CHECK_FOR_INTERRUPTS();
    const std::uint32_t seen = wakeup->word.load(std::memory_order_acquire);
    if (PollWorkers(pcxt, attach_only)) return;
    // Process workers that said their last word are waited for on their
    // pidfds: an exit bumps no word, and the timeout below would make every
    // wait for finish last ~10 ms.
    if (WaitForWorkerProcessExit(pcxt, 10)) continue;
    // Workers bump the word on every message and state change; the timeout
    // bounds how late a death (which bumps nothing) is noticed.
    WaitForLeaderWakeup(wakeup, seen, 10);
  }
}

void CreateErrorQueues(ParallelContext* pcxt, char* queues) {
  // The handles live as long as the context, not the caller's context.
  ContextSwitch in_top(TopMemoryContext);
  for (int i = 0; i < pcxt->nworkers; ++i) {
    shm_mq* mq = shm_mq_create(queues + static_cast<std::size_t>(i) * kErrorQueueSize, kErrorQueueSize);
    shm_mq_set_receiver(mq);
    pcxt->worker[i].error_queue = shm_mq_attach(mq, pcxt->seg);
  }
}

void DetachErrorQueues(ParallelContext* pcxt) {
  for (int i = 0; i < pcxt->nworkers; ++i) {
    if (shm_mq_handle* h = pcxt->worker[i].error_queue) {
      shm_mq_detach(h);
      pfree(h);  // a detached handle stays allocated (to catch later use); ours is not used again
    }
    pcxt->worker[i].error_queue = nullptr;
  }
}

// Stops every worker still running (never throws).
void StopWorkers(ParallelContext* pcxt) {
  if (pcxt->shared == nullptr) return;
  pcxt->shared->stop.store(1, std::memory_order_release);
  for (int i = 0; i < pcxt->nworkers_launched; ++i) {
    ParallelWorkerInfo& w = pcxt->worker[i];
    if (w.done) continue;
    StopAndWait(pcxt, i);
    w.done = true;
    ReleaseWorkerSlot();
  }
}

// --- recycled segments -----------------------------------------------------------------------
//
// A process-mode or pool-mode context whose launched workers all marked
// themselves exited leaves its segment to the next context of this process
// instead of removing it: creating, sizing, mapping, unmapping and removing
// a shared segment cost a leader tens of microseconds per context, and a
// pool process keeps the segment of its last job mapped, so a recycled
// segment spares it the attach too. Invariant: a cached segment has no user
// left but this process (every worker detached or ran its detach callbacks
// before it marked itself exited, and a pool process that keeps it mapped
// does not touch it between jobs), no detach callbacks, and is
// process-owned.

constexpr std::size_t kRecycledSegmentsMax = 4;
constexpr std::size_t kRecycledSegmentMaxBytes = std::size_t{1} << 20;

struct SegmentCache {
  std::mutex mutex;
  pid_t owner = 0;  // the process whose segments these are (a forked child has none)
  std::vector<dsm_segment*> segments;
};

SegmentCache* segment_cache = nullptr;

// In a forked child: the segments are the parent's, and a lock another
// parent thread held at fork would never be released.
void ResetSegmentCacheAfterFork() {
  if (segment_cache == nullptr) return;
  new (&segment_cache->mutex) std::mutex;
  segment_cache->segments.clear();
  segment_cache->owner = getpid();
}

SegmentCache& TheSegmentCache() {
  static SegmentCache* cache = [] {
    auto* c = new SegmentCache;  // never destroyed: the names go with the registry at exit
    c->owner = getpid();
    segment_cache = c;
    pthread_atfork(nullptr, nullptr, &ResetSegmentCacheAfterFork);
    return c;
  }();
  return *cache;
}

// Cache lock held: forgets a parent's segments in a child made by a bare
// clone or vfork-like call that ran no fork handler.
void ForgetSegmentsIfForked(SegmentCache& c) {
  if (c.owner == getpid()) return;
  c.segments.clear();
  c.owner = getpid();
}

// A cached segment of at least `size` bytes, its first `size` bytes zeroed
// (all a context uses: its TOC is that long); nullptr if none.
dsm_segment* TakeRecycledSegment(std::size_t size) {
  SegmentCache& c = TheSegmentCache();
  dsm_segment* seg = nullptr;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    ForgetSegmentsIfForked(c);
    for (auto it = c.segments.begin(); it != c.segments.end(); ++it) {
      if (dsm_segment_map_length(*it) >= size) {
        seg = *it;
        c.segments.erase(it);
        break;
      }
    }
  }
  if (seg != nullptr) std::memset(dsm_segment_address(seg), 0, size);
  return seg;
}

// Keeps `seg` for a later context if it is small enough and there is room;
// otherwise detaches and removes it.
void RecycleOrRemoveSegment(dsm_segment* seg) {
  dsm_run_detach_callbacks(seg);  // the ended context's (queues, areas in place)
  // Only a segment that is the context's alone: one the caller pinned, or
  // gave to a resource owner, has a life of its own.
  if (dsm_segment_map_length(seg) <= kRecycledSegmentMaxBytes && !dsm_segment_is_pinned(seg) &&
      dsm_mapping_is_pinned(seg)) {
    SegmentCache& c = TheSegmentCache();
    std::lock_guard<std::mutex> lock(c.mutex);
    ForgetSegmentsIfForked(c);
    if (c.segments.size() < kRecycledSegmentsMax) {
      c.segments.push_back(seg);
      return;
    }
  }
  dsm_detach_and_remove(seg);
}

// Whether every launched worker is done with the segment: none was killed
// while attached, none may still write to it. Called once the workers are
// stopped and waited for. A process worker is reaped by then: gone, if it
// marked itself exited. A pool process marks itself done a few
// instructions after exited, unless it is descheduled in between (waited
// for, up to a second) or killed (then the segment is not reused).
bool AllWorkersDone(const ParallelContext* pcxt) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (int i = 0; i < pcxt->nworkers_launched; ++i) {
    const std::atomic<std::uint32_t>& state = pcxt->shared->workers[i].state;
    if (pcxt->mode == ParallelLaunchMode::kProcess) {
      if (state.load(std::memory_order_acquire) < kWorkerExited) return false;
      continue;
    }
    for (int spins = 0; state.load(std::memory_order_acquire) != kWorkerDone; ++spins) {
      if (state.load(std::memory_order_acquire) != kWorkerExited || std::chrono::steady_clock::now() > deadline)
        return false;
      if (spins < 1000) {
        CpuRelaxForLatch();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
  return true;
}

}  // namespace

void ReleaseRecycledParallelSegments() {
  SegmentCache& c = TheSegmentCache();
  std::vector<dsm_segment*> segments;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    ForgetSegmentsIfForked(c);
    segments.swap(c.segments);
  }
  for (dsm_segment* seg : segments) dsm_detach_and_remove(seg);
}

ParallelContext* CreateParallelContext(const char* entry_name, int nworkers, ParallelLaunchMode mode) {
  if (entry_name == nullptr || LookupParallelEntry(entry_name) == nullptr)
    ereport(ERROR, errcode(ERRCODE_UNDEFINED_FUNCTION),
            errmsg("parallel entry \"%s\" is not registered", entry_name ? entry_name : "(null)"),
            errhint("Call RegisterParallelEntry at start-up."));
  if (nworkers < 0 || nworkers > 1024)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid number of parallel workers %d", nworkers));
  ResourceOwner owner = CurrentResourceOwner;
  if (owner != nullptr) ResourceOwnerEnlarge(owner);
  auto* pcxt = new ParallelContext{};
  pcxt->entry_name = strdup(entry_name);
  pcxt->mode = mode;
  pcxt->nworkers = nworkers;
  pcxt->nworkers_to_launch = nworkers;
  shm_toc_initialize_estimator(&pcxt->estimator);
  pcxt->worker = new ParallelWorkerInfo[static_cast<std::size_t>(nworkers)]{};
  pcxt->owner = owner;
  if (owner != nullptr) ResourceOwnerRemember(owner, PointerGetDatum(pcxt), &kParallelContextResourceKind);
  return pcxt;
}

void InitializeParallelDSM(ParallelContext* pcxt) {
  if (pcxt->seg != nullptr)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("the parallel context's segment already exists"),
            errhint("Use ReinitializeParallelDSM for another round."));
  shm_toc_estimator e = pcxt->estimator;
  shm_toc_estimate_chunk(&e, ParallelSharedSize(pcxt->nworkers));
  shm_toc_estimate_chunk(&e, kErrorQueueSize * static_cast<std::size_t>(pcxt->nworkers));
  shm_toc_estimate_keys(&e, 2);
  const std::size_t size = shm_toc_estimate(&e);
  {
    const ResourceOwner saved = CurrentResourceOwner;
    CurrentResourceOwner = nullptr;  // the context holds its segment itself
    try {
      // Thread workers share the leader's address space: a private segment
      // spares the shm_open/mmap/munmap/unlink of a shared one per context.
      if (pcxt->mode == ParallelLaunchMode::kThread) {
        pcxt->seg = dsm_create_private(size);
      } else {
        pcxt->seg = TakeRecycledSegment(size);
        if (pcxt->seg == nullptr) pcxt->seg = dsm_create(size);
      }
    } catch (...) {
      CurrentResourceOwner = saved;
      throw;
    }
    CurrentResourceOwner = saved;
  }
  pcxt->toc = shm_toc_create(kParallelMagic, dsm_segment_address(pcxt->seg), size);
  auto* shared = static_cast<ParallelShared*>(shm_toc_allocate(pcxt->toc, ParallelSharedSize(pcxt->nworkers)));
  std::memset(static_cast<void*>(shared), 0, ParallelSharedSize(pcxt->nworkers));
  shared->magic = kParallelMagic;
  std::strncpy(shared->entry_name, pcxt->entry_name, kEntryNameMax - 1);
  shared->leader_pid = getpid();
  shared->nworkers = pcxt->nworkers;
  shared->min_message_level = MinMessageLevel();
  pcxt->shared = shared;
  shm_toc_insert(pcxt->toc, PARALLEL_KEY_FIXED, shared);
  auto* queues = static_cast<char*>(shm_toc_allocate(pcxt->toc, kErrorQueueSize * static_cast<std::size_t>(pcxt->nworkers)));
  shm_toc_insert(pcxt->toc, PARALLEL_KEY_ERROR_QUEUE, queues);
  CreateErrorQueues(pcxt, queues);
}

void ReinitializeParallelDSM(ParallelContext* pcxt) {
  if (pcxt->seg == nullptr)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("the parallel context has no segment"));
  if (pcxt->nworkers_launched > 0) WaitForParallelWorkersToFinish(pcxt);
  DetachErrorQueues(pcxt);
  for (int i = 0; i < pcxt->nworkers; ++i) {
    pcxt->shared->workers[i].state.store(kWorkerNotStarted);
    pcxt->shared->workers[i].pid.store(0);
    pcxt->worker[i] = ParallelWorkerInfo{};
  }
  pcxt->shared->stop.store(0);
  pcxt->nworkers_launched = 0;
  CreateErrorQueues(pcxt, static_cast<char*>(shm_toc_lookup(pcxt->toc, PARALLEL_KEY_ERROR_QUEUE, false)));
}

void LaunchParallelWorkers(ParallelContext* pcxt) {
  if (pcxt->seg == nullptr)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("LaunchParallelWorkers before InitializeParallelDSM"));
  if (pcxt->nworkers_launched > 0)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("the workers were already launched"),
            errhint("Call ReinitializeParallelDSM first."));
  const auto t0 = std::chrono::steady_clock::now();
  pcxt->shared->min_message_level = MinMessageLevel();  // as it is now, for warm workers
  const int want = std::min(pcxt->nworkers_to_launch, pcxt->nworkers);
  int launched = 0;
  for (int i = 0; i < want; ++i) {
    if (!ReserveWorkerSlot()) break;  // fewer workers, as PostgreSQL: never an error
    bool started = false;
    try {
      started = LaunchOne(pcxt, i);
    } catch (const std::exception&) {
      // Out of memory before anything started (LaunchOne allocates before
      // it forks): fewer workers, as for any failed launch.
    }
    if (!started) {
      ReleaseWorkerSlot();
      break;
    }
    pcxt->nworkers_launched = ++launched;  // recorded at once: a running worker is always waited for
  }
  pcxt->nworkers_launched = launched;
  pcxt->launch_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void WaitForParallelWorkersToAttach(ParallelContext* pcxt) {
  if (pcxt->shared != nullptr) WaitForWorkers(pcxt, true);
}

void WaitForParallelWorkersToFinish(ParallelContext* pcxt) {
  if (pcxt->shared != nullptr) WaitForWorkers(pcxt, false);
}

void CheckParallelWorkers(ParallelContext* pcxt) {
  if (pcxt->shared != nullptr) PollWorkers(pcxt, false);
}

void DestroyParallelContext(ParallelContext* pcxt) {
  if (pcxt == nullptr) return;
  if (pcxt->owner != nullptr) {
    try {
      ResourceOwnerForget(static_cast<ResourceOwner>(pcxt->owner), PointerGetDatum(pcxt), &kParallelContextResourceKind);
    } catch (const Error& e) {
      ereport(WARNING, errmsg("destroying parallel context \"%s\": %s", pcxt->entry_name, e.what()));
    }
    pcxt->owner = nullptr;
  }
  // The error queues go first, as PostgreSQL's: a worker blocked sending
  // (a full queue nobody reads any more) gets "detached" instead of waiting
  // for a leader that now only waits for it.
  DetachErrorQueues(pcxt);
  StopWorkers(pcxt);
  ReleaseRuntime(pcxt);
  // Every worker is gone now; one killed while attached never dropped its
  // reference, so the count cannot be trusted to reach zero.
  if (pcxt->seg != nullptr) {
    if (pcxt->mode != ParallelLaunchMode::kThread && pcxt->shared != nullptr && AllWorkersDone(pcxt))
      RecycleOrRemoveSegment(pcxt->seg);
    else
      dsm_detach_and_remove(pcxt->seg);
  }
  delete[] pcxt->worker;
  std::free(const_cast<char*>(pcxt->entry_name));
  delete pcxt;
}

}  // namespace grove
