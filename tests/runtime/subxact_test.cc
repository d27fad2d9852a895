// Subtransactions: BeginInternalSubTransaction, ReleaseCurrentSubTransaction
// (its remaining resources move to the parent's owner and are released when
// the top level ends; its memory lives on until then),
// RollbackAndReleaseCurrentSubTransaction (releases them, frees its memory,
// the parent continues), nesting levels and subtransaction ids, abort with
// several open, commit with one open.
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "xact_test_support.h"

namespace grove::test {
namespace {

using SubXactTest = XactTest;

// Begin: level 2, a new subtransaction id, its own context (current, under
// the top's) and owner (current, a child of the top's); the top's stay.
TEST_F(SubXactTest, BeginSetsTheSubtransactionsState) {
  StartTransactionCommand();
  const MemoryContext top_context = TopTransactionContext;
  const ResourceOwner top_owner = TopTransactionResourceOwner;
  const TransactionId xid = GetCurrentTransactionId();
  BeginInternalSubTransaction("sp1");
  EXPECT_TRUE(IsTransactionState());
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 2);
  EXPECT_GT(GetCurrentSubTransactionId(), TopSubTransactionId);
  EXPECT_EQ(TopTransactionContext, top_context);
  ASSERT_NE(CurTransactionContext, nullptr);
  EXPECT_NE(CurTransactionContext, top_context);
  EXPECT_TRUE(MemoryContextIsDescendant(CurTransactionContext, top_context));
  EXPECT_EQ(CurrentMemoryContext, CurTransactionContext);
  EXPECT_EQ(TopTransactionResourceOwner, top_owner);
  ASSERT_NE(CurTransactionResourceOwner, nullptr);
  EXPECT_NE(CurTransactionResourceOwner, top_owner);
  EXPECT_EQ(ResourceOwnerGetParent(CurTransactionResourceOwner), top_owner);
  EXPECT_EQ(CurrentResourceOwner, CurTransactionResourceOwner);
  EXPECT_EQ(GetCurrentTransactionId(), xid) << "subtransactions belong to their top-level transaction";
  ReleaseCurrentSubTransaction();
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 1);
  EXPECT_EQ(GetCurrentSubTransactionId(), TopSubTransactionId);
  EXPECT_EQ(CurTransactionContext, top_context);
  EXPECT_EQ(CurTransactionResourceOwner, top_owner);
  EXPECT_EQ(CurrentResourceOwner, top_owner);
  EXPECT_EQ(CurrentMemoryContext, top_context);
  CommitTransactionCommand();
}

// Release: the subtransaction's resources (array and hash, several kinds, a
// C++ object) now belong to the top's owner; nothing is released or
// reported yet; at top-level commit each is a leak warning and released once.
TEST_F(SubXactTest, ReleaseMovesResourcesToTheParentReleasedAtTopCommit) {
  StartTransactionCommand();
  const ResourceOwner top_owner = TopTransactionResourceOwner;
  TestResource a{"a"}, b{"b"};
  RememberRecorded(top_owner, a, &kAfterMid);
  BeginInternalSubTransaction("sp");
  RememberRecorded(CurrentResourceOwner, b, &kBeforeLo);
  for (Datum v = 1; v <= 40; ++v) RememberCounted(CurrentResourceOwner, v);
  ResourceOwnerAdopt(CurrentResourceOwner, std::make_unique<Tracked>("object"));
  const long live = Tracked::Live();
  {
    MessageCapture capture;
    ReleaseCurrentSubTransaction();
    EXPECT_TRUE(capture.reports.empty()) << "a subtransaction's commit reports nothing: " << capture.All();
  }
  EXPECT_EQ(ResourceOwnerCount(top_owner), 1u + 1u + 40u + 1u);
  EXPECT_EQ(b.releases, 0);
  EXPECT_EQ(CountedCounters().released, 0u);
  EXPECT_EQ(Tracked::Live(), live);
  // The parent can forget what was moved to it.
  ResourceOwnerForget(top_owner, D(b), &kBeforeLo);
  ++b.releases;
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_EQ(capture.LeakTexts().size(), 1u + 40u + 1u) << capture.All();
  EXPECT_EQ(a.releases, 1);
  EXPECT_EQ(b.releases, 1);
  EXPECT_EQ(Tracked::Live(), live - 1);
}

// Released subtransaction, aborted top: the moved resources are released
// silently.
TEST_F(SubXactTest, ReleasedResourcesReleasedSilentlyOnTopAbort) {
  StartTransactionCommand();
  BeginInternalSubTransaction("sp");
  TestResource r{"moved"};
  RememberRecorded(CurrentResourceOwner, r, &kLocksHi);
  for (Datum v = 1; v <= 10; ++v) RememberCounted(CurrentResourceOwner, v);
  ReleaseCurrentSubTransaction();
  EXPECT_EQ(r.releases, 0);
  MessageCapture capture;
  AbortCurrentTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(r.releases, 1);
}

// After a release, an adopted C++ object belongs to the parent's owner and
// can be disowned from it.
TEST_F(SubXactTest, DisownFromParentAfterRelease) {
  StartTransactionCommand();
  BeginInternalSubTransaction("sp");
  OwnedRef<Tracked> ref = ResourceOwnerAdopt(CurrentResourceOwner, std::make_unique<Tracked>("kept"));
  ReleaseCurrentSubTransaction();
  std::unique_ptr<Tracked> back = ResourceOwnerDisown(CurTransactionResourceOwner, ref);
  EXPECT_EQ(back->name, "kept");
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(back->name, "kept") << "the transaction's end does not touch a disowned object";
}

// Release keeps the subtransaction's memory until the top level ends: data
// palloc'd in it stays readable; the context goes at commit.
TEST_F(SubXactTest, ReleaseKeepsMemoryUntilTopLevelEnds) {
  StartTransactionCommand();
  BeginInternalSubTransaction("sp");
  char* text = pstrdup("allocated in the subtransaction");
  DeletionProbe probe(CurTransactionContext);
  ReleaseCurrentSubTransaction();
  EXPECT_EQ(probe.fired(), 0) << "the released subtransaction's memory was freed early";
  EXPECT_STREQ(text, "allocated in the subtransaction");
  CommitTransactionCommand();
  EXPECT_EQ(probe.fired(), 1);
}

// Rollback: the subtransaction's resources are released, silently; its
// memory is freed; the parent's state is current again and it goes on
// (allocating, remembering, another subtransaction with a new id), and commits.
TEST_F(SubXactTest, RollbackReleasesAndFreesAndParentContinues) {
  StartTransactionCommand();
  const MemoryContext top_context = TopTransactionContext;
  const ResourceOwner top_owner = TopTransactionResourceOwner;
  TestResource parent_res{"parent"};
  RememberRecorded(top_owner, parent_res, &kAfterMid);
  BeginInternalSubTransaction("sp");
  const SubTransactionId first = GetCurrentSubTransactionId();
  TestResource a{"a"}, b{"b"};
  RememberRecorded(CurrentResourceOwner, a, &kBeforeHi);
  RememberRecorded(CurrentResourceOwner, b, &kNoPrint);
  for (Datum v = 1; v <= 100; ++v) RememberCounted(CurrentResourceOwner, v);
  const long live = Tracked::Live();
  ResourceOwnerAdopt(CurrentResourceOwner, std::make_unique<Tracked>("object"));
  std::memset(palloc(100000), 1, 100000);
  DeletionProbe probe(CurTransactionContext);
  {
    MessageCapture capture;
    RollbackAndReleaseCurrentSubTransaction();
    EXPECT_TRUE(capture.reports.empty()) << capture.All();
  }
  EXPECT_EQ(a.releases, 1);
  EXPECT_EQ(b.releases, 1);
  EXPECT_EQ(CountedCounters().live(), 0u);
  EXPECT_EQ(Tracked::Live(), live);
  EXPECT_EQ(probe.fired(), 1) << "the rolled-back subtransaction's memory was not freed";
  EXPECT_EQ(parent_res.releases, 0);
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 1);
  EXPECT_EQ(CurTransactionContext, top_context);
  EXPECT_EQ(CurrentMemoryContext, top_context);
  EXPECT_EQ(CurTransactionResourceOwner, top_owner);
  EXPECT_EQ(CurrentResourceOwner, top_owner);
  EXPECT_EQ(ResourceOwnerCount(top_owner), 1u);

  // The parent continues.
  pfree(palloc(1000));
  RememberCounted(CurrentResourceOwner, 500);
  ForgetCounted(CurrentResourceOwner, 500);
  BeginInternalSubTransaction("sp2");
  EXPECT_GT(GetCurrentSubTransactionId(), first) << "subtransaction ids are not reused";
  ReleaseCurrentSubTransaction();
  ResourceOwnerForget(top_owner, D(parent_res), &kAfterMid);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

// The caller's memory context (not necessarily the transaction's) is current
// again after the subtransaction ends, either way.
TEST_F(SubXactTest, CallersContextRestoredAfterSubtransaction) {
  StartTransactionCommand();
  MemoryContext statement = AllocSetContextCreate(CurTransactionContext, "statement", ALLOCSET_SMALL_SIZES);
  MemoryContextSwitchTo(statement);
  BeginInternalSubTransaction("sp");
  EXPECT_EQ(CurrentMemoryContext, CurTransactionContext);
  RollbackAndReleaseCurrentSubTransaction();
  EXPECT_EQ(CurrentMemoryContext, statement);
  BeginInternalSubTransaction("sp");
  ReleaseCurrentSubTransaction();
  EXPECT_EQ(CurrentMemoryContext, statement);
  CommitTransactionCommand();
}

// Nesting: each level is one deeper, with a larger id, a context below the
// previous level's and an owner whose parent is the previous level's;
// unwinding restores each level's state.
TEST_F(SubXactTest, NestingLevelsAndIds) {
  StartTransactionCommand();
  struct Level {
    int nest;
    SubTransactionId id;
    MemoryContext context;
    ResourceOwner owner;
  };
  std::vector<Level> levels{{1, GetCurrentSubTransactionId(), CurTransactionContext, CurTransactionResourceOwner}};
  for (int i = 0; i < 8; ++i) {
    BeginInternalSubTransaction("nested");
    const Level& up = levels.back();
    Level here{GetCurrentTransactionNestLevel(), GetCurrentSubTransactionId(), CurTransactionContext,
               CurTransactionResourceOwner};
    EXPECT_EQ(here.nest, up.nest + 1);
    EXPECT_GT(here.id, up.id);
    EXPECT_TRUE(MemoryContextIsDescendant(here.context, up.context));
    EXPECT_NE(here.context, up.context);
    EXPECT_EQ(ResourceOwnerGetParent(here.owner), up.owner);
    levels.push_back(here);
  }
  while (levels.size() > 1) {
    if (levels.size() % 2)
      ReleaseCurrentSubTransaction();
    else
      RollbackAndReleaseCurrentSubTransaction();
    levels.pop_back();
    EXPECT_EQ(GetCurrentTransactionNestLevel(), levels.back().nest);
    EXPECT_EQ(GetCurrentSubTransactionId(), levels.back().id);
    EXPECT_EQ(CurTransactionContext, levels.back().context);
    EXPECT_EQ(CurTransactionResourceOwner, levels.back().owner);
    EXPECT_EQ(CurrentResourceOwner, levels.back().owner);
  }
  CommitTransactionCommand();
}

// Ids keep increasing across siblings (released or rolled back) within a
// transaction.
TEST_F(SubXactTest, SiblingIdsIncrease) {
  StartTransactionCommand();
  SubTransactionId previous = TopSubTransactionId;
  for (int i = 0; i < 20; ++i) {
    BeginInternalSubTransaction("sibling");
    EXPECT_GT(GetCurrentSubTransactionId(), previous);
    previous = GetCurrentSubTransactionId();
    if (i % 2)
      ReleaseCurrentSubTransaction();
    else
      RollbackAndReleaseCurrentSubTransaction();
  }
  CommitTransactionCommand();
}

// A released inner subtransaction's resources belong to the outer one; rolling
// the outer back releases them (silently).
TEST_F(SubXactTest, ReleasedInnerRolledBackWithTheOuter) {
  StartTransactionCommand();
  BeginInternalSubTransaction("outer");
  const ResourceOwner outer_owner = CurrentResourceOwner;
  BeginInternalSubTransaction("inner");
  TestResource r{"inner's"};
  RememberRecorded(CurrentResourceOwner, r, &kAfterFirst);
  DeletionProbe inner_memory(CurTransactionContext);
  palloc(10);
  ReleaseCurrentSubTransaction();
  EXPECT_EQ(ResourceOwnerCount(outer_owner), 1u);
  EXPECT_EQ(inner_memory.fired(), 0);
  MessageCapture capture;
  RollbackAndReleaseCurrentSubTransaction();
  EXPECT_EQ(r.releases, 1);
  EXPECT_EQ(inner_memory.fired(), 1) << "the inner context lives in the outer's, which was freed";
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(ResourceOwnerCount(TopTransactionResourceOwner), 0u);
  CommitTransactionCommand();
}

// AbortCurrentTransaction with several subtransactions open: every level's
// resources are released once, silently; every level's memory is freed; no
// transaction is left.
TEST_F(SubXactTest, AbortWithSeveralOpenSubtransactions) {
  MemoryContext caller = CurrentMemoryContext;
  StartTransactionCommand();
  std::deque<TestResource> res;
  std::vector<std::unique_ptr<DeletionProbe>> probes;
  const long live = Tracked::Live();
  for (int level = 1; level <= 4; ++level) {
    if (level > 1) BeginInternalSubTransaction("open");
    probes.push_back(std::make_unique<DeletionProbe>(CurTransactionContext));
    res.push_back({"level" + std::to_string(level)});
    RememberRecorded(CurrentResourceOwner, res.back(), &kLocksLo);
    for (Datum v = 1; v <= 35; ++v) RememberCounted(CurrentResourceOwner, static_cast<Datum>(level * 100) + v);
    ResourceOwnerAdopt(CurrentResourceOwner, std::make_unique<Tracked>("level object"));
    palloc(20000);
  }
  ASSERT_EQ(GetCurrentTransactionNestLevel(), 4);
  MessageCapture capture;
  AbortCurrentTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_FALSE(IsTransactionState());
  for (const TestResource& r : res) EXPECT_EQ(r.releases, 1) << r.label;
  EXPECT_EQ(CountedCounters().live(), 0u);
  EXPECT_EQ(Tracked::Live(), live);
  for (const auto& p : probes) EXPECT_EQ(p->fired(), 1);
  EXPECT_EQ(CurrentMemoryContext, caller);
  EXPECT_EQ(CurrentResourceOwner, nullptr);
}

// CommitTransactionCommand with a subtransaction open is an ERROR; the caller
// then aborts, and everything (both levels) is released once.
TEST_F(SubXactTest, CommitWithAnOpenSubtransactionIsAnError) {
  StartTransactionCommand();
  TestResource top{"top"}, sub{"sub"};
  RememberRecorded(CurrentResourceOwner, top, &kAfterMid);
  BeginInternalSubTransaction("left open");
  RememberRecorded(CurrentResourceOwner, sub, &kAfterMid);
  auto err = CatchError([] { CommitTransactionCommand(); });
  ASSERT_TRUE(err.has_value());
  EXPECT_FALSE(err->message().empty());
  EXPECT_TRUE(IsTransactionState()) << "the failed commit must leave the transaction for the caller to abort";
  EXPECT_EQ(top.releases, 0);
  EXPECT_EQ(sub.releases, 0);
  MessageCapture capture;
  AbortCurrentTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(top.releases, 1);
  EXPECT_EQ(sub.releases, 1);
}

// Ending a subtransaction that is not there, or starting one outside a
// transaction, is an ERROR and changes nothing.
TEST_F(SubXactTest, SubtransactionCallsWithoutOneAreErrors) {
  EXPECT_TRUE(CatchError([] { BeginInternalSubTransaction("nowhere"); }).has_value());
  EXPECT_FALSE(IsTransactionState());
  EXPECT_TRUE(CatchError([] { ReleaseCurrentSubTransaction(); }).has_value());
  EXPECT_TRUE(CatchError([] { RollbackAndReleaseCurrentSubTransaction(); }).has_value());
  EXPECT_FALSE(IsTransactionState());

  StartTransactionCommand();
  const ResourceOwner owner = CurrentResourceOwner;
  EXPECT_TRUE(CatchError([] { ReleaseCurrentSubTransaction(); }).has_value());
  EXPECT_TRUE(CatchError([] { RollbackAndReleaseCurrentSubTransaction(); }).has_value());
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 1);
  EXPECT_EQ(CurrentResourceOwner, owner);
  CommitTransactionCommand();
}

// The exception-block pattern (PL/pgSQL's): begin a subtransaction, fail
// inside it, catch, roll it back, carry on in the parent — many times in one
// transaction without growing anything.
TEST_F(SubXactTest, ExceptionBlockPatternRepeated) {
  StartTransactionCommand();
  const ResourceOwner top_owner = CurrentResourceOwner;
  MemoryContext outer = CurrentMemoryContext;
  std::size_t caught = 0;
  for (int i = 0; i < 2000; ++i) {
    BeginInternalSubTransaction("block");
    try {
      RememberCounted(CurrentResourceOwner, static_cast<Datum>(i + 1));
      palloc(static_cast<std::size_t>(100 + i));
      if (i % 3 != 2) ereport(ERROR, errmsg("block %d failed", i));
      ReleaseCurrentSubTransaction();
    } catch (const Error&) {
      ++caught;
      RollbackAndReleaseCurrentSubTransaction();
    }
    MemoryContextSwitchTo(outer);
    ASSERT_EQ(GetCurrentTransactionNestLevel(), 1);
    ASSERT_EQ(CurrentResourceOwner, top_owner);
  }
  EXPECT_EQ(caught, 1334u);
  // The released blocks' resources were moved to the top's owner.
  EXPECT_EQ(ResourceOwnerCount(top_owner), 2000u - caught);
  AbortCurrentTransaction();
}

}  // namespace
}  // namespace grove::test
