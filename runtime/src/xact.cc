// Transactions and subtransactions (PostgreSQL's xact.c, minimal).
//
// One TransactionState per open level, innermost in `current`. Ending a
// level runs, in this order: callbacks, resource release in three phases
// (children of the owner first), owner deletion, memory deletion. Abort
// never throws: each step's failure is reported as a WARNING and the
// remaining steps still run, so the thread always comes back to "no
// transaction" with nothing held.
#include "grove/runtime/xact.h"
#include "grove/workers/parallel.h"

#include <atomic>
#include <unistd.h>

#include "grove/contexts/memutils.h"

namespace grove {

thread_local constinit MemoryContext TopTransactionContext = nullptr;
thread_local constinit MemoryContext CurTransactionContext = nullptr;

namespace {

struct TransactionState {
  TransactionId xid;
  SubTransactionId subid;
  int nesting;  // 1: top level
  const char* name;
  MemoryContext cur_context;  // this level's CurTransactionContext
  ResourceOwner owner;        // this level's resource owner
  // What was current when this level started, restored when it ends.
  MemoryContext prior_context;
  ResourceOwner prior_owner;
  TransactionState* parent;
};

thread_local TransactionState* current = nullptr;
thread_local TransactionState top_state;  // level 1 needs no allocation
thread_local SubTransactionId next_subid = TopSubTransactionId;
thread_local CommandId current_command = FirstCommandId;
std::atomic<TransactionId> next_xid{FirstNormalTransactionId};

template <typename Fn>
struct CallbackItem {
  Fn callback;
  void* arg;
  CallbackItem* next;
};
thread_local CallbackItem<XactCallback>* xact_callbacks = nullptr;
thread_local CallbackItem<SubXactCallback>* subxact_callbacks = nullptr;
// The process that registered this thread's callbacks: after fork() they
// are a copy of the parent's, which a parallel worker must not run.
thread_local pid_t callbacks_pid = 0;

template <typename Fn>
void Register(CallbackItem<Fn>** list, Fn callback, void* arg) {
  MemoryContextInit();
  callbacks_pid = getpid();
  auto* item = static_cast<CallbackItem<Fn>*>(MemoryContextAlloc(TopMemoryContext, sizeof(CallbackItem<Fn>)));
  *item = CallbackItem<Fn>{callback, arg, *list};
  *list = item;
}

template <typename Fn>
void Unregister(CallbackItem<Fn>** list, Fn callback, void* arg) {
  for (CallbackItem<Fn>** link = list; *link != nullptr; link = &(*link)->next) {
    if ((*link)->callback == callback && (*link)->arg == arg) {
      CallbackItem<Fn>* item = *link;
      *link = item->next;
      pfree(item);
      return;
    }
  }
}

void CallXactCallbacks(XactEvent event) {
  for (auto* item = xact_callbacks; item != nullptr;) {
    auto* next = item->next;  // a callback may unregister itself
    item->callback(event, item->arg);
    item = next;
  }
}

void CallSubXactCallbacks(SubXactEvent event, SubTransactionId mine, SubTransactionId parent) {
  for (auto* item = subxact_callbacks; item != nullptr;) {
    auto* next = item->next;
    item->callback(event, mine, parent, item->arg);
    item = next;
  }
}

// Runs one step of abort processing; a failure becomes a WARNING.
template <typename Fn>
void AbortStep(const char* what, Fn step) noexcept {
  try {
    step();
  } catch (const Error& e) {
    try {
      ereport(WARNING, errmsg("error during %s: %s", what, e.message().c_str()));
    } catch (...) {
    }
  } catch (const std::exception& e) {
    try {
      ereport(WARNING, errmsg("error during %s: %s", what, e.what()));
    } catch (...) {
    }
  } catch (...) {
    try {
      ereport(WARNING, errmsg("error during %s: an exception of unknown type", what));
    } catch (...) {
    }
  }
}

void ReleaseAllPhases(ResourceOwner owner, bool isCommit, bool isTopLevel) {
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, isCommit, isTopLevel);
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, isCommit, isTopLevel);
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, isCommit, isTopLevel);
}

// Abort-side release: a release function that throws loses only its own
// resource (it was forgotten first); the rest of the phase runs again.
void ReleaseAllPhasesForAbort(ResourceOwner owner, bool isTopLevel) noexcept {
  for (ResourceReleasePhase phase : {RESOURCE_RELEASE_BEFORE_LOCKS, RESOURCE_RELEASE_LOCKS, RESOURCE_RELEASE_AFTER_LOCKS}) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      bool failed = false;
      AbortStep("resource release", [&] {
        try {
          ResourceOwnerRelease(owner, phase, false, isTopLevel);
        } catch (...) {
          failed = true;
          throw;
        }
      });
      if (!failed) break;
    }
  }
}

[[noreturn]] void NoTransaction(const char* caller) {
  ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("%s: no transaction is in progress", caller));
  __builtin_unreachable();
}

void StartTransaction() {
  MemoryContextInit();
  TransactionId xid = next_xid.fetch_add(1, std::memory_order_relaxed);
  while (xid < FirstNormalTransactionId) xid = next_xid.fetch_add(1, std::memory_order_relaxed);  // wrapped
  MemoryContext context = AllocSetContextCreate(TopMemoryContext, "TopTransactionContext", ALLOCSET_DEFAULT_SIZES);
  ResourceOwner owner;
  try {
    owner = ResourceOwnerCreate(nullptr, "TopTransaction");
  } catch (...) {
    MemoryContextDelete(context);
    throw;
  }
  top_state = TransactionState{xid,         TopSubTransactionId, 1, "top", context, owner, CurrentMemoryContext,
                               CurrentResourceOwner, nullptr};
  current = &top_state;
  next_subid = TopSubTransactionId + 1;
  current_command = FirstCommandId;
  TopTransactionContext = CurTransactionContext = context;
  TopTransactionResourceOwner = CurTransactionResourceOwner = owner;
  CurrentResourceOwner = owner;
  MemoryContextSwitchTo(context);
}

// The last part of ending the top level, commit or abort: owners, then memory.
void CleanupTransaction() noexcept {
  TransactionState* s = &top_state;
  CurrentResourceOwner = s->prior_owner;
  CurTransactionResourceOwner = TopTransactionResourceOwner = nullptr;
  AbortStep("resource owner deletion", [&] { ResourceOwnerDelete(s->owner); });
  MemoryContextSwitchTo(s->prior_context);
  AbortStep("memory cleanup", [&] { MemoryContextDelete(s->cur_context); });
  TopTransactionContext = CurTransactionContext = nullptr;
  current = nullptr;
}

// Ends the innermost subtransaction after its resources were dealt with.
void PopSubTransaction(TransactionState* s, bool delete_memory) noexcept {
  TransactionState* parent = s->parent;
  CurrentResourceOwner = s->prior_owner;
  CurTransactionResourceOwner = parent->owner;
  AbortStep("resource owner deletion", [&] { ResourceOwnerDelete(s->owner); });
  MemoryContextSwitchTo(s->prior_context);
  if (delete_memory) AbortStep("memory cleanup", [&] { MemoryContextDelete(s->cur_context); });
  CurTransactionContext = parent->cur_context;
  current = parent;
  pfree(s);
}

void AbortSubTransaction() noexcept {
  TransactionState* s = current;
  AbortStep("subtransaction abort callbacks",
            [&] { CallSubXactCallbacks(SUBXACT_EVENT_ABORT_SUB, s->subid, s->parent->subid); });
  ReleaseAllPhasesForAbort(s->owner, false);
  PopSubTransaction(s, true);
}

}  // namespace

void StartTransactionCommand() {
  if (current == nullptr) {
    StartTransaction();
    return;
  }
  CommandCounterIncrement();
}

void CommitTransactionCommand() {
  if (current == nullptr) NoTransaction("CommitTransactionCommand");
  if (current->nesting > 1)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot commit while subtransaction \"%s\" is open", current->name),
            errhint("Release or roll back the subtransaction first."));
  // May ERROR; the transaction is then still open, for the caller to abort.
  CallXactCallbacks(XACT_EVENT_PRE_COMMIT);
  // From here the transaction commits: a COMMIT callback that fails is
  // reported, not allowed to turn the commit into an abort.
  AbortStep("commit callbacks", [] { CallXactCallbacks(XACT_EVENT_COMMIT); });
  // Leaked resources are reported (WARNING) and released.
  ReleaseAllPhases(top_state.owner, true, true);
  CleanupTransaction();
}

void AbortCurrentTransaction() noexcept {
  if (current == nullptr) return;
  while (current->nesting > 1) AbortSubTransaction();
  // Release functions may allocate in the transaction's memory: it is freed last.
  MemoryContextSwitchTo(top_state.cur_context);
  AbortStep("abort callbacks", [] { CallXactCallbacks(XACT_EVENT_ABORT); });
  ReleaseAllPhasesForAbort(top_state.owner, true);
  CleanupTransaction();
}

void BeginInternalSubTransaction(const char* name) {
  if (current == nullptr) NoTransaction("BeginInternalSubTransaction");
  TransactionState* parent = current;
  auto* s = static_cast<TransactionState*>(MemoryContextAllocZero(TopTransactionContext, sizeof(TransactionState)));
  MemoryContext context = nullptr;
  try {
    context = AllocSetContextCreate(parent->cur_context, "CurTransactionContext", ALLOCSET_DEFAULT_SIZES);
    // The name is copied: the caller's string may not outlive the subtransaction.
    const char* own_name = MemoryContextStrdup(context, name != nullptr ? name : "(unnamed)");
    *s = TransactionState{parent->xid, next_subid, parent->nesting + 1, own_name, context,
                          ResourceOwnerCreate(parent->owner, "SubTransaction"), CurrentMemoryContext,
                          CurrentResourceOwner, parent};
  } catch (...) {
    if (context != nullptr) MemoryContextDelete(context);
    pfree(s);
    throw;
  }
  ++next_subid;
  current = s;
  CurTransactionContext = context;
  CurTransactionResourceOwner = CurrentResourceOwner = s->owner;
  MemoryContextSwitchTo(context);
  try {
    CallSubXactCallbacks(SUBXACT_EVENT_START_SUB, s->subid, parent->subid);
  } catch (...) {
    AbortSubTransaction();
    throw;
  }
}

void ReleaseCurrentSubTransaction() {
  if (current == nullptr || current->nesting < 2)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("ReleaseCurrentSubTransaction: no subtransaction is open"));
  TransactionState* s = current;
  CallSubXactCallbacks(SUBXACT_EVENT_PRE_COMMIT_SUB, s->subid, s->parent->subid);
  // What the subtransaction still holds now belongs to its parent (as
  // PostgreSQL reassigns locks); it is released when the parent ends. The
  // last step that may fail: after it the subtransaction is committed.
  ResourceOwnerReassignAll(s->owner, s->parent->owner);
  AbortStep("subtransaction commit callbacks",
            [&] { CallSubXactCallbacks(SUBXACT_EVENT_COMMIT_SUB, s->subid, s->parent->subid); });
  // Its memory lives on under the parent's context until the parent ends,
  // unless nothing was allocated in it.
  PopSubTransaction(s, MemoryContextIsEmpty(s->cur_context));
}

void RollbackAndReleaseCurrentSubTransaction() {
  if (current == nullptr || current->nesting < 2)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("RollbackAndReleaseCurrentSubTransaction: no subtransaction is open"));
  AbortSubTransaction();
}

bool IsTransactionState() { return current != nullptr; }
int GetCurrentTransactionNestLevel() { return current != nullptr ? current->nesting : 0; }
TransactionId GetCurrentTransactionId() { return current != nullptr ? current->xid : InvalidTransactionId; }
SubTransactionId GetCurrentSubTransactionId() { return current != nullptr ? current->subid : InvalidSubTransactionId; }
CommandId GetCurrentCommandId() { return current_command; }

void CommandCounterIncrement() {
  if (current == nullptr) NoTransaction("CommandCounterIncrement");
  if (current_command == UINT32_MAX)
    ereport(ERROR, errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
            errmsg("cannot have more than 2^32-1 commands in a transaction"));
  ++current_command;
}

void RegisterXactCallback(XactCallback callback, void* arg) { Register(&xact_callbacks, callback, arg); }
void UnregisterXactCallback(XactCallback callback, void* arg) { Unregister(&xact_callbacks, callback, arg); }
void RegisterSubXactCallback(SubXactCallback callback, void* arg) { Register(&subxact_callbacks, callback, arg); }
void UnregisterSubXactCallback(SubXactCallback callback, void* arg) { Unregister(&subxact_callbacks, callback, arg); }

namespace {

// A parallel worker's transaction. A forked worker inherits its leader's
// transaction state and callbacks (copies of the leader's, in memory the
// worker must not release): it forgets them, once, and starts afresh. A
// thread worker, or a pool process on a later job, has only its own.
void StartParallelWorkerTransaction() {
  if (current != nullptr || (callbacks_pid != 0 && callbacks_pid != getpid())) {
    current = nullptr;
    TopTransactionContext = nullptr;
    CurTransactionContext = nullptr;
    xact_callbacks = nullptr;
    subxact_callbacks = nullptr;
    callbacks_pid = 0;
  }
  next_subid = TopSubTransactionId;
  current_command = FirstCommandId;
  StartTransactionCommand();
}
// Callbacks an entry registered live for its job: a warm worker (a thread,
// a pool process) must not run them, nor keep them, in its next job.
template <typename Fn>
void FreeCallbacks(CallbackItem<Fn>** list) {
  while (CallbackItem<Fn>* item = *list) {
    *list = item->next;
    pfree(item);
  }
}
void EndParallelWorkerJob() {
  FreeCallbacks(&xact_callbacks);
  FreeCallbacks(&subxact_callbacks);
}
void CommitParallelWorkerTransaction() {
  CommitTransactionCommand();
  EndParallelWorkerJob();
}
void AbortParallelWorkerTransaction() {
  AbortCurrentTransaction();
  EndParallelWorkerJob();
}

// Installed whenever the runtime is linked: workers/ cannot call up into it.
[[maybe_unused]] const bool parallel_worker_hooks_installed = [] {
  SetParallelWorkerTransactionHooks(
      {&StartParallelWorkerTransaction, &CommitParallelWorkerTransaction, &AbortParallelWorkerTransaction});
  return true;
}();

}  // namespace

}  // namespace grove
