// Generation: for chunks that are freed roughly in the order they were
// allocated (PostgreSQL's generation.c design).
//
// Chunks are carved sequentially from the current block, MAXALIGNed with no
// power-of-two rounding; each block only counts its chunks and how many were
// freed. When the last chunk of a block is freed the block is empty: the
// keeper and the current block are reused in place, one more is kept as the
// spare `freeblock`, any other goes back. pfree therefore never searches.
#include <algorithm>
#include <cstring>

#include "generation_impl.h"

namespace grove::mcxt {

using namespace generation;

namespace {
void MarkEmpty(GenerationBlock* block) {
  WipeMemory(BlockStart(block), static_cast<std::size_t>(block->freeptr - BlockStart(block)));
  block->nchunks = 0;
  block->nfree = 0;
  block->freeptr = BlockStart(block);
  MarkNoAccess(block->freeptr, FreeSpace(block));
}

void LinkBlock(GenerationContext* set, GenerationBlock* block) {
  block->prev = nullptr;
  block->next = set->blocks;
  if (set->blocks != nullptr) set->blocks->prev = block;
  set->blocks = block;
}

void UnlinkBlock(GenerationContext* set, GenerationBlock* block) {
  if (block->prev != nullptr)
    block->prev->next = block->next;
  else
    set->blocks = block->next;
  if (block->next != nullptr) block->next->prev = block->prev;
}

void* AllocLarge(GenerationContext* set, std::size_t size, int flags) {
  CheckAllocSize(size, flags);
  const std::size_t chunk_size = MaxAlign(size + kSentinelRoom);
  const std::size_t blksize = kBlockHeaderBytes + kChunkHeaderBytes + chunk_size;
  void* raw = AcquireBlock(&set->header, blksize);
  if (raw == nullptr) return AllocationFailure(&set->header, size, flags);
  auto* block = static_cast<GenerationBlock*>(raw);
  block->context = set;
  block->blksize = blksize;
  block->nchunks = 1;
  block->nfree = 0;
  block->freeptr = block->endptr = static_cast<char*>(raw) + blksize;
  LinkBlock(set, block);
  auto* chunk = reinterpret_cast<MemoryChunk*>(BlockStart(block) + kRequestedSizeBytes);
  ChunkSetHeaderExternal(chunk, block, kGenerationId);
  CheckingOnAlloc(&set->header, chunk, size, chunk_size);
  return ChunkGetPointer(chunk);
}

// Whether a block is a dedicated one (never current, but be exact).
bool ChunkIsExternalBlock(GenerationBlock* block) {
  return block->nchunks > 0 &&
         ChunkIsExternal(reinterpret_cast<MemoryChunk*>(BlockStart(block) + kRequestedSizeBytes));
}

// A block with room for `required` bytes: the spare, the keeper if empty, a
// retained block, or a new one.
GenerationBlock* NextBlock(GenerationContext* set, std::size_t required) {
  GenerationBlock* current = set->block;
  if (current != nullptr && current->nfree == current->nchunks && !ChunkIsExternalBlock(current)) {
    // Everything carved from the current block was freed: start it over.
    MarkEmpty(current);
    if (FreeSpace(current) >= required) return current;
    // Too small for this request: keep it as the spare, or give it back.
    if (set->freeblock == nullptr) {
      set->freeblock = current;
    } else if (!IsKeeper(set, current) && set->freeblock != current) {
      UnlinkBlock(set, current);
      ReleaseBlock(&set->header, current, current->blksize);
    }
    set->block = nullptr;
  }
  if (set->freeblock != nullptr && FreeSpace(set->freeblock) >= required) {
    GenerationBlock* b = set->freeblock;
    set->freeblock = nullptr;
    return b;
  }
  GenerationBlock* keeper = KeeperBlock(set);
  if (keeper->nchunks == 0 && FreeSpace(keeper) >= required && set->block != keeper) return keeper;
  GenerationBlock* block = set->retained.TakeIfAtLeast(required + kBlockHeaderBytes);
  if (block == nullptr) {
    std::size_t blksize = set->nextBlockSize;
    set->nextBlockSize = std::min(set->nextBlockSize * 2, set->maxBlockSize);
    while (blksize < required + kBlockHeaderBytes) blksize <<= 1;
    void* raw = AcquireBlock(&set->header, blksize);
    if (raw == nullptr) return nullptr;
    block = static_cast<GenerationBlock*>(raw);
    block->context = set;
    block->blksize = blksize;
    block->endptr = static_cast<char*>(raw) + blksize;
  }
  block->nchunks = 0;
  block->nfree = 0;
  block->freeptr = BlockStart(block);
  MarkNoAccess(block->freeptr, FreeSpace(block));
  LinkBlock(set, block);
  return block;
}

void* GenerationAlloc(MemoryContext context, std::size_t size, int flags) { return Alloc(context, size, flags); }
void GenerationFree(void* pointer) { Free(pointer); }

void* GenerationRealloc(void* pointer, std::size_t size, int flags) {
  MemoryChunk* chunk = PointerGetChunk(pointer);
  auto* block = static_cast<GenerationBlock*>(ChunkGetBlock(chunk));
  GenerationContext* set = block->context;
  const std::size_t old_size = ChunkDataSize(chunk, block);
  if (size <= old_size && old_size - size >= kSentinelRoom) {
    CheckingOnResize(&set->header, chunk, size, old_size);
    return pointer;
  }
  void* fresh = GenerationAlloc(&set->header, size, flags);
  if (fresh == nullptr) return nullptr;
  std::memcpy(fresh, pointer, CopyableBytes(chunk, old_size));
  GenerationFree(pointer);
  return fresh;
}

MemoryContext GenerationGetChunkContext(void* pointer) {
  return &static_cast<GenerationBlock*>(ChunkGetBlock(PointerGetChunk(pointer)))->context->header;
}

std::size_t GenerationGetChunkSpace(void* pointer) {
  MemoryChunk* chunk = PointerGetChunk(pointer);
  return ChunkDataSize(chunk, static_cast<GenerationBlock*>(ChunkGetBlock(chunk))) + kChunkHeaderBytes;
}

bool GenerationIsEmpty(MemoryContext context) { return context->isReset; }

void GenerationCheck([[maybe_unused]] MemoryContext context) {
#ifdef GROVE_MEMORY_CHECKING
  auto* set = reinterpret_cast<GenerationContext*>(context);
  for (GenerationBlock* block = set->blocks; block != nullptr; block = block->next) {
    std::size_t nchunks = 0, nfree = 0;
    char* pos = BlockStart(block);
    while (pos < block->freeptr) {
      auto* chunk = reinterpret_cast<MemoryChunk*>(pos + kRequestedSizeBytes);
      if (ChunkMethodId(chunk) != kGenerationId || ChunkGetBlock(chunk) != block) {
        CheckWarning(context, "problem in Generation %s: bad chunk header in block %p", context->name,
                     static_cast<void*>(block));
        break;
      }
      ++nchunks;
      if (ChunkRequestedSize(chunk) == kInvalidRequestedSize)
        ++nfree;
      else if (!CheckingSentinelOk(chunk))
        ReportSentinelDamage(context, chunk);
      pos += kChunkHeaderBytes + ChunkDataSize(chunk, block);
    }
    if (nchunks != block->nchunks || nfree != block->nfree)
      CheckWarning(context, "problem in Generation %s: block %p counts %zu chunks (%zu free), found %zu (%zu free)",
                   context->name, static_cast<void*>(block), block->nchunks, block->nfree, nchunks, nfree);
  }
#endif
}

void ResetBlocks(GenerationContext* set, bool retain) {
  GenerationCheck(&set->header);
  GenerationBlock* keeper = KeeperBlock(set);
  GenerationBlock* block = set->blocks;
  while (block != nullptr) {
    GenerationBlock* next = block->next;
    if (block != keeper) {
      // A dedicated block holds one live external chunk (it goes when freed).
      const bool dedicated =
          block->nchunks > 0 &&
          ChunkIsExternal(reinterpret_cast<MemoryChunk*>(BlockStart(block) + kRequestedSizeBytes));
      if (!retain || dedicated || !set->retained.Offer(&set->header, block))
        ReleaseBlock(&set->header, block, block->blksize);
      else
        MarkEmpty(block);
    }
    block = next;
  }
  if (!retain) set->retained.ReleaseAll(&set->header);
  MarkEmpty(keeper);
  keeper->prev = keeper->next = nullptr;
  set->blocks = keeper;
  set->block = keeper;
  set->freeblock = nullptr;
  set->nextBlockSize = set->initBlockSize;
}

void GenerationTrim(MemoryContext context) {
  auto* set = reinterpret_cast<GenerationContext*>(context);
  set->retained.ReleaseAll(context);
  GenerationBlock* spare = set->freeblock;
  if (spare != nullptr && !IsKeeper(set, spare) && spare != set->block) {
    set->freeblock = nullptr;
    UnlinkBlock(set, spare);
    ReleaseBlock(context, spare, spare->blksize);
  }
}

void GenerationReset(MemoryContext context) { ResetBlocks(reinterpret_cast<GenerationContext*>(context), true); }

void GenerationDelete(MemoryContext context) {
  auto* set = reinterpret_cast<GenerationContext*>(context);
  ResetBlocks(set, false);
  ReleaseBlock(context, set, KeeperBlock(set)->blksize + kContextHeaderBytes);
}

void GenerationStats(MemoryContext context, MemoryContextCounters* counters) {
  auto* set = reinterpret_cast<GenerationContext*>(context);
  for (GenerationBlock* block = set->blocks; block != nullptr; block = block->next) {
    ++counters->nblocks;
    counters->totalspace += block->blksize + (IsKeeper(set, block) ? kContextHeaderBytes : 0);
    counters->freespace += FreeSpace(block);
    counters->freechunks += block->nfree;
  }
  set->retained.ForEach([&](GenerationBlock*, std::size_t size) {
    ++counters->nblocks;
    counters->totalspace += size;
    counters->freespace += size;
  });
}

}  // namespace

const MemoryContextMethods kGenerationMethods = {
    GenerationAlloc,  GenerationFree,  GenerationRealloc, GenerationReset,
    GenerationDelete, GenerationGetChunkContext, GenerationGetChunkSpace,
    GenerationIsEmpty, GenerationStats, GenerationCheck,  GenerationTrim, "Generation",
};


namespace generation {

void* AllocSlow(GenerationContext* set, std::size_t size, int flags) {
  const std::size_t chunk_size = MaxAlign(size + kSentinelRoom);
  if (size > set->allocChunkLimit || chunk_size > set->allocChunkLimit) return AllocLarge(set, size, flags);
  const std::size_t required = chunk_size + kChunkHeaderBytes;
  GenerationBlock* block = set->block;
  if (block == nullptr || FreeSpace(block) < required) {
    block = NextBlock(set, required);
    if (block == nullptr) return AllocationFailure(&set->header, size, flags);
    set->block = block;
  }
  return Alloc(&set->header, size, flags);
}

void BlockEmptied(GenerationContext* set, GenerationBlock* block, MemoryChunk* chunk) {
  // The current block is rewound only once it has carved kRewindBytes.
  // Rewinding at every emptying would make the next palloc wait on this
  // pfree's store to freeptr, serializing small alloc/free pairs through
  // memory; never rewinding (until the block runs out) would walk a batch
  // workload through cold memory instead of reusing what is warm.
  if (block == set->block) {
    if (static_cast<std::size_t>(block->freeptr - BlockStart(block)) >= kRewindBytes) MarkEmpty(block);
    return;
  }
  if (IsKeeper(set, block)) {
    MarkEmpty(block);
    return;
  }
  if (set->freeblock == nullptr && !ChunkIsExternal(chunk)) {
    MarkEmpty(block);
    set->freeblock = block;
    return;
  }
  if (set->freeblock == block) {
    MarkEmpty(block);
    return;
  }
  UnlinkBlock(set, block);
  ReleaseBlock(&set->header, block, block->blksize);
}

}  // namespace generation

}  // namespace grove::mcxt

namespace grove {

using namespace mcxt;

MemoryContext GenerationContextCreate(MemoryContext parent, const char* name, std::size_t minContextSize,
                                      std::size_t initBlockSize, std::size_t maxBlockSize) {
  if (name == nullptr) name = "(unnamed)";
  ValidateBlockSizes(name, minContextSize, initBlockSize, maxBlockSize);
  std::size_t firstBlockSize = kContextHeaderBytes + kBlockHeaderBytes + kChunkHeaderBytes;
  firstBlockSize = std::max(firstBlockSize, minContextSize != 0 ? minContextSize : initBlockSize);
  void* raw = AcquireFirstBlock(parent, firstBlockSize);
  if (raw == nullptr) return static_cast<MemoryContext>(CreationFailure(parent, name, firstBlockSize));
  auto* set = static_cast<GenerationContext*>(raw);
  GenerationBlock* keeper = KeeperBlock(set);
  keeper->context = set;
  keeper->blksize = firstBlockSize - kContextHeaderBytes;
  keeper->endptr = static_cast<char*>(raw) + firstBlockSize;
  keeper->nchunks = keeper->nfree = 0;
  keeper->freeptr = BlockStart(keeper);
  keeper->prev = keeper->next = nullptr;
  MarkNoAccess(keeper->freeptr, FreeSpace(keeper));
  set->blocks = keeper;
  set->block = keeper;
  set->freeblock = nullptr;
  set->retained.Init();
  set->initBlockSize = initBlockSize;
  set->maxBlockSize = maxBlockSize;
  set->nextBlockSize = initBlockSize;
  set->allocChunkLimit = std::min<std::size_t>(maxBlockSize, kMaxChunkValue);
  while (set->allocChunkLimit + kChunkHeaderBytes > (maxBlockSize - kBlockHeaderBytes) / kChunkFraction)
    set->allocChunkLimit >>= 1;
  AdoptFirstBlock(&set->header, set, firstBlockSize);
  MemoryContextCreate(&set->header, &kGenerationMethods, kGenerationId, parent, name);
  return &set->header;
}

}  // namespace grove
