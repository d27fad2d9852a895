// Allocator-independent checks, run by each allocator's test file against a
// context of its kind: sizes across the chunk limit, alignment, repalloc.
#pragma once

#include <algorithm>
#include <utility>
#include <vector>

#include "test_support.h"

namespace grove::test {

/// Sizes from 1 B across the AllocSet chunk limit (8 KiB) and beyond: every
/// size up to 256, then steps growing by ~6 %, the values around 8 KiB, and 1 MiB.
inline std::vector<std::size_t> SizesAcrossChunkLimit() {
  std::vector<std::size_t> sizes;
  for (std::size_t s = 1; s <= 256; ++s) sizes.push_back(s);
  for (std::size_t s = 257; s <= 20000; s += 1 + s / 16) sizes.push_back(s);
  for (std::size_t s : {std::size_t{4095}, std::size_t{4096}, std::size_t{4097}, std::size_t{8183},
                        std::size_t{8184}, std::size_t{8191}, std::size_t{8192}, std::size_t{8193},
                        std::size_t{16384}, std::size_t{20000}, std::size_t{1} << 20})
    sizes.push_back(s);
  return sizes;
}

/// Allocates every size of SizesAcrossChunkLimit() in `ctx`, writes a
/// distinct pattern into each chunk, checks alignment and (where the
/// allocator supports it) the chunk's context and space, verifies all
/// contents once everything is allocated, then frees in an interleaved
/// order, verifying the survivors.
inline void CheckSizesAcrossChunkLimit(MemoryContext ctx, bool frees) {
  struct Chunk {
    void* p;
    std::size_t size;
  };
  std::vector<Chunk> chunks;
  for (std::size_t size : SizesAcrossChunkLimit()) {
    void* p = MemoryContextAlloc(ctx, size);
    ASSERT_NE(p, nullptr) << size;
    ASSERT_TRUE(IsAligned(p, 8)) << "size " << size << " at " << p;
    Fill(p, size, size);
    if (frees) {
      ASSERT_EQ(GetMemoryChunkContext(p), ctx) << size;
      ASSERT_GE(GetMemoryChunkSpace(p), size + 8) << "space includes the 8-byte header; size " << size;
    }
    chunks.push_back({p, size});
  }
  // No two chunks overlap.
  std::vector<Chunk> sorted = chunks;
  std::sort(sorted.begin(), sorted.end(), [](const Chunk& a, const Chunk& b) { return a.p < b.p; });
  for (std::size_t i = 1; i < sorted.size(); ++i)
    ASSERT_LE(static_cast<char*>(sorted[i - 1].p) + sorted[i - 1].size, static_cast<char*>(sorted[i].p))
        << "chunks of " << sorted[i - 1].size << " and " << sorted[i].size << " overlap";
  for (const Chunk& c : chunks) ASSERT_TRUE(Intact(c.p, c.size, c.size)) << "size " << c.size;
  if (!frees) return;
  for (std::size_t i = 0; i < chunks.size(); i += 2) pfree(chunks[i].p);
  for (std::size_t i = 1; i < chunks.size(); i += 2) ASSERT_TRUE(Intact(chunks[i].p, chunks[i].size, chunks[i].size));
  for (std::size_t i = 1; i < chunks.size(); i += 2) pfree(chunks[i].p);
}

/// The alignments palloc_aligned is tested with.
inline std::vector<std::size_t> TestAlignments() { return {16, 32, 64, 128, 256, 512, 1024, 2048, 4096}; }

/// palloc_aligned / MemoryContextAllocAligned for 16..4096 and sizes small
/// and large: the pointer is aligned, the content is kept; where the
/// allocator frees, pfree, GetMemoryChunkContext, GetMemoryChunkSpace work
/// on the aligned chunk, and repalloc keeps its content and alignment.
inline void CheckAligned(MemoryContext ctx, bool frees, bool reallocs) {
  uint64_t seed = 1000;
  for (std::size_t align : TestAlignments()) {
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{24}, std::size_t{100}, std::size_t{5000},
                             std::size_t{20000}}) {
      ++seed;
      void* p = MemoryContextAllocAligned(ctx, size, align, 0);
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(IsAligned(p, align)) << p << " align " << align << " size " << size;
      Fill(p, size, seed);
      // A neighbour allocated in between must not disturb the aligned chunk.
      void* other = MemoryContextAlloc(ctx, 40);
      Fill(other, 40, seed + 7);
      ASSERT_TRUE(Intact(p, size, seed)) << "align " << align << " size " << size;
      if (frees) {
        EXPECT_EQ(GetMemoryChunkContext(p), ctx) << "align " << align;
        EXPECT_GE(GetMemoryChunkSpace(p), size) << "align " << align;
      }
      if (reallocs) {
        const std::size_t bigger = size * 3 + 9000;
        p = repalloc(p, bigger);
        ASSERT_TRUE(IsAligned(p, align)) << "repalloc keeps the alignment " << align;
        ASSERT_TRUE(Intact(p, size, seed)) << "repalloc (grow) keeps the content; align " << align;
        Fill(p, bigger, seed + 1);
        const std::size_t smaller = size / 2 + 1;
        p = repalloc(p, smaller);
        ASSERT_TRUE(IsAligned(p, align)) << "repalloc keeps the alignment " << align;
        ASSERT_TRUE(Intact(p, smaller, seed + 1)) << "repalloc (shrink) keeps the content; align " << align;
        EXPECT_EQ(GetMemoryChunkContext(p), ctx);
      }
      ASSERT_TRUE(Intact(other, 40, seed + 7));
      if (frees) {
        pfree(p);
        pfree(other);
      }
    }
  }
}

/// Alignments of 8 or less are ordinary (8-byte aligned) allocations.
inline void CheckSmallAlignments(MemoryContext ctx, bool frees) {
  for (std::size_t align : {std::size_t{1}, std::size_t{2}, std::size_t{4}, std::size_t{8}}) {
    void* p = MemoryContextAllocAligned(ctx, 33, align, 0);
    ASSERT_TRUE(IsAligned(p, 8));
    Fill(p, 33, align);
    ASSERT_TRUE(Intact(p, 33, align));
    if (frees) {
      EXPECT_EQ(GetMemoryChunkContext(p), ctx);
      pfree(p);
    }
  }
}

/// MCXT_ALLOC_ZERO on an aligned allocation zeroes it.
inline void CheckAlignedZero(MemoryContext ctx) {
  for (std::size_t align : TestAlignments()) {
    // Dirty memory first so that zeroing is observable.
    void* dirty = MemoryContextAlloc(ctx, 3000);
    std::memset(dirty, 0xAB, 3000);
    void* p = MemoryContextAllocAligned(ctx, 3000, align, MCXT_ALLOC_ZERO);
    ASSERT_TRUE(IsAligned(p, align));
    ASSERT_TRUE(AllZero(p, 3000)) << "align " << align;
  }
}

/// The sizes a chunk goes through in CheckRepallocCycle: growing from 1 B
/// across the chunk limit to 1 MiB and back down to 0.
inline std::vector<std::size_t> RepallocSizes() {
  return {1,    7,    8,     9,     100,   1000,  4096,   8000,       8192,    8193, 9000,
          20000, 1 << 20, 300000, 20000, 9000, 8193, 8192, 8191, 5000, 100, 7, 0, 50};
}

/// repalloc through RepallocSizes(): each step keeps min(old, new) bytes of
/// content and leaves the chunk in `ctx`; a second chunk allocated between
/// steps keeps in-place growth from being the only path.
inline void CheckRepallocCycle(MemoryContext ctx) {
  uint64_t seed = 77;
  std::size_t size = 0;
  void* p = MemoryContextAlloc(ctx, 0);
  std::vector<std::pair<void*, std::size_t>> fillers;
  for (std::size_t next : RepallocSizes()) {
    void* q = repalloc(p, next);
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(IsAligned(q, 8));
    ASSERT_TRUE(Intact(q, std::min(size, next), seed)) << "repalloc " << size << " -> " << next;
    ASSERT_EQ(GetMemoryChunkContext(q), ctx);
    ASSERT_GE(GetMemoryChunkSpace(q), next + 8);
    p = q;
    size = next;
    ++seed;
    Fill(p, size, seed);
    void* f = MemoryContextAlloc(ctx, 64 + size % 200);
    Fill(f, 64 + size % 200, seed * 3);
    fillers.emplace_back(f, 64 + size % 200);
  }
  for (std::size_t i = 0; i < fillers.size(); ++i) {
    ASSERT_TRUE(Intact(fillers[i].first, fillers[i].second, (78 + i) * 3));
    pfree(fillers[i].first);
  }
  pfree(p);
}

/// repalloc to the same size keeps the content.
inline void CheckRepallocSameSize(MemoryContext ctx, std::size_t size) {
  void* p = MemoryContextAlloc(ctx, size);
  Fill(p, size, 5);
  void* q = repalloc(p, size);
  ASSERT_TRUE(Intact(q, size, 5));
  pfree(q);
}

/// Many chunks grown in turns (each repalloc may move): contents of all stay intact.
inline void CheckInterleavedRepalloc(MemoryContext ctx) {
  constexpr int kChunks = 50;
  std::vector<std::pair<void*, std::size_t>> c(kChunks);
  for (int i = 0; i < kChunks; ++i) {
    c[i] = {MemoryContextAlloc(ctx, 16), 16};
    Fill(c[i].first, 16, i);
  }
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < kChunks; ++i) {
      const std::size_t next = c[i].second * 2 + static_cast<std::size_t>(i);
      void* q = repalloc(c[i].first, next);
      ASSERT_TRUE(Intact(q, c[i].second, i)) << "round " << round << " chunk " << i;
      Fill(q, next, i);
      c[i] = {q, next};
    }
  }
  for (auto& [p, size] : c) pfree(p);
}

/// Zero-size requests are valid and return distinct pointers.
inline void CheckZeroSize(MemoryContext ctx, bool frees) {
  void* a = MemoryContextAlloc(ctx, 0);
  void* b = MemoryContextAlloc(ctx, 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_TRUE(IsAligned(a, 8));
  if (frees) {
    EXPECT_EQ(GetMemoryChunkContext(a), ctx);
    pfree(a);
    pfree(b);
  }
}

/// palloc0 / MemoryContextAllocZero / MCXT_ALLOC_ZERO return zeroed memory,
/// also when the memory was used before.
inline void CheckZeroed(MemoryContext ctx, bool frees) {
  for (std::size_t size : {std::size_t{8}, std::size_t{100}, std::size_t{3000}, std::size_t{20000}}) {
    void* dirty = MemoryContextAlloc(ctx, size);
    std::memset(dirty, 0xCD, size);
    if (frees) pfree(dirty);
    void* z1 = MemoryContextAllocZero(ctx, size);
    ASSERT_TRUE(AllZero(z1, size)) << size;
    void* z2 = MemoryContextAllocExtended(ctx, size, MCXT_ALLOC_ZERO);
    ASSERT_TRUE(AllZero(z2, size)) << size;
    MemoryContext old = MemoryContextSwitchTo(ctx);
    void* z3 = palloc0(size);
    MemoryContextSwitchTo(old);
    ASSERT_TRUE(AllZero(z3, size)) << size;
  }
}

}  // namespace grove::test
