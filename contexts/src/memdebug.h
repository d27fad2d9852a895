// Annotations for AddressSanitizer and Valgrind (internal to contexts/).
//
// Checking builds poison what user code must not touch: free chunks, the
// unused tails of blocks, and the bytes after a chunk's requested size.
// Allocator code unpoisons before it reads or writes such memory itself
// (free-list links, sentinels, wiping). Outside checking builds all of this
// compiles to nothing.
#pragma once

#include <cstddef>
#include <cstring>

// Poisoning needs the checking build's bookkeeping (CheckingOnAlloc
// unpoisons what it hands out); an ASan build without it poisons nothing.
#if defined(__SANITIZE_ADDRESS__) && defined(GROVE_MEMORY_CHECKING)
#include <sanitizer/asan_interface.h>
#define GROVE_HAVE_ASAN 1
#endif

#if defined(GROVE_MEMORY_CHECKING) && __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define GROVE_HAVE_VALGRIND 1
#endif

namespace grove::mcxt {

/// User code must not touch [p, p+n).
inline void MarkNoAccess([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
#ifdef GROVE_HAVE_ASAN
  ASAN_POISON_MEMORY_REGION(p, n);
#endif
#ifdef GROVE_HAVE_VALGRIND
  VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
}
/// [p, p+n) may be used; its content is unspecified.
inline void MarkUndefined([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
#ifdef GROVE_HAVE_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#ifdef GROVE_HAVE_VALGRIND
  VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#endif
}
/// [p, p+n) may be used and holds meaningful bytes.
inline void MarkDefined([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
#ifdef GROVE_HAVE_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#ifdef GROVE_HAVE_VALGRIND
  VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
}

/// Whether any of [p, p+n) is marked inaccessible (freed or unused memory
/// of a context). Lets pointer validation avoid reading such memory, which
/// the tools would report. False when no tool is watching.
inline bool IsNoAccess([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
#ifdef GROVE_HAVE_ASAN
  if (__asan_region_is_poisoned(const_cast<void*>(p), n) != nullptr) return true;
#endif
#ifdef GROVE_HAVE_VALGRIND
  unsigned char vbits[16];
  if (n <= sizeof vbits && VALGRIND_GET_VBITS(p, vbits, n) == 3) return true;
#endif
  return false;
}

// Valgrind mempool requests: each context is a pool, each chunk a piece of it.
inline void PoolCreate([[maybe_unused]] const void* context) {
#ifdef GROVE_HAVE_VALGRIND
  VALGRIND_CREATE_MEMPOOL(context, 0, false);
#endif
}
inline void PoolDestroy([[maybe_unused]] const void* context) {
#ifdef GROVE_HAVE_VALGRIND
  VALGRIND_DESTROY_MEMPOOL(context);
#endif
}
inline void PoolAlloc([[maybe_unused]] const void* context, [[maybe_unused]] const void* p,
                      [[maybe_unused]] std::size_t n) {
#ifdef GROVE_HAVE_VALGRIND
  VALGRIND_MEMPOOL_ALLOC(context, p, n);
#endif
}
inline void PoolFree([[maybe_unused]] const void* context, [[maybe_unused]] const void* p) {
#ifdef GROVE_HAVE_VALGRIND
  VALGRIND_MEMPOOL_FREE(context, p);
#endif
}
inline void PoolChange([[maybe_unused]] const void* context, [[maybe_unused]] const void* old_p,
                       [[maybe_unused]] const void* new_p, [[maybe_unused]] std::size_t n) {
#ifdef GROVE_HAVE_VALGRIND
  VALGRIND_MEMPOOL_CHANGE(context, old_p, new_p, n);
#endif
}
/// After a reset: every chunk of the pool is gone.
inline void PoolReset([[maybe_unused]] const void* context) {
#ifdef GROVE_HAVE_VALGRIND
  VALGRIND_DESTROY_MEMPOOL(context);
  VALGRIND_CREATE_MEMPOOL(context, 0, false);
#endif
}

/// Fills freed memory with 0x7F so that use after free reads garbage that is
/// easy to recognize (and whose header decodes to reserved method id 15).
inline void WipeMemory([[maybe_unused]] void* p, [[maybe_unused]] std::size_t n) {
#ifdef GROVE_MEMORY_CHECKING
  MarkUndefined(p, n);
  std::memset(p, 0x7F, n);
  MarkNoAccess(p, n);
#endif
}

}  // namespace grove::mcxt
