// Checking-build chunk lifecycle shared by the allocators (internal):
// requested-size tracking, the sentinel byte after the requested size,
// poisoning of the bytes user code must not touch, wiping on free.
#pragma once

#include "memory_context_internal.h"

namespace grove::mcxt {

/// Extra bytes a checking build adds to each request so the sentinel fits.
#ifdef GROVE_MEMORY_CHECKING
inline constexpr std::size_t kSentinelRoom = 1;
#else
inline constexpr std::size_t kSentinelRoom = 0;
#endif

/// A chunk with `chunk_size` bytes of data is being handed out for `size` bytes.
inline void CheckingOnAlloc([[maybe_unused]] MemoryContext context, [[maybe_unused]] MemoryChunk* chunk,
                            [[maybe_unused]] std::size_t size, [[maybe_unused]] std::size_t chunk_size) {
#ifdef GROVE_MEMORY_CHECKING
  char* p = static_cast<char*>(ChunkGetPointer(chunk));
  ChunkSetRequestedSize(chunk, size);
  MarkUndefined(p, size + 1);
  p[size] = static_cast<char>(kSentinelByte);
  MarkNoAccess(p + size, chunk_size - size);
  PoolAlloc(context, p, size);
#endif
}

/// Whether the sentinel after the requested size is intact (checking builds).
inline bool CheckingSentinelOk([[maybe_unused]] MemoryChunk* chunk) {
#ifdef GROVE_MEMORY_CHECKING
  const uint64_t size = ChunkRequestedSize(chunk);
  if (size == kInvalidRequestedSize) return true;
  char* p = static_cast<char*>(ChunkGetPointer(chunk));
  MarkDefined(p + size, 1);
  const bool ok = static_cast<unsigned char>(p[size]) == kSentinelByte;
  MarkNoAccess(p + size, 1);
  return ok;
#else
  return true;
#endif
}

/// A live chunk is being freed: check its sentinel, wipe it, mark it free.
inline void CheckingOnFree([[maybe_unused]] MemoryContext context, [[maybe_unused]] MemoryChunk* chunk,
                           [[maybe_unused]] std::size_t chunk_size) {
#ifdef GROVE_MEMORY_CHECKING
  if (!CheckingSentinelOk(chunk)) ReportSentinelDamage(context, chunk);
  void* p = ChunkGetPointer(chunk);
  WipeMemory(p, chunk_size);
  ChunkSetRequestedSize(chunk, kInvalidRequestedSize);
  PoolFree(context, p);
#endif
}

/// A chunk keeps its place but changes its requested size (repalloc in place).
inline void CheckingOnResize([[maybe_unused]] MemoryContext context, [[maybe_unused]] MemoryChunk* chunk,
                             [[maybe_unused]] std::size_t new_size, [[maybe_unused]] std::size_t chunk_size) {
#ifdef GROVE_MEMORY_CHECKING
  const uint64_t old_size = ChunkRequestedSize(chunk);
  if (!CheckingSentinelOk(chunk)) ReportSentinelDamage(context, chunk);
  char* p = static_cast<char*>(ChunkGetPointer(chunk));
  ChunkSetRequestedSize(chunk, new_size);
  if (new_size > old_size) {
    // The grown part has unspecified content; keep what was there defined.
    MarkUndefined(p + old_size, new_size - old_size + 1);
  } else {
    MarkUndefined(p + new_size, 1);
  }
  p[new_size] = static_cast<char>(kSentinelByte);
  MarkNoAccess(p + new_size, chunk_size - new_size);
  PoolChange(context, p, p, new_size);
#endif
}

/// Bytes of user data to copy when a chunk moves: exact in checking builds,
/// the whole old chunk otherwise (the requested size is not recorded).
inline std::size_t CopyableBytes([[maybe_unused]] MemoryChunk* chunk, [[maybe_unused]] std::size_t chunk_size) {
#ifdef GROVE_MEMORY_CHECKING
  return ChunkRequestedSize(chunk);
#else
  return chunk_size;
#endif
}

}  // namespace grove::mcxt
