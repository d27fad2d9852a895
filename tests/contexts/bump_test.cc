// Bump: headerless chunks, a pointer bump per allocation; only reset and
// delete free memory. pfree, repalloc, GetMemoryChunkContext and
// GetMemoryChunkSpace of a bump chunk are errors (detected in checking builds).
#include "allocator_checks.h"

namespace grove::test {
namespace {

constexpr const char* kNotSupported = "not supported by the bump memory allocator";

class BumpTest : public ContextTest {
 protected:
  void SetUp() override {
    ContextTest::SetUp();
    ctx_ = BumpContextCreate(TopMemoryContext, "bump test", ALLOCSET_DEFAULT_SIZES);
  }
  void TearDown() override {
    MemoryContextDelete(ctx_);
    ContextTest::TearDown();
  }
  MemoryContext ctx_ = nullptr;
};

// The context reports its type and name.
TEST_F(BumpTest, Identity) {
  EXPECT_STREQ(MemoryContextGetTypeName(ctx_), "Bump");
  EXPECT_STREQ(MemoryContextGetName(ctx_), "bump test");
  EXPECT_TRUE(MemoryContextIsEmpty(ctx_));
}

// Every size from 1 B to 20000 B and 1 MiB: aligned, distinct, content kept.
TEST_F(BumpTest, SizesAcrossChunkLimit) { CheckSizesAcrossChunkLimit(ctx_, /*frees=*/false); }

// palloc_aligned 16..4096: aligned and content kept.
TEST_F(BumpTest, AlignedAllocations) { CheckAligned(ctx_, /*frees=*/false, /*reallocs=*/false); }

// Alignments of 8 or less.
TEST_F(BumpTest, SmallAlignments) { CheckSmallAlignments(ctx_, false); }

// Aligned and zeroed.
TEST_F(BumpTest, AlignedZeroed) { CheckAlignedZero(ctx_); }

// Zero-size requests are valid and distinct.
TEST_F(BumpTest, ZeroSize) { CheckZeroSize(ctx_, false); }

// Zeroing variants (memory reused after a reset must come back zeroed).
TEST_F(BumpTest, Zeroed) {
  for (int i = 0; i < 100; ++i) std::memset(MemoryContextAlloc(ctx_, 3000), 0xEE, 3000);
  MemoryContextReset(ctx_);
  CheckZeroed(ctx_, false);
}

// Consecutive small allocations are packed: a bump allocator has no
// per-chunk header in ordinary builds, so 100 chunks of 8 B (well within the
// first block) sit 8 bytes apart.
TEST_F(BumpTest, ConsecutiveChunksArePacked) {
  if (mcxt::MemoryCheckingEnabled()) GTEST_SKIP() << "checking builds add a header to bump chunks";
  char* first = static_cast<char*>(MemoryContextAlloc(ctx_, 8));
  char* last = first;
  for (int i = 0; i < 99; ++i) last = static_cast<char*>(MemoryContextAlloc(ctx_, 8));
  EXPECT_EQ(last - first, 99 * 8);
}

// Reset frees everything; content written after a reset is intact.
TEST_F(BumpTest, ResetThenReuse) {
  for (int round = 0; round < 4; ++round) {
    std::vector<std::pair<void*, std::size_t>> ps;
    for (int i = 0; i < 5000; ++i) {
      const std::size_t size = 1 + (i * 53) % 900 + (i % 500 == 0 ? 30000 : 0);
      ps.emplace_back(MemoryContextAlloc(ctx_, size), size);
      Fill(ps.back().first, size, i + round);
    }
    for (int i = 0; i < 5000; ++i) ASSERT_TRUE(Intact(ps[i].first, ps[i].second, i + round));
    EXPECT_FALSE(MemoryContextIsEmpty(ctx_));
    MemoryContextReset(ctx_);
    EXPECT_TRUE(MemoryContextIsEmpty(ctx_));
  }
}

// With retention 0 a reset returns to the allocation right after creation.
TEST_F(BumpTest, ResetWithoutRetention) {
  MemoryContextSetRetention(ctx_, 0);
  const std::size_t initial = MemoryContextMemAllocated(ctx_, false);
  for (int i = 0; i < 5000; ++i) MemoryContextAlloc(ctx_, 300);
  MemoryContextAlloc(ctx_, 100000);
  MemoryContextReset(ctx_);
  EXPECT_EQ(MemoryContextMemAllocated(ctx_, false), initial);
}

// pfree of a bump chunk is an ERROR naming the bump allocator (checking builds).
TEST_F(BumpTest, PfreeIsAnError) {
  if (!mcxt::MemoryCheckingEnabled()) GTEST_SKIP() << "only detectable in checking builds";
  void* p = MemoryContextAlloc(ctx_, 64);
  Fill(p, 64, 1);
  auto e = CatchError([&] { pfree(p); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(Contains(e->message(), kNotSupported)) << e->message();
  EXPECT_TRUE(Intact(p, 64, 1)) << "the chunk is untouched";
  // The context still works.
  void* q = MemoryContextAlloc(ctx_, 64);
  Fill(q, 64, 2);
  EXPECT_TRUE(Intact(q, 64, 2));
  EXPECT_TRUE(Intact(p, 64, 1));
}

// pfree of a large bump chunk (on a dedicated block) is an ERROR too.
TEST_F(BumpTest, PfreeOfLargeChunkIsAnError) {
  if (!mcxt::MemoryCheckingEnabled()) GTEST_SKIP() << "only detectable in checking builds";
  void* p = MemoryContextAlloc(ctx_, 100000);
  auto e = CatchError([&] { pfree(p); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(Contains(e->message(), kNotSupported)) << e->message();
}

// repalloc of a bump chunk is an ERROR; the chunk is unchanged.
TEST_F(BumpTest, RepallocIsAnError) {
  if (!mcxt::MemoryCheckingEnabled()) GTEST_SKIP() << "only detectable in checking builds";
  void* p = MemoryContextAlloc(ctx_, 64);
  Fill(p, 64, 1);
  auto e = CatchError([&] { (void)repalloc(p, 128); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(Contains(e->message(), kNotSupported)) << e->message();
  EXPECT_TRUE(Intact(p, 64, 1));
}

// GetMemoryChunkContext of a bump chunk is an ERROR.
TEST_F(BumpTest, GetChunkContextIsAnError) {
  if (!mcxt::MemoryCheckingEnabled()) GTEST_SKIP() << "only detectable in checking builds";
  void* p = MemoryContextAlloc(ctx_, 64);
  auto e = CatchError([&] { (void)GetMemoryChunkContext(p); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(Contains(e->message(), kNotSupported)) << e->message();
}

// GetMemoryChunkSpace of a bump chunk is an ERROR.
TEST_F(BumpTest, GetChunkSpaceIsAnError) {
  if (!mcxt::MemoryCheckingEnabled()) GTEST_SKIP() << "only detectable in checking builds";
  void* p = MemoryContextAlloc(ctx_, 64);
  auto e = CatchError([&] { (void)GetMemoryChunkSpace(p); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(Contains(e->message(), kNotSupported)) << e->message();
}

// Bump with the small preset and with a minimum size.
TEST_F(ContextTest, BumpOtherSizes) {
  MemoryContext a = BumpContextCreate(TopMemoryContext, "bump small", ALLOCSET_SMALL_SIZES);
  CheckSizesAcrossChunkLimit(a, false);
  MemoryContextDelete(a);
  MemoryContext b = BumpContextCreate(TopMemoryContext, "bump min", 64 * 1024, 8 * 1024, 1024 * 1024);
  EXPECT_GE(MemoryContextMemAllocated(b, false), 64u * 1024);
  CheckSizesAcrossChunkLimit(b, false);
  MemoryContextDelete(b);
}

}  // namespace
}  // namespace grove::test
