// The 8-byte chunk header that lets pfree() find a chunk's allocator
// without knowing its context (internal to contexts/).
//
//   bits 0..3    method id: which allocator owns the chunk
//   bit  4       external: the chunk sits alone on a dedicated block and its
//                size is found in that block, not in `value`
//   bits 5..34   value: 30 bits for the allocator (a free-list index, a size)
//   bits 35..63  offset back to the block header, in 8-byte units (29 bits:
//                up to 4 GiB; blocks are never larger than 1 GiB + header)
//
// In checking builds every header-bearing chunk also has a 64-bit
// `requested size` word just before the header; kInvalidRequestedSize there
// marks a chunk that is free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "grove/base/assert.h"

namespace grove::mcxt {

/// Method ids. 0..7 are reserved: a glibc malloc chunk's size field, which
/// sits where our header would, has sizes in multiples of 16 and flags in
/// bits 0..2, so bit 3 is always clear; zeroed memory reads 0. 15 is what
/// memory wiped with 0x7F reads. A pointer whose header shows a reserved id
/// was not handed out by grove (or was freed and wiped).
enum MethodId : unsigned {
  kAlignedRedirectId = 8,
  kAllocSetId = 9,
  kGenerationId = 10,
  kSlabId = 11,
  kBumpId = 12,  // only present in checking builds: bump chunks are headerless
  kNumMethodIds = 16,
};
inline constexpr bool MethodIdIsReserved(unsigned id) { return id < 8 || id > 12; }

struct MemoryChunk {
  uint64_t hdrmask;
};
static_assert(sizeof(MemoryChunk) == 8, "the chunk header is exactly one 64-bit word");

inline constexpr int kMethodIdBits = 4;
inline constexpr uint64_t kMethodIdMask = (uint64_t{1} << kMethodIdBits) - 1;
inline constexpr int kExternalBit = 4;
inline constexpr int kValueShift = 5;
inline constexpr uint64_t kMaxChunkValue = (uint64_t{1} << 30) - 1;
inline constexpr int kOffsetShift = 35;
inline constexpr uint64_t kMaxBlockOffset = ((uint64_t{1} << 29) - 1) << 3;
static_assert(kOffsetShift + 29 == 64, "header fields fill the word exactly");

inline constexpr std::size_t kMaxAlign = 8;
inline constexpr std::size_t MaxAlign(std::size_t n) { return (n + kMaxAlign - 1) & ~(kMaxAlign - 1); }

#ifdef GROVE_MEMORY_CHECKING
inline constexpr std::size_t kRequestedSizeBytes = 8;
#else
inline constexpr std::size_t kRequestedSizeBytes = 0;
#endif
/// Bytes in front of a chunk's data: the header, and in checking builds the requested size.
inline constexpr std::size_t kChunkHeaderBytes = sizeof(MemoryChunk) + kRequestedSizeBytes;
inline constexpr uint64_t kInvalidRequestedSize = ~uint64_t{0};
inline constexpr unsigned char kSentinelByte = 0x7E;
inline constexpr unsigned char kWipeByte = 0x7F;

inline MemoryChunk* PointerGetChunk(const void* p) {
  return reinterpret_cast<MemoryChunk*>(const_cast<char*>(static_cast<const char*>(p)) - sizeof(MemoryChunk));
}
inline void* ChunkGetPointer(MemoryChunk* c) { return reinterpret_cast<char*>(c) + sizeof(MemoryChunk); }
inline unsigned ChunkMethodId(const MemoryChunk* c) { return static_cast<unsigned>(c->hdrmask & kMethodIdMask); }
inline unsigned PointerMethodId(const void* p) { return ChunkMethodId(PointerGetChunk(p)); }
inline bool ChunkIsExternal(const MemoryChunk* c) { return (c->hdrmask >> kExternalBit) & 1; }
inline uint32_t ChunkValue(const MemoryChunk* c) {
  return static_cast<uint32_t>((c->hdrmask >> kValueShift) & kMaxChunkValue);
}
inline void* ChunkGetBlock(MemoryChunk* c) {
  return reinterpret_cast<char*>(c) - ((c->hdrmask >> kOffsetShift) << 3);
}

/// Header of a chunk that lives `(chunk - block)` bytes into `block`.
inline void ChunkSetHeader(MemoryChunk* c, const void* block, uint32_t value, unsigned method_id) {
  const uint64_t offset = static_cast<uint64_t>(reinterpret_cast<char*>(c) - static_cast<const char*>(block));
  Assert(offset <= kMaxBlockOffset && offset % 8 == 0);
  Assert(value <= kMaxChunkValue);
  c->hdrmask = ((offset >> 3) << kOffsetShift) | (uint64_t{value} << kValueShift) | method_id;
}
/// Header of a chunk alone on a dedicated block; its size is kept by the block.
inline void ChunkSetHeaderExternal(MemoryChunk* c, const void* block, unsigned method_id) {
  const uint64_t offset = static_cast<uint64_t>(reinterpret_cast<char*>(c) - static_cast<const char*>(block));
  Assert(offset <= kMaxBlockOffset && offset % 8 == 0);
  c->hdrmask = ((offset >> 3) << kOffsetShift) | (uint64_t{1} << kExternalBit) | method_id;
}

#ifdef GROVE_MEMORY_CHECKING
inline uint64_t* ChunkRequestedSizeSlot(MemoryChunk* c) { return reinterpret_cast<uint64_t*>(c) - 1; }
inline uint64_t ChunkRequestedSize(MemoryChunk* c) { return *ChunkRequestedSizeSlot(c); }
inline void ChunkSetRequestedSize(MemoryChunk* c, uint64_t size) { *ChunkRequestedSizeSlot(c) = size; }
#endif

}  // namespace grove::mcxt
