// Generation: chunks freed roughly in allocation order; blocks are given
// back (or kept as keeper/spare) when all their chunks are freed.
#include "allocator_checks.h"

namespace grove::test {
namespace {

class GenerationTest : public ContextTest {
 protected:
  void SetUp() override {
    ContextTest::SetUp();
    ctx_ = GenerationContextCreate(TopMemoryContext, "generation test", ALLOCSET_DEFAULT_SIZES);
  }
  void TearDown() override {
    MemoryContextDelete(ctx_);
    ContextTest::TearDown();
  }
  MemoryContext ctx_ = nullptr;
};

// The context reports its type and name.
TEST_F(GenerationTest, Identity) {
  EXPECT_STREQ(MemoryContextGetTypeName(ctx_), "Generation");
  EXPECT_STREQ(MemoryContextGetName(ctx_), "generation test");
  EXPECT_TRUE(MemoryContextIsEmpty(ctx_));
}

// Every size from 1 B to 20000 B and 1 MiB, content kept, freed in any order.
TEST_F(GenerationTest, SizesAcrossChunkLimit) { CheckSizesAcrossChunkLimit(ctx_, true); }

// palloc_aligned 16..4096 on Generation chunks.
TEST_F(GenerationTest, AlignedAllocations) { CheckAligned(ctx_, true, true); }

// Alignments of 8 or less.
TEST_F(GenerationTest, SmallAlignments) { CheckSmallAlignments(ctx_, true); }

// Aligned and zeroed.
TEST_F(GenerationTest, AlignedZeroed) { CheckAlignedZero(ctx_); }

// repalloc grows and shrinks across small and large chunks, keeping content.
TEST_F(GenerationTest, RepallocGrowAndShrink) { CheckRepallocCycle(ctx_); }

// Many chunks grown in turns.
TEST_F(GenerationTest, InterleavedRepalloc) { CheckInterleavedRepalloc(ctx_); }

// repalloc to the same size keeps the content.
TEST_F(GenerationTest, RepallocSameSize) {
  CheckRepallocSameSize(ctx_, 100);
  CheckRepallocSameSize(ctx_, 50000);
}

// Zero-size requests.
TEST_F(GenerationTest, ZeroSize) { CheckZeroSize(ctx_, true); }

// Zeroing variants.
TEST_F(GenerationTest, Zeroed) { CheckZeroed(ctx_, true); }

// FIFO use, the pattern Generation is for: after allocating ~2 MiB and
// freeing everything in allocation order, at most the keeper, the current
// and one spare block remain.
TEST_F(GenerationTest, FifoFreeGivesBlocksBack) {
  std::vector<void*> ps;
  for (int i = 0; i < 20000; ++i) {
    ps.push_back(MemoryContextAlloc(ctx_, 100));
    Fill(ps.back(), 100, i);
  }
  EXPECT_GT(MemoryContextGetCounters(ctx_).nblocks, 3u);
  for (int i = 0; i < 20000; ++i) {
    ASSERT_TRUE(Intact(ps[i], 100, i));
    pfree(ps[i]);
  }
  EXPECT_LE(MemoryContextGetCounters(ctx_).nblocks, 3u);
  EXPECT_LE(MemoryContextMemAllocated(ctx_, false), 3u * 8 * 1024 * 1024);
}

// A sliding window (free the oldest, allocate a new one) runs in bounded memory.
TEST_F(GenerationTest, SlidingWindowIsBounded) {
  std::vector<void*> ring(1000);
  for (int i = 0; i < 1000; ++i) ring[i] = MemoryContextAlloc(ctx_, 16 + i % 241);
  std::size_t high = 0;
  for (int t = 0; t < 200000; ++t) {
    pfree(ring[t % 1000]);
    ring[t % 1000] = MemoryContextAlloc(ctx_, 16 + (t * 7) % 241);
    if (t > 50000) high = std::max(high, MemoryContextMemAllocated(ctx_, false));
  }
  // 1000 live chunks of < 300 B: a few blocks, far below what 200,000 chunks would need.
  EXPECT_LT(high, std::size_t{4} * 1024 * 1024);
  for (void* p : ring) pfree(p);
}

// Reset frees everything; the context is usable again.
TEST_F(GenerationTest, ResetThenReuse) {
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 3000; ++i) Fill(MemoryContextAlloc(ctx_, 1 + i % 500), 1 + i % 500, i);
    MemoryContextAlloc(ctx_, 200000);
    EXPECT_FALSE(MemoryContextIsEmpty(ctx_));
    MemoryContextReset(ctx_);
    EXPECT_TRUE(MemoryContextIsEmpty(ctx_));
  }
}

// With retention 0 a reset returns to the allocation right after creation.
TEST_F(GenerationTest, ResetWithoutRetention) {
  MemoryContextSetRetention(ctx_, 0);
  const std::size_t initial = MemoryContextMemAllocated(ctx_, false);
  for (int i = 0; i < 5000; ++i) MemoryContextAlloc(ctx_, 300);
  MemoryContextReset(ctx_);
  EXPECT_EQ(MemoryContextMemAllocated(ctx_, false), initial);
}

// Generation with the small preset and with a minimum size works the same.
TEST_F(ContextTest, GenerationOtherSizes) {
  MemoryContext a = GenerationContextCreate(TopMemoryContext, "gen small", ALLOCSET_SMALL_SIZES);
  CheckSizesAcrossChunkLimit(a, true);
  CheckRepallocCycle(a);
  MemoryContextDelete(a);
  MemoryContext b = GenerationContextCreate(TopMemoryContext, "gen min", 64 * 1024, 8 * 1024, 1024 * 1024);
  EXPECT_GE(MemoryContextMemAllocated(b, false), 64u * 1024);
  CheckSizesAcrossChunkLimit(b, true);
  MemoryContextDelete(b);
}

}  // namespace
}  // namespace grove::test
