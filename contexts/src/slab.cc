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
void ListPush(SlabContext* slab, int idx, SlabBlock* block) {
  block->prev = nullptr;
  block->next = slab->blocklist[idx];
  if (block->next != nullptr) block->next->prev = block;
  slab->blocklist[idx] = block;
}

void ListRemove(SlabContext* slab, int idx, SlabBlock* block) {
  if (block->prev != nullptr)
    block->prev->next = block->next;
  else
    slab->blocklist[idx] = block->next;
  if (block->next != nullptr) block->next->prev = block->prev;
}

void RecomputeCurrent(SlabContext* slab) {
  slab->curBlocklistIndex = 0;
  for (int i = 1; i < kBlocklistCount; ++i) {
    if (slab->blocklist[i] != nullptr) {
      slab->curBlocklistIndex = i;
      return;
    }
  }
}

void InitBlock(SlabContext* slab, SlabBlock* block) {
  block->slab = slab;
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

// Only block with room? Then keeping it where it is beats parking it on the
// empty list, from which the next allocation would fetch it straight back (a
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

template <typename F>
void ForEachBlockInUse(SlabContext* slab, F f) {
  for (int i = 0; i < kBlocklistCount; ++i) {
    for (SlabBlock* block = slab->blocklist[i]; block != nullptr;) {
      SlabBlock* next = block->next;  // f may release the block
      f(block);
      block = next;
    }
  }
}

void SlabCheck([[maybe_unused]] MemoryContext context) {
#ifdef GROVE_MEMORY_CHECKING
  auto* slab = reinterpret_cast<SlabContext*>(context);
  ForEachBlockInUse(slab, [&](SlabBlock* block) {
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
      elog(WARNING, "problem in slab %s: block %p has %d free chunks, counted %d", context->name,
           static_cast<void*>(block), block->nfree, nfree);
  });
#endif
}

void ReleaseAll(SlabContext* slab, bool keep_empty) {
  SlabCheck(&slab->header);
  // A reset keeps up to retain_bytes of blocks as empty blocks (pfree alone
  // keeps at most kMaxEmptyBlocks).
  const std::size_t keep_limit = keep_empty ? slab->header.retain_bytes / slab->blockSize : 0;
  ForEachBlockInUse(slab, [&](SlabBlock* block) {
    if (static_cast<std::size_t>(slab->nemptyblocks) < keep_limit) {
      WipeMemory(FirstSlot(block), static_cast<std::size_t>(slab->chunksPerBlock) * slab->fullChunkSize);
      block->next = slab->emptyblocks;
      slab->emptyblocks = block;
      ++slab->nemptyblocks;
    } else {
      ReleaseBlock(&slab->header, block, slab->blockSize);
    }
  });
  for (int i = 0; i < kBlocklistCount; ++i) slab->blocklist[i] = nullptr;
  slab->curBlocklistIndex = 0;
  while (static_cast<std::size_t>(slab->nemptyblocks) > keep_limit) {
    SlabBlock* block = slab->emptyblocks;
    slab->emptyblocks = block->next;
    --slab->nemptyblocks;
    ReleaseBlock(&slab->header, block, slab->blockSize);
  }
}

void SlabReset(MemoryContext context) { ReleaseAll(reinterpret_cast<SlabContext*>(context), true); }

void SlabDelete(MemoryContext context) {
  auto* slab = reinterpret_cast<SlabContext*>(context);
  ReleaseAll(slab, false);
  ReleaseBlock(context, slab, kContextHeaderBytes);
}

void SlabStats(MemoryContext context, MemoryContextCounters* counters) {
  auto* slab = reinterpret_cast<SlabContext*>(context);
  counters->nblocks += 1;  // the context node's own allocation
  counters->totalspace += kContextHeaderBytes;
  ForEachBlockInUse(slab, [&](SlabBlock* block) {
    ++counters->nblocks;
    counters->totalspace += slab->blockSize;
    counters->freechunks += static_cast<std::size_t>(block->nfree);
    counters->freespace += static_cast<std::size_t>(block->nfree) * slab->fullChunkSize;
  });
  for (SlabBlock* block = slab->emptyblocks; block != nullptr; block = block->next) {
    ++counters->nblocks;
    counters->totalspace += slab->blockSize;
    counters->freespace += slab->blockSize;
  }
}

}  // namespace

const MemoryContextMethods kSlabMethods = {
    SlabAlloc, SlabFree, SlabRealloc, SlabReset, SlabDelete, SlabGetChunkContext,
    SlabGetChunkSpace, SlabIsEmpty, SlabStats, SlabCheck, "Slab",
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
    }
    InitBlock(s, block);
    const int idx = BlocklistIndex(s, block->nfree);
    ListPush(s, idx, block);
    s->curBlocklistIndex = idx;
  }
  return Alloc(&s->header, size, flags);
}

void Refile(SlabContext* s, SlabBlock* block, int cur) {
  const int idx = BlocklistIndex(s, block->nfree);
  ListRemove(s, cur, block);
  ListPush(s, idx, block);
  if (s->blocklist[cur] == nullptr) RecomputeCurrent(s);
}

void Relist(SlabContext* s, SlabBlock* block, int old_idx) {
  if (block->nfree == s->chunksPerBlock && !OnlyBlockWithRoom(s, block)) {
    ListRemove(s, old_idx, block);
    if (s->nemptyblocks < kMaxEmptyBlocks) {
      block->next = s->emptyblocks;
      s->emptyblocks = block;
      ++s->nemptyblocks;
    } else {
      ReleaseBlock(&s->header, block, s->blockSize);
    }
    if (s->blocklist[old_idx] == nullptr && old_idx == s->curBlocklistIndex) RecomputeCurrent(s);
    return;
  }
  const int idx = BlocklistIndex(s, block->nfree);
  if (idx != old_idx) {
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
  for (auto& list : slab->blocklist) list = nullptr;
  AdoptFirstBlock(&slab->header, slab, kContextHeaderBytes);
  const std::size_t mem = slab->header.mem_allocated;
  MemoryContextCreate(&slab->header, &kSlabMethods, kSlabId, parent, name);
  slab->header.mem_allocated = mem;
  return &slab->header;
}

}  // namespace grove
