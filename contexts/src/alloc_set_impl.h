// AllocSet internals shared by alloc_set.cc and the palloc/pfree fast
// paths (memory_context.cc, chunk_dispatch.cc), which inline the free-list
// hit and the free so that the common case costs no indirect call.
// Internal to contexts/.
#pragma once

#include "chunk_checking.h"
#include "memory_context_internal.h"
#include "retained_blocks.h"

namespace grove::mcxt::aset {


constexpr int kNumFreeLists = 11;      // chunk sizes 8, 16, …, 8192
constexpr int kMinChunkShift = 3;      // 8 bytes: room for a free-list link
constexpr std::size_t kChunkFraction = 4;  // a small chunk takes at most 1/4 of a max-size block
static_assert((std::size_t{1} << (kMinChunkShift + kNumFreeLists - 1)) == ALLOC_CHUNK_LIMIT,
              "the largest free list serves exactly ALLOC_CHUNK_LIMIT bytes");

struct AllocSetContext;

struct AllocBlockData {
  AllocSetContext* aset;  // first member: the checking registry reads it
  AllocBlockData* prev;
  AllocBlockData* next;
  char* freeptr;  // start of the unused tail
  char* endptr;   // end of the block
};
constexpr std::size_t kBlockHeaderBytes = MaxAlign(sizeof(AllocBlockData));

// Retained blocks are never the keeper, so their size is end - start.
struct AllocBlockSize {
  std::size_t operator()(const AllocBlockData* block) const {
    return static_cast<std::size_t>(block->endptr - reinterpret_cast<const char*>(block));
  }
};

struct FreeListLink {
  MemoryChunk* next;
};

struct AllocSetContext {
  MemoryContextData header;
  AllocBlockData* blocks;  // the head is the active block; the keeper is always in the list
  MemoryChunk* freelist[kNumFreeLists];
  std::size_t initBlockSize;
  std::size_t maxBlockSize;
  std::size_t nextBlockSize;
  std::size_t allocChunkLimit;
  std::size_t firstBlockSize;  // bytes of the malloc holding this node and the keeper
  RetainedBlocks<AllocBlockData, AllocBlockSize> retained;  // kept by reset for reuse
  int recycle_index;  // shape of recyclable contexts (0: DEFAULT, 1: SMALL), -1 otherwise
};
constexpr std::size_t kContextHeaderBytes = MaxAlign(sizeof(AllocSetContext));

inline AllocBlockData* KeeperBlock(AllocSetContext* set) {
  return reinterpret_cast<AllocBlockData*>(reinterpret_cast<char*>(set) + kContextHeaderBytes);
}
inline char* BlockStart(AllocBlockData* block) { return reinterpret_cast<char*>(block) + kBlockHeaderBytes; }
inline std::size_t BlockSize(AllocSetContext* set, AllocBlockData* block) {
  // The keeper shares the node's malloc; its size is counted from the node.
  const char* base = block == KeeperBlock(set) ? reinterpret_cast<char*>(set) : reinterpret_cast<char*>(block);
  return static_cast<std::size_t>(block->endptr - base);
}
inline MemoryChunk* FirstChunk(AllocBlockData* block) {
  return reinterpret_cast<MemoryChunk*>(BlockStart(block) + kRequestedSizeBytes);
}
/// A dedicated block holds exactly one external chunk and is always full.
inline bool IsDedicatedBlock(AllocBlockData* block) {
  return block->freeptr == block->endptr && ChunkIsExternal(FirstChunk(block));
}

/// Free-list index for a request of `size` bytes (size <= allocChunkLimit).
inline int FreeIndex(std::size_t size) {
  if (size <= (std::size_t{1} << kMinChunkShift)) return 0;
  return (64 - __builtin_clzll(size - 1)) - kMinChunkShift;
}
inline std::size_t ChunkSizeOfIndex(int fidx) { return std::size_t{1} << (fidx + kMinChunkShift); }

inline FreeListLink* LinkOf(MemoryChunk* chunk) { return static_cast<FreeListLink*>(ChunkGetPointer(chunk)); }

inline AllocSetContext* SetOfChunk(MemoryChunk* chunk) {
  return static_cast<AllocBlockData*>(ChunkGetBlock(chunk))->aset;
}

inline void PushFreeChunk(AllocSetContext* set, MemoryChunk* chunk, int fidx) {
  FreeListLink* link = LinkOf(chunk);
  MarkUndefined(link, sizeof *link);
  link->next = set->freelist[fidx];
  MarkNoAccess(link, sizeof *link);
  set->freelist[fidx] = chunk;
}

/// Everything but a free-list hit: refilling from a block, large chunks.
[[gnu::noinline]] void* AllocSlow(AllocSetContext* set, std::size_t size, int flags);
/// Freeing a chunk that has a dedicated block.
[[gnu::noinline]] void FreeLarge(AllocSetContext* set, AllocBlockData* block, MemoryChunk* chunk);

/// The allocation fast path: a hit on the free list of the request's size.
inline void* Alloc(MemoryContext context, std::size_t size, int flags) {
  auto* set = reinterpret_cast<AllocSetContext*>(context);
  // (limit - room, not size + room: SIZE_MAX must not wrap into a small request)
  if (GROVE_LIKELY(size <= set->allocChunkLimit - kSentinelRoom)) {
    const int fidx = FreeIndex(size + kSentinelRoom);
    MemoryChunk* chunk = set->freelist[fidx];
    if (GROVE_LIKELY(chunk != nullptr)) {
      FreeListLink* link = LinkOf(chunk);
      MarkDefined(link, sizeof *link);
      set->freelist[fidx] = link->next;
      CheckingOnAlloc(context, chunk, size, ChunkSizeOfIndex(fidx));
      return link;
    }
  }
  return AllocSlow(set, size, flags);
}

inline void Free(void* pointer) {
  MemoryChunk* chunk = PointerGetChunk(pointer);
  auto* block = static_cast<AllocBlockData*>(ChunkGetBlock(chunk));
  AllocSetContext* set = block->aset;
  if (GROVE_UNLIKELY(ChunkIsExternal(chunk))) {
    FreeLarge(set, block, chunk);
    return;
  }
  const int fidx = static_cast<int>(ChunkValue(chunk));
  CheckingOnFree(&set->header, chunk, ChunkSizeOfIndex(fidx));
  PushFreeChunk(set, chunk, fidx);
}

}  // namespace grove::mcxt::aset
