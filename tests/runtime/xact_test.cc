// Top-level transactions: StartTransactionCommand / CommitTransactionCommand
// / AbortCurrentTransaction, the well-known contexts and owners they set
// and clear, transaction ids, the command counter, per-thread state.
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "xact_test_support.h"

namespace grove::test {
namespace {

using XactBasicsTest = XactTest;

// Outside a transaction: no contexts, no owners, level 0, invalid ids.
TEST_F(XactBasicsTest, NothingOutsideATransaction) {
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 0);
  EXPECT_EQ(TopTransactionContext, nullptr);
  EXPECT_EQ(CurTransactionContext, nullptr);
  EXPECT_EQ(TopTransactionResourceOwner, nullptr);
  EXPECT_EQ(CurTransactionResourceOwner, nullptr);
  EXPECT_EQ(CurrentResourceOwner, nullptr);
  EXPECT_EQ(GetCurrentTransactionId(), InvalidTransactionId);
  EXPECT_EQ(GetCurrentSubTransactionId(), InvalidSubTransactionId);
}

// Start: a transaction with its context (current, under TopMemoryContext)
// and its owner (current, top = cur); level 1, the top subtransaction id, a
// normal xid, the first command id. Commit clears it all and gives back the
// caller's memory context and owner.
TEST_F(XactBasicsTest, StartSetsAndCommitClears) {
  MemoryContext caller = CurrentMemoryContext;
  StartTransactionCommand();
  EXPECT_TRUE(IsTransactionState());
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 1);
  ASSERT_NE(TopTransactionContext, nullptr);
  EXPECT_EQ(CurTransactionContext, TopTransactionContext);
  EXPECT_EQ(CurrentMemoryContext, CurTransactionContext);
  EXPECT_TRUE(MemoryContextIsDescendant(TopTransactionContext, TopMemoryContext));
  ASSERT_NE(TopTransactionResourceOwner, nullptr);
  EXPECT_EQ(CurTransactionResourceOwner, TopTransactionResourceOwner);
  EXPECT_EQ(CurrentResourceOwner, TopTransactionResourceOwner);
  EXPECT_EQ(ResourceOwnerGetParent(TopTransactionResourceOwner), nullptr);
  EXPECT_EQ(GetCurrentSubTransactionId(), TopSubTransactionId);
  EXPECT_GE(GetCurrentTransactionId(), FirstNormalTransactionId);
  EXPECT_EQ(GetCurrentCommandId(), FirstCommandId);

  CommitTransactionCommand();
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 0);
  EXPECT_EQ(TopTransactionContext, nullptr);
  EXPECT_EQ(CurTransactionContext, nullptr);
  EXPECT_EQ(TopTransactionResourceOwner, nullptr);
  EXPECT_EQ(CurTransactionResourceOwner, nullptr);
  EXPECT_EQ(CurrentResourceOwner, nullptr);
  EXPECT_EQ(CurrentMemoryContext, caller);
}

// Abort clears the same state.
TEST_F(XactBasicsTest, AbortClears) {
  MemoryContext caller = CurrentMemoryContext;
  StartTransactionCommand();
  palloc(100);
  AbortCurrentTransaction();
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(TopTransactionContext, nullptr);
  EXPECT_EQ(CurTransactionContext, nullptr);
  EXPECT_EQ(TopTransactionResourceOwner, nullptr);
  EXPECT_EQ(CurTransactionResourceOwner, nullptr);
  EXPECT_EQ(CurrentResourceOwner, nullptr);
  EXPECT_EQ(CurrentMemoryContext, caller);
}

// The transaction's contexts (and contexts created below them) are deleted
// at commit, and at abort.
TEST_F(XactBasicsTest, ContextsDeletedAtCommitAndAbort) {
  for (bool commit : {true, false}) {
    StartTransactionCommand();
    DeletionProbe top(TopTransactionContext);
    MemoryContext child = AllocSetContextCreate(CurTransactionContext, "statement child", ALLOCSET_SMALL_SIZES);
    DeletionProbe below(child);
    std::memset(MemoryContextAlloc(child, 5000), 1, 5000);
    EXPECT_EQ(top.fired(), 0);
    if (commit)
      CommitTransactionCommand();
    else
      AbortCurrentTransaction();
    EXPECT_EQ(top.fired(), 1) << (commit ? "commit" : "abort");
    EXPECT_EQ(below.fired(), 1) << (commit ? "commit" : "abort");
  }
}

// Memory allocated in a transaction is given back at its end: TopMemoryContext
// holds what it held before (after one warm-up transaction), also for a large
// allocation and after an abort from a child context.
TEST_F(XactBasicsTest, MemoryGivenBackAtEnd) {
  StartTransactionCommand();
  CommitTransactionCommand();
  WarmUpOwnerMemory();
  const std::size_t held = MemoryContextMemAllocated(TopMemoryContext, true);
  StartTransactionCommand();
  std::memset(palloc(1 << 20), 7, 1 << 20);
  for (int i = 0; i < 1000; ++i) palloc(64);
  EXPECT_GT(MemoryContextMemAllocated(TopMemoryContext, true), held + (1 << 20));
  CommitTransactionCommand();
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), held);

  StartTransactionCommand();
  MemoryContext child = AllocSetContextCreate(TopTransactionContext, "child", ALLOCSET_DEFAULT_SIZES);
  MemoryContextSwitchTo(child);
  std::memset(palloc(300000), 7, 300000);
  AbortCurrentTransaction();
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), held);
}

// Abort while CurrentMemoryContext is a context below the transaction's (as
// when an error strikes mid-statement): the caller's context is current
// again, not a deleted one.
TEST_F(XactBasicsTest, AbortFromAChildContextRestoresTheCallersContext) {
  MemoryContext caller = CurrentMemoryContext;
  StartTransactionCommand();
  MemoryContext child = AllocSetContextCreate(CurTransactionContext, "deep", ALLOCSET_DEFAULT_SIZES);
  MemoryContextSwitchTo(AllocSetContextCreate(child, "deeper", ALLOCSET_DEFAULT_SIZES));
  AbortCurrentTransaction();
  EXPECT_EQ(CurrentMemoryContext, caller);
  pfree(palloc(10));  // allocating works
}

// Resources left in the transaction's owner: released at commit with one
// leak WARNING each; released silently at abort.
TEST_F(XactBasicsTest, ResourcesReleasedAtEnd) {
  TestResource a{"a"}, b{"b"}, c{"c"};
  StartTransactionCommand();
  RememberRecorded(CurrentResourceOwner, a, &kBeforeLo);
  RememberRecorded(CurrentResourceOwner, b, &kAfterMid);
  RememberCounted(CurrentResourceOwner, 1);
  {
    MessageCapture capture;
    CommitTransactionCommand();
    EXPECT_EQ(capture.LeakTexts().size(), 3u) << capture.All();
  }
  EXPECT_EQ(a.releases, 1);
  EXPECT_EQ(b.releases, 1);

  StartTransactionCommand();
  RememberRecorded(CurrentResourceOwner, c, &kLocksLo);
  RememberCounted(CurrentResourceOwner, 2);
  {
    MessageCapture capture;
    AbortCurrentTransaction();
    EXPECT_TRUE(capture.reports.empty()) << capture.All();
  }
  EXPECT_EQ(c.releases, 1);
}

// A transaction whose resources were all forgotten commits without warnings.
TEST_F(XactBasicsTest, CleanCommitIsSilent) {
  StartTransactionCommand();
  for (Datum v = 1; v <= 100; ++v) RememberCounted(CurrentResourceOwner, v);
  for (Datum v = 1; v <= 100; ++v) ForgetCounted(CurrentResourceOwner, v);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

// Transaction ids increase from one transaction to the next (aborted ones
// included) and stay the same within one.
TEST_F(XactBasicsTest, TransactionIdsIncrease) {
  TransactionId previous = InvalidTransactionId;
  for (int i = 0; i < 10; ++i) {
    StartTransactionCommand();
    const TransactionId xid = GetCurrentTransactionId();
    EXPECT_GE(xid, FirstNormalTransactionId);
    EXPECT_GT(xid, previous);
    StartTransactionCommand();
    CommandCounterIncrement();
    EXPECT_EQ(GetCurrentTransactionId(), xid) << "the id changed within the transaction";
    previous = xid;
    if (i % 2)
      CommitTransactionCommand();
    else
      AbortCurrentTransaction();
  }
}

// The command counter: the first command id at start; +1 for each
// StartTransactionCommand inside the transaction (which keeps its contexts
// and owner) and for each CommandCounterIncrement; back to the first for
// the next transaction.
TEST_F(XactBasicsTest, CommandCounter) {
  StartTransactionCommand();
  const MemoryContext context = TopTransactionContext;
  const ResourceOwner owner = TopTransactionResourceOwner;
  const TransactionId xid = GetCurrentTransactionId();
  EXPECT_EQ(GetCurrentCommandId(), FirstCommandId);
  StartTransactionCommand();
  EXPECT_EQ(GetCurrentCommandId(), FirstCommandId + 1);
  EXPECT_EQ(TopTransactionContext, context);
  EXPECT_EQ(TopTransactionResourceOwner, owner);
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 1);
  EXPECT_EQ(GetCurrentTransactionId(), xid);
  CommandCounterIncrement();
  EXPECT_EQ(GetCurrentCommandId(), FirstCommandId + 2);
  for (int i = 0; i < 10; ++i) StartTransactionCommand();
  EXPECT_EQ(GetCurrentCommandId(), FirstCommandId + 12);
  CommitTransactionCommand();

  StartTransactionCommand();
  EXPECT_EQ(GetCurrentCommandId(), FirstCommandId);
  AbortCurrentTransaction();
}

// The command counter inside a subtransaction is the transaction's: it keeps
// counting, and a subtransaction's end does not reset it.
TEST_F(XactBasicsTest, CommandCounterSpansSubtransactions) {
  StartTransactionCommand();
  CommandCounterIncrement();
  BeginInternalSubTransaction("sub");
  EXPECT_EQ(GetCurrentCommandId(), FirstCommandId + 1);
  CommandCounterIncrement();
  EXPECT_EQ(GetCurrentCommandId(), FirstCommandId + 2);
  RollbackAndReleaseCurrentSubTransaction();
  EXPECT_GE(GetCurrentCommandId(), FirstCommandId + 2);
  CommitTransactionCommand();
}

// AbortCurrentTransaction outside a transaction does nothing (and is
// noexcept).
TEST_F(XactBasicsTest, AbortOutsideIsANoOp) {
  static_assert(noexcept(AbortCurrentTransaction()), "abort never throws");
  MemoryContext caller = CurrentMemoryContext;
  AbortCurrentTransaction();
  AbortCurrentTransaction();
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(CurrentMemoryContext, caller);
  EXPECT_EQ(CurrentResourceOwner, nullptr);
}

// Committing, or advancing the command counter, outside a transaction is an
// ERROR and starts nothing.
TEST_F(XactBasicsTest, CommitOrCommandCounterOutsideIsAnError) {
  auto err = CatchError([] { CommitTransactionCommand(); });
  ASSERT_TRUE(err.has_value());
  EXPECT_FALSE(err->message().empty());
  EXPECT_FALSE(IsTransactionState());
  ASSERT_TRUE(CatchError([] { CommandCounterIncrement(); }).has_value());
  EXPECT_FALSE(IsTransactionState());
}

// The usual error path: an ERROR inside the transaction, caught by the
// caller, who aborts; the next transaction starts clean.
TEST_F(XactBasicsTest, ErrorThenAbortThenNextTransaction) {
  StartTransactionCommand();
  const TransactionId first = GetCurrentTransactionId();
  TestResource r{"held"};
  RememberRecorded(CurrentResourceOwner, r, &kAfterMid);
  auto err = CatchError([] { ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("division by zero")); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(IsTransactionState()) << "an ERROR alone does not end the transaction";
  AbortCurrentTransaction();
  EXPECT_EQ(r.releases, 1);
  StartTransactionCommand();
  EXPECT_GT(GetCurrentTransactionId(), first);
  EXPECT_EQ(ResourceOwnerCount(CurrentResourceOwner), 0u);
  CommitTransactionCommand();
}

// A caller with a resource owner of its own (a portal, say) gets it back as
// CurrentResourceOwner after the transaction.
TEST_F(XactBasicsTest, CallersResourceOwnerRestored) {
  ResourceOwner mine = ResourceOwnerCreate(nullptr, "caller");
  CurrentResourceOwner = mine;
  StartTransactionCommand();
  EXPECT_NE(CurrentResourceOwner, mine);
  CommitTransactionCommand();
  EXPECT_EQ(CurrentResourceOwner, mine);
  StartTransactionCommand();
  AbortCurrentTransaction();
  EXPECT_EQ(CurrentResourceOwner, mine);
  CurrentResourceOwner = nullptr;
  ResourceOwnerDelete(mine);
}

// Transaction state is per thread: another thread sees no transaction while
// this one has one open, runs its own, and this one's is untouched.
TEST_F(XactBasicsTest, StateIsPerThread) {
  StartTransactionCommand();
  const MemoryContext mine = TopTransactionContext;
  const TransactionId my_xid = GetCurrentTransactionId();
  bool other_saw_none = false, other_started = false, other_clean_after = false;
  TransactionId other_xid = InvalidTransactionId;
  std::thread worker([&] {
    other_saw_none = !IsTransactionState() && TopTransactionContext == nullptr && CurrentResourceOwner == nullptr;
    StartTransactionCommand();
    other_started = IsTransactionState() && TopTransactionContext != nullptr && TopTransactionContext != mine;
    other_xid = GetCurrentTransactionId();
    palloc(1000);
    CommitTransactionCommand();
    other_clean_after = !IsTransactionState() && TopTransactionContext == nullptr;
  });
  worker.join();
  EXPECT_TRUE(other_saw_none);
  EXPECT_TRUE(other_started);
  EXPECT_TRUE(other_clean_after);
  EXPECT_NE(other_xid, my_xid);
  EXPECT_TRUE(IsTransactionState());
  EXPECT_EQ(TopTransactionContext, mine);
  EXPECT_EQ(GetCurrentTransactionId(), my_xid);
  CommitTransactionCommand();
}

// Many transactions in a row keep no memory: TopMemoryContext holds what it
// held after the first few.
TEST_F(XactBasicsTest, ManyTransactionsKeepNoMemory) {
  auto one = [](int i) {
    StartTransactionCommand();
    for (int k = 0; k < 20; ++k) palloc(static_cast<std::size_t>(16 + 97 * k));
    for (Datum v = 1; v <= 40; ++v) RememberCounted(CurrentResourceOwner, v);
    for (Datum v = 1; v <= 40; ++v) ForgetCounted(CurrentResourceOwner, v);
    BeginInternalSubTransaction("s");
    palloc(100);
    if (i % 2)
      ReleaseCurrentSubTransaction();
    else
      RollbackAndReleaseCurrentSubTransaction();
    if (i % 3)
      CommitTransactionCommand();
    else
      AbortCurrentTransaction();
  };
  for (int i = 0; i < 10; ++i) one(i);
  WarmUpOwnerMemory();
  const std::size_t held = MemoryContextMemAllocated(TopMemoryContext, true);
  for (int i = 0; i < 1000; ++i) one(i);
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), held);
}

}  // namespace
}  // namespace grove::test
