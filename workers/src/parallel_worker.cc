// A parallel worker's life (any launch mode), the registry of entry points,
// and the messages a worker sends its leader through its error queue.
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <linux/futex.h>
#include <mutex>
#include <optional>
#include <string>
#include <sys/syscall.h>
#include <unistd.h>
#include <unordered_map>

#include "grove/base/interrupts.h"
#include "grove/contexts/memutils.h"
#include "grove/contexts/palloc.h"
#include "grove/resowner/resowner.h"
#include "grove/workers/latch.h"
#include "parallel_internal.h"

namespace grove {

namespace {

thread_local int worker_number = -1;
thread_local ParallelShared* worker_shared = nullptr;

ParallelWorkerTransactionHooks transaction_hooks{nullptr, nullptr, nullptr};

struct EntryRegistry {
  std::mutex mutex;
  std::unordered_map<std::string, parallel_worker_main_type> entries;
};
EntryRegistry& Entries() {
  static EntryRegistry* r = new EntryRegistry;  // never destroyed: workers may run at exit
  return *r;
}

// --- report serialization: kind byte, then fields, strings length-prefixed ---------------------

void PutInt(std::string* out, std::int32_t v) { out->append(reinterpret_cast<const char*>(&v), sizeof v); }
void PutString(std::string* out, const std::string& s) {
  PutInt(out, static_cast<std::int32_t>(s.size()));
  out->append(s);
}

struct Reader {
  const char* p;
  const char* end;
  bool Int(std::int32_t* v) {
    if (end - p < static_cast<std::ptrdiff_t>(sizeof *v)) return false;
    std::memcpy(v, p, sizeof *v);
    p += sizeof *v;
    return true;
  }
  bool String(std::string* s) {
    std::int32_t n;
    if (!Int(&n) || n < 0 || end - p < n) return false;
    s->assign(p, static_cast<std::size_t>(n));
    p += n;
    return true;
  }
};

}  // namespace

namespace parallel_internal {

std::size_t ParallelSharedSize(int nworkers) {
  return sizeof(ParallelShared) + sizeof(WorkerSlot) * static_cast<std::size_t>(nworkers > 1 ? nworkers - 1 : 0);
}

std::string SerializeReport(const ErrorData& data) {
  std::string out(1, kMessageReport);
  PutInt(&out, data.elevel);
  out.append(data.sqlstate.code, 5);
  PutInt(&out, data.cursorpos);
  PutString(&out, data.message);
  PutString(&out, data.detail);
  PutString(&out, data.hint);
  PutInt(&out, static_cast<std::int32_t>(data.context.size()));
  for (const std::string& line : data.context) PutString(&out, line);
  return out;
}

bool DeserializeReport(const char* data, std::size_t n, ErrorData* out) {
  Reader r{data, data + n};
  if (n < 1 || *r.p++ != kMessageReport) return false;
  std::int32_t elevel, cursorpos, ncontext;
  if (!r.Int(&elevel) || r.end - r.p < 5) return false;
  SqlState state{};
  std::memcpy(state.code, r.p, 5);
  r.p += 5;
  if (!r.Int(&cursorpos) || !r.String(&out->message) || !r.String(&out->detail) || !r.String(&out->hint) ||
      !r.Int(&ncontext) || ncontext < 0)
    return false;
  out->context.clear();
  for (std::int32_t k = 0; k < ncontext; ++k) {
    std::string line;
    if (!r.String(&line)) return false;
    out->context.push_back(std::move(line));
  }
  out->elevel = elevel;
  out->sqlstate = state;
  out->cursorpos = cursorpos;
  return r.p == r.end;
}

LeaderWakeup* LeaderWakeupOf(ParallelShared* shared, ParallelLaunchMode mode) {
  // Every thread-mode leader of the process sleeps on this one: a wake-up
  // meant for another leader only makes it poll once more.
  static LeaderWakeup thread_leaders_wakeup{};
  return mode == ParallelLaunchMode::kThread ? &thread_leaders_wakeup : &shared->leader_wakeup;
}

void WakeLeader(LeaderWakeup* wakeup) {
  wakeup->word.fetch_add(1, std::memory_order_seq_cst);
  if (wakeup->sleepers.load(std::memory_order_seq_cst) != 0)
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&wakeup->word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

void WaitForLeaderWakeup(LeaderWakeup* wakeup, std::uint32_t seen, int timeout_ms) {
  // About 20 µs of polling: longer than a worker needs to attach or to
  // return from a trivial entry, short beside any real wait.
  const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
  for (int i = 0;; ++i) {
    if (wakeup->word.load(std::memory_order_acquire) != seen) return;
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= spin_until) break;
    CpuRelaxForLatch();
  }
  // Registered before the kernel re-checks the word: a worker that bumps
  // it after this sees a sleeper and wakes us, one that bumped it before
  // makes FUTEX_WAIT return at once.
  wakeup->sleepers.fetch_add(1, std::memory_order_seq_cst);
  timespec ts{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1000000L};
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&wakeup->word), FUTEX_WAIT, seen, &ts, nullptr, 0);
  wakeup->sleepers.fetch_sub(1, std::memory_order_relaxed);
}

parallel_worker_main_type LookupParallelEntry(const char* name) {
  EntryRegistry& r = Entries();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.entries.find(name);
  return it == r.entries.end() ? nullptr : it->second;
}

int ParallelWorkerMain(dsm_handle handle, dsm_segment* leader_seg, int number, ParallelLaunchMode mode) {
  MemoryContextInit();  // a thread's first job sets up its tree; otherwise a no-op
  const MemoryContext old_context = CurrentMemoryContext;
  const ResourceOwner old_owner = CurrentResourceOwner;
  MemoryContext worker_context = AllocSetContextCreate(TopMemoryContext, "parallel worker", ALLOCSET_DEFAULT_SIZES);
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "parallel worker");
  CurrentMemoryContext = worker_context;
  CurrentResourceOwner = owner;
  worker_number = number;
  std::optional<ScopedThreadCancel> cancel_scope;  // the context's stop, once attached

  dsm_segment* seg = leader_seg;
  bool own_segment = false;
  ParallelShared* shared = nullptr;
  shm_mq_handle* queue = nullptr;
  bool in_transaction = false;
  int code = 0;
  auto send = [&](const std::string& message) {
    // Not cut short by this worker's stop (as PostgreSQL holds interrupts
    // while it sends an error report): the stop stays pending for the
    // entry's next check. It cannot block for good either: a leader that
    // stops its workers has detached its end first, and a leader that is
    // gone makes the send fail; there is nobody left to tell.
    HoldInterrupts hold;
    if (queue != nullptr) shm_mq_send(queue, message.size(), message.data(), false);
    if (shared != nullptr) WakeLeader(shared, mode);
  };
  try {
    if (seg == nullptr) {
      seg = dsm_attach(handle);
      dsm_pin_mapping(seg);  // detached below, after everything else
      own_segment = true;
    }
    shm_toc* toc = shm_toc_attach(kParallelMagic, dsm_segment_address(seg));
    if (toc == nullptr)
      ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR), errmsg("invalid magic number in parallel worker segment"));
    shared = static_cast<ParallelShared*>(shm_toc_lookup(toc, PARALLEL_KEY_FIXED, false));
    if (shared->magic != kParallelMagic || number < 0 || number >= shared->nworkers)
      ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR), errmsg("parallel worker %d: bad fixed state", number));
    worker_shared = shared;
    // The context's stop flag cancels this worker's CHECK_FOR_INTERRUPTS,
    // including a stop sent before it read its job. It is this thread's own
    // cancel, not the process's: a thread worker must not cancel its leader
    // or the workers of other contexts (a process worker also gets SIGTERM,
    // which interrupts its blocking waits).
    cancel_scope.emplace(&shared->stop);
    // A warm worker was forked before the leader last changed its level.
    if (mode == ParallelLaunchMode::kPool) SetMinMessageLevel(shared->min_message_level);
    shared->workers[number].pid.store(static_cast<std::int32_t>(getpid()), std::memory_order_relaxed);
    auto* queues = static_cast<char*>(shm_toc_lookup(toc, PARALLEL_KEY_ERROR_QUEUE, false));
    shm_mq* mq = reinterpret_cast<shm_mq*>(queues + static_cast<std::size_t>(number) * kErrorQueueSize);
    shm_mq_set_sender(mq);
    // A thread worker shares the leader's dsm_segment: its queue is tied to
    // no segment, so that only this thread ever detaches its handle (the
    // leader detaches the segment after this worker has detached the queue
    // and reported kWorkerExited). The segment's callback list has its own
    // lock, so tying it would be safe, but the callback would then run on
    // the leader's thread against this thread's memory context.
    queue = shm_mq_attach(mq, own_segment ? seg : nullptr);
    shared->workers[number].state.store(kWorkerAttached, std::memory_order_release);
    WakeLeader(shared, mode);

    ScopedMessageSink sink([&](const ErrorData& report) {
      try {
        send(SerializeReport(report));
      } catch (...) {
        // A sink must not throw; the report is lost with the leader.
      }
    });
    parallel_worker_main_type entry = LookupParallelEntry(shared->entry_name);
    if (entry == nullptr)
      ereport(ERROR, errcode(ERRCODE_UNDEFINED_FUNCTION),
              errmsg("parallel entry \"%s\" is not registered in this worker", shared->entry_name),
              errhint(mode == ParallelLaunchMode::kPool ? "Pool processes know the entries registered before the pool "
                                                          "started."
                                                        : "Call RegisterParallelEntry at start-up."));
    if (transaction_hooks.start != nullptr) {
      transaction_hooks.start();
      in_transaction = true;
    }
    entry(seg, toc);
    if (in_transaction) {
      transaction_hooks.commit();  // a failing commit is aborted below
      in_transaction = false;
    }
  } catch (const Error& e) {
    HoldInterrupts hold;  // the clean-up is not cut short by the stop
    if (in_transaction) transaction_hooks.abort();
    code = 1;
    if (queue != nullptr) {
      try {
        send(SerializeReport(e.data()));
      } catch (...) {
      }
    } else {
      std::fprintf(stderr, "parallel worker %d: %s\n", number, e.Format().c_str());
    }
  } catch (const std::exception& e) {
    HoldInterrupts hold;
    if (in_transaction) transaction_hooks.abort();
    code = 1;
    ErrorData data;
    data.elevel = ERROR;
    data.message = std::string("unexpected exception: ") + e.what();
    try {
      if (queue != nullptr) send(SerializeReport(data));
    } catch (...) {
    }
  }
  // From here on nothing is cut short: the clean-up must reach the exit mark.
  HoldInterrupts cleanup_hold;
  // The final word: the leader counts a worker that detaches without it as lost.
  try {
    if (queue != nullptr) send(std::string(1, kMessageTerminate));
  } catch (...) {
  }
  if (queue != nullptr) shm_mq_detach(queue);
  for (ResourceReleasePhase phase : {RESOURCE_RELEASE_BEFORE_LOCKS, RESOURCE_RELEASE_LOCKS, RESOURCE_RELEASE_AFTER_LOCKS})
    ResourceOwnerRelease(owner, phase, code == 0, true);
  CurrentResourceOwner = old_owner;
  ResourceOwnerDelete(owner);
  CurrentMemoryContext = old_context;
  MemoryContextDelete(worker_context);
  worker_number = -1;
  worker_shared = nullptr;
  cancel_scope.reset();  // before the segment may go (below)
  // A process's detach callbacks (tuple queues, areas attached in place)
  // touch the segment: they run before the exited mark, after which the
  // leader may reuse the segment for another context (a process keeps no
  // attachment's callbacks beyond its job). A thread's run with the
  // leader's detach.
  if (mode != ParallelLaunchMode::kThread && seg != nullptr) dsm_run_detach_callbacks(seg);
  if (shared != nullptr) {
    WorkerSlot& slot = shared->workers[number];
    if (mode == ParallelLaunchMode::kThread) {
      // After this store the leader may free the (private) segment: the
      // wake-up goes through a word of the process (LeaderWakeupOf).
      slot.state.store(kWorkerExited, std::memory_order_seq_cst);
      WakeLeader(nullptr, mode);
    } else {
      // The mark first, then the bump: a leader whose wait saw the bump
      // sees the mark (no wake-up is lost between its poll and its sleep).
      // The segment is still touched until kWorkerDone, the last store; the
      // leader hands a segment to another context only once every worker
      // is done (a process worker's exit itself wakes nobody: the leader
      // waits for it on a pidfd, WaitForWorkerProcessExit).
      slot.state.store(kWorkerExited, std::memory_order_seq_cst);
      WakeLeader(&shared->leader_wakeup);
      slot.state.store(kWorkerDone, std::memory_order_release);
    }
  }
  if (own_segment) dsm_detach(seg);
  return shared == nullptr ? kWorkerFailedBeforeAttach : code;
}

}  // namespace parallel_internal

void RegisterParallelEntry(const char* name, parallel_worker_main_type entry) {
  if (name == nullptr || std::strlen(name) >= parallel_internal::kEntryNameMax || entry == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid parallel entry registration"),
            errdetail("A name of 1 to %zu bytes and a function are required.", parallel_internal::kEntryNameMax - 1));
  EntryRegistry& r = Entries();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto [it, inserted] = r.entries.emplace(name, entry);
  if (!inserted && it->second != entry)
    ereport(ERROR, errcode(ERRCODE_DUPLICATE_OBJECT),
            errmsg("parallel entry \"%s\" is already registered with another function", name));
}

int ParallelWorkerNumber() { return worker_number; }
bool IsParallelWorker() { return worker_number >= 0; }
bool ParallelWorkerShouldStop() {
  return worker_shared != nullptr && worker_shared->stop.load(std::memory_order_acquire) != 0;
}

void SetParallelWorkerTransactionHooks(const ParallelWorkerTransactionHooks& hooks) {
  const bool all = hooks.start != nullptr && hooks.commit != nullptr && hooks.abort != nullptr;
  const bool none = hooks.start == nullptr && hooks.commit == nullptr && hooks.abort == nullptr;
  if (!all && !none)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("parallel worker transaction hooks must be set all three or none"));
  transaction_hooks = hooks;
}

}  // namespace grove
