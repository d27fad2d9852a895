// Accounting: MemoryContextMemAllocated equals, to the byte, what the
// contexts obtained from the system minus what they gave back, as observed
// by BlockHooks; counters are consistent; reset retention keeps blocks.
#include "allocator_checks.h"
#include "grove/contexts/stats.h"

namespace grove::test {
namespace {

class AccountingTest : public ContextTestWithParam<Kind> {
 protected:
  std::size_t ChunkSize(std::size_t wanted) const { return KindAnySize(GetParam()) ? wanted : kDefaultSlabChunk; }
};

INSTANTIATE_TEST_SUITE_P(AllKinds, AccountingTest, ::testing::ValuesIn(AllKinds()), KindParamName);

// The bytes the hooks saw acquired minus released equal
// MemoryContextMemAllocated(root, true) after every step of a context's life:
// creation, small and large allocations, frees, repallocs, children of every
// kind, ResetOnly, Reset, ResetChildren, deleting children, deletion. At the
// end everything acquired has been released.
TEST_P(AccountingTest, ExactAgainstBlocksHeld) {
  const Kind kind = GetParam();
  BlockCounter counter;
  {
    ScopedBlockHooks hooks(&counter);
    // Not a preset shape, so never a recycled context.
    MemoryContext root = AllocSetContextCreate(TopMemoryContext, "accounting root", 0, 16 * 1024, 1024 * 1024);
    auto check = [&](const std::string& step) {
      ASSERT_EQ(counter.held(), MemoryContextMemAllocated(root, true)) << "after " << step;
    };
    check("creating the root");
    MemoryContext ctx = CreateContext(kind, root, "accounted");
    check("creating the context");

    std::vector<void*> small;
    for (int i = 0; i < 5000; ++i) {
      small.push_back(MemoryContextAlloc(ctx, ChunkSize(1 + (i * 37) % 1000)));
      if (i % 250 == 0) check("small allocation " + std::to_string(i));
    }
    check("small allocations");
    std::vector<void*> large;
    if (KindAnySize(kind)) {
      for (int i = 0; i < 20; ++i) {
        large.push_back(MemoryContextAlloc(ctx, 10000 + static_cast<std::size_t>(i) * 7919));
        check("large allocation " + std::to_string(i));
      }
      large.push_back(MemoryContextAlloc(ctx, 3 << 20));
      check("a 3 MiB allocation");
    }
    if (KindFrees(kind)) {
      for (std::size_t i = 0; i < small.size(); i += 2) pfree(small[i]);
      check("freeing half the small chunks");
      for (std::size_t i = 0; i < large.size(); i += 2) pfree(large[i]);
      check("freeing half the large chunks");
    }
    if (KindReallocs(kind)) {
      for (std::size_t i = 1; i < small.size(); i += 10) small[i] = repalloc(small[i], 20000);
      check("growing small chunks to large");
      for (std::size_t i = 1; i < large.size(); i += 2) large[i] = repalloc(large[i], 100);
      check("shrinking large chunks to small");
      for (std::size_t i = 1; i < small.size(); i += 10) small[i] = repalloc(small[i], 500000);
      check("growing large chunks");
    }
    for (Kind child_kind : AllKinds()) {
      MemoryContext child = CreateContext(child_kind, ctx, "child");
      check(std::string("creating a child of kind ") + KindName(child_kind));
      for (int i = 0; i < 300; ++i)
        MemoryContextAlloc(child, KindAnySize(child_kind) ? 1 + (i * 131) % 3000 : kDefaultSlabChunk);
      if (KindAnySize(child_kind)) MemoryContextAlloc(child, 50000);
      check(std::string("allocating in a child of kind ") + KindName(child_kind));
    }
    MemoryContextResetChildren(ctx);
    check("ResetChildren");
    MemoryContextResetOnly(ctx);
    check("ResetOnly");
    for (int i = 0; i < 3000; ++i) MemoryContextAlloc(ctx, ChunkSize(64 + i % 700));
    MemoryContextReset(ctx);
    check("Reset (children deleted)");
    for (int i = 0; i < 3000; ++i) MemoryContextAlloc(ctx, ChunkSize(64 + i % 700));
    MemoryContextSetRetention(ctx, 0);
    MemoryContextReset(ctx);
    check("Reset without retention");
    MemoryContext child = CreateContext(kind, ctx, "child again");
    MemoryContextAlloc(child, ChunkSize(100));
    MemoryContextDeleteChildren(ctx);
    check("DeleteChildren");
    MemoryContextDelete(ctx);
    check("deleting the context");
    MemoryContextDelete(root);
  }
  EXPECT_EQ(counter.acquired, counter.released) << "blocks still held after deleting everything";
}

// Contexts of the preset shapes created and deleted repeatedly (AllocSet
// recycles them): the hook balance still matches at every step.
TEST_P(AccountingTest, ExactAcrossCreateDeleteCycles) {
  const Kind kind = GetParam();
  BlockCounter counter;
  {
    ScopedBlockHooks hooks(&counter);
    MemoryContext root = AllocSetContextCreate(TopMemoryContext, "accounting root", 0, 16 * 1024, 1024 * 1024);
    for (int i = 0; i < 250; ++i) {
      MemoryContext c = CreateContext(kind, root, "cycled");
      MemoryContextAlloc(c, ChunkSize(100));
      ASSERT_EQ(counter.held(), MemoryContextMemAllocated(root, true)) << "cycle " << i << " after create";
      if (i % 2 == 0) MemoryContextDelete(c);
      ASSERT_EQ(counter.held(), MemoryContextMemAllocated(root, true)) << "cycle " << i << " after delete";
    }
    MemoryContextDelete(root);
  }
  EXPECT_EQ(counter.acquired, counter.released);
}

// MemoryContextMemAllocated(ctx, true) is the sum over the subtree, and
// (ctx, false) is the context alone.
TEST_P(AccountingTest, RecurseSumsSubtree) {
  MemoryContext ctx = CreateContext(GetParam(), TopMemoryContext, "sum");
  MemoryContext a = AllocSetContextCreate(ctx, "a", ALLOCSET_DEFAULT_SIZES);
  MemoryContext b = GenerationContextCreate(a, "b", ALLOCSET_DEFAULT_SIZES);
  MemoryContextAlloc(a, 100000);
  MemoryContextAlloc(b, 200000);
  for (int i = 0; i < 100; ++i) MemoryContextAlloc(ctx, ChunkSize(64));
  EXPECT_EQ(MemoryContextMemAllocated(ctx, true), MemoryContextMemAllocated(ctx, false) +
                                                      MemoryContextMemAllocated(a, false) +
                                                      MemoryContextMemAllocated(b, false));
  EXPECT_EQ(MemoryContextMemAllocated(a, true), MemoryContextMemAllocated(a, false) + MemoryContextMemAllocated(b, false));
  MemoryContextDelete(ctx);
}

// MemoryContextGetCounters: totalspace equals mem_allocated, free space is
// part of it, the chunks handed out fit in the used part, and a context
// holding memory has at least one block.
TEST_P(AccountingTest, CountersConsistent) {
  const Kind kind = GetParam();
  MemoryContext ctx = CreateContext(kind, TopMemoryContext, "counters");
  std::vector<void*> live;
  auto check = [&](const char* step) {
    MemoryContextCounters c = MemoryContextGetCounters(ctx);
    EXPECT_EQ(c.totalspace, MemoryContextMemAllocated(ctx, false)) << step;
    EXPECT_LE(c.freespace, c.totalspace) << step;
    if (c.totalspace > 0) {
      EXPECT_GE(c.nblocks, 1u) << step;
    }
    if (KindFrees(kind)) {
      std::size_t chunk_space = 0;
      for (void* p : live) chunk_space += GetMemoryChunkSpace(p);
      EXPECT_LE(chunk_space, c.totalspace - c.freespace) << step << ": chunks must fit in the used space";
    }
  };
  check("empty");
  for (int i = 0; i < 2000; ++i) live.push_back(MemoryContextAlloc(ctx, ChunkSize(1 + (i * 61) % 2000)));
  check("after allocations");
  if (KindAnySize(kind)) {
    live.push_back(MemoryContextAlloc(ctx, 100000));
    check("after a large allocation");
  }
  if (KindFrees(kind)) {
    std::vector<void*> kept;
    for (std::size_t i = 0; i < live.size(); ++i) {
      if (i % 3 == 0)
        pfree(live[i]);
      else
        kept.push_back(live[i]);
    }
    live.swap(kept);
    check("after frees");
    EXPECT_GT(MemoryContextGetCounters(ctx).freespace, 0u) << "freed chunks count as free space";
  }
  live.clear();
  MemoryContextReset(ctx);
  check("after reset");
  MemoryContextDelete(ctx);
}

// Default retention: a reset keeps blocks (up to GROVE_DEFAULT_RETAIN_BYTES)
// and the same allocations afterwards need no new block from the system.
TEST_P(AccountingTest, ResetRetainsBlocksForReuse) {
  const Kind kind = GetParam();
  BlockCounter counter;
  {
    ScopedBlockHooks hooks(&counter);
    MemoryContext ctx = CreateContext(kind, TopMemoryContext, "retaining");
    auto fill = [&] {
      for (int i = 0; i < 20000; ++i) MemoryContextAlloc(ctx, ChunkSize(16 + (i * 13) % 200));  // ~2.5 MiB
    };
    fill();
    const std::size_t held_after_fill = MemoryContextMemAllocated(ctx, false);
    MemoryContextReset(ctx);
    EXPECT_EQ(MemoryContextMemAllocated(ctx, false), held_after_fill) << "all blocks (< 8 MiB) are retained";
    const std::size_t acquires = counter.acquires;
    fill();
    EXPECT_EQ(counter.acquires, acquires) << "refilling reuses the retained blocks";
    EXPECT_EQ(MemoryContextMemAllocated(ctx, false), held_after_fill);
    MemoryContextDelete(ctx);
  }
  EXPECT_EQ(counter.acquired, counter.released);
}

// Retention is bounded: after filling 24 MiB of blocks, a reset keeps at most the
// retention allowance beyond what the context held when created.
TEST_P(AccountingTest, RetentionIsBounded) {
  const Kind kind = GetParam();
  MemoryContext ctx = CreateContext(kind, TopMemoryContext, "bounded");
  const std::size_t initial = MemoryContextMemAllocated(ctx, false);
  while (MemoryContextMemAllocated(ctx, false) < (std::size_t{24} << 20)) MemoryContextAlloc(ctx, ChunkSize(1000));
  MemoryContextReset(ctx);
  EXPECT_LE(MemoryContextMemAllocated(ctx, false), initial + GROVE_DEFAULT_RETAIN_BYTES);
  MemoryContextDelete(ctx);
}

// A custom retention allowance is honoured.
TEST_P(AccountingTest, CustomRetention) {
  const Kind kind = GetParam();
  MemoryContext ctx = CreateContext(kind, TopMemoryContext, "custom retention");
  const std::size_t initial = MemoryContextMemAllocated(ctx, false);
  MemoryContextSetRetention(ctx, 256 * 1024);
  while (MemoryContextMemAllocated(ctx, false) < (std::size_t{2} << 20)) MemoryContextAlloc(ctx, ChunkSize(1000));
  MemoryContextReset(ctx);
  EXPECT_LE(MemoryContextMemAllocated(ctx, false), initial + 256 * 1024);
  MemoryContextDelete(ctx);
}

}  // namespace
}  // namespace grove::test
