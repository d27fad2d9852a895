// Parallel contexts (PostgreSQL's access/parallel.h; grove's code): a leader
// starts N workers, shares state with them through a DSM segment and its
// table of contents, and gets their errors back through shared-memory
// queues.
//
//   // once, at start-up, in every program that runs workers (same binary):
//   RegisterParallelEntry("scan", &ScanMain);
//
//   ParallelContext* pcxt = CreateParallelContext("scan", 4, ParallelLaunchMode::kProcess);
//   shm_toc_estimate_chunk(&pcxt->estimator, sizeof(ScanShared));
//   shm_toc_estimate_keys(&pcxt->estimator, 1);
//   InitializeParallelDSM(pcxt);
//   auto* shared = static_cast<ScanShared*>(shm_toc_allocate(pcxt->toc, sizeof(ScanShared)));
//   shm_toc_insert(pcxt->toc, KEY_SCAN, shared);
//   LaunchParallelWorkers(pcxt);               // pcxt->nworkers_launched may be < 4
//   ... the leader participates too ...
//   WaitForParallelWorkersToFinish(pcxt);      // re-raises a worker's ERROR here
//   DestroyParallelContext(pcxt);
//
// A worker (ParallelWorkerNumber 0 … nworkers_launched−1) attaches the
// segment, gets a memory context, a resource owner (and a transaction, when
// the runtime layer is linked) of its own, runs the entry, and reports
// termination. Its ERROR, WARNING and NOTICE reports travel through its
// 16 KiB error queue and are re-raised or forwarded in the leader with a
// context line "parallel worker N".
//
// Launch modes, per context — the same entry code runs in all three:
// * kProcess: a fresh forked process per worker (as PostgreSQL);
// * kPool: forked processes kept warm between contexts (the process pays
//   fork once, not per context);
// * kThread: threads of a oneTBB task_arena; each with its own memory
//   context tree and resource owner. The context's segment is private
//   memory (dsm_create_private): it has no handle, and nothing outside the
//   process can attach it.
//
// Failure handling: a worker killed by a signal or exiting without its
// final report fails the leader's next wait with "lost connection to
// parallel worker" ("parallel worker failed to initialize" if it never
// attached); workers exit when their leader dies (PR_SET_PDEATHSIG); a
// cancel in the leader (Ctrl-C, CHECK_FOR_INTERRUPTS) stops the waits, and
// destroying the context tells the workers to stop: its stop flag cancels
// each worker's next CHECK_FOR_INTERRUPTS() (that worker's thread only, never
// the leader), processes also get SIGTERM to end their blocking waits, and
// entries that do not check interrupts may poll ParallelWorkerShouldStop().
//
// A context belongs to CurrentResourceOwner when created (kind "parallel
// context"): one left at end of transaction is destroyed, with a WARNING
// on commit. Contexts are used by the thread that created them.
#pragma once

#include <cstdint>
#include <sys/types.h>

#include "grove/dsa/dsm.h"
#include "grove/dsa/shm_toc.h"

namespace grove {

enum class ParallelLaunchMode { kProcess, kPool, kThread };
const char* ParallelLaunchModeName(ParallelLaunchMode mode);
/// "process", "pool" or "thread"; false for anything else.
bool ParseParallelLaunchMode(const char* text, ParallelLaunchMode* mode);

/// A worker's entry: runs in the worker with the context's segment and TOC.
using parallel_worker_main_type = void (*)(dsm_segment* seg, shm_toc* toc);

/// Registers an entry point by name (before contexts using it are created;
/// in pool mode, before the pool starts). ERROR if the name is taken by
/// another function or longer than 63 bytes.
void RegisterParallelEntry(const char* name, parallel_worker_main_type entry);

/// Workers of all contexts of this process together never exceed this
/// (default 8); asking for more gives fewer, never an error.
void SetMaxParallelWorkers(int n);
int MaxParallelWorkers();

struct ParallelWorkerInfo;  // internal: one launched worker

struct ParallelContext {
  const char* entry_name;
  ParallelLaunchMode mode;
  int nworkers;              ///< asked for
  int nworkers_to_launch;    ///< may be lowered before LaunchParallelWorkers
  int nworkers_launched;     ///< set by LaunchParallelWorkers
  shm_toc_estimator estimator;  ///< add the caller's chunks and keys before InitializeParallelDSM
  dsm_segment* seg;
  shm_toc* toc;              ///< the caller allocates and inserts its keys here
  // --- internal ------------------------------------------------------------
  struct ParallelShared* shared;
  ParallelWorkerInfo* worker;  ///< nworkers entries
  struct ParallelRuntime* runtime;
  void* owner;                 ///< the ResourceOwner it belongs to, or nullptr
  double launch_seconds;       ///< time LaunchParallelWorkers last took
};

/// Keys below this are the context's own (fixed state, error queues).
inline constexpr std::uint64_t PARALLEL_KEY_FIRST_USER = 0x10000;

ParallelContext* CreateParallelContext(const char* entry_name, int nworkers,
                                       ParallelLaunchMode mode = ParallelLaunchMode::kProcess);
/// Creates the segment (sized by pcxt->estimator plus the context's own
/// needs), its TOC, the fixed state and the error queues.
void InitializeParallelDSM(ParallelContext* pcxt);
/// For another round with the same segment: waits for the previous workers,
/// resets the error queues. The caller resets its own shared state.
void ReinitializeParallelDSM(ParallelContext* pcxt);
/// Starts up to nworkers_to_launch workers (fewer if the process-wide limit
/// is reached or a launch fails: nworkers_launched says how many).
void LaunchParallelWorkers(ParallelContext* pcxt);
/// Returns when every launched worker has attached; ERROR "parallel worker
/// failed to initialize" if one died first.
void WaitForParallelWorkersToAttach(ParallelContext* pcxt);
/// Returns when every launched worker has finished; re-raises the first
/// worker ERROR (and forwards warnings and notices) on the way. ERROR "lost
/// connection to parallel worker" for a worker that died.
void WaitForParallelWorkersToFinish(ParallelContext* pcxt);
/// For a leader waiting on shared state of its own (a barrier, a queue):
/// handles the workers' pending messages (re-raising an ERROR) and raises
/// "lost connection to parallel worker" for a dead one. Does not wait.
void CheckParallelWorkers(ParallelContext* pcxt);
/// Stops and waits for the workers, detaches the segment, frees everything.
/// Never throws. The segment of a process-mode or pool-mode context whose
/// workers all finished normally is kept (up to 4 of at most 1 MiB) for this
/// process's next contexts instead of being removed: see
/// ReleaseRecycledParallelSegments.
void DestroyParallelContext(ParallelContext* pcxt);
/// Removes the segments kept by DestroyParallelContext for reuse (they are
/// removed at exit anyway; for a program that wants /dev/shm empty now).
void ReleaseRecycledParallelSegments();

/// In a worker: its number (0-based); −1 in the leader. Per thread.
int ParallelWorkerNumber();
bool IsParallelWorker();
/// In a worker: the leader is tearing the context down (or died): stop.
bool ParallelWorkerShouldStop();

/// Stops the pool's warm processes (they also exit when this process does).
void ShutdownParallelWorkerPool();
/// Pool processes currently alive (for tests and the CLI).
int ParallelWorkerPoolSize();

/// Hooks the runtime layer installs so that a worker runs its entry inside
/// a transaction (workers/ cannot call runtime/ itself). All three or none.
struct ParallelWorkerTransactionHooks {
  void (*start)();
  void (*commit)();
  void (*abort)();  // must not throw
};
void SetParallelWorkerTransactionHooks(const ParallelWorkerTransactionHooks& hooks);

}  // namespace grove
