// Slab internals shared by slab.cc and the palloc/pfree fast paths.
// Internal to contexts/.
#pragma once

#include "chunk_checking.h"
#include "memory_context_internal.h"

namespace grove::mcxt::slab {


// blocklist[0]: full blocks; [1..]: blocks by ceil(nfree / 2^shift), fuller first.
constexpr int kBlocklistCount = 3;
constexpr int kMaxEmptyBlocks = 10;

struct SlabContext;
struct SlabBlock {
  SlabContext* slab;  // first member: the checking registry reads it
  SlabBlock* prev;
  SlabBlock* next;
  int nfree;            // free slots (on the free list or never used)
  int nunused;          // slots never handed out, at `unused` onward
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
  int curBlocklistIndex;  // lowest non-empty list >= 1, or 0 when no block has room
  int nemptyblocks;
  SlabBlock* emptyblocks;  // linked by next
  SlabBlock* blocklist[kBlocklistCount];
};
constexpr std::size_t kContextHeaderBytes = MaxAlign(sizeof(SlabContext));

inline std::size_t DataSize(SlabContext* slab) { return slab->fullChunkSize - kChunkHeaderBytes; }
inline int BlocklistIndex(SlabContext* slab, int nfree) { return -((-nfree) >> slab->blocklistShift); }
inline char* FirstSlot(SlabBlock* block) { return reinterpret_cast<char*>(block) + kBlockHeaderBytes; }
inline MemoryChunk* SlotChunk(char* slot) { return reinterpret_cast<MemoryChunk*>(slot + kRequestedSizeBytes); }
inline MemoryChunk** LinkOf(MemoryChunk* chunk) { return static_cast<MemoryChunk**>(ChunkGetPointer(chunk)); }

/// Everything but a hit in the current block: wrong sizes, a new block, and
/// moving the block between lists when its fullness class changes.
[[gnu::noinline]] void* AllocSlow(SlabContext* slab, std::size_t size, int flags);
/// The block changed fullness class (or became empty) after a free.
[[gnu::noinline]] void Relist(SlabContext* slab, SlabBlock* block, int old_idx);
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
  --block->nfree;
  if (GROVE_UNLIKELY(BlocklistIndex(slab, block->nfree) != cur)) Refile(slab, block, cur);
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
  const int old_idx = BlocklistIndex(slab, block->nfree);
  ++block->nfree;
  if (GROVE_UNLIKELY(block->nfree == slab->chunksPerBlock || BlocklistIndex(slab, block->nfree) != old_idx))
    Relist(slab, block, old_idx);
}

}  // namespace grove::mcxt::slab
