// pfree, repalloc, GetMemoryChunkContext, GetMemoryChunkSpace: dispatch on
// the method id in the chunk header, after proving the pointer is grove's.
#include <cstdio>

#include "alloc_set_impl.h"
#include "generation_impl.h"
#include "memory_context_internal.h"
#include "slab_impl.h"

namespace grove::mcxt {

void BogusPointer(const char* caller, const void* p, const char* why) {
  ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR), errmsg("%s called with invalid pointer %p", caller, p),
          errdetail("%s", why));
  __builtin_unreachable();
}

void ReportSentinelDamage(MemoryContext context, const void* chunk) {
  CheckWarning(context, "detected write past chunk end in %s %p", context->name, chunk);
}

namespace {

// Entries for reserved method ids: the header is not one of ours.
[[noreturn]] void ReservedId(const char* caller, const void* p) {
  BogusPointer(caller, p, "The memory before it is not a grove chunk header (memory from malloc, "
                          "zeroed or wiped memory, or not the start of a chunk).");
}
void* ReservedAlloc(MemoryContext, std::size_t, int) { return nullptr; }
void ReservedFree(void* p) { ReservedId("pfree", p); }
void* ReservedRealloc(void* p, std::size_t, int) { ReservedId("repalloc", p); }
void ReservedReset(MemoryContext) {}
void ReservedDelete(MemoryContext) {}
MemoryContext ReservedGetContext(void* p) { ReservedId("GetMemoryChunkContext", p); }
std::size_t ReservedGetSpace(void* p) { ReservedId("GetMemoryChunkSpace", p); }
bool ReservedIsEmpty(MemoryContext) { return true; }
void ReservedStats(MemoryContext, MemoryContextCounters*) {}

const MemoryContextMethods kReservedMethods = {
    ReservedAlloc, ReservedFree,  ReservedRealloc, ReservedReset, ReservedDelete, ReservedGetContext,
    ReservedGetSpace, ReservedIsEmpty, ReservedStats, nullptr, ReservedReset, "(reserved)",
};

#ifdef GROVE_MEMORY_CHECKING
// Exact validation: the pointer must lie in a live block of a context, have
// an intact header of that context's type pointing back into the same block,
// and (for header-bearing chunks) not be free already. Nothing outside a
// registered block is ever read.
void ValidateChecked(const void* p, const char* caller, int depth) {
  BlockEntry e;
  if (!LookupBlock(p, &e)) BogusPointer(caller, p, "It does not point into memory of any memory context.");
  const char* hdr = static_cast<const char*>(p) - kChunkHeaderBytes;
  if (hdr < e.start) BogusPointer(caller, p, "It does not point at the start of a chunk.");
  if (IsNoAccess(hdr, kChunkHeaderBytes))
    BogusPointer(caller, p, "It points into free memory of a memory context (already freed?).");
  MemoryChunk* chunk = PointerGetChunk(p);
  const unsigned id = ChunkMethodId(chunk);
  if (id == kAlignedRedirectId && depth == 0) {
    const char* unaligned = static_cast<const char*>(ChunkGetBlock(chunk));
    if (unaligned < e.start || unaligned >= e.end)
      BogusPointer(caller, p, "Its aligned-chunk header is damaged.");
    ValidateChecked(unaligned, caller, 1);
    return;
  }
  if (MethodIdIsReserved(id) || id == kAlignedRedirectId)
    BogusPointer(caller, p,
                 ChunkRequestedSize(chunk) == kInvalidRequestedSize || id == 15
                     ? "The chunk was already freed."
                     : "It does not point at the start of a chunk.");
  if (id != e.owner->method_id) BogusPointer(caller, p, "Its header does not match the memory context it is in.");
  const char* block = static_cast<const char*>(ChunkGetBlock(chunk));
  if (block < e.start || block + sizeof(void*) > e.end || *reinterpret_cast<MemoryContext const*>(block) != e.owner)
    BogusPointer(caller, p, "Its header does not point back to its block.");
  if (id == kBumpId) return;  // the bump methods raise their own error
  if (ChunkRequestedSize(chunk) == kInvalidRequestedSize) BogusPointer(caller, p, "The chunk was already freed.");
}
#endif

inline MemoryChunk* CheckedChunk(const void* p, const char* caller) {
  if (GROVE_UNLIKELY(p == nullptr)) BogusPointer(caller, p, "It is a null pointer.");
  if (GROVE_UNLIKELY(reinterpret_cast<uintptr_t>(p) % kMaxAlign != 0))
    BogusPointer(caller, p, "It is not 8-byte aligned, so it cannot be the start of a chunk.");
#ifdef GROVE_MEMORY_CHECKING
  ValidateChecked(p, caller, 0);
#endif
  return PointerGetChunk(p);
}

}  // namespace

const MemoryContextMethods* const kMethodsById[kNumMethodIds] = {
    &kReservedMethods,        &kReservedMethods, &kReservedMethods,   &kReservedMethods,
    &kReservedMethods,        &kReservedMethods, &kReservedMethods,   &kReservedMethods,
    &kAlignedRedirectMethods, &kAllocSetMethods, &kGenerationMethods, &kSlabMethods,
    &kBumpMethods,            &kReservedMethods, &kReservedMethods,   &kReservedMethods,
};

}  // namespace grove::mcxt

namespace grove {

using namespace mcxt;

void pfree(void* pointer) {
  MemoryChunk* chunk = CheckedChunk(pointer, "pfree");
  // As in palloc: the allocators' free paths inlined behind a direct switch.
  const unsigned id = ChunkMethodId(chunk);
  if (GROVE_LIKELY(id == kAllocSetId)) {  // the common case first
    aset::Free(pointer);
    return;
  }
  switch (id) {
    case kGenerationId:
      generation::Free(pointer);
      return;
    case kSlabId:
      slab::Free(pointer);
      return;
    default:
      kMethodsById[id]->free_p(pointer);
  }
}

void* repalloc_extended(void* pointer, std::size_t size, int flags) {
  MemoryChunk* chunk = CheckedChunk(pointer, "repalloc");
  return kMethodsById[ChunkMethodId(chunk)]->realloc(pointer, size, flags);
}

void* repalloc(void* pointer, std::size_t size) { return repalloc_extended(pointer, size, 0); }
void* repalloc_huge(void* pointer, std::size_t size) { return repalloc_extended(pointer, size, MCXT_ALLOC_HUGE); }

MemoryContext GetMemoryChunkContext(void* pointer) {
  MemoryChunk* chunk = CheckedChunk(pointer, "GetMemoryChunkContext");
  return kMethodsById[ChunkMethodId(chunk)]->get_chunk_context(pointer);
}

std::size_t GetMemoryChunkSpace(void* pointer) {
  MemoryChunk* chunk = CheckedChunk(pointer, "GetMemoryChunkSpace");
  return kMethodsById[ChunkMethodId(chunk)]->get_chunk_space(pointer);
}

}  // namespace grove
