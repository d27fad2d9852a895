// Transactions and subtransactions: the machinery that ties the two trees
// of lifetimes together (PostgreSQL's xact.c, minimal; storage comes later).
//
// Each (sub)transaction has a memory context (TopTransactionContext for the
// top level, CurTransactionContext for the innermost) and a resource owner
// (TopTransactionResourceOwner, CurTransactionResourceOwner). Ending one
// releases its resources in three phases, then deletes its owners, then its
// memory — on commit reporting leaked resources, on abort silently — so that
// an error anywhere leaves nothing behind.
//
// State is per thread: each thread (a worker, say) runs its own transactions.
#pragma once

#include <cstdint>
#include <functional>

#include "grove/base/error.h"
#include "grove/contexts/palloc.h"
#include "grove/resowner/resowner.h"

namespace grove {

using TransactionId = std::uint32_t;
using SubTransactionId = std::uint32_t;
using CommandId = std::uint32_t;

inline constexpr TransactionId InvalidTransactionId = 0;
inline constexpr TransactionId FirstNormalTransactionId = 3;
inline constexpr SubTransactionId InvalidSubTransactionId = 0;
inline constexpr SubTransactionId TopSubTransactionId = 1;
inline constexpr CommandId FirstCommandId = 0;

/// Per thread; nullptr outside a transaction.
extern thread_local constinit MemoryContext TopTransactionContext;
extern thread_local constinit MemoryContext CurTransactionContext;

/// Starts a transaction if none is in progress (then CurrentMemoryContext is
/// CurTransactionContext and CurrentResourceOwner the transaction's owner).
/// Inside one, it is the next command: the command counter advances.
/// Whenever a (sub)transaction ends, the memory context and resource owner
/// that were current when it started are current again.
void StartTransactionCommand();
/// Commits the transaction. ERROR if a subtransaction is still open.
void CommitTransactionCommand();
/// Aborts every open subtransaction, innermost first, then the transaction.
/// Does nothing outside a transaction; never throws.
void AbortCurrentTransaction() noexcept;

/// Starts a subtransaction (savepoint) inside the current transaction; the
/// current memory context becomes its CurTransactionContext.
void BeginInternalSubTransaction(const char* name);
/// Commits the innermost subtransaction: what its owner still holds moves to
/// the parent's owner; its memory lives on until the parent ends.
void ReleaseCurrentSubTransaction();
/// Aborts the innermost subtransaction: its resources are released and its
/// memory freed; the parent continues.
void RollbackAndReleaseCurrentSubTransaction();

bool IsTransactionState();
/// Nesting level: 0 outside a transaction, 1 at top level, 2+ in subtransactions.
int GetCurrentTransactionNestLevel();
TransactionId GetCurrentTransactionId();
SubTransactionId GetCurrentSubTransactionId();
CommandId GetCurrentCommandId();
/// Makes the changes of the commands so far visible to the next one.
void CommandCounterIncrement();

// --- end-of-transaction callbacks (for later layers: SPI, portals, parallel contexts)
enum XactEvent {
  XACT_EVENT_PRE_COMMIT,  ///< before resources are released; may still ERROR (then the transaction aborts)
  XACT_EVENT_COMMIT,
  XACT_EVENT_ABORT,
};
enum SubXactEvent {
  SUBXACT_EVENT_START_SUB,
  SUBXACT_EVENT_PRE_COMMIT_SUB,
  SUBXACT_EVENT_COMMIT_SUB,
  SUBXACT_EVENT_ABORT_SUB,
};
using XactCallback = void (*)(XactEvent event, void* arg);
using SubXactCallback = void (*)(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void* arg);
/// Per thread. PRE_COMMIT and PRE_COMMIT_SUB callbacks may raise an ERROR
/// (the commit then fails and the caller aborts); a failure in any other
/// event's callback is reported as a WARNING and does not change the outcome.
void RegisterXactCallback(XactCallback callback, void* arg);
void UnregisterXactCallback(XactCallback callback, void* arg);
void RegisterSubXactCallback(SubXactCallback callback, void* arg);
void UnregisterSubXactCallback(SubXactCallback callback, void* arg);

// --- error recovery for a statement loop (PostgresMain's error block) -----------
/// Runs `statement` in its own transaction and commits it; if a transaction
/// is already open, runs it as that transaction's next command and leaves
/// the transaction open. On grove::Error, or any other exception, aborts the
/// transaction (the open one too), reports the error (its ErrorData goes to
/// `on_error` if given, else to the thread's message sink at ERROR level),
/// and returns false: the next statement starts clean.
bool RunStatement(const std::function<void()>& statement,
                  const std::function<void(const ErrorData&)>& on_error = nullptr);

}  // namespace grove
