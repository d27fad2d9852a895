// Out of memory: an ERROR (SQLSTATE 53200, "out of memory", detail "Failed
// on request of size N in memory context "NAME".") formatted in ErrorContext,
// whose reserved space needs no new block; MCXT_ALLOC_NO_OOM returns
// nullptr; oversized requests are "invalid memory alloc request size N".
#include "allocator_checks.h"

// Under AddressSanitizer, an impossible malloc must return nullptr (as glibc
// does) instead of aborting, for the real-malloc-failure tests below.
#if defined(GROVE_TEST_ASAN)
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
#endif

namespace grove::test {
namespace {

std::string OomDetail(std::size_t size, const char* name) {
  return "Failed on request of size " + std::to_string(size) + " in memory context \"" + name + "\".";
}

void ExpectOutOfMemory(const std::optional<Error>& e, std::size_t size, const char* name) {
  ASSERT_TRUE(e.has_value()) << "expected an out-of-memory ERROR";
  EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY) << e->sqlstate().c_str();
  EXPECT_EQ(e->message(), "out of memory");
  EXPECT_EQ(e->detail(), OomDetail(size, name));
  EXPECT_EQ(e->Format(), "ERROR:  out of memory\nDETAIL:  " + OomDetail(size, name));
}

void ExpectInvalidSize(const std::optional<Error>& e, std::size_t size) {
  ASSERT_TRUE(e.has_value()) << "expected an invalid-size ERROR for " << size;
  EXPECT_EQ(e->message(), "invalid memory alloc request size " + std::to_string(size));
}

class OutOfMemoryTest : public ContextTestWithParam<Kind> {
 protected:
  void SetUp() override {
    ContextTestWithParam<Kind>::SetUp();
    ctx_ = CreateContext(GetParam(), TopMemoryContext, "oom test");
  }
  void TearDown() override {
    MemoryContextDelete(ctx_);
    ContextTestWithParam<Kind>::TearDown();
  }
  std::size_t Small() const { return KindAnySize(GetParam()) ? 64 : kDefaultSlabChunk; }
  MemoryContext ctx_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(AllKinds, OutOfMemoryTest, ::testing::ValuesIn(AllKinds()), KindParamName);

// Small requests succeed from the current block until a new block is
// needed; that one is refused and reported as out of memory, with the full
// detail (formatted in ErrorContext, which needs no new block). Repeated
// failures report the same way; once blocks are allowed again, the context
// works and earlier chunks are intact.
TEST_P(OutOfMemoryTest, RefusedBlockIsReportedThroughErrorContext) {
  std::vector<void*> got;
  std::optional<Error> e;
  {
    ScopedRefuseBlocks refuse;
    for (int i = 0; i < 100000 && !e; ++i) {
      e = CatchError([&] {
        void* p = MemoryContextAlloc(ctx_, Small());
        Fill(p, Small(), got.size());
        got.push_back(p);
      });
    }
    ExpectOutOfMemory(e, Small(), "oom test");
    EXPECT_GT(refuse.refused, 0u);
    for (int again = 0; again < 5; ++again)
      ExpectOutOfMemory(CatchError([&] { MemoryContextAlloc(ctx_, Small()); }), Small(), "oom test");
  }
  void* p = MemoryContextAlloc(ctx_, Small());
  EXPECT_NE(p, nullptr);
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(Intact(got[i], Small(), i));
}

// A large request (its own block) refused: the detail names its size.
TEST_P(OutOfMemoryTest, LargeRequestRefused) {
  if (!KindAnySize(GetParam())) GTEST_SKIP() << "Slab serves one size";
  ScopedRefuseBlocks refuse;
  ExpectOutOfMemory(CatchError([&] { MemoryContextAlloc(ctx_, 100000); }), 100000, "oom test");
  ExpectOutOfMemory(CatchError([&] { MemoryContextAllocZero(ctx_, 200000); }), 200000, "oom test");
  MemoryContext old = MemoryContextSwitchTo(ctx_);
  ExpectOutOfMemory(CatchError([&] { palloc(300000); }), 300000, "oom test");
  ExpectOutOfMemory(CatchError([&] { palloc0(300000); }), 300000, "oom test");
  MemoryContextSwitchTo(old);
}

// MCXT_ALLOC_NO_OOM returns nullptr instead of raising.
TEST_P(OutOfMemoryTest, NoOomReturnsNull) {
  ScopedRefuseBlocks refuse;
  void* p = nullptr;
  int successes = 0;
  for (int i = 0; i < 100000; ++i) {
    p = MemoryContextAllocExtended(ctx_, Small(), MCXT_ALLOC_NO_OOM);
    if (p == nullptr) break;
    ++successes;
  }
  EXPECT_EQ(p, nullptr);
  if (KindAnySize(GetParam())) {
    EXPECT_EQ(MemoryContextAllocExtended(ctx_, 100000, MCXT_ALLOC_NO_OOM), nullptr);
    EXPECT_EQ(MemoryContextAllocExtended(ctx_, 100000, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO), nullptr);
    MemoryContext old = MemoryContextSwitchTo(ctx_);
    EXPECT_EQ(palloc_extended(100000, MCXT_ALLOC_NO_OOM), nullptr);
    MemoryContextSwitchTo(old);
  }
}

// Aligned allocations under out of memory: NO_OOM gives nullptr, otherwise
// an out-of-memory ERROR.
TEST_P(OutOfMemoryTest, AlignedRefused) {
  if (!KindAnySize(GetParam())) GTEST_SKIP() << "Slab serves one size";
  ScopedRefuseBlocks refuse;
  EXPECT_EQ(MemoryContextAllocAligned(ctx_, 100000, 4096, MCXT_ALLOC_NO_OOM), nullptr);
  auto e = CatchError([&] { MemoryContextAllocAligned(ctx_, 100000, 4096, 0); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY);
  EXPECT_EQ(e->message(), "out of memory");
}

// repalloc that needs a new block: out-of-memory ERROR naming the new size;
// the chunk keeps its place and content. NO_OOM returns nullptr, chunk intact.
TEST_P(OutOfMemoryTest, RepallocRefusedKeepsChunk) {
  if (!KindReallocs(GetParam())) GTEST_SKIP() << "no repalloc to other sizes";
  for (std::size_t from : {std::size_t{100}, std::size_t{50000}}) {
    SCOPED_TRACE("from " + std::to_string(from));
    void* p = MemoryContextAlloc(ctx_, from);
    Fill(p, from, from);
    {
      ScopedRefuseBlocks refuse;
      ExpectOutOfMemory(CatchError([&] { (void)repalloc(p, 600000); }), 600000, "oom test");
      EXPECT_TRUE(Intact(p, from, from));
      EXPECT_EQ(repalloc_extended(p, 600000, MCXT_ALLOC_NO_OOM), nullptr);
      EXPECT_TRUE(Intact(p, from, from));
      EXPECT_EQ(GetMemoryChunkContext(p), ctx_);
    }
    void* q = repalloc(p, 600000);
    EXPECT_TRUE(Intact(q, from, from));
    pfree(q);
  }
}

// Requests above MaxAllocSize without MCXT_ALLOC_HUGE are an ERROR
// "invalid memory alloc request size N", even with NO_OOM; MaxAllocSize
// itself is a valid size (here refused by the hooks: nullptr with NO_OOM).
TEST_P(OutOfMemoryTest, SizeAboveMaxAllocSize) {
  if (!KindAnySize(GetParam())) GTEST_SKIP() << "Slab rejects every other size anyway";
  ExpectInvalidSize(CatchError([&] { MemoryContextAlloc(ctx_, MaxAllocSize + 1); }), MaxAllocSize + 1);
  ExpectInvalidSize(CatchError([&] { MemoryContextAllocExtended(ctx_, MaxAllocSize + 1, MCXT_ALLOC_NO_OOM); }),
                    MaxAllocSize + 1);
  ExpectInvalidSize(CatchError([&] { MemoryContextAllocZero(ctx_, MaxAllocSize + 1); }), MaxAllocSize + 1);
  MemoryContext old = MemoryContextSwitchTo(ctx_);
  ExpectInvalidSize(CatchError([&] { palloc(MaxAllocSize + 1); }), MaxAllocSize + 1);
  ExpectInvalidSize(CatchError([&] { palloc0(MaxAllocSize + 1); }), MaxAllocSize + 1);
  MemoryContextSwitchTo(old);
  ScopedRefuseBlocks refuse;
  EXPECT_EQ(MemoryContextAllocExtended(ctx_, MaxAllocSize, MCXT_ALLOC_NO_OOM), nullptr);
  ExpectOutOfMemory(CatchError([&] { MemoryContextAlloc(ctx_, MaxAllocSize); }), MaxAllocSize, "oom test");
}

// With MCXT_ALLOC_HUGE, sizes up to MaxAllocHugeSize are valid (refused
// here by the hooks) and larger ones are invalid.
TEST_P(OutOfMemoryTest, HugeSizes) {
  if (!KindAnySize(GetParam())) GTEST_SKIP() << "Slab rejects every other size anyway";
  {
    ScopedRefuseBlocks refuse;
    EXPECT_EQ(MemoryContextAllocExtended(ctx_, MaxAllocSize + 1, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM), nullptr);
    EXPECT_EQ(MemoryContextAllocExtended(ctx_, MaxAllocHugeSize, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM), nullptr);
    ExpectOutOfMemory(CatchError([&] { MemoryContextAllocHuge(ctx_, MaxAllocSize + 1); }), MaxAllocSize + 1,
                      "oom test");
  }
  ExpectInvalidSize(
      CatchError([&] { MemoryContextAllocExtended(ctx_, MaxAllocHugeSize + 1, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM); }),
      MaxAllocHugeSize + 1);
}

// The largest size_t is invalid, with or without MCXT_ALLOC_HUGE: the
// allocator's size arithmetic (headers, sentinel, rounding) must not wrap
// around into a small request.
TEST_P(OutOfMemoryTest, LargestSizeIsInvalid) {
  if (!KindAnySize(GetParam())) GTEST_SKIP() << "Slab rejects every other size anyway";
  ExpectInvalidSize(CatchError([&] { MemoryContextAlloc(ctx_, SIZE_MAX); }), SIZE_MAX);
  ExpectInvalidSize(CatchError([&] { MemoryContextAllocHuge(ctx_, SIZE_MAX); }), SIZE_MAX);
  ExpectInvalidSize(CatchError([&] { MemoryContextAllocHuge(ctx_, SIZE_MAX - 7); }), SIZE_MAX - 7);
  if (KindReallocs(GetParam())) {
    void* p = MemoryContextAlloc(ctx_, 100);
    ExpectInvalidSize(CatchError([&] { (void)repalloc_huge(p, SIZE_MAX); }), SIZE_MAX);
  }
}

// repalloc above MaxAllocSize is invalid and leaves the chunk; repalloc_huge
// accepts it (refused here by the hooks).
TEST_P(OutOfMemoryTest, RepallocSizeLimits) {
  if (!KindReallocs(GetParam())) GTEST_SKIP() << "no repalloc to other sizes";
  void* p = MemoryContextAlloc(ctx_, 100);
  Fill(p, 100, 1);
  ExpectInvalidSize(CatchError([&] { (void)repalloc(p, MaxAllocSize + 1); }), MaxAllocSize + 1);
  EXPECT_TRUE(Intact(p, 100, 1));
  ExpectInvalidSize(CatchError([&] { (void)repalloc_huge(p, MaxAllocHugeSize + 1); }), MaxAllocHugeSize + 1);
  EXPECT_TRUE(Intact(p, 100, 1));
  {
    ScopedRefuseBlocks refuse;
    ExpectOutOfMemory(CatchError([&] { (void)repalloc_huge(p, MaxAllocSize + 1); }), MaxAllocSize + 1, "oom test");
  }
  EXPECT_TRUE(Intact(p, 100, 1));
  pfree(p);
}

// A request malloc itself cannot satisfy (no hooks involved): out of memory.
TEST_P(OutOfMemoryTest, RealMallocFailure) {
  if (!KindAnySize(GetParam())) GTEST_SKIP() << "Slab serves one size";
  ExpectOutOfMemory(CatchError([&] { MemoryContextAllocHuge(ctx_, MaxAllocHugeSize); }), MaxAllocHugeSize,
                    "oom test");
  EXPECT_EQ(MemoryContextAllocExtended(ctx_, MaxAllocHugeSize, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM), nullptr);
  void* p = MemoryContextAlloc(ctx_, 100);  // still fine afterwards
  EXPECT_NE(p, nullptr);
}

// Creating a context when no block can be had is an out-of-memory ERROR
// naming the context; nothing is linked into the tree.
TEST_P(OutOfMemoryTest, CreationRefused) {
  MemoryContext parent = AllocSetContextCreate(TopMemoryContext, "creation parent", 0, 16 * 1024, 1024 * 1024);
  {
    ScopedRefuseBlocks refuse;
    auto e = CatchError([&] {
      switch (GetParam()) {
        case Kind::kAllocSetDefault:
        case Kind::kAllocSetSmall:
        case Kind::kAllocSetStartSmall:
          // Not a recyclable shape: a new block is needed for sure.
          (void)AllocSetContextCreate(parent, "refused", 0, 32 * 1024, 1024 * 1024);
          break;
        default:
          (void)CreateContext(GetParam(), parent, "refused");
      }
    });
    ASSERT_TRUE(e.has_value());
    EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY) << e->sqlstate().c_str();
    EXPECT_EQ(e->message(), "out of memory");
    EXPECT_TRUE(Contains(e->detail(), "Failed while creating memory context \"refused\"")) << e->detail();
  }
  EXPECT_TRUE(MemoryContextIsEmpty(parent)) << "nothing was linked under the parent";
  MemoryContextDelete(parent);
}

// ErrorContext keeps 8 KiB reserved under TopMemoryContext.
TEST_F(ContextTest, ErrorContextHasReservedSpace) {
  EXPECT_EQ(MemoryContextGetParent(ErrorContext), TopMemoryContext);
  EXPECT_GE(MemoryContextMemAllocated(ErrorContext, false), 8u * 1024);
}

// ErrorContext is reset after each report: it is empty once the error is caught.
TEST_F(ContextTest, ErrorContextResetAfterReport) {
  auto e = CatchError([] { ereport(ERROR, errmsg("a message %d", 1), errdetail("and a detail")); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message(), "a message 1");
  EXPECT_TRUE(MemoryContextIsEmpty(ErrorContext));
}

// With the memory-context layer, error text is formatted in ErrorContext,
// which can grow: a 40 KB message comes out whole (the 16 KiB fallback arena
// of base/ alone would truncate it), and ErrorContext shrinks back afterwards.
TEST_F(ContextTest, LongErrorMessageIsComplete) {
  const std::size_t reserved = MemoryContextMemAllocated(ErrorContext, false);
  const std::string text(40000, 'q');
  auto e = CatchError([&] { elog(ERROR, "%s", text.c_str()); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message(), text);
  EXPECT_EQ(MemoryContextMemAllocated(ErrorContext, false), reserved);
}

// Under out of memory, a report that fits in the reserve is complete; one
// that does not is truncated, never lost.
TEST_F(ContextTest, ErrorTextUnderOutOfMemory) {
  ScopedRefuseBlocks refuse;
  auto e = CatchError([] { ereport(ERROR, errmsg("fits %d", 1), errdetail("in %s", "the reserve")); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message(), "fits 1");
  EXPECT_EQ(e->detail(), "in the reserve");
  const std::string text(40000, 'r');
  e = CatchError([&] { elog(ERROR, "%s", text.c_str()); });
  ASSERT_TRUE(e.has_value());
  EXPECT_FALSE(e->message().empty());
  EXPECT_EQ(text.compare(0, e->message().size(), e->message()), 0);
}

// The statistics dump before an out-of-memory ERROR goes to stderr when
// enabled (as PostgreSQL does) and not when disabled.
TEST_F(ContextTest, StatsDumpOnOutOfMemory) {
  MemoryContext c = AllocSetContextCreate(TopMemoryContext, "dumped", ALLOCSET_DEFAULT_SIZES);
  {
    ScopedRefuseBlocks refuse;
    mcxt::SetDumpStatsOnOutOfMemory(true);
    testing::internal::CaptureStderr();
    auto e = CatchError([&] { MemoryContextAlloc(c, 100000); });
    std::string dumped = testing::internal::GetCapturedStderr();
    mcxt::SetDumpStatsOnOutOfMemory(false);
    ASSERT_TRUE(e.has_value());
    EXPECT_TRUE(Contains(dumped, "TopMemoryContext: ")) << dumped;
    EXPECT_TRUE(Contains(dumped, "dumped: ")) << dumped;
    EXPECT_TRUE(Contains(dumped, "Grand total: ")) << dumped;
    testing::internal::CaptureStderr();
    e = CatchError([&] { MemoryContextAlloc(c, 100000); });
    dumped = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(dumped, "");
  }
  MemoryContextDelete(c);
}

// SetDumpStatsOnOutOfMemory returns the previous setting.
TEST_F(ContextTest, SetDumpStatsReturnsPrevious) {
  // The fixture turned it off.
  EXPECT_FALSE(mcxt::SetDumpStatsOnOutOfMemory(true));
  EXPECT_TRUE(mcxt::SetDumpStatsOnOutOfMemory(false));
}

}  // namespace
}  // namespace grove::test
