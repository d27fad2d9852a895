// Bump: the cheapest allocator (PostgreSQL's bump.c design). A request
// bumps a pointer in the current block; chunks carry no header, so pfree,
// repalloc, GetMemoryChunkContext and GetMemoryChunkSpace are not supported:
// memory goes only with reset or delete. Checking builds do add a header
// (method id kBumpId) so that a pfree of a bump chunk is caught.
#include <algorithm>
#include <cstring>

#include "bump_impl.h"

namespace grove::mcxt {

using namespace bump;

namespace {
inline void* FinishChunk([[maybe_unused]] BumpContext* set, [[maybe_unused]] BumpBlock* block, char* at,
                         [[maybe_unused]] std::size_t size, [[maybe_unused]] std::size_t chunk_size) {
#ifdef GROVE_MEMORY_CHECKING
  MarkUndefined(at, kBumpHeaderBytes);
  auto* chunk = reinterpret_cast<MemoryChunk*>(at + kRequestedSizeBytes);
  // The value records the chunk's size so BumpCheck can walk the block
  // (dedicated blocks hold one chunk; their size may exceed 30 bits).
  ChunkSetHeader(chunk, block, block->dedicated ? 0 : static_cast<uint32_t>(chunk_size), kBumpId);
  CheckingOnAlloc(&set->header, chunk, size, chunk_size);
  return ChunkGetPointer(chunk);
#else
  return at;
#endif
}

void* AllocLarge(BumpContext* set, std::size_t size, int flags) {
  CheckAllocSize(size, flags);
  const std::size_t chunk_size = MaxAlign(size + kSentinelRoom);
  const std::size_t blksize = kBlockHeaderBytes + kBumpHeaderBytes + chunk_size;
  void* raw = AcquireBlock(&set->header, blksize);
  if (raw == nullptr) return AllocationFailure(&set->header, size, flags);
  auto* block = static_cast<BumpBlock*>(raw);
  block->context = set;
  block->blksize = blksize;
  block->dedicated = true;
  block->freeptr = block->endptr = static_cast<char*>(raw) + blksize;
  // Behind the current block, which stays at the head.
  block->next = set->blocks->next;
  set->blocks->next = block;
  return FinishChunk(set, block, BlockStart(block), size, chunk_size);
}

BumpBlock* NewBlock(BumpContext* set, std::size_t required) {
  BumpBlock* block = set->retained.TakeIfAtLeast(required + kBlockHeaderBytes);
  if (block == nullptr) {
    std::size_t blksize = set->nextBlockSize;
    set->nextBlockSize = std::min(set->nextBlockSize * 2, set->maxBlockSize);
    while (blksize < required + kBlockHeaderBytes) blksize <<= 1;
    void* raw = AcquireBlock(&set->header, blksize);
    if (raw == nullptr) return nullptr;
    block = static_cast<BumpBlock*>(raw);
    block->context = set;
    block->blksize = blksize;
    block->dedicated = false;
    block->endptr = static_cast<char*>(raw) + blksize;
  }
  block->freeptr = BlockStart(block);
  MarkNoAccess(block->freeptr, FreeSpace(block));
  block->next = set->blocks;
  set->blocks = block;
  return block;
}

void* BumpAlloc(MemoryContext context, std::size_t size, int flags) { return Alloc(context, size, flags); }

[[noreturn]] void Unsupported(const char* what) {
  ereport(ERROR, errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
          errmsg("%s is not supported by the bump memory allocator", what),
          errhint("Memory of a Bump context is released only by resetting or deleting the context."));
}
void BumpFree(void*) { Unsupported("pfree"); }
void* BumpRealloc(void*, std::size_t, int) { Unsupported("repalloc"); }
MemoryContext BumpGetChunkContext(void*) { Unsupported("GetMemoryChunkContext"); }
std::size_t BumpGetChunkSpace(void*) { Unsupported("GetMemoryChunkSpace"); }

bool BumpIsEmpty(MemoryContext context) { return context->isReset; }

void BumpCheck([[maybe_unused]] MemoryContext context) {
#ifdef GROVE_MEMORY_CHECKING
  auto* set = reinterpret_cast<BumpContext*>(context);
  for (BumpBlock* block = set->blocks; block != nullptr; block = block->next) {
    char* pos = BlockStart(block);
    while (pos < block->freeptr) {
      auto* chunk = reinterpret_cast<MemoryChunk*>(pos + kRequestedSizeBytes);
      if (ChunkMethodId(chunk) != kBumpId || ChunkGetBlock(chunk) != block) {
        CheckWarning(context, "problem in Bump %s: bad chunk header in block %p", context->name,
                     static_cast<void*>(block));
        break;
      }
      if (!CheckingSentinelOk(chunk)) ReportSentinelDamage(context, chunk);
      const std::size_t chunk_size = block->dedicated ? static_cast<std::size_t>(block->endptr - pos) - kBumpHeaderBytes
                                                      : ChunkValue(chunk);
      pos += kBumpHeaderBytes + chunk_size;
    }
  }
#endif
}

void WipeBlock(BumpBlock* block) {
  WipeMemory(BlockStart(block), static_cast<std::size_t>(block->freeptr - BlockStart(block)));
  block->freeptr = BlockStart(block);
  MarkNoAccess(block->freeptr, FreeSpace(block));
}

void ResetBlocks(BumpContext* set, bool retain) {
  BumpCheck(&set->header);
  BumpBlock* keeper = KeeperBlock(set);
  for (BumpBlock* block = set->blocks; block != nullptr;) {
    BumpBlock* next = block->next;
    if (block != keeper) {
      if (!retain || block->dedicated || !set->retained.Offer(&set->header, block))
        ReleaseBlock(&set->header, block, block->blksize);
      else
        WipeBlock(block);
    }
    block = next;
  }
  if (!retain) set->retained.ReleaseAll(&set->header);
  WipeBlock(keeper);
  keeper->next = nullptr;
  set->blocks = keeper;
  set->nextBlockSize = set->initBlockSize;
}

void BumpTrim(MemoryContext context) { reinterpret_cast<BumpContext*>(context)->retained.ReleaseAll(context); }

void BumpReset(MemoryContext context) { ResetBlocks(reinterpret_cast<BumpContext*>(context), true); }

void BumpDelete(MemoryContext context) {
  auto* set = reinterpret_cast<BumpContext*>(context);
  ResetBlocks(set, false);
  ReleaseBlock(context, set, KeeperBlock(set)->blksize + kContextHeaderBytes);
}

void BumpStats(MemoryContext context, MemoryContextCounters* counters) {
  auto* set = reinterpret_cast<BumpContext*>(context);
  BumpBlock* keeper = KeeperBlock(set);
  for (BumpBlock* block = set->blocks; block != nullptr; block = block->next) {
    ++counters->nblocks;
    counters->totalspace += block->blksize + (block == keeper ? kContextHeaderBytes : 0);
    counters->freespace += FreeSpace(block);
  }
  set->retained.ForEach([&](BumpBlock*, std::size_t size) {
    ++counters->nblocks;
    counters->totalspace += size;
    counters->freespace += size;
  });
}

}  // namespace

const MemoryContextMethods kBumpMethods = {
    BumpAlloc, BumpFree, BumpRealloc, BumpReset, BumpDelete, BumpGetChunkContext,
    BumpGetChunkSpace, BumpIsEmpty, BumpStats, BumpCheck, BumpTrim, "Bump",
};


namespace bump {

void* AllocSlow(BumpContext* set, std::size_t size, int flags) {
  const std::size_t chunk_size = MaxAlign(std::max<std::size_t>(size, 1) + kSentinelRoom);
  if (size > set->allocChunkLimit || chunk_size > set->allocChunkLimit) return AllocLarge(set, size, flags);
  const std::size_t required = chunk_size + kBumpHeaderBytes;
  BumpBlock* block = set->blocks;
  if (FreeSpace(block) < required) {
    block = NewBlock(set, required);
    if (block == nullptr) return AllocationFailure(&set->header, size, flags);
  }
  char* at = block->freeptr;
  block->freeptr += required;
  return FinishChunk(set, block, at, size, chunk_size);
}

}  // namespace bump

}  // namespace grove::mcxt

namespace grove {

using namespace mcxt;

MemoryContext BumpContextCreate(MemoryContext parent, const char* name, std::size_t minContextSize,
                                std::size_t initBlockSize, std::size_t maxBlockSize) {
  if (name == nullptr) name = "(unnamed)";
  ValidateBlockSizes(name, minContextSize, initBlockSize, maxBlockSize);
  std::size_t firstBlockSize = kContextHeaderBytes + kBlockHeaderBytes + kBumpHeaderBytes + kMaxAlign;
  firstBlockSize = std::max(firstBlockSize, minContextSize != 0 ? minContextSize : initBlockSize);
  void* raw = AcquireFirstBlock(parent, firstBlockSize);
  if (raw == nullptr) return static_cast<MemoryContext>(CreationFailure(parent, name, firstBlockSize));
  auto* set = static_cast<BumpContext*>(raw);
  BumpBlock* keeper = KeeperBlock(set);
  keeper->context = set;
  keeper->blksize = firstBlockSize - kContextHeaderBytes;
  keeper->dedicated = false;
  keeper->endptr = static_cast<char*>(raw) + firstBlockSize;
  keeper->freeptr = BlockStart(keeper);
  keeper->next = nullptr;
  MarkNoAccess(keeper->freeptr, FreeSpace(keeper));
  set->blocks = keeper;
  set->retained.Init();
  set->initBlockSize = initBlockSize;
  set->maxBlockSize = maxBlockSize;
  set->nextBlockSize = initBlockSize;
  set->allocChunkLimit = std::min<std::size_t>(maxBlockSize, kMaxChunkValue);
  while (set->allocChunkLimit + kBumpHeaderBytes > (maxBlockSize - kBlockHeaderBytes) / kChunkFraction)
    set->allocChunkLimit >>= 1;
  AdoptFirstBlock(&set->header, set, firstBlockSize);
  MemoryContextCreate(&set->header, &kBumpMethods, kBumpId, parent, name);
  return &set->header;
}

}  // namespace grove
