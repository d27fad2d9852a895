// RunStatement, the statement loop's error recovery: true on success (the
// statement ran in its own transaction, which committed); on an ERROR (or
// any exception) false, the error to on_error (or the thread's sink at
// ERROR level), the transaction aborted and everything released.
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "xact_test_support.h"

namespace grove::test {
namespace {

class RunStatementTest : public XactTest {
 protected:
  void SetUp() override {
    XactTest::SetUp();
    // Warm up: free lists and recycled contexts reach their steady state.
    for (int i = 0; i < 3; ++i) {
      RunStatement([] { palloc(100); });
      RunStatement([] { ereport(ERROR, errmsg("warm-up")); }, [](const ErrorData&) {});
    }
    WarmUpOwnerMemory();
    baseline_ = MemoryContextMemAllocated(TopMemoryContext, true);
  }
  std::size_t baseline_ = 0;
};

// Success: the statement runs inside a transaction of its own; true; no
// error reported; afterwards no transaction, the caller's context and owner
// current again, memory as before.
TEST_F(RunStatementTest, SuccessReturnsTrue) {
  MemoryContext caller = CurrentMemoryContext;
  bool ran = false, in_transaction = false;
  int errors = 0;
  const bool ok = RunStatement(
      [&] {
        ran = true;
        in_transaction = IsTransactionState() && GetCurrentTransactionNestLevel() == 1 &&
                         CurrentResourceOwner == TopTransactionResourceOwner && CurrentResourceOwner != nullptr;
        std::memset(palloc(50000), 1, 50000);
      },
      [&](const ErrorData&) { ++errors; });
  EXPECT_TRUE(ok);
  EXPECT_TRUE(ran);
  EXPECT_TRUE(in_transaction);
  EXPECT_EQ(errors, 0);
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(CurrentMemoryContext, caller);
  EXPECT_EQ(CurrentResourceOwner, nullptr);
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), baseline_);
}

// Success with resources left behind: they are leaks of a committed
// transaction — one WARNING each — and released.
TEST_F(RunStatementTest, SuccessWithLeakedResourcesWarns) {
  TestResource r{"left"};
  MessageCapture capture;
  EXPECT_TRUE(RunStatement([&] {
    RememberRecorded(CurrentResourceOwner, r, &kAfterMid);
    RememberCounted(CurrentResourceOwner, 1);
  }));
  EXPECT_EQ(capture.LeakTexts().size(), 2u) << capture.All();
  EXPECT_EQ(r.releases, 1);
}

// An ERROR: false; on_error receives it once (message, SQLSTATE, ERROR
// level); the statement's resources were released silently, its memory and
// contexts freed (even with a child context current), and no transaction
// is open.
TEST_F(RunStatementTest, ErrorReturnsFalseAndReleasesEverything) {
  MemoryContext caller = CurrentMemoryContext;
  TestResource r{"held"};
  const long live = Tracked::Live();
  std::vector<ErrorData> errors;
  MessageCapture capture;
  const bool ok = RunStatement(
      [&] {
        RememberRecorded(CurrentResourceOwner, r, &kLocksLo);
        for (Datum v = 1; v <= 64; ++v) RememberCounted(CurrentResourceOwner, v);
        ResourceOwnerAdopt(CurrentResourceOwner, std::make_unique<Tracked>("statement object"));
        MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "scratch", ALLOCSET_DEFAULT_SIZES);
        MemoryContextSwitchTo(scratch);
        std::memset(palloc(200000), 1, 200000);
        ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("statement failed: %d", 42),
                errdetail("detail text"));
      },
      [&](const ErrorData& e) { errors.push_back(e); });
  EXPECT_FALSE(ok);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "statement failed: 42");
  EXPECT_EQ(errors[0].detail, "detail text");
  EXPECT_TRUE(errors[0].sqlstate == ERRCODE_INVALID_PARAMETER_VALUE);
  EXPECT_EQ(errors[0].elevel, ERROR);
  EXPECT_TRUE(capture.reports.empty()) << "abort is silent, and the error went to on_error: " << capture.All();
  EXPECT_EQ(r.releases, 1);
  EXPECT_EQ(CountedCounters().live(), 0u);
  EXPECT_EQ(Tracked::Live(), live);
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(CurrentMemoryContext, caller);
  EXPECT_EQ(CurrentResourceOwner, nullptr);
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), baseline_);
}

// Without on_error the error goes to the thread's message sink, at ERROR
// level.
TEST_F(RunStatementTest, ErrorWithoutOnErrorGoesToTheSink) {
  MessageCapture capture;
  EXPECT_FALSE(RunStatement([] { ereport(ERROR, errmsg("to the sink")); }));
  ASSERT_EQ(capture.reports.size(), 1u) << capture.All();
  EXPECT_EQ(capture.reports[0].elevel, ERROR);
  EXPECT_EQ(capture.reports[0].message, "to the sink");
  EXPECT_FALSE(IsTransactionState());
}

// Out of memory mid-statement — an invalid (huge) request, and a request
// beyond a per-context limit — is an ERROR like any other: false, clean.
TEST_F(RunStatementTest, OutOfMemoryMidStatement) {
  std::vector<ErrorData> errors;
  auto collect = [&](const ErrorData& e) { errors.push_back(e); };
  EXPECT_FALSE(RunStatement([] { palloc(MaxAllocSize + 1); }, collect));
  EXPECT_FALSE(RunStatement(
      [] {
        MemoryContext limited = AllocSetContextCreate(CurTransactionContext, "limited", ALLOCSET_DEFAULT_SIZES);
        MemoryContextSetLimit(limited, 64 * 1024);
        MemoryContextSwitchTo(limited);
        for (int i = 0; i < 100; ++i) palloc(4096);
      },
      collect));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_FALSE(errors[0].message.empty());
  EXPECT_TRUE(errors[1].sqlstate == ERRCODE_OUT_OF_MEMORY) << errors[1].message;
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), baseline_);
}

// Any other exception is an error too: false; on_error gets its text
// (std::exception::what), or "out of memory" for std::bad_alloc.
TEST_F(RunStatementTest, OtherExceptions) {
  std::vector<ErrorData> errors;
  auto collect = [&](const ErrorData& e) { errors.push_back(e); };
  TestResource r{"held"};
  EXPECT_FALSE(RunStatement(
      [&] {
        RememberRecorded(CurrentResourceOwner, r, &kAfterMid);
        throw std::runtime_error("plain C++ failure");
      },
      collect));
  EXPECT_FALSE(RunStatement([] { throw std::bad_alloc(); }, collect));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_TRUE(Contains(errors[0].message, "plain C++ failure")) << errors[0].message;
  EXPECT_EQ(errors[0].elevel, ERROR);
  EXPECT_TRUE(errors[1].sqlstate == ERRCODE_OUT_OF_MEMORY) << errors[1].message;
  EXPECT_EQ(r.releases, 1);
  EXPECT_FALSE(IsTransactionState());
}

// An ERROR with subtransactions open: all of them and the transaction are
// aborted, every level's resources released.
TEST_F(RunStatementTest, ErrorInsideSubtransactions) {
  std::vector<std::unique_ptr<TestResource>> res;
  EXPECT_FALSE(RunStatement(
      [&] {
        for (int level = 0; level < 5; ++level) {
          BeginInternalSubTransaction("nested");
          res.push_back(std::make_unique<TestResource>(TestResource{"level" + std::to_string(level)}));
          RememberRecorded(CurrentResourceOwner, *res.back(), &kBeforeLo);
          palloc(3000);
        }
        ereport(ERROR, errmsg("deep failure"));
      },
      [](const ErrorData&) {}));
  for (const auto& r : res) EXPECT_EQ(r->releases, 1) << r->label;
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), baseline_);
}

// A statement that returns with a subtransaction still open cannot commit:
// false with the commit's ERROR, and everything is aborted.
TEST_F(RunStatementTest, StatementLeavingASubtransactionOpen) {
  TestResource r{"in the open subtransaction"};
  std::vector<ErrorData> errors;
  EXPECT_FALSE(RunStatement(
      [&] {
        BeginInternalSubTransaction("forgotten");
        RememberRecorded(CurrentResourceOwner, r, &kAfterMid);
      },
      [&](const ErrorData& e) { errors.push_back(e); }));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_FALSE(errors[0].message.empty());
  EXPECT_EQ(r.releases, 1);
  EXPECT_FALSE(IsTransactionState());
}

// An ERROR from a PRE_COMMIT callback fails the statement the same way.
void FailPreCommit(XactEvent event, void*) {
  if (event == XACT_EVENT_PRE_COMMIT) ereport(ERROR, errmsg("deferred check failed"));
}

TEST_F(RunStatementTest, PreCommitCallbackError) {
  RegisterXactCallback(FailPreCommit, nullptr);
  TestResource r{"held"};
  std::vector<ErrorData> errors;
  MessageCapture capture;
  const bool ok = RunStatement([&] { RememberRecorded(CurrentResourceOwner, r, &kAfterMid); },
                               [&](const ErrorData& e) { errors.push_back(e); });
  UnregisterXactCallback(FailPreCommit, nullptr);
  EXPECT_FALSE(ok);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "deferred check failed");
  EXPECT_EQ(r.releases, 1);
  EXPECT_TRUE(capture.LeakTexts().empty()) << "an aborted transaction reports no leaks: " << capture.All();
  EXPECT_FALSE(IsTransactionState());
}

// After a failed statement the next one starts clean: a new transaction
// (larger xid), an empty owner, the first command id.
TEST_F(RunStatementTest, NextStatementStartsClean) {
  TransactionId failed_xid = InvalidTransactionId;
  EXPECT_FALSE(RunStatement(
      [&] {
        failed_xid = GetCurrentTransactionId();
        RememberCounted(CurrentResourceOwner, 1);
        CommandCounterIncrement();
        ereport(ERROR, errmsg("first fails"));
      },
      [](const ErrorData&) {}));
  bool clean = false;
  TransactionId next_xid = InvalidTransactionId;
  EXPECT_TRUE(RunStatement([&] {
    next_xid = GetCurrentTransactionId();
    clean = GetCurrentTransactionNestLevel() == 1 && ResourceOwnerIsEmpty(CurrentResourceOwner) &&
            GetCurrentCommandId() == FirstCommandId;
  }));
  EXPECT_TRUE(clean);
  EXPECT_GT(next_xid, failed_xid);
}

// Inside an open transaction, the statement is the transaction's next
// command (same transaction, the command counter advanced); an ERROR there
// aborts the whole transaction.
TEST_F(RunStatementTest, InsideAnOpenTransaction) {
  StartTransactionCommand();
  const TransactionId xid = GetCurrentTransactionId();
  const CommandId cid = GetCurrentCommandId();
  TransactionId seen_xid = InvalidTransactionId;
  CommandId seen_cid = FirstCommandId;
  EXPECT_TRUE(RunStatement([&] {
    seen_xid = GetCurrentTransactionId();
    seen_cid = GetCurrentCommandId();
  }));
  EXPECT_EQ(seen_xid, xid);
  EXPECT_GT(seen_cid, cid);
  if (!IsTransactionState()) StartTransactionCommand();
  TestResource r{"outer's"};
  RememberRecorded(CurrentResourceOwner, r, &kAfterMid);
  EXPECT_FALSE(RunStatement([] { ereport(ERROR, errmsg("inner failure")); }, [](const ErrorData&) {}));
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(r.releases, 1);
}

// on_error runs once per failure and the loop survives many failures in a
// row (the error stack does not fill up).
TEST_F(RunStatementTest, ManyFailuresInARow) {
  int errors = 0;
  for (int i = 0; i < 5000; ++i)
    ASSERT_FALSE(RunStatement([i] { ereport(ERROR, errmsg("failure %d", i)); }, [&](const ErrorData&) { ++errors; }));
  EXPECT_EQ(errors, 5000);
  EXPECT_TRUE(RunStatement([] {}));
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), baseline_);
}

}  // namespace
}  // namespace grove::test
