// End-of-transaction callbacks: Xact callbacks get PRE_COMMIT, COMMIT or
// ABORT; SubXact callbacks get START_SUB, PRE_COMMIT_SUB, COMMIT_SUB,
// ABORT_SUB with the subtransaction's and its parent's ids; an ERROR from a
// PRE_COMMIT callback makes the commit throw and the caller aborts cleanly.
#include <algorithm>
#include <string>
#include <vector>

#include "xact_test_support.h"

namespace grove::test {
namespace {

using XactCallbackTest = XactTest;
using Events = std::vector<std::string>;

// Commit: PRE_COMMIT then COMMIT, nothing else.
TEST_F(XactCallbackTest, CommitEvents) {
  EventRecorder rec;
  StartTransactionCommand();
  EXPECT_TRUE(rec.events.empty()) << "no event at start";
  StartTransactionCommand();
  CommandCounterIncrement();
  EXPECT_TRUE(rec.events.empty()) << "no event for a new command";
  CommitTransactionCommand();
  EXPECT_EQ(rec.events, (Events{"PRE_COMMIT", "COMMIT"}));
}

// Abort: ABORT only.
TEST_F(XactCallbackTest, AbortEvents) {
  EventRecorder rec;
  StartTransactionCommand();
  AbortCurrentTransaction();
  EXPECT_EQ(rec.events, (Events{"ABORT"}));
}

// PRE_COMMIT comes while the transaction is still fully there: its owner
// still holds its resources (nothing released, nothing reported yet).
struct PreCommitObservation {
  bool called = false;
  bool in_transaction = false;
  std::size_t held = 0;
  int released = 0;
  TestResource* resource = nullptr;
};
void ObservePreCommit(XactEvent event, void* arg) {
  auto* o = static_cast<PreCommitObservation*>(arg);
  if (event != XACT_EVENT_PRE_COMMIT) return;
  o->called = true;
  o->in_transaction = IsTransactionState() && TopTransactionContext != nullptr;
  o->held = TopTransactionResourceOwner != nullptr ? ResourceOwnerCount(TopTransactionResourceOwner) : 0;
  o->released = o->resource->releases;
}

TEST_F(XactCallbackTest, PreCommitSeesTheTransactionBeforeRelease) {
  PreCommitObservation obs;
  TestResource r{"held"};
  obs.resource = &r;
  RegisterXactCallback(ObservePreCommit, &obs);
  StartTransactionCommand();
  RememberRecorded(CurrentResourceOwner, r, &kAfterMid);
  MessageCapture capture;
  CommitTransactionCommand();
  UnregisterXactCallback(ObservePreCommit, &obs);
  EXPECT_TRUE(obs.called);
  EXPECT_TRUE(obs.in_transaction);
  EXPECT_EQ(obs.held, 1u);
  EXPECT_EQ(obs.released, 0);
  EXPECT_EQ(r.releases, 1);
}

// Subtransaction events carry (mySubid, parentSubid): START_SUB at begin;
// PRE_COMMIT_SUB then COMMIT_SUB at release; ABORT_SUB at rollback; nested
// ones name their parent subtransaction.
TEST_F(XactCallbackTest, SubtransactionEvents) {
  EventRecorder rec;
  StartTransactionCommand();
  const std::string top = std::to_string(TopSubTransactionId);
  BeginInternalSubTransaction("a");
  const std::string a = std::to_string(GetCurrentSubTransactionId());
  BeginInternalSubTransaction("b");
  const std::string b = std::to_string(GetCurrentSubTransactionId());
  ReleaseCurrentSubTransaction();
  BeginInternalSubTransaction("c");
  const std::string c = std::to_string(GetCurrentSubTransactionId());
  RollbackAndReleaseCurrentSubTransaction();
  ReleaseCurrentSubTransaction();
  CommitTransactionCommand();
  EXPECT_EQ(rec.events, (Events{"START_SUB " + a + "<" + top, "START_SUB " + b + "<" + a,
                                "PRE_COMMIT_SUB " + b + "<" + a, "COMMIT_SUB " + b + "<" + a,
                                "START_SUB " + c + "<" + a, "ABORT_SUB " + c + "<" + a,
                                "PRE_COMMIT_SUB " + a + "<" + top, "COMMIT_SUB " + a + "<" + top, "PRE_COMMIT",
                                "COMMIT"}));
}

// Abort with open subtransactions: ABORT_SUB for each, innermost first, then
// ABORT.
TEST_F(XactCallbackTest, AbortWithOpenSubtransactionsEvents) {
  StartTransactionCommand();
  BeginInternalSubTransaction("1");
  const std::string s1 = std::to_string(GetCurrentSubTransactionId());
  BeginInternalSubTransaction("2");
  const std::string s2 = std::to_string(GetCurrentSubTransactionId());
  BeginInternalSubTransaction("3");
  const std::string s3 = std::to_string(GetCurrentSubTransactionId());
  EventRecorder rec;
  AbortCurrentTransaction();
  const std::string top = std::to_string(TopSubTransactionId);
  EXPECT_EQ(rec.events, (Events{"ABORT_SUB " + s3 + "<" + s2, "ABORT_SUB " + s2 + "<" + s1,
                                "ABORT_SUB " + s1 + "<" + top, "ABORT"}));
}

// An ERROR from a PRE_COMMIT callback: CommitTransactionCommand throws it;
// no COMMIT event; the caller aborts (ABORT event), the resources are
// released silently, once, and the thread is out of the transaction.
void RefuseCommit(XactEvent event, void*) {
  if (event == XACT_EVENT_PRE_COMMIT)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("pre-commit check failed"));
}

TEST_F(XactCallbackTest, PreCommitErrorThenCleanAbort) {
  EventRecorder rec;
  RegisterXactCallback(RefuseCommit, nullptr);
  StartTransactionCommand();
  TestResource r{"held"};
  RememberRecorded(CurrentResourceOwner, r, &kBeforeHi);
  for (Datum v = 1; v <= 50; ++v) RememberCounted(CurrentResourceOwner, v);
  DeletionProbe memory(TopTransactionContext);
  auto err = CatchError([] { CommitTransactionCommand(); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->message(), "pre-commit check failed");
  EXPECT_TRUE(err->sqlstate() == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
  EXPECT_EQ(r.releases, 0) << "nothing released before the caller aborts";
  UnregisterXactCallback(RefuseCommit, nullptr);
  MessageCapture capture;
  AbortCurrentTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(r.releases, 1);
  EXPECT_EQ(memory.fired(), 1);
  EXPECT_FALSE(IsTransactionState());
  // No COMMIT was delivered, and ABORT was.
  EXPECT_EQ(std::count(rec.events.begin(), rec.events.end(), "COMMIT"), 0) << ::testing::PrintToString(rec.events);
  ASSERT_FALSE(rec.events.empty());
  EXPECT_EQ(rec.events.back(), "ABORT");
}

// The same one level down: an ERROR from a PRE_COMMIT_SUB callback makes
// ReleaseCurrentSubTransaction throw before anything moved (no COMMIT_SUB);
// the caller rolls the subtransaction back (ABORT_SUB), its resources are
// released, and the parent goes on to commit.
void RefuseSubCommit(SubXactEvent event, SubTransactionId, SubTransactionId, void*) {
  if (event == SUBXACT_EVENT_PRE_COMMIT_SUB) ereport(ERROR, errmsg("pre-commit-sub check failed"));
}

TEST_F(XactCallbackTest, PreCommitSubErrorThenRollback) {
  EventRecorder rec;
  StartTransactionCommand();
  const ResourceOwner top_owner = CurrentResourceOwner;
  BeginInternalSubTransaction("refused");
  TestResource r{"sub's"};
  RememberRecorded(CurrentResourceOwner, r, &kAfterMid);
  RegisterSubXactCallback(RefuseSubCommit, nullptr);
  auto err = CatchError([] { ReleaseCurrentSubTransaction(); });
  UnregisterSubXactCallback(RefuseSubCommit, nullptr);
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->message(), "pre-commit-sub check failed");
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 2) << "the refused subtransaction is still open for the caller";
  EXPECT_EQ(ResourceOwnerCount(top_owner), 0u) << "nothing moved to the parent";
  RollbackAndReleaseCurrentSubTransaction();
  EXPECT_EQ(r.releases, 1);
  EXPECT_EQ(CurrentResourceOwner, top_owner);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(std::count_if(rec.events.begin(), rec.events.end(),
                          [](const std::string& e) { return e.rfind("COMMIT_SUB", 0) == 0; }),
            0)
      << ::testing::PrintToString(rec.events);
  EXPECT_EQ(std::count_if(rec.events.begin(), rec.events.end(),
                          [](const std::string& e) { return e.rfind("ABORT_SUB", 0) == 0; }),
            1)
      << ::testing::PrintToString(rec.events);
  ASSERT_GE(rec.events.size(), 2u);
  EXPECT_EQ(rec.events[rec.events.size() - 2], "PRE_COMMIT");
  EXPECT_EQ(rec.events.back(), "COMMIT");
}

// Unregistered callbacks get nothing; several registered ones each get
// every event.
TEST_F(XactCallbackTest, RegisterUnregisterSeveral) {
  {
    EventRecorder first, second;
    StartTransactionCommand();
    BeginInternalSubTransaction("s");
    RollbackAndReleaseCurrentSubTransaction();
    CommitTransactionCommand();
    EXPECT_EQ(first.events, second.events);
    EXPECT_EQ(first.events.size(), 4u);
  }
  EventRecorder later;
  {
    EventRecorder gone;
  }
  StartTransactionCommand();
  AbortCurrentTransaction();
  EXPECT_EQ(later.events, (Events{"ABORT"}));
}

// A callback may unregister itself while being called.
void SelfUnregistering(XactEvent, void* arg) {
  ++*static_cast<int*>(arg);
  UnregisterXactCallback(SelfUnregistering, arg);
}

TEST_F(XactCallbackTest, CallbackUnregistersItself) {
  int calls = 0;
  EventRecorder rec;
  RegisterXactCallback(SelfUnregistering, &calls);
  StartTransactionCommand();
  CommitTransactionCommand();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(rec.events, (Events{"PRE_COMMIT", "COMMIT"})) << "the other callback missed events";
  StartTransactionCommand();
  CommitTransactionCommand();
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace grove::test

namespace grove::test {
namespace {

// A resource release callback may unregister itself while it runs; the
// other callbacks still run and nothing freed is read.
int self_removing_calls = 0;
int other_calls = 0;
void SelfRemoving(ResourceReleasePhase, bool, bool, void*) {
  ++self_removing_calls;
  UnregisterResourceReleaseCallback(&SelfRemoving, nullptr);
}
void Other(ResourceReleasePhase, bool, bool, void*) { ++other_calls; }

TEST_F(XactTest, ReleaseCallbackMayUnregisterItself) {
  self_removing_calls = other_calls = 0;
  RegisterResourceReleaseCallback(&Other, nullptr);
  RegisterResourceReleaseCallback(&SelfRemoving, nullptr);  // runs first (last registered)
  StartTransactionCommand();
  CommitTransactionCommand();
  EXPECT_EQ(self_removing_calls, 1) << "it unregistered itself in the first phase";
  EXPECT_EQ(other_calls, 3) << "the other one ran in all three phases";
  UnregisterResourceReleaseCallback(&Other, nullptr);
}

// A COMMIT callback that fails does not turn the commit into an abort: it is
// reported, and no ABORT event follows.
std::vector<XactEvent> seen_events;
void FailingOnCommit(XactEvent event, void*) {
  seen_events.push_back(event);
  if (event == XACT_EVENT_COMMIT) elog(ERROR, "commit callback failed");
}

TEST_F(XactTest, FailingCommitCallbackIsReportedNotAnAbort) {
  seen_events.clear();
  RegisterXactCallback(&FailingOnCommit, nullptr);
  StartTransactionCommand();
  {
    MessageCapture capture;
    EXPECT_NO_THROW(CommitTransactionCommand());
    EXPECT_EQ(capture.CountContaining("commit callback failed"), 1u) << capture.All();
  }
  EXPECT_FALSE(IsTransactionState());
  UnregisterXactCallback(&FailingOnCommit, nullptr);
  EXPECT_EQ(seen_events, (std::vector<XactEvent>{XACT_EVENT_PRE_COMMIT, XACT_EVENT_COMMIT}));
}

// The subtransaction's name is copied: the caller's string may be gone by
// the time an error names the subtransaction.
TEST_F(XactTest, SubtransactionNameIsCopied) {
  StartTransactionCommand();
  {
    std::string name = "savepoint_" + std::to_string(12345);
    BeginInternalSubTransaction(name.c_str());
    name.assign(name.size(), 'x');  // the caller's buffer changes
  }
  auto e = CatchError([] { CommitTransactionCommand(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message().find("savepoint_12345"), std::string::npos) << e->message();
  AbortCurrentTransaction();
}

// RunStatement recovers from exceptions of any type, not only std::exception.
TEST_F(XactTest, RunStatementRecoversFromAnyException) {
  std::optional<ErrorData> reported;
  const bool ok = RunStatement([] { throw 42; }, [&](const ErrorData& d) { reported = d; });
  EXPECT_FALSE(ok);
  ASSERT_TRUE(reported.has_value());
  EXPECT_FALSE(IsTransactionState());
}

}  // namespace
}  // namespace grove::test
