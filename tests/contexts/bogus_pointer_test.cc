// pfree / repalloc / GetMemoryChunkContext / GetMemoryChunkSpace of a
// pointer grove did not hand out: an ERROR mentioning "invalid pointer",
// never a crash, and nothing is corrupted (the context keeps working).
//
// Checking builds detect every case (malloc'd, stack, interior, misaligned,
// already freed); other builds detect misaligned pointers and headers that
// read as reserved method ids (malloc'd, zeroed, wiped memory).
#include <cstdlib>

#include "allocator_checks.h"

namespace grove::test {
namespace {

constexpr const char* kInvalid = "invalid pointer";

#define SKIP_UNLESS_CHECKING()                                                      \
  do {                                                                              \
    if (!mcxt::MemoryCheckingEnabled()) GTEST_SKIP() << "exact detection needs a checking build"; \
  } while (0)

struct Live {
  void* p;
  std::size_t size;
  uint64_t seed;
};

class BogusPointerTest : public ContextTestWithParam<Kind> {
 protected:
  void SetUp() override {
    ContextTestWithParam<Kind>::SetUp();
    ctx_ = CreateContext(GetParam(), TopMemoryContext, "bogus test");
    for (int i = 0; i < 50; ++i) Allocate(Size(16 + i * 8));
    if (KindAnySize(GetParam())) Allocate(30000);
  }
  void TearDown() override {
    MemoryContextDelete(ctx_);
    ContextTestWithParam<Kind>::TearDown();
  }
  std::size_t Size(std::size_t wanted) const { return KindAnySize(GetParam()) ? wanted : kDefaultSlabChunk; }
  void* Allocate(std::size_t size) {
    void* p = MemoryContextAlloc(ctx_, size);
    Fill(p, size, ++seed_);
    live_.push_back({p, size, seed_});
    return p;
  }

  /// Every call on `p` raises an ERROR mentioning "invalid pointer".
  void ExpectRejected(void* p, const char* what) {
    SCOPED_TRACE(what);
    auto e = CatchError([&] { pfree(p); });
    ASSERT_TRUE(e.has_value()) << "pfree accepted " << what;
    EXPECT_TRUE(Contains(e->message(), kInvalid)) << e->message();
    e = CatchError([&] { (void)repalloc(p, 100); });
    ASSERT_TRUE(e.has_value()) << "repalloc accepted " << what;
    EXPECT_TRUE(Contains(e->message(), kInvalid)) << e->message();
    e = CatchError([&] { (void)GetMemoryChunkContext(p); });
    ASSERT_TRUE(e.has_value()) << "GetMemoryChunkContext accepted " << what;
    EXPECT_TRUE(Contains(e->message(), kInvalid)) << e->message();
    e = CatchError([&] { (void)GetMemoryChunkSpace(p); });
    ASSERT_TRUE(e.has_value()) << "GetMemoryChunkSpace accepted " << what;
    EXPECT_TRUE(Contains(e->message(), kInvalid)) << e->message();
  }

  /// Only pfree is tried (for pointers whose memory must not be read again).
  void ExpectPfreeRejected(void* p, const char* what) {
    SCOPED_TRACE(what);
    auto e = CatchError([&] { pfree(p); });
    ASSERT_TRUE(e.has_value()) << "pfree accepted " << what;
    EXPECT_TRUE(Contains(e->message(), kInvalid)) << e->message();
  }

  /// Nothing was corrupted: every live chunk is intact, new chunks can be
  /// allocated, written and freed, and the context check finds nothing.
  void ExpectHealthy() {
    for (const Live& l : live_) ASSERT_TRUE(Intact(l.p, l.size, l.seed));
    for (int i = 0; i < 200; ++i) Allocate(Size(8 + (i * 29) % 400));
    for (const Live& l : live_) ASSERT_TRUE(Intact(l.p, l.size, l.seed));
    MessageCapture capture;
    MemoryContextCheck(ctx_);
    EXPECT_TRUE(capture.reports.empty()) << capture.All();
    if (KindFrees(GetParam())) {
      for (const Live& l : live_) pfree(l.p);
      live_.clear();
      EXPECT_TRUE(capture.reports.empty()) << capture.All();
    }
  }

  MemoryContext ctx_ = nullptr;
  std::vector<Live> live_;
  uint64_t seed_ = 0;
};

INSTANTIATE_TEST_SUITE_P(AllKinds, BogusPointerTest, ::testing::ValuesIn(AllKinds()), KindParamName);

// Memory from malloc (small: a glibc header precedes it).
TEST_P(BogusPointerTest, MallocedSmall) {
  void* m = std::malloc(64);
  ExpectRejected(m, "a small malloc'd pointer");
  std::free(m);
  ExpectHealthy();
}

// Memory from malloc (large: mmapped by glibc, another header pattern).
TEST_P(BogusPointerTest, MallocedLarge) {
  void* m = std::malloc(4 << 20);
  ExpectRejected(m, "a large malloc'd pointer");
  std::free(m);
  ExpectHealthy();
}

// A pointer that is not 8-byte aligned (into a real chunk).
TEST_P(BogusPointerTest, Misaligned) {
  char* p = static_cast<char*>(live_[3].p);
  ExpectRejected(p + 1, "p + 1");
  ExpectRejected(p + 4, "p + 4");
  ExpectRejected(p + 7, "p + 7");
  ExpectHealthy();
}

// A pointer into stack memory whose bytes read as a zero header.
TEST_P(BogusPointerTest, ZeroedMemory) {
  alignas(16) unsigned char buf[128] = {};
  ExpectRejected(buf + 64, "zeroed memory");
  ExpectHealthy();
}

// A pointer into memory wiped with 0x7F (what freed memory looks like).
TEST_P(BogusPointerTest, WipedMemory) {
  alignas(16) unsigned char buf[128];
  std::memset(buf, 0x7F, sizeof buf);
  ExpectRejected(buf + 64, "0x7F-wiped memory");
  ExpectHealthy();
}

// nullptr.
TEST_P(BogusPointerTest, NullPointer) {
  ExpectRejected(nullptr, "nullptr");
  ExpectHealthy();
}

// A pointer into the stack whose preceding word is arbitrary data
// (checking builds: the pointer is in no context's block).
TEST_P(BogusPointerTest, StackPointer) {
  SKIP_UNLESS_CHECKING();
  alignas(16) unsigned char buf[128];
  Fill(buf, sizeof buf, 99);
  ExpectRejected(buf + 64, "a stack pointer");
  ExpectHealthy();
}

// A stack pointer whose preceding word is a copy of a real chunk header of
// this context (checking builds).
TEST_P(BogusPointerTest, StackPointerWithForgedHeader) {
  SKIP_UNLESS_CHECKING();
  if (GetParam() == Kind::kBump) GTEST_SKIP() << "bump chunks are not freed anyway";
  alignas(16) unsigned char buf[128];
  std::memcpy(buf + 48, static_cast<char*>(live_[5].p) - 16, 16);
  ExpectRejected(buf + 64, "a stack pointer with a forged header");
  ExpectHealthy();
}

// A pointer into the middle of a live chunk (checking builds).
TEST_P(BogusPointerTest, InteriorPointer) {
  SKIP_UNLESS_CHECKING();
  const Live& l = live_.back();  // the largest chunk
  ExpectRejected(static_cast<char*>(l.p) + 8, "p + 8");
  ExpectRejected(static_cast<char*>(l.p) + 16, "p + 16");
  ExpectRejected(static_cast<char*>(l.p) + ((l.size / 2) & ~std::size_t{7}), "the middle of a chunk");
  ExpectHealthy();
}

// An interior pointer preceded by a copy of the chunk's own header words, so
// that the header looks right (checking builds). The content we overwrote is
// restored before the health check.
TEST_P(BogusPointerTest, InteriorPointerWithForgedHeader) {
  SKIP_UNLESS_CHECKING();
  if (GetParam() == Kind::kBump) GTEST_SKIP() << "bump chunks are not freed anyway";
  Live& l = live_.back();
  ASSERT_GE(l.size, 64u);
  char* p = static_cast<char*>(l.p);
  std::memcpy(p + 32, p - 16, 16);  // forged header just before p + 48
  ExpectRejected(p + 48, "an interior pointer with a forged header");
  Fill(p, l.size, l.seed);
  ExpectHealthy();
}

// pfree of a chunk that was already freed (checking builds). Another chunk
// is kept in the same block so that the block stays.
TEST_P(BogusPointerTest, DoubleFree) {
  SKIP_UNLESS_CHECKING();
  if (!KindFrees(GetParam())) GTEST_SKIP() << "bump chunks cannot be freed at all";
  void* p = MemoryContextAlloc(ctx_, Size(48));
  Allocate(Size(48));
  pfree(p);
  ExpectPfreeRejected(p, "a chunk freed before");
  ExpectPfreeRejected(p, "a chunk freed before, again");
  ExpectHealthy();
}

// repalloc and GetMemoryChunkContext of a freed chunk (checking builds).
TEST_P(BogusPointerTest, UseAfterFreeCalls) {
  SKIP_UNLESS_CHECKING();
  if (!KindFrees(GetParam())) GTEST_SKIP() << "bump chunks cannot be freed at all";
  void* p = MemoryContextAlloc(ctx_, Size(48));
  Allocate(Size(48));
  pfree(p);
  auto e = CatchError([&] { (void)repalloc(p, Size(48)); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(Contains(e->message(), kInvalid)) << e->message();
  e = CatchError([&] { (void)GetMemoryChunkContext(p); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(Contains(e->message(), kInvalid)) << e->message();
  ExpectHealthy();
}

// pfree of a large chunk that was already freed: its dedicated block went
// back to the system (checking builds).
TEST_P(BogusPointerTest, DoubleFreeOfLargeChunk) {
  SKIP_UNLESS_CHECKING();
  if (!KindFrees(GetParam()) || !KindAnySize(GetParam())) GTEST_SKIP() << "needs large chunks that can be freed";
  void* p = MemoryContextAlloc(ctx_, 200000);
  pfree(p);
  ExpectPfreeRejected(p, "a large chunk freed before");
  ExpectHealthy();
}

// pfree of an aligned chunk that was already freed (checking builds).
TEST_P(BogusPointerTest, DoubleFreeOfAlignedChunk) {
  SKIP_UNLESS_CHECKING();
  if (!KindFrees(GetParam()) || !KindAnySize(GetParam())) GTEST_SKIP() << "needs aligned chunks that can be freed";
  void* p = MemoryContextAllocAligned(ctx_, 100, 256, 0);
  Allocate(Size(48));
  pfree(p);
  ExpectPfreeRejected(p, "an aligned chunk freed before");
  ExpectHealthy();
}

// A chunk of a context that has been reset (checking builds).
TEST_P(BogusPointerTest, ChunkFromBeforeReset) {
  SKIP_UNLESS_CHECKING();
  if (!KindFrees(GetParam())) GTEST_SKIP() << "bump chunks cannot be freed at all";
  MemoryContext other = CreateContext(GetParam(), TopMemoryContext, "reset one");
  void* keep_block = MemoryContextAlloc(other, Size(32));
  (void)keep_block;
  void* p = MemoryContextAlloc(other, Size(64));
  MemoryContextReset(other);
  ExpectPfreeRejected(p, "a chunk from before a reset");
  MemoryContextDelete(other);
  ExpectHealthy();
}

// A chunk of a context that has been deleted (checking builds). For the
// recyclable AllocSet shapes the deleted context's keeper block is kept for
// reuse, and here it is even reused by a new context before the bogus pfree.
TEST_P(BogusPointerTest, ChunkOfDeletedContext) {
  SKIP_UNLESS_CHECKING();
  if (!KindFrees(GetParam())) GTEST_SKIP() << "bump chunks cannot be freed at all";
  MemoryContext doomed = CreateContext(GetParam(), TopMemoryContext, "deleted one");
  void* p = MemoryContextAlloc(doomed, Size(64));
  MemoryContextDelete(doomed);
  ExpectPfreeRejected(p, "a chunk of a deleted context");
  MemoryContext reborn = CreateContext(GetParam(), TopMemoryContext, "reborn");
  ExpectPfreeRejected(p, "a chunk of a deleted context whose memory may be reused");
  MemoryContextDelete(reborn);
  ExpectHealthy();
}

// Many bogus calls in a row, alternating with real work: no state leaks
// from the error path (report stack, error memory).
TEST_P(BogusPointerTest, ManyBogusCallsInARow) {
  alignas(16) unsigned char buf[64] = {};
  for (int i = 0; i < 1000; ++i) {
    auto e = CatchError([&] { pfree(buf + 32); });
    ASSERT_TRUE(e.has_value());
    if (i % 100 == 0) Allocate(Size(24));
  }
  ExpectHealthy();
}

}  // namespace
}  // namespace grove::test
