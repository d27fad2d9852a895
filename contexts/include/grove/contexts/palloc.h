// The allocation API: palloc and friends, CurrentMemoryContext.
//
// Contract (written once, here):
// * palloc never returns nullptr: out of memory is an ERROR ("out of memory",
//   SQLSTATE 53200, detail naming the request size and the context). Only
//   MCXT_ALLOC_NO_OOM opts out, and then nullptr means out of memory.
// * A zero-size request is valid and returns a distinct pointer.
// * Requests above MaxAllocSize (1 GiB - 1) are an ERROR unless
//   MCXT_ALLOC_HUGE is given; huge requests are limited to MaxAllocHugeSize.
// * Memory is 8-byte aligned (MAXALIGN); use palloc_aligned for more.
// * pfree/repalloc/GetMemoryChunkContext/GetMemoryChunkSpace work on any
//   chunk from any context without naming the context: an 8-byte header in
//   front of the chunk says which allocator owns it. A pointer grove did not
//   hand out is an ERROR; in checking builds this is exact (malloc'd, stack,
//   interior, misaligned, already freed), in other builds misaligned
//   pointers and headers of malloc'd memory are still caught.
// * Contexts are single-threaded. CurrentMemoryContext is per thread; each
//   thread gets its own TopMemoryContext on its first palloc or
//   MemoryContextInit(). Until then TopMemoryContext and CurrentMemoryContext
//   are null, so a thread that names TopMemoryContext as a parent before
//   allocating anything calls MemoryContextInit() first (a null parent makes
//   a root context, which is the caller's to delete).
#pragma once

#include <cstddef>
#include <cstdint>

#include "grove/base/error.h"

namespace grove {

struct MemoryContextData;
using MemoryContext = MemoryContextData*;

/// The context palloc() allocates in. Per thread; starts as the thread's
/// TopMemoryContext (created on first use).
extern thread_local constinit MemoryContext CurrentMemoryContext;

// Flags for palloc_extended / MemoryContextAllocExtended / repalloc_extended.
inline constexpr int MCXT_ALLOC_HUGE = 0x01;   ///< allow requests above MaxAllocSize
inline constexpr int MCXT_ALLOC_NO_OOM = 0x02; ///< return nullptr instead of raising ERROR
inline constexpr int MCXT_ALLOC_ZERO = 0x04;   ///< zero the memory

void* MemoryContextAlloc(MemoryContext context, std::size_t size);
void* MemoryContextAllocZero(MemoryContext context, std::size_t size);
void* MemoryContextAllocExtended(MemoryContext context, std::size_t size, int flags);
void* MemoryContextAllocHuge(MemoryContext context, std::size_t size);
void* MemoryContextAllocAligned(MemoryContext context, std::size_t size, std::size_t alignto, int flags);

void* palloc(std::size_t size);
void* palloc0(std::size_t size);
void* palloc_extended(std::size_t size, int flags);
/// `alignto` must be a power of two; at most 1 GiB.
void* palloc_aligned(std::size_t size, std::size_t alignto, int flags);
void* repalloc(void* pointer, std::size_t size);
void* repalloc_extended(void* pointer, std::size_t size, int flags);
void* repalloc_huge(void* pointer, std::size_t size);
void pfree(void* pointer);

char* pstrdup(const char* in);
char* pnstrdup(const char* in, std::size_t len);
char* MemoryContextStrdup(MemoryContext context, const char* string);
char* psprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/// Makes `context` current; returns the previous one.
inline MemoryContext MemoryContextSwitchTo(MemoryContext context) noexcept {
  MemoryContext old = CurrentMemoryContext;
  CurrentMemoryContext = context;
  return old;
}

/// A reset callback, usually allocated in the context it is registered with.
/// Callbacks run once, last registered first, when the context is reset or
/// deleted, before its memory is released. They must not throw.
struct MemoryContextCallback {
  void (*func)(void* arg);
  void* arg;
  MemoryContextCallback* next;
};
void MemoryContextRegisterResetCallback(MemoryContext context, MemoryContextCallback* cb);
/// Removes a callback that has not run yet (beyond PostgreSQL: a registrant
/// that dies first must be able to withdraw). Returns whether it was found.
bool MemoryContextUnregisterResetCallback(MemoryContext context, MemoryContextCallback* cb);

MemoryContext GetMemoryChunkContext(void* pointer);
/// Bytes the chunk occupies, header included.
std::size_t GetMemoryChunkSpace(void* pointer);

}  // namespace grove
