// Parallel block claiming (see block_claim.h).
#include "grove/workers/block_claim.h"

#include <bit>

namespace grove {

std::uint64_t ParallelBlockClaimChunkSize(std::uint64_t nblocks) {
  const std::uint64_t per_chunk = nblocks / kBlockClaimChunks;
  const std::uint64_t size = per_chunk <= 1 ? 1 : std::bit_ceil(per_chunk);
  return size < kBlockClaimMaxChunk ? size : kBlockClaimMaxChunk;
}

void ParallelBlockClaimInit(ParallelBlockClaim* shared, std::uint64_t nblocks) {
  shared->nblocks = nblocks;
  shared->chunk_size = ParallelBlockClaimChunkSize(nblocks);
  shared->nallocated.store(0, std::memory_order_release);
}

void ParallelBlockClaimReinit(ParallelBlockClaim* shared) { shared->nallocated.store(0, std::memory_order_release); }

void BlockClaimCursorInit(const ParallelBlockClaim* shared, BlockClaimCursor* cursor) {
  cursor->chunk_size = shared->chunk_size;
}

bool ParallelBlockClaimNextRange(ParallelBlockClaim* shared, BlockClaimCursor* cursor, std::uint64_t* first,
                                 std::uint64_t* count) {
  const std::uint64_t nblocks = shared->nblocks;
  // Ramp down near the end: halve while fewer than 64 chunks' worth remain
  // (by this participant's last view of the counter, as PostgreSQL does).
  std::uint64_t seen = shared->nallocated.load(std::memory_order_relaxed);
  while (cursor->chunk_size > 1 && seen < nblocks &&
         nblocks - seen < cursor->chunk_size * kBlockClaimRampdownChunks)
    cursor->chunk_size >>= 1;
  const std::uint64_t start = shared->nallocated.fetch_add(cursor->chunk_size, std::memory_order_relaxed);
  if (start >= nblocks) return false;
  *first = start;
  *count = nblocks - start < cursor->chunk_size ? nblocks - start : cursor->chunk_size;
  return true;
}

}  // namespace grove
