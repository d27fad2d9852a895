// Slab internals shared by slab.cc and the palloc/pfree fast paths.
// Internal to contexts/.
//
// Every block is on `all` (changed only when a block is acquired or
// released). Blocks with free slots are also on one fullness list,
// blocklist[1 .. kBlocklistCount-1], by ceil(nfree / 2^shift): lower index =
// fuller. Full blocks are on no fullness list, so the most common
// transitions — a block filling up as its last slot is taken, and a full
// block getting one slot back — are a pop from or a push onto the head of
// list 1, without touching blocks elsewhere in the lists.
#pragma once

#include "chunk_checking.h"
#include "memory_context_internal.h"

namespace grove::mcxt::slab {

constexpr int kBlocklistCount = 3;
constexpr int kMaxEmptyBlocks = 10;  // empty blocks pfree keeps for reuse

struct SlabContext;
struct SlabBlock {
  SlabContext* slab;  // first member: the checking registry reads it
  SlabBlock* prev;    // fullness list (or the empty-block chain, via next)
  SlabBlock* next;
  SlabBlock* all_prev;  // every block the context holds
  SlabBlock* all_next;
  int nfree;              // free slots (on the free list or never used)
  int nunused;            // slots never handed out, at `unused` onward
  MemoryChunk* freehead;  // free list of returned slots
  char* unused;
};
constexpr std::size_t kBlockHeaderBytes = MaxAlign(sizeof(SlabBlock));

struct SlabContext {
  MemoryContextData header;
  std::size_t chunkSize;      // what callers ask for
  std::size_t fullChunkSize;  // slot size: header(s) + data, MAXALIGNed
  std::size_t blockSize;
  int chunksPerBlock;
  int blocklistShift;
  int curBlocklistIndex;  // lowest non-empty fullness list, or 0 when no block has room
  int nemptyblocks;
  SlabBlock* emptyblocks;  // parked empty blocks (still on `all`), linked by next
  SlabBlock* all;
  SlabBlock* blocklist[kBlocklistCount];  // [0] unused: full blocks are on no list
};
constexpr std::size_t kContextHeaderBytes = MaxAlign(sizeof(SlabContext));

inline std::size_t DataSize(SlabContext* slab) { return slab->fullChunkSize - kChunkHeaderBytes; }
inline int BlocklistIndex(SlabContext* slab, int nfree) { return -((-nfree) >> slab->blocklistShift); }
inline char* FirstSlot(SlabBlock* block) { return reinterpret_cast<char*>(block) + kBlockHeaderBytes; }
inline MemoryChunk* SlotChunk(char* slot) { return reinterpret_cast<MemoryChunk*>(slot + kRequestedSizeBytes); }
inline MemoryChunk** LinkOf(MemoryChunk* chunk) { return static_cast<MemoryChunk**>(ChunkGetPointer(chunk)); }

inline void ListPush(SlabContext* slab, int idx, SlabBlock* block) {
  block->prev = nullptr;
  block->next = slab->blocklist[idx];
  if (block->next != nullptr) block->next->prev = block;
  slab->blocklist[idx] = block;
}

inline void ListRemove(SlabContext* slab, int idx, SlabBlock* block) {
  if (block->prev != nullptr)
    block->prev->next = block->next;
  else
    slab->blocklist[idx] = block->next;
  if (block->next != nullptr) block->next->prev = block->prev;
}

/// Everything but a hit in the current block: wrong sizes, a new block.
[[gnu::noinline]] void* AllocSlow(SlabContext* slab, std::size_t size, int flags);
/// Sets curBlocklistIndex to the lowest non-empty list.
[[gnu::noinline]] void RecomputeCurrent(SlabContext* slab);
/// Rare transitions after a free: between lists 1 and 2, or to empty.
[[gnu::noinline]] void Relist(SlabContext* slab, SlabBlock* block, int old_idx);
/// Rare transition after an allocation: from list 2 to list 1.
[[gnu::noinline]] void Refile(SlabContext* slab, SlabBlock* block, int cur);

inline void* Alloc(MemoryContext context, std::size_t size, int flags) {
  auto* slab = reinterpret_cast<SlabContext*>(context);
  const int cur = slab->curBlocklistIndex;
  if (GROVE_UNLIKELY(size != slab->chunkSize || cur == 0)) return AllocSlow(slab, size, flags);
  SlabBlock* block = slab->blocklist[cur];
  MemoryChunk* chunk = block->freehead;
  if (chunk != nullptr) {
    MarkDefined(LinkOf(chunk), sizeof(MemoryChunk*));
    block->freehead = *LinkOf(chunk);
  } else {
    MarkUndefined(block->unused, kChunkHeaderBytes);
    chunk = SlotChunk(block->unused);
    block->unused += slab->fullChunkSize;
    --block->nunused;
    ChunkSetHeader(chunk, block, 0, kSlabId);
  }
  if (--block->nfree == 0) {
    // Full now: off its list (it is the head).
    slab->blocklist[cur] = block->next;
    if (block->next != nullptr) {
      block->next->prev = nullptr;
    } else {
      RecomputeCurrent(slab);
    }
  } else if (GROVE_UNLIKELY(BlocklistIndex(slab, block->nfree) != cur)) {
    Refile(slab, block, cur);
  }
  CheckingOnAlloc(context, chunk, size, DataSize(slab));
  return ChunkGetPointer(chunk);
}

inline void Free(void* pointer) {
  MemoryChunk* chunk = PointerGetChunk(pointer);
  auto* block = static_cast<SlabBlock*>(ChunkGetBlock(chunk));
  SlabContext* slab = block->slab;
  CheckingOnFree(&slab->header, chunk, DataSize(slab));
  MarkUndefined(LinkOf(chunk), sizeof(MemoryChunk*));
  *LinkOf(chunk) = block->freehead;
  MarkNoAccess(LinkOf(chunk), sizeof(MemoryChunk*));
  block->freehead = chunk;
  const int old_free = block->nfree++;
  if (old_free == 0 && GROVE_LIKELY(slab->chunksPerBlock > 1)) {
    // Was full: it becomes the fullest block with room, head of list 1.
    ListPush(slab, 1, block);
    slab->curBlocklistIndex = 1;
    return;
  }
  const int old_idx = BlocklistIndex(slab, old_free);
  const bool moves = BlocklistIndex(slab, block->nfree) != old_idx;
  if (GROVE_LIKELY(!moves && block->nfree != slab->chunksPerBlock)) return;
  // Emptied, but the only block with room: it stays (see Relist), and
  // checking that here keeps a lone alloc/free pair off the slow path.
  static_assert(kBlocklistCount == 3, "the sole-block test below knows the lists");
  if (!moves && block->next == nullptr && slab->blocklist[old_idx] == block &&
      slab->blocklist[3 - old_idx] == nullptr)
    return;
  Relist(slab, block, old_idx);
}

}  // namespace grove::mcxt::slab
