// Generation internals shared by generation.cc and the palloc/pfree fast
// paths. Internal to contexts/.
#pragma once

#include "chunk_checking.h"
#include "memory_context_internal.h"
#include "retained_blocks.h"

namespace grove::mcxt::generation {


constexpr std::size_t kChunkFraction = 8;  // chunks above maxBlockSize/8 get a dedicated block

struct GenerationContext;
struct GenerationBlock {
  GenerationContext* context;  // first member: the checking registry reads it
  GenerationBlock* prev;
  GenerationBlock* next;
  std::size_t blksize;
  std::size_t nchunks;  // chunks carved from this block since it was last empty
  std::size_t nfree;    // of those, how many were freed
  char* freeptr;
  char* endptr;
};
constexpr std::size_t kBlockHeaderBytes = MaxAlign(sizeof(GenerationBlock));

struct GenerationBlockSize {
  std::size_t operator()(const GenerationBlock* block) const { return block->blksize; }
};

struct GenerationContext {
  MemoryContextData header;
  std::size_t initBlockSize;
  std::size_t maxBlockSize;
  std::size_t nextBlockSize;
  std::size_t allocChunkLimit;
  GenerationBlock* block;      // current block, or nullptr
  GenerationBlock* freeblock;  // an empty block kept for reuse, or nullptr
  GenerationBlock* blocks;     // every block, newest first
  RetainedBlocks<GenerationBlock, GenerationBlockSize> retained;  // kept by reset for reuse
};
constexpr std::size_t kContextHeaderBytes = MaxAlign(sizeof(GenerationContext));

inline GenerationBlock* KeeperBlock(GenerationContext* set) {
  return reinterpret_cast<GenerationBlock*>(reinterpret_cast<char*>(set) + kContextHeaderBytes);
}
inline bool IsKeeper(GenerationContext* set, GenerationBlock* block) { return block == KeeperBlock(set); }
inline char* BlockStart(GenerationBlock* block) { return reinterpret_cast<char*>(block) + kBlockHeaderBytes; }
inline std::size_t FreeSpace(GenerationBlock* block) { return static_cast<std::size_t>(block->endptr - block->freeptr); }

inline std::size_t ChunkDataSize(MemoryChunk* chunk, GenerationBlock* block) {
  if (ChunkIsExternal(chunk)) return static_cast<std::size_t>(block->endptr - static_cast<char*>(ChunkGetPointer(chunk)));
  return ChunkValue(chunk);
}

/// An emptied current block is rewound only once it has carved this much.
constexpr std::size_t kRewindBytes = 4096;

/// Everything but carving from the current block: a new block, large chunks.
[[gnu::noinline]] void* AllocSlow(GenerationContext* set, std::size_t size, int flags);
/// The freed chunk was the last live one of its block.
[[gnu::noinline]] void BlockEmptied(GenerationContext* set, GenerationBlock* block, MemoryChunk* chunk);

inline void* Alloc(MemoryContext context, std::size_t size, int flags) {
  auto* set = reinterpret_cast<GenerationContext*>(context);
  GenerationBlock* block = set->block;
  // size <= allocChunkLimit first: it keeps the arithmetic below from overflowing.
  if (GROVE_LIKELY(size <= set->allocChunkLimit && block != nullptr)) {
    const std::size_t chunk_size = MaxAlign(size + kSentinelRoom);
    const std::size_t required = chunk_size + kChunkHeaderBytes;
    if (GROVE_LIKELY(required <= FreeSpace(block))) {
      MarkUndefined(block->freeptr, kChunkHeaderBytes);
      auto* chunk = reinterpret_cast<MemoryChunk*>(block->freeptr + kRequestedSizeBytes);
      block->freeptr += required;
      ++block->nchunks;
      ChunkSetHeader(chunk, block, static_cast<uint32_t>(chunk_size), kGenerationId);
      CheckingOnAlloc(context, chunk, size, chunk_size);
      return ChunkGetPointer(chunk);
    }
  }
  return AllocSlow(set, size, flags);
}

inline void Free(void* pointer) {
  MemoryChunk* chunk = PointerGetChunk(pointer);
  auto* block = static_cast<GenerationBlock*>(ChunkGetBlock(chunk));
  GenerationContext* set = block->context;
  CheckingOnFree(&set->header, chunk, ChunkDataSize(chunk, block));
  if (GROVE_LIKELY(++block->nfree < block->nchunks)) return;
  // The current block emptied but has carved little: it is not rewound
  // (BlockEmptied says why), so there is nothing to do — checked here to
  // keep a lone alloc/free pair off the slow path.
  if (block == set->block && static_cast<std::size_t>(block->freeptr - BlockStart(block)) < kRewindBytes) return;
  BlockEmptied(set, block, chunk);
}

}  // namespace grove::mcxt::generation
