// Parallel block claiming: chunk sizes as PostgreSQL's parallel seq scan,
// every block claimed exactly once whatever the number of participants
// (threads here; the counter is a lock-free atomic, so processes sharing it
// in a DSM behave the same), ramp-down to single blocks at the end, rescan.
#include <algorithm>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "grove/workers/block_claim.h"

namespace grove {
namespace {

TEST(BlockClaimTest, ChunkSizes) {
  EXPECT_EQ(ParallelBlockClaimChunkSize(0), 1u);
  EXPECT_EQ(ParallelBlockClaimChunkSize(1), 1u);
  EXPECT_EQ(ParallelBlockClaimChunkSize(4095), 1u);
  EXPECT_EQ(ParallelBlockClaimChunkSize(2048 * 3), 4u);  // next power of two of 3
  EXPECT_EQ(ParallelBlockClaimChunkSize(2048 * 1000), 1024u);
  EXPECT_EQ(ParallelBlockClaimChunkSize(std::uint64_t{1} << 40), kBlockClaimMaxChunk);
}

TEST(BlockClaimTest, EmptyInputClaimsNothing) {
  ParallelBlockClaim shared;
  ParallelBlockClaimInit(&shared, 0);
  BlockClaimCursor cur;
  BlockClaimCursorInit(&shared, &cur);
  std::uint64_t first, count;
  EXPECT_FALSE(ParallelBlockClaimNextRange(&shared, &cur, &first, &count));
}

// One participant sees consecutive ranges covering [0, B), chunk sizes
// never growing, ending in single blocks when the input is large.
TEST(BlockClaimTest, OneParticipantCoversEverythingAndRampsDown) {
  for (std::uint64_t nblocks : {1ull, 7ull, 4096ull, 100000ull, 3000000ull}) {
    ParallelBlockClaim shared;
    ParallelBlockClaimInit(&shared, nblocks);
    BlockClaimCursor cur;
    BlockClaimCursorInit(&shared, &cur);
    std::uint64_t next = 0, first, count, last_count = ~0ull;
    while (ParallelBlockClaimNextRange(&shared, &cur, &first, &count)) {
      ASSERT_EQ(first, next) << "nblocks " << nblocks;
      ASSERT_GE(count, 1u);
      ASSERT_LE(count, last_count) << "chunks never grow";
      last_count = count;
      next += count;
    }
    EXPECT_EQ(next, nblocks);
    EXPECT_EQ(last_count, 1u) << "the last chunk is a single block (nblocks " << nblocks << ")";
  }
}

// P threads claim concurrently: every block exactly once.
TEST(BlockClaimTest, ConcurrentParticipantsClaimEachBlockOnce) {
  for (int participants : {2, 4, 8}) {
    const std::uint64_t nblocks = 1'000'003;
    ParallelBlockClaim shared;
    ParallelBlockClaimInit(&shared, nblocks);
    std::vector<std::atomic<std::uint8_t>> claimed(nblocks);
    std::vector<std::uint64_t> per_participant(participants, 0);
    std::vector<std::thread> threads;
    for (int p = 0; p < participants; ++p) {
      threads.emplace_back([&, p] {
        BlockClaimCursor cur;
        BlockClaimCursorInit(&shared, &cur);
        std::uint64_t first, count;
        while (ParallelBlockClaimNextRange(&shared, &cur, &first, &count)) {
          for (std::uint64_t b = first; b < first + count; ++b) claimed[b].fetch_add(1);
          per_participant[p] += count;
        }
      });
    }
    for (std::thread& t : threads) t.join();
    std::uint64_t total = 0;
    for (std::uint64_t n : per_participant) total += n;
    EXPECT_EQ(total, nblocks);
    for (std::uint64_t b = 0; b < nblocks; ++b) ASSERT_EQ(claimed[b].load(), 1) << "block " << b;
  }
}

TEST(BlockClaimTest, ReinitStartsOver) {
  ParallelBlockClaim shared;
  ParallelBlockClaimInit(&shared, 10);
  BlockClaimCursor cur;
  BlockClaimCursorInit(&shared, &cur);
  std::uint64_t first, count, seen = 0;
  while (ParallelBlockClaimNextRange(&shared, &cur, &first, &count)) seen += count;
  EXPECT_EQ(seen, 10u);
  ParallelBlockClaimReinit(&shared);
  BlockClaimCursorInit(&shared, &cur);
  seen = 0;
  while (ParallelBlockClaimNextRange(&shared, &cur, &first, &count)) seen += count;
  EXPECT_EQ(seen, 10u);
}

}  // namespace
}  // namespace grove
