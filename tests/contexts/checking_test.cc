// Checking builds: a write past the requested size damages the sentinel
// byte; pfree, repalloc, reset, delete and MemoryContextCheck report it as a
// WARNING "detected write past chunk end" through the message sink.
// Undamaged contexts check clean.
#include "allocator_checks.h"

namespace grove::test {
namespace {

constexpr const char* kPastEnd = "detected write past chunk end";

class CheckingTest : public ContextTestWithParam<Kind> {
 protected:
  void SetUp() override {
    ContextTestWithParam<Kind>::SetUp();
    if (!mcxt::MemoryCheckingEnabled()) GTEST_SKIP() << "sentinels exist in checking builds only";
    // A chunk size with room after 10 requested bytes: Slab chunks are 10 bytes.
    ctx_ = CreateContext(GetParam(), TopMemoryContext, "checked", 10);
  }
  void TearDown() override {
    if (ctx_ != nullptr) MemoryContextDelete(ctx_);
    ContextTestWithParam<Kind>::TearDown();
  }
  /// Allocates 10 bytes and writes one byte past them.
  void* DamagedChunk() {
    char* p = static_cast<char*>(MemoryContextAlloc(ctx_, 10));
    Fill(p, 10, 1);
    UnpoisonForTest(p + 10, 1);
    p[10] = 'X';
    return p;
  }
  MemoryContext ctx_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(AllKinds, CheckingTest, ::testing::ValuesIn(AllKinds()), KindParamName);

// Intact chunks of every size check clean, and so do their frees and the reset.
TEST_P(CheckingTest, UndamagedChecksClean) {
  MessageCapture capture;
  std::vector<void*> ps;
  for (int i = 0; i < 500; ++i) {
    const std::size_t size = KindAnySize(GetParam()) ? static_cast<std::size_t>(i * 41 % 3000) : 10;
    ps.push_back(MemoryContextAlloc(ctx_, size));
    std::memset(ps.back(), 0x5A, size);
  }
  MemoryContextCheck(ctx_);
  MemoryContextCheck(TopMemoryContext);
  if (KindFrees(GetParam()))
    for (std::size_t i = 0; i < ps.size(); i += 2) pfree(ps[i]);
  MemoryContextCheck(ctx_);
  MemoryContextReset(ctx_);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

// MemoryContextCheck reports a damaged sentinel.
TEST_P(CheckingTest, CheckReportsWritePastEnd) {
  MessageCapture capture;
  DamagedChunk();
  MemoryContextCheck(ctx_);
  EXPECT_EQ(capture.CountContaining(kPastEnd), 1u) << capture.All();
  ASSERT_FALSE(capture.reports.empty());
  EXPECT_EQ(capture.reports[0].elevel, WARNING);
  EXPECT_TRUE(Contains(capture.reports[0].message, "checked")) << "names the context: " << capture.reports[0].message;
}

// Checking a parent checks its descendants too.
TEST_P(CheckingTest, CheckOfParentCoversChildren) {
  MessageCapture capture;
  DamagedChunk();
  MemoryContextCheck(TopMemoryContext);
  EXPECT_EQ(capture.CountContaining(kPastEnd), 1u) << capture.All();
}

// pfree of a damaged chunk reports it (and still frees it).
TEST_P(CheckingTest, PfreeReportsWritePastEnd) {
  if (!KindFrees(GetParam())) GTEST_SKIP() << "bump chunks are not freed";
  MessageCapture capture;
  void* p = DamagedChunk();
  pfree(p);
  EXPECT_EQ(capture.CountContaining(kPastEnd), 1u) << capture.All();
  MemoryContextReset(ctx_);
  EXPECT_EQ(capture.CountContaining(kPastEnd), 1u) << "reported once: the chunk is gone";
}

// repalloc of a damaged chunk reports it.
TEST_P(CheckingTest, RepallocReportsWritePastEnd) {
  if (!KindReallocs(GetParam())) GTEST_SKIP() << "no repalloc to other sizes";
  MessageCapture capture;
  void* p = DamagedChunk();
  p = repalloc(p, 5000);
  EXPECT_EQ(capture.CountContaining(kPastEnd), 1u) << capture.All();
  EXPECT_TRUE(Intact(p, 10, 1));
  pfree(p);
}

// Reset reports damaged chunks that are still allocated.
TEST_P(CheckingTest, ResetReportsWritePastEnd) {
  MessageCapture capture;
  DamagedChunk();
  MemoryContextReset(ctx_);
  EXPECT_EQ(capture.CountContaining(kPastEnd), 1u) << capture.All();
}

// Delete reports damaged chunks that are still allocated.
TEST_P(CheckingTest, DeleteReportsWritePastEnd) {
  MessageCapture capture;
  DamagedChunk();
  MemoryContextDelete(ctx_);
  ctx_ = nullptr;
  EXPECT_EQ(capture.CountContaining(kPastEnd), 1u) << capture.All();
}

// A write past the end of a large chunk (its own block) is caught too.
TEST_P(CheckingTest, LargeChunkWritePastEnd) {
  if (!KindAnySize(GetParam())) GTEST_SKIP() << "Slab serves one size";
  MessageCapture capture;
  char* p = static_cast<char*>(MemoryContextAlloc(ctx_, 100001));
  UnpoisonForTest(p + 100001, 1);
  p[100001] = 'X';
  MemoryContextCheck(ctx_);
  EXPECT_EQ(capture.CountContaining(kPastEnd), 1u) << capture.All();
}

// A write past the end of an aligned chunk is caught.
TEST_P(CheckingTest, AlignedChunkWritePastEnd) {
  if (!KindAnySize(GetParam())) GTEST_SKIP() << "Slab serves one size";
  MessageCapture capture;
  char* p = static_cast<char*>(MemoryContextAllocAligned(ctx_, 100, 64, 0));
  UnpoisonForTest(p + 100, 1);
  p[100] = 'X';
  if (KindFrees(GetParam()))
    pfree(p);
  else
    MemoryContextReset(ctx_);
  EXPECT_GE(capture.CountContaining(kPastEnd), 1u) << capture.All();
}

// Several damaged chunks are each reported.
TEST_P(CheckingTest, EachDamagedChunkReported) {
  MessageCapture capture;
  for (int i = 0; i < 3; ++i) {
    DamagedChunk();
    MemoryContextAlloc(ctx_, 10);  // an intact one in between
  }
  MemoryContextCheck(ctx_);
  EXPECT_EQ(capture.CountContaining(kPastEnd), 3u) << capture.All();
}

// Without a thread sink the WARNING goes to stderr in psql format.
TEST_P(CheckingTest, WarningGoesToStderrByDefault) {
  DamagedChunk();
  testing::internal::CaptureStderr();
  MemoryContextCheck(ctx_);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(Contains(err, std::string("WARNING:  ") + kPastEnd)) << err;
  MemoryContextReset(ctx_);  // reported again, to stderr, harmlessly
}

}  // namespace
}  // namespace grove::test
