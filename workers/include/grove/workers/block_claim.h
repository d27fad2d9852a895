// Parallel block claiming: N participants consume blocks 0 … B−1 of some
// shared input, each block exactly once, in chunks sized like PostgreSQL's
// parallel sequential scan (table_block_parallelscan_*):
// * chunk size = the next power of two of B / 2048, at most 8192 blocks,
//   at least 1 — large inputs in large chunks (few atomic operations),
// * once fewer than 64 chunks' worth of blocks remain, each participant
//   halves its chunk size as it claims, down to 1, so that all finish at
//   about the same time.
// The shared state is one 64-bit atomic counter (lock-free, so it works in
// shared memory across processes); each participant keeps its own cursor.
//
//   // leader, in the parallel DSM:
//   ParallelBlockClaimInit(shared, nblocks);
//   // every participant (leader included):
//   BlockClaimCursor cur; BlockClaimCursorInit(shared, &cur);
//   std::uint64_t first, count;
//   while (ParallelBlockClaimNextRange(shared, &cur, &first, &count)) scan(first, count);
#pragma once

#include <atomic>
#include <cstdint>

namespace grove {

inline constexpr std::uint64_t kBlockClaimChunks = 2048;        // PARALLEL_SEQSCAN_NCHUNKS
inline constexpr std::uint64_t kBlockClaimMaxChunk = 8192;      // PARALLEL_SEQSCAN_MAX_CHUNK_SIZE
inline constexpr std::uint64_t kBlockClaimRampdownChunks = 64;  // PARALLEL_SEQSCAN_RAMPDOWN_CHUNKS

/// In shared memory (e.g. a shm_toc chunk). Plain data and a lock-free atomic.
struct ParallelBlockClaim {
  std::atomic<std::uint64_t> nallocated;  // blocks handed out so far (may exceed nblocks)
  std::uint64_t nblocks;
  std::uint64_t chunk_size;  // the initial chunk size every participant starts with
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "claims work across processes");

/// A participant's own state (never shared).
struct BlockClaimCursor {
  std::uint64_t chunk_size;
};

/// Sets up the shared state for blocks [0, nblocks). Before any participant starts.
void ParallelBlockClaimInit(ParallelBlockClaim* shared, std::uint64_t nblocks);
/// Starts over (the same blocks), for a rescan; no participant may be claiming.
void ParallelBlockClaimReinit(ParallelBlockClaim* shared);
/// Each participant, once, before claiming.
void BlockClaimCursorInit(const ParallelBlockClaim* shared, BlockClaimCursor* cursor);

/// Claims the next run of blocks [*first, *first + *count); false when all
/// blocks have been claimed. Every block is returned to exactly one caller.
bool ParallelBlockClaimNextRange(ParallelBlockClaim* shared, BlockClaimCursor* cursor, std::uint64_t* first,
                                 std::uint64_t* count);

/// The chunk size for `nblocks` blocks (for tests and EXPLAIN).
std::uint64_t ParallelBlockClaimChunkSize(std::uint64_t nblocks);

}  // namespace grove
