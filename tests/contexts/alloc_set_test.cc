// AllocSet, the general-purpose allocator, under its three presets
// (DEFAULT, SMALL, START_SMALL): sizes across the 8 KiB chunk limit,
// alignment, repalloc, zeroing, free-list reuse, dedicated large blocks.
#include "allocator_checks.h"

namespace grove::test {
namespace {

class AllocSetTest : public ContextTestWithParam<Kind> {
 protected:
  void SetUp() override {
    ContextTestWithParam<Kind>::SetUp();
    ctx_ = CreateContext(GetParam(), TopMemoryContext, "alloc set test");
  }
  void TearDown() override {
    MemoryContextDelete(ctx_);
    ContextTestWithParam<Kind>::TearDown();
  }
  MemoryContext ctx_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(Presets, AllocSetTest,
                         ::testing::Values(Kind::kAllocSetDefault, Kind::kAllocSetSmall, Kind::kAllocSetStartSmall),
                         KindParamName);

// The context reports its type, name and parent.
TEST_P(AllocSetTest, Identity) {
  EXPECT_STREQ(MemoryContextGetTypeName(ctx_), "AllocSet");
  EXPECT_STREQ(MemoryContextGetName(ctx_), "alloc set test");
  EXPECT_EQ(MemoryContextGetParent(ctx_), TopMemoryContext);
  EXPECT_TRUE(MemoryContextIsEmpty(ctx_));
}

// Every size from 1 B to 20000 B and 1 MiB: aligned to 8, content kept,
// chunk context and space right, frees in any order.
TEST_P(AllocSetTest, SizesAcrossChunkLimit) { CheckSizesAcrossChunkLimit(ctx_, /*frees=*/true); }

// The same through palloc() and CurrentMemoryContext.
TEST_P(AllocSetTest, PallocUsesCurrentContext) {
  MemoryContext old = MemoryContextSwitchTo(ctx_);
  void* small = palloc(100);
  void* large = palloc(100000);
  MemoryContextSwitchTo(old);
  EXPECT_EQ(GetMemoryChunkContext(small), ctx_);
  EXPECT_EQ(GetMemoryChunkContext(large), ctx_);
  pfree(small);
  pfree(large);
}

// palloc_aligned 16..4096: aligned, content kept, pfree / chunk context /
// chunk space work, repalloc keeps content and alignment.
TEST_P(AllocSetTest, AlignedAllocations) { CheckAligned(ctx_, /*frees=*/true, /*reallocs=*/true); }

// Alignments of 8 or less are plain allocations.
TEST_P(AllocSetTest, SmallAlignments) { CheckSmallAlignments(ctx_, true); }

// palloc_aligned with MCXT_ALLOC_ZERO zeroes.
TEST_P(AllocSetTest, AlignedZeroed) { CheckAlignedZero(ctx_); }

// palloc_aligned through CurrentMemoryContext.
TEST_P(AllocSetTest, PallocAlignedUsesCurrentContext) {
  MemoryContext old = MemoryContextSwitchTo(ctx_);
  void* p = palloc_aligned(500, 256, 0);
  MemoryContextSwitchTo(old);
  EXPECT_TRUE(IsAligned(p, 256));
  EXPECT_EQ(GetMemoryChunkContext(p), ctx_);
  pfree(p);
}

// repalloc growing and shrinking across small and large (> 8 KiB) chunks.
TEST_P(AllocSetTest, RepallocGrowAndShrink) { CheckRepallocCycle(ctx_); }

// Many chunks grown in turns keep their contents.
TEST_P(AllocSetTest, InterleavedRepalloc) { CheckInterleavedRepalloc(ctx_); }

// repalloc to the same size, small and large.
TEST_P(AllocSetTest, RepallocSameSize) {
  CheckRepallocSameSize(ctx_, 100);
  CheckRepallocSameSize(ctx_, 50000);
}

// repalloc of a large chunk into a small one and back.
TEST_P(AllocSetTest, RepallocLargeToSmallAndBack) {
  void* p = MemoryContextAlloc(ctx_, 50000);
  Fill(p, 50000, 3);
  p = repalloc(p, 64);
  ASSERT_TRUE(Intact(p, 64, 3));
  p = repalloc(p, 70000);
  ASSERT_TRUE(Intact(p, 64, 3));
  pfree(p);
}

// Zero-size requests are valid and distinct.
TEST_P(AllocSetTest, ZeroSize) { CheckZeroSize(ctx_, true); }

// palloc0 and friends zero reused memory.
TEST_P(AllocSetTest, Zeroed) { CheckZeroed(ctx_, true); }

// A freed small chunk goes on its free list and serves the next request of
// the same size class.
TEST_P(AllocSetTest, FreedChunkIsReused) {
  void* a = MemoryContextAlloc(ctx_, 100);
  void* keep = MemoryContextAlloc(ctx_, 100);
  pfree(a);
  void* b = MemoryContextAlloc(ctx_, 120);  // same power-of-two class (128)
  EXPECT_EQ(a, b);
  pfree(b);
  pfree(keep);
}

// Freed small chunks are counted as free chunks (and free space) in the
// counters; a reset clears the free lists.
TEST_P(AllocSetTest, FreedChunksCounted) {
  std::vector<void*> ps;
  for (int i = 0; i < 100; ++i) ps.push_back(MemoryContextAlloc(ctx_, 64));
  const MemoryContextCounters before = MemoryContextGetCounters(ctx_);
  for (int i = 0; i < 100; i += 2) pfree(ps[i]);
  const MemoryContextCounters after = MemoryContextGetCounters(ctx_);
  EXPECT_GE(after.freechunks, before.freechunks + 50);
  EXPECT_GE(after.freespace, before.freespace + 50 * 64);
  EXPECT_EQ(after.totalspace, before.totalspace);
  MemoryContextReset(ctx_);
  EXPECT_EQ(MemoryContextGetCounters(ctx_).freechunks, 0u);
}

// A chunk above the chunk limit lives on a dedicated block that is given
// back at once on pfree: the context's allocation grows by at least the
// request and returns exactly to where it was.
TEST_P(AllocSetTest, LargeChunkBlockReleasedOnFree) {
  const std::size_t before = MemoryContextMemAllocated(ctx_, false);
  void* p = MemoryContextAlloc(ctx_, 100000);
  EXPECT_GE(MemoryContextMemAllocated(ctx_, false), before + 100000);
  pfree(p);
  EXPECT_EQ(MemoryContextMemAllocated(ctx_, false), before);
}

// Reset frees everything; the context is usable again and empty.
TEST_P(AllocSetTest, ResetThenReuse) {
  for (int round = 0; round < 3; ++round) {
    std::vector<void*> ps;
    for (int i = 0; i < 2000; ++i) {
      ps.push_back(MemoryContextAlloc(ctx_, 1 + (i * 37) % 3000));
      Fill(ps.back(), 1 + (i * 37) % 3000, i);
    }
    for (int i = 0; i < 2000; ++i) ASSERT_TRUE(Intact(ps[i], 1 + (i * 37) % 3000, i));
    EXPECT_FALSE(MemoryContextIsEmpty(ctx_));
    MemoryContextReset(ctx_);
    EXPECT_TRUE(MemoryContextIsEmpty(ctx_));
  }
}

// With retention 0 (PostgreSQL's behaviour) a reset keeps only the keeper
// block: the context holds what it held right after creation.
TEST_P(AllocSetTest, ResetKeepsOnlyKeeperWithoutRetention) {
  MemoryContextSetRetention(ctx_, 0);
  const std::size_t initial = MemoryContextMemAllocated(ctx_, false);
  EXPECT_GT(initial, 0u) << "the keeper block is allocated with the context";
  for (int i = 0; i < 5000; ++i) MemoryContextAlloc(ctx_, 200);
  MemoryContextAlloc(ctx_, 100000);
  MemoryContextReset(ctx_);
  EXPECT_EQ(MemoryContextMemAllocated(ctx_, false), initial);
}

// pstrdup / pnstrdup / psprintf / MemoryContextStrdup copy into the context.
TEST_P(AllocSetTest, StringHelpers) {
  char* a = MemoryContextStrdup(ctx_, "hello");
  EXPECT_STREQ(a, "hello");
  EXPECT_EQ(GetMemoryChunkContext(a), ctx_);
  MemoryContext old = MemoryContextSwitchTo(ctx_);
  char* b = pstrdup("world");
  char* c = pnstrdup("abcdef", 3);
  char* d = pnstrdup("ab", 10);
  char* e = psprintf("%s-%d-%05.1f", "x", 42, 3.14159);
  std::string long_text(5000, 'z');
  char* f = psprintf("[%s]", long_text.c_str());
  MemoryContextSwitchTo(old);
  EXPECT_STREQ(b, "world");
  EXPECT_STREQ(c, "abc");
  EXPECT_STREQ(d, "ab");
  EXPECT_STREQ(e, "x-42-003.1");
  EXPECT_EQ(std::string(f), "[" + long_text + "]");
  for (char* s : {a, b, c, d, e, f}) EXPECT_EQ(GetMemoryChunkContext(s), ctx_);
}

// GetMemoryChunkSpace covers at least the request plus the header, and a
// small chunk's space is the power-of-two class it was served from.
TEST_P(AllocSetTest, ChunkSpaceOfSmallChunks) {
  for (std::size_t size : {1u, 8u, 9u, 100u, 1000u}) {
    void* p = MemoryContextAlloc(ctx_, size);
    const std::size_t space = GetMemoryChunkSpace(p);
    EXPECT_GE(space, size + 8) << size;
    EXPECT_LE(space, 2 * size + 8 + 16 + 8) << "power-of-two rounding at most doubles; size " << size;
    pfree(p);
  }
}

// Creating and deleting many contexts of the same shape works (deleted
// contexts may be recycled): each new one is empty and usable.
TEST_P(AllocSetTest, ManyCreateDeleteCycles) {
  for (int i = 0; i < 300; ++i) {
    MemoryContext c = CreateContext(GetParam(), ctx_, "cycled");
    EXPECT_TRUE(MemoryContextIsEmpty(c));
    EXPECT_EQ(MemoryContextGetParent(c), ctx_);
    void* p = MemoryContextAlloc(c, 100 + i);
    Fill(p, 100 + i, i);
    EXPECT_TRUE(Intact(p, 100 + i, i));
    if (i % 3 == 0) {
      MemoryContextDelete(c);
    }
  }
  MemoryContextDeleteChildren(ctx_);
  EXPECT_TRUE(MemoryContextIsEmpty(ctx_));
}

// A recycled context carries nothing over: no callbacks, no identifier, no
// limit, no children, its new name and parent.
TEST_P(AllocSetTest, RecycledContextIsClean) {
  static bool ran = false;
  ran = false;
  MemoryContext c = CreateContext(GetParam(), ctx_, "first life");
  static MemoryContextCallback cb{[](void*) { ran = true; }, nullptr, nullptr};
  MemoryContextRegisterResetCallback(c, &cb);
  MemoryContextSetIdentifier(c, "some ident");
  MemoryContextSetLimit(c, 1 << 20);
  CreateContext(Kind::kAllocSetDefault, c, "its child");
  MemoryContextDelete(c);
  EXPECT_TRUE(ran);
  ran = false;
  MemoryContext d = CreateContext(GetParam(), TopMemoryContext, "second life");
  EXPECT_STREQ(MemoryContextGetName(d), "second life");
  EXPECT_EQ(MemoryContextGetParent(d), TopMemoryContext);
  EXPECT_EQ(MemoryContextGetLimit(d), 0u);
  EXPECT_TRUE(MemoryContextIsEmpty(d));
  MemoryContextDelete(d);
  EXPECT_FALSE(ran) << "the first life's callback must not run again";
}

// Creation with custom block sizes (not a preset) works too.
TEST_F(ContextTest, AllocSetCustomSizes) {
  MemoryContext c = AllocSetContextCreate(TopMemoryContext, "custom", 64 * 1024, 16 * 1024, 256 * 1024);
  EXPECT_GE(MemoryContextMemAllocated(c, false), 64u * 1024) << "minContextSize is allocated up front";
  CheckSizesAcrossChunkLimit(c, true);
  MemoryContextDelete(c);
}

}  // namespace
}  // namespace grove::test
