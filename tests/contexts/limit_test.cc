// Per-context limits (MemoryContextSetLimit): a cap on the bytes a subtree
// may hold. Exceeding it is an out-of-memory ERROR naming the capped
// context; NO_OOM returns nullptr; a cap below current holdings is refused.
#include "allocator_checks.h"

namespace grove::test {
namespace {

constexpr std::size_t kLimit = 256 * 1024;

class LimitTest : public ContextTest {
 protected:
  void SetUp() override {
    ContextTest::SetUp();
    capped_ = AllocSetContextCreate(TopMemoryContext, "capped", ALLOCSET_DEFAULT_SIZES);
  }
  void TearDown() override {
    MemoryContextDelete(capped_);
    ContextTest::TearDown();
  }
  MemoryContext capped_ = nullptr;
};

// A limit is reported back; 0 means none.
TEST_F(LimitTest, SetAndGet) {
  EXPECT_EQ(MemoryContextGetLimit(capped_), 0u);
  MemoryContextSetLimit(capped_, kLimit);
  EXPECT_EQ(MemoryContextGetLimit(capped_), kLimit);
  MemoryContextSetLimit(capped_, 2 * kLimit);
  EXPECT_EQ(MemoryContextGetLimit(capped_), 2 * kLimit);
  MemoryContextSetLimit(capped_, 0);
  EXPECT_EQ(MemoryContextGetLimit(capped_), 0u);
}

// Allocating in the capped context itself until the cap: the subtree never
// holds more than the limit, and the failing request is an ERROR 53200
// "out of memory" whose detail names the request, the context and the cap.
TEST_F(LimitTest, ExceedingIsOutOfMemory) {
  MemoryContextSetLimit(capped_, kLimit);
  std::optional<Error> e;
  for (int i = 0; i < 1000 && !e; ++i) {
    e = CatchError([&] { MemoryContextAlloc(capped_, 10000); });
    ASSERT_LE(MemoryContextMemAllocated(capped_, true), kLimit);
  }
  ASSERT_TRUE(e.has_value()) << "the limit was never reached";
  EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY) << e->sqlstate().c_str();
  EXPECT_EQ(e->message(), "out of memory");
  EXPECT_TRUE(Contains(e->detail(), "Failed on request of size 10000 in memory context \"capped\"")) << e->detail();
  EXPECT_TRUE(Contains(e->detail(), std::to_string(kLimit))) << "the limit is named: " << e->detail();
}

// A child's allocations count against its parent's limit; the error names
// the requesting child and the capped parent.
TEST_F(LimitTest, ChildAllocationCountsAgainstParent) {
  MemoryContextSetLimit(capped_, kLimit);
  MemoryContext child = AllocSetContextCreate(capped_, "child", ALLOCSET_DEFAULT_SIZES);
  MemoryContext grandchild = GenerationContextCreate(child, "grandchild", ALLOCSET_DEFAULT_SIZES);
  std::optional<Error> e;
  for (int i = 0; i < 1000 && !e; ++i) {
    e = CatchError([&] { MemoryContextAlloc(grandchild, 20000); });
    ASSERT_LE(MemoryContextMemAllocated(capped_, true), kLimit);
  }
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY);
  EXPECT_EQ(e->message(), "out of memory");
  EXPECT_TRUE(Contains(e->detail(), "\"grandchild\"")) << e->detail();
  EXPECT_TRUE(Contains(e->detail(), "\"capped\"")) << e->detail();
  // The child still works for requests that fit in its free space.
  MemoryContextReset(grandchild);
  void* p = MemoryContextAlloc(grandchild, 100);
  Fill(p, 100, 1);
  EXPECT_TRUE(Intact(p, 100, 1));
}

// The tightest of nested limits applies.
TEST_F(LimitTest, NestedLimitsTightestWins) {
  MemoryContextSetLimit(capped_, 4 * kLimit);
  MemoryContext inner = AllocSetContextCreate(capped_, "inner", ALLOCSET_DEFAULT_SIZES);
  MemoryContextSetLimit(inner, kLimit);
  std::optional<Error> e;
  for (int i = 0; i < 1000 && !e; ++i) e = CatchError([&] { MemoryContextAlloc(inner, 10000); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(Contains(e->detail(), "\"inner\"")) << e->detail();
  EXPECT_LE(MemoryContextMemAllocated(inner, true), kLimit);
  // The outer one still has room for its own allocations.
  void* p = MemoryContextAlloc(capped_, 100000);
  EXPECT_NE(p, nullptr);
}

// With MCXT_ALLOC_NO_OOM an over-limit request returns nullptr, and the
// context keeps working.
TEST_F(LimitTest, NoOomReturnsNull) {
  MemoryContextSetLimit(capped_, kLimit);
  void* p = MemoryContextAllocExtended(capped_, 2 * kLimit, MCXT_ALLOC_NO_OOM);
  EXPECT_EQ(p, nullptr);
  void* q = MemoryContextAllocExtended(capped_, 1000, MCXT_ALLOC_NO_OOM);
  ASSERT_NE(q, nullptr);
  Fill(q, 1000, 2);
  EXPECT_TRUE(Intact(q, 1000, 2));
}

// repalloc beyond the limit fails and leaves the chunk as it was.
TEST_F(LimitTest, RepallocBeyondLimitKeepsChunk) {
  MemoryContextSetLimit(capped_, kLimit);
  void* p = MemoryContextAlloc(capped_, 50000);
  Fill(p, 50000, 4);
  auto e = CatchError([&] { (void)repalloc(p, 2 * kLimit); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY);
  EXPECT_TRUE(Intact(p, 50000, 4));
  EXPECT_EQ(repalloc_extended(p, 2 * kLimit, MCXT_ALLOC_NO_OOM), nullptr);
  EXPECT_TRUE(Intact(p, 50000, 4));
  pfree(p);
}

// Setting a limit below what the subtree holds is an ERROR and changes nothing.
TEST_F(LimitTest, LimitBelowHoldingsIsAnError) {
  MemoryContext child = AllocSetContextCreate(capped_, "child", ALLOCSET_DEFAULT_SIZES);
  MemoryContextAlloc(child, 100000);
  const std::size_t held = MemoryContextMemAllocated(capped_, true);
  EXPECT_TRUE(CatchError([&] { MemoryContextSetLimit(capped_, held - 1); }).has_value());
  EXPECT_EQ(MemoryContextGetLimit(capped_), 0u);
  MemoryContextSetLimit(capped_, 10 * kLimit);
  EXPECT_TRUE(CatchError([&] { MemoryContextSetLimit(capped_, held / 2); }).has_value());
  EXPECT_EQ(MemoryContextGetLimit(capped_), 10 * kLimit) << "a refused change keeps the old limit";
  MemoryContextSetLimit(capped_, held);  // exactly what it holds is fine
  EXPECT_EQ(MemoryContextGetLimit(capped_), held);
}

// Removing the limit (0) lets allocations through again.
TEST_F(LimitTest, RemovingTheLimit) {
  MemoryContextSetLimit(capped_, kLimit);
  EXPECT_TRUE(CatchError([&] { MemoryContextAlloc(capped_, 2 * kLimit); }).has_value());
  MemoryContextSetLimit(capped_, 0);
  void* p = MemoryContextAlloc(capped_, 2 * kLimit);
  Fill(p, 2 * kLimit, 3);
  EXPECT_TRUE(Intact(p, 2 * kLimit, 3));
}

// Freeing, resetting or deleting inside the subtree gives room back.
TEST_F(LimitTest, FreeingGivesRoomBack) {
  MemoryContextSetLimit(capped_, kLimit);
  MemoryContext child = AllocSetContextCreate(capped_, "child", ALLOCSET_DEFAULT_SIZES);
  void* big = MemoryContextAlloc(child, kLimit / 2);
  EXPECT_TRUE(CatchError([&] { MemoryContextAlloc(capped_, kLimit / 2); }).has_value());
  pfree(big);
  void* again = MemoryContextAlloc(capped_, kLimit / 2);
  pfree(again);
  big = MemoryContextAlloc(child, kLimit / 2);
  MemoryContextDelete(child);
  again = MemoryContextAlloc(capped_, kLimit / 2);
  EXPECT_NE(again, nullptr);
}

// Creating a context under a capped parent whose limit leaves no room for
// the new context's first block is an out-of-memory ERROR; nothing is
// created.
TEST_F(LimitTest, CreatingAContextCountsAgainstTheLimit) {
  const std::size_t held = MemoryContextMemAllocated(capped_, true);
  MemoryContextSetLimit(capped_, held + 1024);
  auto e = CatchError([&] { (void)AllocSetContextCreate(capped_, "too big", 0, 64 * 1024, 1024 * 1024); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY) << e->sqlstate().c_str();
  EXPECT_TRUE(MemoryContextIsEmpty(capped_)) << "no child was linked";
  EXPECT_EQ(MemoryContextMemAllocated(capped_, true), held);
  // The recyclable shapes are refused the same way.
  EXPECT_TRUE(CatchError([&] { (void)AllocSetContextCreate(capped_, "default", ALLOCSET_DEFAULT_SIZES); }).has_value());
  EXPECT_TRUE(CatchError([&] { (void)GenerationContextCreate(capped_, "gen", ALLOCSET_DEFAULT_SIZES); }).has_value());
  EXPECT_TRUE(MemoryContextIsEmpty(capped_));
}

// Moving a subtree under a capped parent counts it; a move that would
// exceed the cap is refused and leaves the tree unchanged.
TEST_F(LimitTest, SetParentChargesTheNewLimit) {
  MemoryContextSetLimit(capped_, kLimit);
  MemoryContext small = AllocSetContextCreate(TopMemoryContext, "small", ALLOCSET_SMALL_SIZES);
  MemoryContext big = AllocSetContextCreate(TopMemoryContext, "big", ALLOCSET_DEFAULT_SIZES);
  MemoryContextAlloc(big, 2 * kLimit);
  const std::size_t before = MemoryContextMemAllocated(capped_, true);
  MemoryContextSetParent(small, capped_);
  EXPECT_EQ(MemoryContextMemAllocated(capped_, true), before + MemoryContextMemAllocated(small, true));
  auto e = CatchError([&] { MemoryContextSetParent(big, capped_); });
  EXPECT_TRUE(e.has_value());
  EXPECT_EQ(MemoryContextGetParent(big), TopMemoryContext);
  // Moving back out releases the charge.
  MemoryContextSetParent(small, TopMemoryContext);
  EXPECT_EQ(MemoryContextMemAllocated(capped_, true), before);
  MemoryContextDelete(small);
  MemoryContextDelete(big);
}

// A limit on a context of every kind (the block size of the kind counts).
TEST_F(LimitTest, EveryKindHonoursItsLimit) {
  for (Kind k : AllKinds()) {
    SCOPED_TRACE(KindName(k));
    MemoryContext c = CreateContext(k, capped_, "limited kind");
    const std::size_t held = MemoryContextMemAllocated(c, true);
    MemoryContextSetLimit(c, held + 200 * 1024);
    std::optional<Error> e;
    for (int i = 0; i < 100000 && !e; ++i) {
      e = CatchError([&] { MemoryContextAlloc(c, KindAnySize(k) ? 1000 : kDefaultSlabChunk); });
      ASSERT_LE(MemoryContextMemAllocated(c, true), held + 200 * 1024);
    }
    ASSERT_TRUE(e.has_value());
    EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY);
    EXPECT_TRUE(Contains(e->detail(), "\"limited kind\"")) << e->detail();
    MemoryContextDelete(c);
  }
}

// Deleting a context that carries its own limit, of every kind (and an
// AllocSet of a shape that is not recycled): its bytes leave the parent's
// subtree and nothing reads the freed context afterwards (ASan checks that).
TEST_F(LimitTest, DeletingALimitedContext) {
  const std::size_t before = MemoryContextMemAllocated(capped_, true);
  for (Kind k : AllKinds()) {
    SCOPED_TRACE(KindName(k));
    MemoryContext c = CreateContext(k, capped_, "limited and deleted");
    MemoryContextSetLimit(c, 1 << 20);
    for (int i = 0; i < 100; ++i) MemoryContextAlloc(c, KindAnySize(k) ? 3000 : kDefaultSlabChunk);
    MemoryContextDelete(c);
    EXPECT_EQ(MemoryContextMemAllocated(capped_, true), before);
  }
  MemoryContext odd = AllocSetContextCreate(capped_, "odd shape", 0, 16 * 1024, 64 * 1024);
  MemoryContextSetLimit(odd, 1 << 20);
  MemoryContextAlloc(odd, 50000);
  MemoryContextDelete(odd);
  EXPECT_EQ(MemoryContextMemAllocated(capped_, true), before);
}

// A limited context below a limited parent, deleted with the parent.
TEST_F(LimitTest, DeletingNestedLimitedContexts) {
  MemoryContextSetLimit(capped_, 8 << 20);
  MemoryContext mid = GenerationContextCreate(capped_, "mid", ALLOCSET_DEFAULT_SIZES);
  MemoryContextSetLimit(mid, 4 << 20);
  MemoryContext leaf = BumpContextCreate(mid, "leaf", ALLOCSET_DEFAULT_SIZES);
  MemoryContextSetLimit(leaf, 1 << 20);
  MemoryContextAlloc(leaf, 100000);
  MemoryContextAlloc(mid, 100000);
  const std::size_t own = MemoryContextMemAllocated(capped_, false);
  MemoryContextDelete(mid);
  EXPECT_EQ(MemoryContextMemAllocated(capped_, true), own);
}

// Accounting stays exact with limits in the tree (the limited context keeps
// its subtree total itself).
TEST_F(LimitTest, AccountingExactWithLimits) {
  BlockCounter counter;
  {
    ScopedBlockHooks hooks(&counter);
    MemoryContext root = AllocSetContextCreate(TopMemoryContext, "limit accounting", 0, 16 * 1024, 1024 * 1024);
    MemoryContext a = AllocSetContextCreate(root, "a", ALLOCSET_DEFAULT_SIZES);
    MemoryContext b = AllocSetContextCreate(a, "b", ALLOCSET_DEFAULT_SIZES);
    MemoryContextSetLimit(a, 10 << 20);
    MemoryContextSetLimit(b, 1 << 20);
    for (int i = 0; i < 200; ++i) {
      MemoryContextAllocExtended(b, 3000, MCXT_ALLOC_NO_OOM);
      MemoryContextAlloc(a, 5000);
      ASSERT_EQ(counter.held(), MemoryContextMemAllocated(root, true));
    }
    MemoryContextSetLimit(b, 0);
    ASSERT_EQ(counter.held(), MemoryContextMemAllocated(root, true));
    MemoryContextSetLimit(a, 0);
    ASSERT_EQ(counter.held(), MemoryContextMemAllocated(root, true));
    MemoryContextDelete(root);
  }
  EXPECT_EQ(counter.acquired, counter.released);
}

}  // namespace
}  // namespace grove::test

namespace grove::test {
namespace {

// Shrinking a large chunk keeps it in place rather than needing a second
// block: under a limit that cannot hold both, it still succeeds.
TEST_F(LimitTest, ShrinkingALargeChunkNeverNeedsMoreMemory) {
  MemoryContextSetLimit(capped_, 16 << 20);
  char* p = static_cast<char*>(MemoryContextAlloc(capped_, 9 << 20));
  std::memset(p, 'a', 9 << 20);
  char* q = static_cast<char*>(repalloc(p, 8 << 20));
  EXPECT_EQ(q, p) << "a shrink to more than half stays in place";
  EXPECT_EQ(q[(8 << 20) - 1], 'a');
  pfree(q);
}

// A big shrink moves the chunk to give memory back, but when no new block
// can be had it stays where it is instead of failing.
TEST_F(LimitTest, BigShrinkStaysInPlaceWhenNoBlockCanBeHad) {
  char* p = static_cast<char*>(MemoryContextAlloc(capped_, 4 << 20));
  std::memset(p, 'b', 4 << 20);
  {
    BlockCounter counter;
    counter.refuse = true;
    ScopedBlockHooks hooks(&counter);
    char* q = static_cast<char*>(repalloc(p, 64 << 10));
    EXPECT_EQ(q, p);
    EXPECT_EQ(q[(64 << 10) - 1], 'b');
  }
  pfree(p);
}

// Blocks a reset kept for reuse count against a limit, but they must not
// cause an out-of-memory error: a refused block first trims them.
TEST_F(LimitTest, RetainedBlocksAreTrimmedBeforeALimitRefuses) {
  MemoryContext a = AllocSetContextCreate(capped_, "a", ALLOCSET_DEFAULT_SIZES);
  MemoryContext b = AllocSetContextCreate(capped_, "b", ALLOCSET_DEFAULT_SIZES);
  for (int i = 0; i < 1000; ++i) MemoryContextAlloc(a, 4000);  // ~4 MiB of ordinary blocks
  MemoryContextReset(a);
  const std::size_t retained = MemoryContextMemAllocated(a, false);
  ASSERT_GE(retained, std::size_t{2} << 20) << "the reset retained blocks";
  // b's blocks fit only if a's retained blocks go.
  MemoryContextSetLimit(capped_, MemoryContextMemAllocated(capped_, true) + (6 << 20));
  for (int i = 0; i < 1500; ++i) MemoryContextAlloc(b, 4000);  // ~6 MiB of chunks in ~8 MiB of blocks
  EXPECT_LT(MemoryContextMemAllocated(a, false), std::size_t{1} << 20) << "a's retained blocks were trimmed";
  EXPECT_LE(MemoryContextMemAllocated(capped_, true), MemoryContextGetLimit(capped_));
  MemoryContextDelete(a);
  MemoryContextDelete(b);
}

// Lowering the retention gives back what a reset already kept, at once.
TEST_F(LimitTest, LoweringRetentionTrimsAtOnce) {
  for (int i = 0; i < 1000; ++i) MemoryContextAlloc(capped_, 4000);
  MemoryContextReset(capped_);
  const std::size_t kept = MemoryContextMemAllocated(capped_, false);
  ASSERT_GT(kept, std::size_t{1} << 20);
  MemoryContextSetRetention(capped_, 0);
  EXPECT_LT(MemoryContextMemAllocated(capped_, false), std::size_t{64} << 10);
}

}  // namespace
}  // namespace grove::test
