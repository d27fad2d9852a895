// Slab: fixed-size chunks (PostgreSQL's slab.c design).
//
// Every chunk has the same size, so a block is an array of chunk slots with
// its own free list plus a bump pointer for slots never used. Blocks with
// free slots are kept in lists by how many are free; allocation takes from
// the fullest non-full block, so that sparse blocks drain and can be given
// back. Up to kMaxEmptyBlocks empty blocks are kept for reuse.
#include <algorithm>
#include <cstring>

#include "slab_impl.h"

namespace grove::mcxt {

using namespace slab;

namespace {
void InitBlock(SlabContext* slab, SlabBlock* block) {
  block->slab = slab;  // (all_prev/all_next are set by the caller)
  block->nfree = slab->chunksPerBlock;
  block->nunused = slab->chunksPerBlock;
  block->freehead = nullptr;
  block->unused = FirstSlot(block);
  MarkNoAccess(block->unused, static_cast<std::size_t>(slab->chunksPerBlock) * slab->fullChunkSize);
}

[[noreturn]] void WrongSize(SlabContext* slab, std::size_t size, const char* what) {
  ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
          errmsg("unexpected %s chunk size %zu in slab memory context \"%s\"", what, size, slab->header.name),
          errdetail("Every chunk of this context is %zu bytes.", slab->chunkSize));
}

void* SlabAlloc(MemoryContext context, std::size_t size, int flags) { return Alloc(context, size, flags); }
void SlabFree(void* pointer) { Free(pointer); }

// No other block with room? Then keeping this emptied block on its list
// beats parking it, as the next allocation would fetch it straight back (a
// single live chunk would otherwise churn the block on every pfree).
bool OnlyBlockWithRoom(SlabContext* s, SlabBlock* block) {
  for (int i = 1; i < kBlocklistCount; ++i) {
    SlabBlock* head = s->blocklist[i];
    if (head != nullptr && (head != block || block->next != nullptr)) return false;
  }
  return true;
}

void* SlabRealloc(void* pointer, std::size_t size, int) {
  MemoryChunk* chunk = PointerGetChunk(pointer);
  SlabContext* slab = static_cast<SlabBlock*>(ChunkGetBlock(chunk))->slab;
  if (size != slab->chunkSize) WrongSize(slab, size, "realloc");
  return pointer;
}

MemoryContext SlabGetChunkContext(void* pointer) {
  return &static_cast<SlabBlock*>(ChunkGetBlock(PointerGetChunk(pointer)))->slab->header;
}

std::size_t SlabGetChunkSpace(void* pointer) {
  return static_cast<SlabBlock*>(ChunkGetBlock(PointerGetChunk(pointer)))->slab->fullChunkSize;
}

bool SlabIsEmpty(MemoryContext context) { return context->isReset; }

// Every block held, parked empty ones included.
template <typename F>
void ForEachBlock(SlabContext* slab, F f) {
  for (SlabBlock* block = slab->all; block != nullptr;) {
    SlabBlock* next = block->all_next;  // f may release the block
    f(block);
    block = next;
  }
}

void AllLink(SlabContext* slab, SlabBlock* block) {
  block->all_prev = nullptr;
  block->all_next = slab->all;
  if (slab->all != nullptr) slab->all->all_prev = block;
  slab->all = block;
}

void AllUnlink(SlabContext* slab, SlabBlock* block) {
  if (block->all_prev != nullptr)
    block->all_prev->all_next = block->all_next;
  else
    slab->all = block->all_next;
  if (block->all_next != nullptr) block->all_next->all_prev = block->all_prev;
}

void Release(SlabContext* slab, SlabBlock* block) {
  AllUnlink(slab, block);
  ReleaseBlock(&slab->header, block, slab->blockSize);
}

void SlabCheck([[maybe_unused]] MemoryContext context) {
#ifdef GROVE_MEMORY_CHECKING
  auto* slab = reinterpret_cast<SlabContext*>(context);
  ForEachBlock(slab, [&](SlabBlock* block) {
    const int used_slots = slab->chunksPerBlock - block->nunused;
    int nfree = block->nunused;
    for (int i = 0; i < used_slots; ++i) {
      MemoryChunk* chunk = SlotChunk(FirstSlot(block) + static_cast<std::size_t>(i) * slab->fullChunkSize);
      if (ChunkRequestedSize(chunk) == kInvalidRequestedSize)
        ++nfree;
      else if (!CheckingSentinelOk(chunk))
        ReportSentinelDamage(context, chunk);
    }
    if (nfree != block->nfree)
      CheckWarning(context, "problem in slab %s: block %p has %d free chunks, counted %d", context->name,
                   static_cast<void*>(block), block->nfree, nfree);
  });
#endif
}

void ReleaseAll(SlabContext* slab, bool keep_empty) {
  SlabCheck(&slab->header);
  // A reset keeps up to retain_bytes of blocks as empty blocks (pfree alone
  // keeps at most kMaxEmptyBlocks).
  const std::size_t keep_limit = keep_empty ? slab->header.retain_bytes / slab->blockSize : 0;
  slab->emptyblocks = nullptr;
  slab->nemptyblocks = 0;
  ForEachBlock(slab, [&](SlabBlock* block) {
    if (static_cast<std::size_t>(slab->nemptyblocks) < keep_limit) {
      WipeMemory(FirstSlot(block), static_cast<std::size_t>(slab->chunksPerBlock) * slab->fullChunkSize);
      block->nfree = block->nunused = slab->chunksPerBlock;
      block->freehead = nullptr;
      block->unused = FirstSlot(block);
      block->next = slab->emptyblocks;
      slab->emptyblocks = block;
      ++slab->nemptyblocks;
    } else {
      Release(slab, block);
    }
  });
  for (int i = 0; i < kBlocklistCount; ++i) slab->blocklist[i] = nullptr;
  slab->curBlocklistIndex = 0;
}

void SlabTrim(MemoryContext context) {
  auto* slab = reinterpret_cast<SlabContext*>(context);
  while (slab->emptyblocks != nullptr) {
    SlabBlock* block = slab->emptyblocks;
    slab->emptyblocks = block->next;
    --slab->nemptyblocks;
    Release(slab, block);
  }
}

void SlabReset(MemoryContext context) { ReleaseAll(reinterpret_cast<SlabContext*>(context), true); }

void SlabDelete(MemoryContext context) {
  auto* slab = reinterpret_cast<SlabContext*>(context);
  ReleaseAll(slab, false);
  Assert(slab->all == nullptr);
  ReleaseBlock(context, slab, kContextHeaderBytes);
}

void SlabStats(MemoryContext context, MemoryContextCounters* counters) {
  auto* slab = reinterpret_cast<SlabContext*>(context);
  counters->nblocks += 1;  // the context node's own allocation
  counters->totalspace += kContextHeaderBytes;
  ForEachBlock(slab, [&](SlabBlock* block) {
    ++counters->nblocks;
    counters->totalspace += slab->blockSize;
    if (block->nfree == slab->chunksPerBlock) {
      counters->freespace += slab->blockSize;
    } else {
      counters->freechunks += static_cast<std::size_t>(block->nfree);
      counters->freespace += static_cast<std::size_t>(block->nfree) * slab->fullChunkSize;
    }
  });
}

}  // namespace

const MemoryContextMethods kSlabMethods = {
    SlabAlloc, SlabFree, SlabRealloc, SlabReset, SlabDelete, SlabGetChunkContext,
    SlabGetChunkSpace, SlabIsEmpty, SlabStats, SlabCheck, SlabTrim, "Slab",
};


namespace slab {

void* AllocSlow(SlabContext* s, std::size_t size, int flags) {
  if (size != s->chunkSize) WrongSize(s, size, "alloc");
  if (s->curBlocklistIndex == 0) {
    SlabBlock* block = s->emptyblocks;
    if (block != nullptr) {
      s->emptyblocks = block->next;
      --s->nemptyblocks;
    } else {
      void* raw = AcquireBlock(&s->header, s->blockSize);
      if (raw == nullptr) return AllocationFailure(&s->header, size, flags);
      block = static_cast<SlabBlock*>(raw);
      AllLink(s, block);
    }
    InitBlock(s, block);
    const int idx = BlocklistIndex(s, block->nfree);
    ListPush(s, idx, block);
    s->curBlocklistIndex = idx;
  }
  return Alloc(&s->header, size, flags);
}

void RecomputeCurrent(SlabContext* s) {
  s->curBlocklistIndex = 0;
  for (int i = 1; i < kBlocklistCount; ++i) {
    if (s->blocklist[i] != nullptr) {
      s->curBlocklistIndex = i;
      return;
    }
  }
}

void Refile(SlabContext* s, SlabBlock* block, int cur) {
  ListRemove(s, cur, block);
  ListPush(s, BlocklistIndex(s, block->nfree), block);
  RecomputeCurrent(s);
}

void Relist(SlabContext* s, SlabBlock* block, int old_idx) {
  // old_idx 0: the block was full, so it is on no list (only reached here
  // when a block holds a single slot; otherwise Free handles it inline).
  const bool listed = old_idx != 0;
  if (block->nfree == s->chunksPerBlock && !OnlyBlockWithRoom(s, block)) {
    if (listed) ListRemove(s, old_idx, block);
    if (s->nemptyblocks < kMaxEmptyBlocks) {
      block->next = s->emptyblocks;
      s->emptyblocks = block;
      ++s->nemptyblocks;
    } else {
      Release(s, block);
    }
    RecomputeCurrent(s);
    return;
  }
  const int idx = BlocklistIndex(s, block->nfree);
  if (!listed) {
    ListPush(s, idx, block);
  } else if (idx != old_idx) {
    ListRemove(s, old_idx, block);
    ListPush(s, idx, block);
  }
  RecomputeCurrent(s);
}

}  // namespace slab

}  // namespace grove::mcxt

namespace grove {

using namespace mcxt;

MemoryContext SlabContextCreate(MemoryContext parent, const char* name, std::size_t blockSize,
                                std::size_t chunkSize) {
  if (name == nullptr) name = "(unnamed)";
  if (chunkSize > MaxAllocSize)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("invalid chunk size %zu for slab memory context \"%s\"", chunkSize, name));
  // Every slot must be able to hold a free-list link.
  const std::size_t fullChunkSize =
      kChunkHeaderBytes + MaxAlign(std::max<std::size_t>(chunkSize + kSentinelRoom, sizeof(MemoryChunk*)));
  if (blockSize > (std::size_t{1} << 30) || blockSize < kBlockHeaderBytes + fullChunkSize)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("block size %zu for slab memory context \"%s\" is invalid for %zu-byte chunks", blockSize, name,
                   chunkSize),
            errdetail("A block must hold its %zu-byte header and at least one %zu-byte slot, and be at most 1 GiB.",
                      kBlockHeaderBytes, fullChunkSize));
  void* raw = AcquireFirstBlock(parent, kContextHeaderBytes);
  if (raw == nullptr) return static_cast<MemoryContext>(CreationFailure(parent, name, kContextHeaderBytes));
  auto* slab = static_cast<SlabContext*>(raw);
  slab->chunkSize = chunkSize;
  slab->fullChunkSize = fullChunkSize;
  slab->blockSize = blockSize;
  slab->chunksPerBlock = static_cast<int>(std::min<std::size_t>((blockSize - kBlockHeaderBytes) / fullChunkSize, 1 << 30));
  slab->blocklistShift = 0;
  while ((slab->chunksPerBlock >> slab->blocklistShift) >= (kBlocklistCount - 1)) ++slab->blocklistShift;
  slab->curBlocklistIndex = 0;
  slab->nemptyblocks = 0;
  slab->emptyblocks = nullptr;
  slab->all = nullptr;
  for (auto& list : slab->blocklist) list = nullptr;
  AdoptFirstBlock(&slab->header, slab, kContextHeaderBytes);
  MemoryContextCreate(&slab->header, &kSlabMethods, kSlabId, parent, name);
  return &slab->header;
}

}  // namespace grove
