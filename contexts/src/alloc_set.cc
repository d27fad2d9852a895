// AllocSet: the general-purpose allocator (PostgreSQL's aset.c design).
//
// Small requests are rounded up to a power of two, 8 B … allocChunkLimit,
// and served from one free list per size; a free list is refilled by
// carving chunks from the active block. Blocks grow geometrically from
// initBlockSize to maxBlockSize. Requests above allocChunkLimit get a
// dedicated block that pfree returns at once.
//
// Memory layout of a context: one malloc holds the AllocSetContext node and
// the keeper block, which survives resets. Every chunk is
//   [requested size (checking builds)] [8-byte header] [data ...]
// where the header's value is the free-list index (or "external" for a
// dedicated block).
//
// Beyond PostgreSQL: a reset keeps up to retain_bytes of blocks for reuse
// (largest first) instead of returning them to malloc, which otherwise
// page-faults them back in on the next cycle.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "alloc_set_impl.h"
#include "grove/contexts/testing.h"

namespace grove::mcxt {

using namespace aset;

namespace {
// Recently deleted contexts of the two common shapes, ready for reuse
// (PostgreSQL keeps these too: creating a context per query or per
// function call is common). Per thread, as contexts are.
constexpr int kMaxRecycled = 100;
struct RecycleList {
  AllocSetContext* head = nullptr;
  int count = 0;
};
thread_local RecycleList recycled[2];

// Obtains a new active block able to hold `min_bytes` (chunk plus header):
// a retained block if one is big enough, else a new one from the system.
AllocBlockData* NewBlock(AllocSetContext* set, std::size_t min_bytes) {
  const std::size_t required = min_bytes + kBlockHeaderBytes;
  AllocBlockData* block = set->retained.TakeIfAtLeast(required);
  if (block == nullptr) {
    std::size_t blksize = set->nextBlockSize;
    set->nextBlockSize = std::min(set->nextBlockSize * 2, set->maxBlockSize);
    while (blksize < required) blksize <<= 1;
    void* raw = AcquireBlock(&set->header, blksize);
    // As PostgreSQL: under memory pressure, settle for a smaller block.
    while (raw == nullptr && blksize > 1024 * 1024 && (blksize >> 1) >= required) {
      blksize >>= 1;
      raw = AcquireBlock(&set->header, blksize);
    }
    if (raw == nullptr) return nullptr;
    block = static_cast<AllocBlockData*>(raw);
    block->aset = set;
    block->endptr = static_cast<char*>(raw) + blksize;
  }
  block->freeptr = BlockStart(block);
  MarkNoAccess(block->freeptr, static_cast<std::size_t>(block->endptr - block->freeptr));
  block->prev = nullptr;
  block->next = set->blocks;
  if (set->blocks != nullptr) set->blocks->prev = block;
  set->blocks = block;
  return block;
}

// The active block is too small for the next chunk: give its tail to the
// free lists so the space is not lost (as PostgreSQL does).
void CarveTail(AllocSetContext* set, AllocBlockData* block) {
  std::size_t avail = static_cast<std::size_t>(block->endptr - block->freeptr);
  while (avail >= kChunkHeaderBytes + (std::size_t{1} << kMinChunkShift)) {
    std::size_t data = avail - kChunkHeaderBytes;
    int fidx = FreeIndex(data);
    if (ChunkSizeOfIndex(fidx) != data) --fidx;  // round down to fit
    const std::size_t chunk_size = ChunkSizeOfIndex(fidx);
    MarkUndefined(block->freeptr, kChunkHeaderBytes);
    auto* chunk = reinterpret_cast<MemoryChunk*>(block->freeptr + kRequestedSizeBytes);
    ChunkSetHeader(chunk, block, static_cast<uint32_t>(fidx), kAllocSetId);
#ifdef GROVE_MEMORY_CHECKING
    ChunkSetRequestedSize(chunk, kInvalidRequestedSize);
#endif
    PushFreeChunk(set, chunk, fidx);
    block->freeptr += kChunkHeaderBytes + chunk_size;
    avail -= kChunkHeaderBytes + chunk_size;
  }
}

void* AllocLarge(AllocSetContext* set, std::size_t size, int flags) {
  CheckAllocSize(size, flags);
  const std::size_t chunk_size = MaxAlign(size + kSentinelRoom);
  const std::size_t blksize = kBlockHeaderBytes + kChunkHeaderBytes + chunk_size;
  void* raw = AcquireBlock(&set->header, blksize);
  if (raw == nullptr) return AllocationFailure(&set->header, size, flags);
  auto* block = static_cast<AllocBlockData*>(raw);
  block->aset = set;
  block->freeptr = block->endptr = static_cast<char*>(raw) + blksize;
  MemoryChunk* chunk = FirstChunk(block);
  ChunkSetHeaderExternal(chunk, block, kAllocSetId);
  // Behind the active block, so the active block stays at the head.
  AllocBlockData* head = set->blocks;
  block->prev = head;
  block->next = head->next;
  if (head->next != nullptr) head->next->prev = block;
  head->next = block;
  CheckingOnAlloc(&set->header, chunk, size, chunk_size);
  return ChunkGetPointer(chunk);
}

void* AllocFromBlock(AllocSetContext* set, std::size_t size, int flags, int fidx) {
  const std::size_t chunk_size = ChunkSizeOfIndex(fidx);
  AllocBlockData* block = set->blocks;
  if (static_cast<std::size_t>(block->endptr - block->freeptr) < chunk_size + kChunkHeaderBytes) {
    CarveTail(set, block);
    block = NewBlock(set, chunk_size + kChunkHeaderBytes);
    if (block == nullptr) return AllocationFailure(&set->header, size, flags);
  }
  MarkUndefined(block->freeptr, kChunkHeaderBytes);
  auto* chunk = reinterpret_cast<MemoryChunk*>(block->freeptr + kRequestedSizeBytes);
  block->freeptr += kChunkHeaderBytes + chunk_size;
  ChunkSetHeader(chunk, block, static_cast<uint32_t>(fidx), kAllocSetId);
  CheckingOnAlloc(&set->header, chunk, size, chunk_size);
  return ChunkGetPointer(chunk);
}

void* AllocSetAlloc(MemoryContext context, std::size_t size, int flags) { return Alloc(context, size, flags); }

void UnlinkBlock(AllocSetContext* set, AllocBlockData* block) {
  if (block->prev != nullptr)
    block->prev->next = block->next;
  else
    set->blocks = block->next;
  if (block->next != nullptr) block->next->prev = block->prev;
}

void AllocSetFree(void* pointer) { Free(pointer); }

void* AllocSetRealloc(void* pointer, std::size_t size, int flags) {
  MemoryChunk* chunk = PointerGetChunk(pointer);
  auto* block = static_cast<AllocBlockData*>(ChunkGetBlock(chunk));
  AllocSetContext* set = block->aset;

  if (ChunkIsExternal(chunk)) {
    CheckAllocSize(size, flags);
    // A dedicated block is resized in place by the system allocator; the
    // chunk keeps its offset in the block, so its header stays valid.
    const std::size_t old_chunk = static_cast<std::size_t>(block->endptr - static_cast<char*>(pointer));
    const std::size_t chunk_size = MaxAlign(size + kSentinelRoom);
    const std::size_t old_blksize = BlockSize(set, block);
    const std::size_t blksize = kBlockHeaderBytes + kChunkHeaderBytes + chunk_size;
#ifdef GROVE_MEMORY_CHECKING
    if (!CheckingSentinelOk(chunk)) ReportSentinelDamage(&set->header, chunk);
    const std::size_t keep = std::min<std::size_t>(ChunkRequestedSize(chunk), size);
#else
    const std::size_t keep = std::min(old_chunk, size);
#endif
    // Shrinking keeps the chunk where it is unless that would hold on to
    // more than twice what is asked for, and never fails: if no new block
    // can be had, the chunk stays.
    const bool shrinking = size <= old_chunk - kSentinelRoom;
    if (shrinking && size >= old_chunk / 2) {
      CheckingOnResize(&set->header, chunk, size, old_chunk);
      return pointer;
    }
    // Allocate-copy-free rather than realloc(): the limit and hook
    // accounting must see the new block before the old one goes, and a
    // failure must leave the old chunk untouched.
    void* raw = AcquireBlock(&set->header, blksize);
    if (raw == nullptr) {
      if (shrinking) {
        CheckingOnResize(&set->header, chunk, size, old_chunk);
        return pointer;
      }
      return AllocationFailure(&set->header, size, flags);
    }
    auto* nblock = static_cast<AllocBlockData*>(raw);
    nblock->aset = set;
    nblock->freeptr = nblock->endptr = static_cast<char*>(raw) + blksize;
    MemoryChunk* nchunk = FirstChunk(nblock);
    ChunkSetHeaderExternal(nchunk, nblock, kAllocSetId);
    CheckingOnAlloc(&set->header, nchunk, size, chunk_size);
    MarkDefined(pointer, keep);
    std::memcpy(ChunkGetPointer(nchunk), pointer, keep);
    // Take the old block's place in the list.
    nblock->prev = block->prev;
    nblock->next = block->next;
    if (nblock->prev != nullptr)
      nblock->prev->next = nblock;
    else
      set->blocks = nblock;
    if (nblock->next != nullptr) nblock->next->prev = nblock;
    PoolFree(&set->header, pointer);
    ReleaseBlock(&set->header, block, old_blksize);
    return ChunkGetPointer(nchunk);
  }

  const std::size_t old_size = ChunkSizeOfIndex(static_cast<int>(ChunkValue(chunk)));
  if (size <= old_size - kSentinelRoom) {
    // Still fits: shrinking (or growing within the rounding) keeps the chunk.
    CheckingOnResize(&set->header, chunk, size, old_size);
    return pointer;
  }
  void* fresh = AllocSetAlloc(&set->header, size, flags);
  if (fresh == nullptr) return nullptr;
  const std::size_t copy = CopyableBytes(chunk, old_size);
  std::memcpy(fresh, pointer, copy);
  AllocSetFree(pointer);
  return fresh;
}

MemoryContext AllocSetGetChunkContext(void* pointer) { return &SetOfChunk(PointerGetChunk(pointer))->header; }

std::size_t AllocSetGetChunkSpace(void* pointer) {
  MemoryChunk* chunk = PointerGetChunk(pointer);
  if (ChunkIsExternal(chunk)) {
    auto* block = static_cast<AllocBlockData*>(ChunkGetBlock(chunk));
    return static_cast<std::size_t>(block->endptr - static_cast<char*>(pointer)) + kChunkHeaderBytes;
  }
  return ChunkSizeOfIndex(static_cast<int>(ChunkValue(chunk))) + kChunkHeaderBytes;
}

bool AllocSetIsEmpty(MemoryContext context) { return context->isReset; }

// Walks every chunk of every block and verifies headers and sentinels.
void AllocSetCheck([[maybe_unused]] MemoryContext context) {
#ifdef GROVE_MEMORY_CHECKING
  auto* set = reinterpret_cast<AllocSetContext*>(context);
  for (AllocBlockData* block = set->blocks; block != nullptr; block = block->next) {
    if (block->aset != set) {
      CheckWarning(context, "problem in alloc set %s: bogus aset link in block %p", context->name,
                   static_cast<void*>(block));
      continue;
    }
    char* pos = BlockStart(block);
    while (pos < block->freeptr) {
      auto* chunk = reinterpret_cast<MemoryChunk*>(pos + kRequestedSizeBytes);
      if (ChunkMethodId(chunk) != kAllocSetId || ChunkGetBlock(chunk) != block) {
        CheckWarning(context, "problem in alloc set %s: bad chunk header in block %p at %p", context->name,
                     static_cast<void*>(block), static_cast<void*>(chunk));
        break;
      }
      std::size_t chunk_size;
      if (ChunkIsExternal(chunk))
        chunk_size = static_cast<std::size_t>(block->endptr - static_cast<char*>(ChunkGetPointer(chunk)));
      else
        chunk_size = ChunkSizeOfIndex(static_cast<int>(ChunkValue(chunk)));
      if (!CheckingSentinelOk(chunk)) ReportSentinelDamage(context, chunk);
      pos += kChunkHeaderBytes + chunk_size;
    }
  }
#endif
}

void WipeBlock(AllocBlockData* block) {
  WipeMemory(BlockStart(block), static_cast<std::size_t>(block->freeptr - BlockStart(block)));
  block->freeptr = BlockStart(block);
  MarkNoAccess(block->freeptr, static_cast<std::size_t>(block->endptr - block->freeptr));
}

// Empties the context. `retain`: keep blocks for reuse up to retain_bytes.
void ResetBlocks(AllocSetContext* set, bool retain) {
  AllocSetCheck(&set->header);
  std::memset(set->freelist, 0, sizeof set->freelist);
  AllocBlockData* keeper = KeeperBlock(set);
  AllocBlockData* block = set->blocks;
  while (block != nullptr) {
    AllocBlockData* next = block->next;
    if (block != keeper) {
      if (!retain || IsDedicatedBlock(block) || !set->retained.Offer(&set->header, block))
        ReleaseBlock(&set->header, block, BlockSize(set, block));
      else
        WipeBlock(block);
    }
    block = next;
  }
  if (!retain) set->retained.ReleaseAll(&set->header);
  WipeBlock(keeper);
  keeper->prev = keeper->next = nullptr;
  set->blocks = keeper;
  set->nextBlockSize = set->initBlockSize;
}

void AllocSetTrim(MemoryContext context) {
  auto* set = reinterpret_cast<AllocSetContext*>(context);
  set->retained.ReleaseAll(context);
}

void AllocSetReset(MemoryContext context) { ResetBlocks(reinterpret_cast<AllocSetContext*>(context), true); }

void AllocSetDelete(MemoryContext context) {
  auto* set = reinterpret_cast<AllocSetContext*>(context);
  ResetBlocks(set, false);
  if (set->recycle_index >= 0 && recycled[set->recycle_index].count < kMaxRecycled) {
    // Keep the node and its keeper for the next context of this shape. It
    // leaves the tree, so it leaves the limits above it too; to the block
    // hooks its memory is returned (the cache is the allocator's own).
    LimitUncharge(context->limit_holder, context->mem_allocated);
    context->limit_holder = nullptr;
    const BlockHooks hooks = CurrentBlockHooks();
    if (hooks.on_release != nullptr) hooks.on_release(context->mem_allocated, hooks.arg);
    RecycleList& list = recycled[set->recycle_index];
    context->nextchild = reinterpret_cast<MemoryContext>(list.head);
    list.head = set;
    ++list.count;
    return;
  }
  ReleaseBlock(context, set, set->firstBlockSize);
}

void AllocSetStats(MemoryContext context, MemoryContextCounters* counters) {
  auto* set = reinterpret_cast<AllocSetContext*>(context);
  for (AllocBlockData* block = set->blocks; block != nullptr; block = block->next) {
    ++counters->nblocks;
    counters->totalspace += BlockSize(set, block);
    counters->freespace += static_cast<std::size_t>(block->endptr - block->freeptr);
  }
  set->retained.ForEach([&](AllocBlockData*, std::size_t size) {
    ++counters->nblocks;
    counters->totalspace += size;
    counters->freespace += size;
  });
  for (int fidx = 0; fidx < kNumFreeLists; ++fidx) {
    for (MemoryChunk* chunk = set->freelist[fidx]; chunk != nullptr;) {
      ++counters->freechunks;
      counters->freespace += ChunkSizeOfIndex(fidx) + kChunkHeaderBytes;
      FreeListLink* link = LinkOf(chunk);
      MarkDefined(link, sizeof *link);
      MemoryChunk* next = link->next;
      MarkNoAccess(link, sizeof *link);
      chunk = next;
    }
  }
}

}  // namespace

const MemoryContextMethods kAllocSetMethods = {
    AllocSetAlloc,      AllocSetFree,    AllocSetRealloc, AllocSetReset,
    AllocSetDelete,     AllocSetGetChunkContext, AllocSetGetChunkSpace,
    AllocSetIsEmpty,    AllocSetStats,   AllocSetCheck,   AllocSetTrim,   "AllocSet",
};


namespace aset {

void* AllocSlow(AllocSetContext* set, std::size_t size, int flags) {
  if (size > set->allocChunkLimit - kSentinelRoom) return AllocLarge(set, size, flags);
  return AllocFromBlock(set, size, flags, FreeIndex(size + kSentinelRoom));
}

void FreeLarge(AllocSetContext* set, AllocBlockData* block, MemoryChunk* chunk) {
  CheckingOnFree(&set->header, chunk,
                 static_cast<std::size_t>(block->endptr - static_cast<char*>(ChunkGetPointer(chunk))));
  UnlinkBlock(set, block);
  ReleaseBlock(&set->header, block, BlockSize(set, block));
}

}  // namespace aset

void AllocSetFreeRecycledContexts() {
  for (RecycleList& list : recycled) {
    while (list.head != nullptr) {
      AllocSetContext* set = list.head;
      list.head = reinterpret_cast<AllocSetContext*>(set->header.nextchild);
      // The hooks were told this memory was returned when it was recycled.
      UnregisterBlock(set);
      std::free(set);
    }
    list.count = 0;
  }
}

}  // namespace grove::mcxt

namespace grove {

using namespace mcxt;

MemoryContext AllocSetContextCreate(MemoryContext parent, const char* name, std::size_t minContextSize,
                                    std::size_t initBlockSize, std::size_t maxBlockSize) {
  if (name == nullptr) name = "(unnamed)";
  ValidateBlockSizes(name, minContextSize, initBlockSize, maxBlockSize);

  int recycle_index = -1;
  if (minContextSize == ALLOCSET_DEFAULT_MINSIZE && initBlockSize == ALLOCSET_DEFAULT_INITSIZE)
    recycle_index = 0;
  else if (minContextSize == ALLOCSET_SMALL_MINSIZE && initBlockSize == ALLOCSET_SMALL_INITSIZE)
    recycle_index = 1;

  AllocSetContext* set = nullptr;
  if (recycle_index >= 0 && recycled[recycle_index].head != nullptr) {
    AllocSetContext* candidate = recycled[recycle_index].head;
    const std::size_t bytes = candidate->header.mem_allocated;
    const BlockHooks hooks = CurrentBlockHooks();
    const bool hooks_ok = hooks.on_acquire == nullptr || hooks.on_acquire(bytes, hooks.arg);
    if (hooks_ok && LimitCharge(parent != nullptr ? parent->limit_holder : nullptr, bytes)) {
      recycled[recycle_index].head = reinterpret_cast<AllocSetContext*>(candidate->header.nextchild);
      --recycled[recycle_index].count;
      set = candidate;
    } else if (hooks_ok && hooks.on_release != nullptr) {
      hooks.on_release(bytes, hooks.arg);
    }
  }

  if (set == nullptr) {
    std::size_t firstBlockSize = kContextHeaderBytes + kBlockHeaderBytes + kChunkHeaderBytes;
    firstBlockSize = std::max(firstBlockSize, minContextSize != 0 ? minContextSize : initBlockSize);
    void* raw = AcquireFirstBlock(parent, firstBlockSize);
    if (raw == nullptr) return static_cast<MemoryContext>(CreationFailure(parent, name, firstBlockSize));
    set = static_cast<AllocSetContext*>(raw);
    set->firstBlockSize = firstBlockSize;
    set->header.mem_allocated = 0;
    AllocBlockData* keeper = KeeperBlock(set);
    keeper->aset = set;
    keeper->endptr = reinterpret_cast<char*>(set) + firstBlockSize;
    keeper->freeptr = BlockStart(keeper);
    keeper->prev = keeper->next = nullptr;
    MarkNoAccess(keeper->freeptr, static_cast<std::size_t>(keeper->endptr - keeper->freeptr));
    set->blocks = keeper;
    set->retained.Init();
    std::memset(set->freelist, 0, sizeof set->freelist);
    AdoptFirstBlock(&set->header, set, firstBlockSize);
  }

  set->recycle_index = recycle_index;
  set->initBlockSize = initBlockSize;
  set->maxBlockSize = maxBlockSize;
  set->nextBlockSize = initBlockSize;
  // Chunks above the limit get dedicated blocks; the limit is lowered until
  // kChunkFraction chunks fit a max-size block, so that small contexts do
  // not waste most of a block on one chunk.
  set->allocChunkLimit = ALLOC_CHUNK_LIMIT;
  while (set->allocChunkLimit + kChunkHeaderBytes > (maxBlockSize - kBlockHeaderBytes) / kChunkFraction)
    set->allocChunkLimit >>= 1;

  MemoryContextCreate(&set->header, &kAllocSetMethods, kAllocSetId, parent, name);
  return &set->header;
}

}  // namespace grove
