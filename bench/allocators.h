// Allocator policies the workload loops are instantiated with. Every policy
// has the same surface, so grove and its peers run the same loop:
//
//   void* Alloc(std::size_t size);
//   void Free(void* chunk, std::size_t size);  // size: for pmr, ignored elsewhere
//   static constexpr bool kBulkRelease;         // W3 ends with ReleaseAll() ...
//   void ReleaseAll();                          // ... instead of a Free per chunk
//   void Finish();                              // end of a run; may raise a grove ERROR
//
// A policy object lives for one benchmark run (one call of the benchmark
// function), so per-run state such as a context is created and deleted
// outside the timed loop.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory_resource>

#include <tbb/scalable_allocator.h>

#include "grove/contexts/memutils.h"
#include "grove/contexts/palloc.h"

namespace grove::bench {

/// What BENCH.md asks pmr resources for: alignof(std::max_align_t).
inline constexpr std::size_t kPmrAlignment = alignof(std::max_align_t);

/// glibc malloc/free. No bulk release: W3 frees in allocation order.
struct MallocAllocator {
  static constexpr bool kBulkRelease = false;
  void* Alloc(std::size_t size) { return std::malloc(size); }
  void Free(void* chunk, std::size_t) { std::free(chunk); }
  void ReleaseAll() {}
  void Finish() {}
};

/// oneTBB scalable_malloc/scalable_free. No bulk release.
struct TbbAllocator {
  static constexpr bool kBulkRelease = false;
  void* Alloc(std::size_t size) { return scalable_malloc(size); }
  void Free(void* chunk, std::size_t) { scalable_free(chunk); }
  void ReleaseAll() {}
  void Finish() {}
};

/// A std::pmr resource over the default upstream; release() is its bulk
/// release. Used with unsynchronized_pool_resource and with
/// monotonic_buffer_resource, default-constructed (no initial buffer: what a
/// user writing `monotonic_buffer_resource r;` gets; its deallocate does
/// nothing, so only W3 is run against it).
template <typename Resource>
class PmrAllocator {
 public:
  static constexpr bool kBulkRelease = true;
  void* Alloc(std::size_t size) { return resource_.allocate(size, kPmrAlignment); }
  void Free(void* chunk, std::size_t size) { resource_.deallocate(chunk, size, kPmrAlignment); }
  void ReleaseAll() { resource_.release(); }
  void Finish() { resource_.release(); }

 private:
  Resource resource_;
};
using PmrPoolAllocator = PmrAllocator<std::pmr::unsynchronized_pool_resource>;
using PmrMonotonicAllocator = PmrAllocator<std::pmr::monotonic_buffer_resource>;

enum class GroveContextKind { kAllocSet, kGeneration, kSlab, kBump };

/// A grove context created under TopMemoryContext and made current, so the
/// loop uses palloc/pfree exactly as grove code would. Every grove context
/// has a bulk release: MemoryContextReset.
class GroveAllocator {
 public:
  static constexpr bool kBulkRelease = true;

  /// `slab_chunk_size` is used by kSlab only.
  explicit GroveAllocator(GroveContextKind kind, std::size_t slab_chunk_size = 0);
  /// Only cleans up when Finish() did not run (a run that raised an ERROR);
  /// failures here are ignored since that ERROR is already being reported.
  ~GroveAllocator();
  GroveAllocator(const GroveAllocator&) = delete;
  GroveAllocator& operator=(const GroveAllocator&) = delete;

  void* Alloc(std::size_t size) { return palloc(size); }
  void Free(void* chunk, std::size_t) { pfree(chunk); }
  void ReleaseAll() { MemoryContextReset(context_); }
  /// Restores the previous CurrentMemoryContext and deletes the context.
  void Finish();

 private:
  MemoryContext context_ = nullptr;
  MemoryContext previous_ = nullptr;
};

}  // namespace grove::bench
