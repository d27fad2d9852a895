// Standard containers in a memory context: a std::pmr::memory_resource
// adapter and a plain STL allocator.
#pragma once

#include <cstddef>
#include <memory_resource>
#include <new>

#include "grove/contexts/memutils.h"

namespace grove {

/// Whether pfree applies to chunks of `context`: false for Bump contexts,
/// whose memory goes only with a reset or delete.
bool MemoryContextFreesChunks(MemoryContext context);

/// A memory_resource whose memory lives in `context`. Alignments above 8 use
/// palloc_aligned. deallocate() is pfree, except in a Bump context, where it
/// does nothing (memory goes when the context is reset). Errors surface as
/// grove::Error (out of memory included), as for palloc.
///
///   ContextMemoryResource res(cxt);
///   std::pmr::vector<int> v(&res);   // lives and dies with cxt
class ContextMemoryResource final : public std::pmr::memory_resource {
 public:
  /// ERROR if `context` is null (e.g. CurrentMemoryContext before the
  /// thread's first palloc or MemoryContextInit).
  explicit ContextMemoryResource(MemoryContext context);
  MemoryContext context() const noexcept { return context_; }

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override;

  MemoryContext context_;
  bool frees_;  // false for Bump contexts
};

/// An allocator for standard containers without pmr's virtual calls. As
/// for ContextMemoryResource, deallocate does nothing in a Bump context.
template <typename T>
class ContextAllocator {
 public:
  using value_type = T;

  explicit ContextAllocator(MemoryContext context) : context_(context), frees_(MemoryContextFreesChunks(context)) {}
  template <typename U>
  ContextAllocator(const ContextAllocator<U>& other) noexcept
      : context_(other.context()), frees_(other.frees_chunks()) {}

  T* allocate(std::size_t n) {
    if (n > MaxAllocHugeSize / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t bytes = n * sizeof(T);
    void* p = alignof(T) <= 8 ? MemoryContextAllocExtended(context_, bytes, MCXT_ALLOC_HUGE)
                              : MemoryContextAllocAligned(context_, bytes, alignof(T), MCXT_ALLOC_HUGE);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept {
    if (frees_) pfree(p);
  }

  MemoryContext context() const noexcept { return context_; }
  bool frees_chunks() const noexcept { return frees_; }
  template <typename U>
  bool operator==(const ContextAllocator<U>& other) const noexcept { return context_ == other.context(); }

 private:
  MemoryContext context_;
  bool frees_;
};

}  // namespace grove
