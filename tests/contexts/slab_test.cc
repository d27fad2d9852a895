// Slab: fixed-size chunks. Requests of any other size, and repalloc to
// another size, are errors.
#include "allocator_checks.h"

namespace grove::test {
namespace {

struct SlabShape {
  std::size_t chunk;
  std::size_t block;
};

// Chunk sizes from 1 B across 8 KiB to 1 MiB, each with a block size that fits it.
std::vector<SlabShape> SlabShapes() {
  std::vector<SlabShape> shapes;
  for (std::size_t c : {1, 7, 8, 9, 16, 24, 40, 64, 100, 128, 500, 1000, 1024, 4000, 4096, 7000})
    shapes.push_back({c, SLAB_DEFAULT_BLOCK_SIZE});
  for (std::size_t c : {8000, 8191, 8192, 8193, 16384, 20000, 100000, 1 << 20})
    shapes.push_back({c, SLAB_LARGE_BLOCK_SIZE});
  return shapes;
}

class SlabTest : public ContextTest {};

// The context reports its type and name.
TEST_F(SlabTest, Identity) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab test", SLAB_DEFAULT_BLOCK_SIZE, 64);
  EXPECT_STREQ(MemoryContextGetTypeName(s), "Slab");
  EXPECT_STREQ(MemoryContextGetName(s), "slab test");
  EXPECT_TRUE(MemoryContextIsEmpty(s));
  MemoryContextDelete(s);
}

// For chunk sizes from 1 B to 1 MiB: enough chunks for several blocks,
// aligned to 8, content kept, chunk context and space right; half freed and
// reallocated (reusing freed chunks) without disturbing the rest.
TEST_F(SlabTest, ChunkSizesAcrossChunkLimit) {
  for (const SlabShape& shape : SlabShapes()) {
    SCOPED_TRACE("chunk size " + std::to_string(shape.chunk));
    MemoryContext s = SlabContextCreate(TopMemoryContext, "slab sizes", shape.block, shape.chunk);
    const std::size_t per_block = std::max<std::size_t>(1, shape.block / (shape.chunk + 16));
    // Enough chunks for more than one block, bounded to ~12 MiB per shape.
    const std::size_t n = std::min({3 * per_block + 5, std::size_t{2000},
                                    std::max<std::size_t>(12, (std::size_t{12} << 20) / shape.chunk)});
    std::vector<void*> ps;
    for (std::size_t i = 0; i < n; ++i) {
      void* p = MemoryContextAlloc(s, shape.chunk);
      ASSERT_TRUE(IsAligned(p, 8));
      ASSERT_EQ(GetMemoryChunkContext(p), s);
      ASSERT_GE(GetMemoryChunkSpace(p), shape.chunk + 8);
      Fill(p, shape.chunk, i);
      ps.push_back(p);
    }
    for (std::size_t i = 0; i < n; ++i) ASSERT_TRUE(Intact(ps[i], shape.chunk, i));
    for (std::size_t i = 0; i < n; i += 2) pfree(ps[i]);
    for (std::size_t i = 0; i < n; i += 2) {
      ps[i] = MemoryContextAlloc(s, shape.chunk);
      Fill(ps[i], shape.chunk, i + 1000000);
    }
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_TRUE(Intact(ps[i], shape.chunk, i % 2 == 0 ? i + 1000000 : i)) << "chunk " << i;
    for (void* p : ps) pfree(p);
    MemoryContextDelete(s);
  }
}

// A request of any size other than the chunk size is an ERROR; the slab
// keeps working.
TEST_F(SlabTest, WrongSizeIsAnError) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab wrong size", SLAB_DEFAULT_BLOCK_SIZE, 40);
  void* good = MemoryContextAlloc(s, 40);
  Fill(good, 40, 1);
  for (std::size_t bad : {0, 1, 39, 41, 48, 100, 100000}) {
    auto e = CatchError([&] { (void)MemoryContextAlloc(s, bad); });
    EXPECT_TRUE(e.has_value()) << "size " << bad;
  }
  void* more = MemoryContextAlloc(s, 40);
  Fill(more, 40, 2);
  EXPECT_TRUE(Intact(good, 40, 1));
  EXPECT_TRUE(Intact(more, 40, 2));
  MemoryContextDelete(s);
}

// A chunk size that is not a multiple of 8 is served as requested: only
// that exact size is accepted (not its MAXALIGNed size).
TEST_F(SlabTest, UnalignedChunkSizeIsTheExactSize) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab 10", SLAB_DEFAULT_BLOCK_SIZE, 10);
  void* p = MemoryContextAlloc(s, 10);
  Fill(p, 10, 3);
  EXPECT_TRUE(CatchError([&] { (void)MemoryContextAlloc(s, 16); }).has_value());
  EXPECT_TRUE(Intact(p, 10, 3));
  MemoryContextDelete(s);
}

// repalloc to the same size returns the chunk with its content.
TEST_F(SlabTest, RepallocSameSizeKeepsChunk) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab realloc", SLAB_DEFAULT_BLOCK_SIZE, 64);
  void* p = MemoryContextAlloc(s, 64);
  Fill(p, 64, 9);
  void* q = repalloc(p, 64);
  EXPECT_TRUE(Intact(q, 64, 9));
  pfree(q);
  MemoryContextDelete(s);
}

// repalloc to another size is an ERROR; the chunk is unchanged and still
// belongs to the slab.
TEST_F(SlabTest, RepallocOtherSizeIsAnError) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab realloc", SLAB_DEFAULT_BLOCK_SIZE, 64);
  void* p = MemoryContextAlloc(s, 64);
  Fill(p, 64, 9);
  EXPECT_TRUE(CatchError([&] { (void)repalloc(p, 128); }).has_value());
  EXPECT_TRUE(CatchError([&] { (void)repalloc(p, 32); }).has_value());
  EXPECT_TRUE(Intact(p, 64, 9));
  EXPECT_EQ(GetMemoryChunkContext(p), s);
  pfree(p);
  MemoryContextDelete(s);
}

// A block too small for even one chunk is an ERROR at creation, and no
// context is left behind.
TEST_F(SlabTest, BlockTooSmallIsAnError) {
  MemoryContext before = TopMemoryContext;
  const std::size_t held = MemoryContextMemAllocated(TopMemoryContext, true);
  auto e = CatchError([] { (void)SlabContextCreate(TopMemoryContext, "slab too small", 1024, 2000); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(TopMemoryContext, before);
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), held);
}

// palloc0 and MCXT_ALLOC_ZERO zero reused slab chunks.
TEST_F(SlabTest, Zeroed) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab zero", SLAB_DEFAULT_BLOCK_SIZE, 200);
  for (int i = 0; i < 100; ++i) {
    void* p = MemoryContextAlloc(s, 200);
    std::memset(p, 0xAA, 200);
    pfree(p);
    void* z = i % 2 ? MemoryContextAllocZero(s, 200) : MemoryContextAllocExtended(s, 200, MCXT_ALLOC_ZERO);
    ASSERT_TRUE(AllZero(z, 200));
  }
  MemoryContextDelete(s);
}

// Freeing every chunk gives most empty blocks back.
TEST_F(SlabTest, EmptyBlocksGivenBack) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab empty", SLAB_DEFAULT_BLOCK_SIZE, 64);
  std::vector<void*> ps;
  for (int i = 0; i < 300000; ++i) ps.push_back(MemoryContextAlloc(s, 64));
  const std::size_t peak = MemoryContextMemAllocated(s, false);
  for (void* p : ps) pfree(p);
  EXPECT_LT(MemoryContextMemAllocated(s, false), peak / 2);
  MemoryContextDelete(s);
}

// Alternating alloc/free (W5-like) stays in a bounded number of blocks.
TEST_F(SlabTest, ChurnIsBounded) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab churn", SLAB_DEFAULT_BLOCK_SIZE, 96);
  std::vector<void*> slots(10000, nullptr);
  uint64_t x = 1;
  std::size_t high = 0;
  for (int t = 0; t < 300000; ++t) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const std::size_t slot = (x >> 33) % slots.size();
    if (slots[slot] == nullptr) {
      slots[slot] = MemoryContextAlloc(s, 96);
    } else {
      pfree(slots[slot]);
      slots[slot] = nullptr;
    }
    high = std::max(high, MemoryContextMemAllocated(s, false));
  }
  // At most 10,000 live chunks of ~104 B: ~1 MiB; allow for partly used blocks.
  EXPECT_LT(high, std::size_t{4} * 1024 * 1024);
  for (void* p : slots)
    if (p != nullptr) pfree(p);
  MemoryContextDelete(s);
}

// Reset frees everything and the slab is usable again.
TEST_F(SlabTest, ResetThenReuse) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab reset", SLAB_DEFAULT_BLOCK_SIZE, 48);
  for (int round = 0; round < 3; ++round) {
    std::vector<void*> ps;
    for (int i = 0; i < 5000; ++i) {
      ps.push_back(MemoryContextAlloc(s, 48));
      Fill(ps.back(), 48, i);
    }
    for (int i = 0; i < 5000; ++i) ASSERT_TRUE(Intact(ps[i], 48, i));
    EXPECT_FALSE(MemoryContextIsEmpty(s));
    MemoryContextReset(s);
    EXPECT_TRUE(MemoryContextIsEmpty(s));
  }
  MemoryContextDelete(s);
}

// With retention 0 a reset returns to the allocation right after creation.
TEST_F(SlabTest, ResetWithoutRetention) {
  MemoryContext s = SlabContextCreate(TopMemoryContext, "slab reset", SLAB_DEFAULT_BLOCK_SIZE, 48);
  MemoryContextSetRetention(s, 0);
  const std::size_t initial = MemoryContextMemAllocated(s, false);
  for (int i = 0; i < 5000; ++i) MemoryContextAlloc(s, 48);
  MemoryContextReset(s);
  EXPECT_EQ(MemoryContextMemAllocated(s, false), initial);
  MemoryContextDelete(s);
}

}  // namespace
}  // namespace grove::test
