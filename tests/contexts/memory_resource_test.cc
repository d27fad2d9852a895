// Standard containers in a memory context: ContextMemoryResource (pmr) and
// ContextAllocator (plain allocator).
#include <list>
#include <map>
#include <memory_resource>
#include <string>
#include <string_view>
#include <vector>

#include "grove/contexts/memory_resource.h"
#include "test_support.h"

namespace grove::test {
namespace {

struct alignas(64) CacheLine {
  uint64_t value;
  char pad[56];
};
static_assert(alignof(CacheLine) == 64);

class MemoryResourceTest : public ContextTest {
 protected:
  void SetUp() override {
    ContextTest::SetUp();
    ctx_ = AllocSetContextCreate(TopMemoryContext, "pmr test", ALLOCSET_DEFAULT_SIZES);
  }
  void TearDown() override {
    MemoryContextDelete(ctx_);
    ContextTest::TearDown();
  }
  MemoryContext ctx_ = nullptr;
};

// A std::pmr::vector's storage lives in the context, and its contents are right.
TEST_F(MemoryResourceTest, PmrVectorLivesInContext) {
  ContextMemoryResource res(ctx_);
  EXPECT_EQ(res.context(), ctx_);
  std::pmr::vector<int> v(&res);
  for (int i = 0; i < 100000; ++i) v.push_back(i * 3);
  EXPECT_EQ(GetMemoryChunkContext(v.data()), ctx_);
  for (int i = 0; i < 100000; ++i) ASSERT_EQ(v[i], i * 3);
  EXPECT_GE(MemoryContextMemAllocated(ctx_, false), 100000 * sizeof(int));
}

// A long std::pmr::string lives in the context.
TEST_F(MemoryResourceTest, PmrStringLivesInContext) {
  ContextMemoryResource res(ctx_);
  std::pmr::string s(&res);
  for (int i = 0; i < 1000; ++i) s += "grove-";
  EXPECT_EQ(s.size(), 6000u);
  EXPECT_EQ(GetMemoryChunkContext(s.data()), ctx_);
  EXPECT_EQ(std::string_view(s).substr(0, 12), "grove-grove-");
}

// Node-based pmr containers (map of strings) work and free their nodes.
TEST_F(MemoryResourceTest, PmrMapOfStrings) {
  ContextMemoryResource res(ctx_);
  {
    std::pmr::map<int, std::pmr::string> m(&res);
    for (int i = 0; i < 5000; ++i) m.emplace(i, std::pmr::string(100, static_cast<char>('a' + i % 26)));
    for (int i = 0; i < 5000; i += 2) m.erase(i);
    EXPECT_EQ(m.size(), 2500u);
    EXPECT_EQ(std::string_view(m.at(1)), std::string(100, 'b'));
    EXPECT_EQ(GetMemoryChunkContext(m.at(3).data()), ctx_);
  }
  MessageCapture capture;
  MemoryContextCheck(ctx_);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

// allocate() honours alignments above 8 and deallocate() frees.
TEST_F(MemoryResourceTest, OverAlignedAllocate) {
  ContextMemoryResource res(ctx_);
  for (std::size_t align : {16, 32, 64, 128, 256, 4096}) {
    void* p = res.allocate(1000, align);
    EXPECT_TRUE(IsAligned(p, align)) << align;
    EXPECT_EQ(GetMemoryChunkContext(p), ctx_);
    Fill(p, 1000, align);
    EXPECT_TRUE(Intact(p, 1000, align));
    res.deallocate(p, 1000, align);
  }
}

// Resources over the same context compare equal; over different ones not.
TEST_F(MemoryResourceTest, Equality) {
  MemoryContext other = AllocSetContextCreate(ctx_, "other", ALLOCSET_SMALL_SIZES);
  ContextMemoryResource a(ctx_), b(ctx_), c(other);
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == c);
  EXPECT_FALSE(a == *std::pmr::new_delete_resource());
}

// Allocation errors surface as grove::Error (out of memory included).
TEST_F(MemoryResourceTest, OutOfMemoryIsGroveError) {
  ContextMemoryResource res(ctx_);
  ScopedRefuseBlocks refuse;
  auto e = CatchError([&] { (void)res.allocate(1 << 20, 8); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY);
}

// In a Bump context deallocate() does nothing (no error even in checking
// builds); the memory goes with the context's reset.
TEST_F(MemoryResourceTest, BumpDeallocateIsNoOp) {
  MemoryContext bump = BumpContextCreate(ctx_, "pmr bump", ALLOCSET_DEFAULT_SIZES);
  ContextMemoryResource res(bump);
  void* p = res.allocate(200, 8);
  Fill(p, 200, 1);
  const std::size_t held = MemoryContextMemAllocated(bump, false);
  res.deallocate(p, 200, 8);
  EXPECT_TRUE(Intact(p, 200, 1)) << "deallocate must not touch the memory";
  EXPECT_EQ(MemoryContextMemAllocated(bump, false), held);
  {
    std::pmr::vector<std::pmr::string> v(&res);
    for (int i = 0; i < 1000; ++i) v.emplace_back(50, 'x');  // growth deallocates old storage
    EXPECT_EQ(std::string_view(v[999]), std::string(50, 'x'));
  }  // destruction deallocates everything: no error
  void* aligned = res.allocate(100, 64);
  EXPECT_TRUE(IsAligned(aligned, 64));
  res.deallocate(aligned, 100, 64);
  MemoryContextReset(bump);
  EXPECT_TRUE(MemoryContextIsEmpty(bump));
}

// A pmr container in a Slab context fails cleanly for sizes other than the
// slab's, as an ERROR (not a crash).
TEST_F(MemoryResourceTest, SlabWrongSizeIsAnError) {
  MemoryContext slab = SlabContextCreate(ctx_, "pmr slab", SLAB_DEFAULT_BLOCK_SIZE, 32);
  ContextMemoryResource res(slab);
  void* p = res.allocate(32, 8);
  res.deallocate(p, 32, 8);
  EXPECT_TRUE(CatchError([&] { (void)res.allocate(100, 8); }).has_value());
}

// ContextAllocator with std::vector: storage in the context.
TEST_F(MemoryResourceTest, ContextAllocatorVector) {
  std::vector<uint64_t, ContextAllocator<uint64_t>> v{ContextAllocator<uint64_t>(ctx_)};
  for (uint64_t i = 0; i < 50000; ++i) v.push_back(i * i);
  EXPECT_EQ(GetMemoryChunkContext(v.data()), ctx_);
  for (uint64_t i = 0; i < 50000; ++i) ASSERT_EQ(v[i], i * i);
  v.clear();
  v.shrink_to_fit();
}

// ContextAllocator with an alignas(64) type: the storage is 64-byte aligned.
TEST_F(MemoryResourceTest, ContextAllocatorOverAligned) {
  std::vector<CacheLine, ContextAllocator<CacheLine>> v{ContextAllocator<CacheLine>(ctx_)};
  for (int i = 0; i < 1000; ++i) {
    v.push_back(CacheLine{static_cast<uint64_t>(i), {}});
    ASSERT_TRUE(IsAligned(v.data(), 64)) << "after " << i << " elements";
  }
  EXPECT_EQ(GetMemoryChunkContext(v.data()), ctx_);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(v[i].value, static_cast<uint64_t>(i));
}

// ContextAllocator rebinds (node containers) and compares by context.
TEST_F(MemoryResourceTest, ContextAllocatorRebindAndEquality) {
  ContextAllocator<int> a(ctx_);
  ContextAllocator<double> b(a);
  EXPECT_EQ(b.context(), ctx_);
  EXPECT_TRUE(a == b);
  MemoryContext other = AllocSetContextCreate(ctx_, "other", ALLOCSET_SMALL_SIZES);
  EXPECT_FALSE(a == ContextAllocator<int>(other));
  std::list<int, ContextAllocator<int>> l(a);
  for (int i = 0; i < 1000; ++i) l.push_back(i);
  EXPECT_EQ(l.size(), 1000u);
  EXPECT_EQ(l.back(), 999);
}

// An impossible element count is std::bad_array_new_length, not a wrap-around.
TEST_F(MemoryResourceTest, ContextAllocatorOverflow) {
  ContextAllocator<CacheLine> a(ctx_);
  EXPECT_THROW((void)a.allocate(SIZE_MAX / 8), std::bad_array_new_length);
}

// ContextAllocator goes beyond MaxAllocSize (it uses MCXT_ALLOC_HUGE): a
// request just above 1 GiB is valid (refused here by the hooks: out of memory).
TEST_F(MemoryResourceTest, ContextAllocatorHuge) {
  ContextAllocator<char> a(ctx_);
  ScopedRefuseBlocks refuse;
  auto e = CatchError([&] { (void)a.allocate(MaxAllocSize + 1); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY) << e->message();
}

}  // namespace
}  // namespace grove::test

namespace grove::test {
namespace {

// ContextAllocator in a Bump context: deallocate does nothing (a pfree of a
// headerless bump chunk would be an error or worse), so containers grow.
TEST_F(MemoryResourceTest, ContextAllocatorInBumpDoesNotFree) {
  MemoryContext bump = BumpContextCreate(TopMemoryContext, "bump vector", ALLOCSET_DEFAULT_SIZES);
  {
    std::vector<int, ContextAllocator<int>> v{ContextAllocator<int>(bump)};
    for (int i = 0; i < 10000; ++i) v.push_back(i);  // many reallocations
    EXPECT_EQ(v[9999], 9999);
  }
  MemoryContextDelete(bump);
}

// A null context is an ERROR, not a crash (CurrentMemoryContext before a
// thread's first palloc is null).
TEST_F(MemoryResourceTest, NullContextIsAnError) {
  EXPECT_THROW(ContextMemoryResource res(nullptr), Error);
  EXPECT_THROW(ContextAllocator<int> a(nullptr), Error);
}

}  // namespace
}  // namespace grove::test
