// Bump internals shared by bump.cc and the palloc fast path.
// Internal to contexts/.
#pragma once

#include "chunk_checking.h"
#include "memory_context_internal.h"
#include "retained_blocks.h"

namespace grove::mcxt::bump {


constexpr std::size_t kChunkFraction = 8;  // chunks above maxBlockSize/8 get a dedicated block

#ifdef GROVE_MEMORY_CHECKING
constexpr std::size_t kBumpHeaderBytes = kChunkHeaderBytes;
#else
constexpr std::size_t kBumpHeaderBytes = 0;
#endif

struct BumpContext;
struct BumpBlock {
  BumpContext* context;  // first member: the checking registry reads it
  BumpBlock* next;
  std::size_t blksize;
  bool dedicated;  // holds one large chunk; never reused
  char* freeptr;
  char* endptr;
};
constexpr std::size_t kBlockHeaderBytes = MaxAlign(sizeof(BumpBlock));

struct BumpBlockSize {
  std::size_t operator()(const BumpBlock* block) const { return block->blksize; }
};

struct BumpContext {
  MemoryContextData header;
  std::size_t initBlockSize;
  std::size_t maxBlockSize;
  std::size_t nextBlockSize;
  std::size_t allocChunkLimit;
  BumpBlock* blocks;     // the head is the current block
  RetainedBlocks<BumpBlock, BumpBlockSize> retained;  // kept by reset for reuse
};
constexpr std::size_t kContextHeaderBytes = MaxAlign(sizeof(BumpContext));

inline BumpBlock* KeeperBlock(BumpContext* set) {
  return reinterpret_cast<BumpBlock*>(reinterpret_cast<char*>(set) + kContextHeaderBytes);
}
inline char* BlockStart(BumpBlock* block) { return reinterpret_cast<char*>(block) + kBlockHeaderBytes; }
inline std::size_t FreeSpace(BumpBlock* block) { return static_cast<std::size_t>(block->endptr - block->freeptr); }

/// Everything but a bump in the current block (and every allocation in
/// checking builds, which write a header and a sentinel).
[[gnu::noinline]] void* AllocSlow(BumpContext* set, std::size_t size, int flags);

inline void* Alloc(MemoryContext context, std::size_t size, int flags) {
  auto* set = reinterpret_cast<BumpContext*>(context);
#ifndef GROVE_MEMORY_CHECKING
  BumpBlock* block = set->blocks;
  // Block ends and chunk sizes are multiples of 8, so the free space is
  // too, and size <= free space implies MaxAlign(size) <= free space: one
  // comparison, which also rejects any size too large to round safely.
  // `size - 1` sends size 0 to the slow path, which gives it 8 bytes so that
  // every chunk is distinct.
  if (GROVE_LIKELY(size - 1 < FreeSpace(block))) {
    char* at = block->freeptr;
    block->freeptr += MaxAlign(size);
    return at;
  }
#endif
  return AllocSlow(set, size, flags);
}

}  // namespace grove::mcxt::bump
