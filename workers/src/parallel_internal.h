// Internal to parallel contexts: the fixed state in the segment, the
// per-worker bookkeeping in the leader, the worker's main, the launchers,
// and the error-queue messages.
//
// Files: parallel.cc (the leader's API), parallel_worker.cc (a worker's
// life, entry registry, error messages), parallel_launch.cc (process, pool
// and thread launchers).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <sys/types.h>

#include "grove/base/error.h"
#include "grove/workers/parallel.h"
#include "grove/workers/shm_mq.h"

namespace grove {

namespace parallel_internal {

inline constexpr std::uint64_t kParallelMagic = 0x67726f766570636bull;  // "grovepck"
inline constexpr std::uint64_t PARALLEL_KEY_FIXED = 1;
inline constexpr std::uint64_t PARALLEL_KEY_ERROR_QUEUE = 2;
inline constexpr std::size_t kErrorQueueSize = 16384;
inline constexpr std::size_t kEntryNameMax = 64;

// A worker's progress, as the worker publishes it.
inline constexpr std::uint32_t kWorkerNotStarted = 0;
inline constexpr std::uint32_t kWorkerAttached = 1;   // attached the segment and its error queue
inline constexpr std::uint32_t kWorkerExited = 2;     // finished: the leader's waits are over
inline constexpr std::uint32_t kWorkerDone = 3;       // process modes: the worker's last touch of the segment is over

}  // namespace parallel_internal

/// What a waiting leader sleeps on. Workers bump `word` on every event and
/// make the wake-up system call only when a leader is asleep (`sleepers`):
/// the bump and the check are sequentially consistent against the leader's
/// registration and re-check, so a wake-up is never lost.
struct LeaderWakeup {
  std::atomic<std::uint32_t> word;
  std::atomic<std::uint32_t> sleepers;
};

struct WorkerSlot {
  std::atomic<std::uint32_t> state;
  std::atomic<std::int32_t> pid;
};

/// PARALLEL_KEY_FIXED: what every worker reads first.
struct ParallelShared {
  std::uint64_t magic;
  char entry_name[parallel_internal::kEntryNameMax];
  std::int32_t leader_pid;
  std::int32_t nworkers;
  std::int32_t min_message_level;  // the leader's, for warm workers forked before it changed
  std::atomic<std::uint32_t> stop;           // the leader is tearing down: stop
  LeaderWakeup leader_wakeup;                // the process modes' (thread mode: LeaderWakeupOf)
  WorkerSlot workers[1];                     // nworkers of them
};
namespace parallel_internal {

std::size_t ParallelSharedSize(int nworkers);

/// Error-queue messages: one byte of kind, then the report.
inline constexpr char kMessageReport = 'R';     // a report (any level) follows
inline constexpr char kMessageTerminate = 'X';  // the worker finished cleanly
std::string SerializeReport(const ErrorData& data);
bool DeserializeReport(const char* data, std::size_t n, ErrorData* out);

/// What a leader sleeps on while it waits for its workers: the segment's
/// leader_wakeup in the process modes; in thread mode one of this process
/// that is never freed (`shared` is not read), because a thread worker's
/// last wake-up comes after its kWorkerExited, when the leader may already
/// have freed the segment.
LeaderWakeup* LeaderWakeupOf(ParallelShared* shared, ParallelLaunchMode mode);
/// Bumps the word, and wakes the leaders asleep on it if there are any.
void WakeLeader(LeaderWakeup* wakeup);
inline void WakeLeader(ParallelShared* shared, ParallelLaunchMode mode) { WakeLeader(LeaderWakeupOf(shared, mode)); }
/// Returns once the word has moved from `seen` or `timeout_ms` has passed:
/// first spinning briefly (a worker's next event is often microseconds
/// away, and a sleep and wake-up cost more), then asleep.
void WaitForLeaderWakeup(LeaderWakeup* wakeup, std::uint32_t seen, int timeout_ms);

/// ParallelWorkerMain's result when it failed before it could find its slot
/// (the segment or its TOC unusable): nothing told the leader.
inline constexpr int kWorkerFailedBeforeAttach = 2;

/// A worker's whole life once started (any mode). `seg` is an attachment
/// the worker borrows (the leader's in thread mode; the one a pool process
/// keeps between jobs on the same segment), or nullptr: the worker attaches
/// `handle` itself and detaches it at the end. Never throws; returns the
/// process exit code a process worker should end with.
int ParallelWorkerMain(dsm_handle handle, dsm_segment* seg, int worker_number, ParallelLaunchMode mode);

/// Looks up a registered entry; nullptr if none.
parallel_worker_main_type LookupParallelEntry(const char* name);

}  // namespace parallel_internal

/// The leader's view of one launched worker.
struct ParallelWorkerInfo {
  pid_t pid;                  // process and pool modes
  int pool_slot;              // pool mode: which pool process, else −1
  bool done;                  // terminated and accounted for
  bool got_terminate;         // its 'X' arrived
  shm_mq_handle* error_queue; // the leader's receiving end
  /// Thread mode: set by the worker's task when ParallelWorkerMain returns,
  /// whatever happened — also when it failed before it could mark its slot.
  /// Shared with the task, so it outlives the context if it must.
  std::shared_ptr<std::atomic<bool>> thread_done;
};

struct ParallelRuntime;  // launcher state (parallel_launch.cc)

namespace parallel_internal {
/// Launches worker `i` of `pcxt` in its mode; false if it could not start.
bool LaunchOne(ParallelContext* pcxt, int i);
/// Whether worker `i` is still running (process: not exited; thread: not
/// finished). Reaps an exited process and returns its status in *status.
bool WorkerRunning(ParallelContext* pcxt, int i, int* status);
/// Makes worker `i` stop (SIGTERM to a process; threads poll the flag) and
/// waits for it, killing a process that does not stop within a grace period.
void StopAndWait(ParallelContext* pcxt, int i);
/// When all that is left of every worker not yet done is its process's
/// exit (process mode, kWorkerExited reported: it sends nothing more),
/// sleeps until one of them exits or `timeout_ms` passes and returns true;
/// otherwise returns false at once (the caller waits for a wake-up, which a
/// process's exit does not give).
bool WaitForWorkerProcessExit(ParallelContext* pcxt, int timeout_ms);
/// Frees launcher state of the context.
void ReleaseRuntime(ParallelContext* pcxt);
/// Process-wide count of running workers (against MaxParallelWorkers).
bool ReserveWorkerSlot();
void ReleaseWorkerSlot();
}  // namespace parallel_internal

}  // namespace grove
