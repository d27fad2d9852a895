// palloc_aligned: over-allocate in the context, then put a "redirect"
// header in front of the aligned address. Its offset leads back to the
// underlying chunk; its value is log2 of the alignment. pfree, repalloc and
// the chunk queries follow the redirect, so aligned chunks need no support
// from the allocators. (PostgreSQL's alignedalloc.c design.)
#include <algorithm>
#include <cstring>

#include "chunk_checking.h"
#include "memory_context_internal.h"

namespace grove::mcxt {

namespace {

inline void* Unaligned(void* pointer) { return ChunkGetBlock(PointerGetChunk(pointer)); }
inline const MemoryContextMethods* MethodsOf(void* pointer) { return kMethodsById[PointerMethodId(pointer)]; }

// The aligned chunk's sentinel is also the underlying chunk's (see
// MemoryContextAllocAligned), so the underlying allocator checks it on free,
// reset and delete like any other.
void AlignedFree(void* pointer) {
  void* unaligned = Unaligned(pointer);
  MethodsOf(unaligned)->free_p(unaligned);
}

void* AlignedRealloc(void* pointer, std::size_t size, int flags) {
  MemoryChunk* chunk = PointerGetChunk(pointer);
  void* unaligned = Unaligned(pointer);
  const std::size_t alignto = std::size_t{1} << ChunkValue(chunk);
  MemoryContext context = MethodsOf(unaligned)->get_chunk_context(unaligned);
#ifdef GROVE_MEMORY_CHECKING
  const std::size_t old_size = ChunkRequestedSize(chunk);
#else
  // Without a recorded size, copy what the underlying chunk can hold past
  // the aligned address.
  const std::size_t old_size = MethodsOf(unaligned)->get_chunk_space(unaligned) - kChunkHeaderBytes -
                               static_cast<std::size_t>(static_cast<char*>(pointer) - static_cast<char*>(unaligned));
#endif
  void* fresh = MemoryContextAllocAligned(context, size, alignto, flags & ~MCXT_ALLOC_ZERO);
  if (fresh == nullptr) return nullptr;
  std::memcpy(fresh, pointer, std::min(old_size, size));
  AlignedFree(pointer);
  return fresh;
}

MemoryContext AlignedGetChunkContext(void* pointer) {
  void* unaligned = Unaligned(pointer);
  return MethodsOf(unaligned)->get_chunk_context(unaligned);
}

std::size_t AlignedGetChunkSpace(void* pointer) {
  void* unaligned = Unaligned(pointer);
  return MethodsOf(unaligned)->get_chunk_space(unaligned);
}

// No context has this method id; these entries are never reached.
void* NoAlloc(MemoryContext, std::size_t, int) { return nullptr; }
void NoReset(MemoryContext) {}
bool NoIsEmpty(MemoryContext) { return true; }
void NoStats(MemoryContext, MemoryContextCounters*) {}

}  // namespace

const MemoryContextMethods kAlignedRedirectMethods = {
    NoAlloc, AlignedFree, AlignedRealloc, NoReset, NoReset, AlignedGetChunkContext,
    AlignedGetChunkSpace, NoIsEmpty, NoStats, nullptr, NoReset, "AlignedRedirect",
};

}  // namespace grove::mcxt

namespace grove {

using namespace mcxt;

void* MemoryContextAllocAligned(MemoryContext context, std::size_t size, std::size_t alignto, int flags) {
  if (alignto == 0 || (alignto & (alignto - 1)) != 0 || alignto > (std::size_t{1} << 30))
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid alignment %zu", alignto),
            errdetail("The alignment must be a power of two of at most 1 GiB."));
  if (alignto <= kMaxAlign) return MemoryContextAllocExtended(context, size, flags);
  CheckAllocSize(size, flags);
  // Room for the worst-case padding, the redirect header, and the sentinel.
  const std::size_t alloc_size = size + alignto + kChunkHeaderBytes + kSentinelRoom;
  int alloc_flags = flags & ~MCXT_ALLOC_ZERO;
  if (!AllocSizeIsValid(alloc_size)) alloc_flags |= MCXT_ALLOC_HUGE;  // the request itself was valid
  void* unaligned = MemoryContextAllocExtended(context, alloc_size, alloc_flags);
  if (unaligned == nullptr) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(unaligned) + kChunkHeaderBytes;
  char* aligned = reinterpret_cast<char*>((start + alignto - 1) & ~(uintptr_t{alignto} - 1));
  MemoryChunk* chunk = PointerGetChunk(aligned);
  ChunkSetHeader(chunk, unaligned, static_cast<uint32_t>(__builtin_ctzll(alignto)), kAlignedRedirectId);
#ifdef GROVE_MEMORY_CHECKING
  ChunkSetRequestedSize(chunk, size);
  // Shorten the underlying chunk's requested size to end where the aligned
  // chunk ends, and move its sentinel there: a write past the aligned chunk
  // is then caught wherever the underlying allocator checks sentinels. (A
  // Bump chunk has a header in checking builds, so this holds for all.)
  if (PointerMethodId(unaligned) != kSlabId) {
    ChunkSetRequestedSize(PointerGetChunk(unaligned), static_cast<uint64_t>(aligned + size - static_cast<char*>(unaligned)));
  }
  aligned[size] = static_cast<char>(kSentinelByte);
  // Only [aligned, aligned + size) is the caller's.
  MarkNoAccess(unaligned, static_cast<std::size_t>(reinterpret_cast<char*>(chunk) - kRequestedSizeBytes -
                                                   static_cast<char*>(unaligned)));
  MarkNoAccess(aligned + size, static_cast<std::size_t>(static_cast<char*>(unaligned) + alloc_size - (aligned + size)));
#endif
  if (flags & MCXT_ALLOC_ZERO) std::memset(aligned, 0, size);
  return aligned;
}

}  // namespace grove
