// Internal to the dynamic shared area: its shared layout (area control,
// segment headers, span descriptors, pools), its per-attachment state, and
// the functions its source files share.
//
// Files: dsa.cc (create/attach/detach, pins, owners), dsa_segments.cc
// (segment growth, mapping, freeing, trim), dsa_alloc.cc (size classes,
// spans, caches, allocate/free), dsa_stats.cc (statistics, checks).
//
// Locks: one SharedMutex per size class (its pool) and one for the area
// (segment slots, free pages, sizes, reference count). Order: pool → area.
// Both are robust (shared_mutex.h): a dead holder makes them ERROR.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "grove/dsa/dsa.h"
#include "grove/dsa/freepage.h"
#include "grove/dsa/shared_mutex.h"
#include "grove/resowner/resowner.h"

namespace grove::dsa_internal {

inline constexpr std::size_t kPageSize = FPM_PAGE_SIZE;  // 4 KiB
inline constexpr std::size_t kSuperblockPages = 16;      // 64 KiB superblocks
inline constexpr std::size_t kSuperblockSize = kSuperblockPages * kPageSize;
inline constexpr int kOffsetBits = 40;
inline constexpr std::uint64_t kOffsetMask = (std::uint64_t{1} << kOffsetBits) - 1;

inline constexpr dsa_pointer MakeDsaPointer(std::size_t index, std::size_t offset) {
  return (static_cast<std::uint64_t>(index) << kOffsetBits) | offset;
}
inline constexpr std::size_t SegmentIndexOf(dsa_pointer dp) { return dp >> kOffsetBits; }
inline constexpr std::size_t OffsetOf(dsa_pointer dp) { return dp & kOffsetMask; }

// --- size classes -----------------------------------------------------------------------------

// 8…64 by 8, then four per doubling to 8 KiB; above 1 KiB adjusted (as
// PostgreSQL's) so that a 64 KiB superblock wastes little.
inline constexpr int kNumClasses = 36;
inline constexpr std::uint16_t kClassSizes[kNumClasses] = {
    8,    16,   24,   32,   40,   48,   56,   64,   80,   96,   112,  128,  160,  192,  224,  256,  320,  384,
    448,  512,  640,  768,  896,  1024, 1280, 1560, 1816, 2048, 2616, 3120, 3640, 4096, 5456, 6552, 7280, 8192};
inline constexpr std::size_t kMaxSmallSize = 8192;
inline constexpr std::uint8_t kLargeClass = 0xFF;  // a span of whole pages holding one object

/// Class of a request of `size` ≤ kMaxSmallSize bytes (size 0 is served as 1).
int SizeClassFor(std::size_t size);

// --- shared layout -----------------------------------------------------------------------------

/// A span: (segment index << 32) | first page. kNoSpan ends a list.
using SpanRef = std::uint64_t;
inline constexpr SpanRef kNoSpan = ~SpanRef{0};
inline constexpr SpanRef MakeSpanRef(std::size_t index, std::size_t page) {
  return (static_cast<std::uint64_t>(index) << 32) | page;
}

/// Bits of a superblock's free-object bitmap, kept in the segment's bitmap
/// array (64 bytes per page, so a 16-page superblock has 8192 bits, one per
/// object of the smallest class).
inline constexpr std::size_t kBitmapBytesPerPage = 64;

/// Describes the span starting at its page; lives in the segment's span
/// array, indexed by that page. For superblocks: objects [0, ninit) have
/// been handed out at least once; the free ones among them are the set bits
/// of the superblock's bitmap (PostgreSQL threads a list through the free
/// objects instead; a bitmap beside them means neither allocation nor free
/// touches an object's memory, which in a large working set is a cache miss
/// each, and it lets a double free be caught). `hint`: no set bit lies in a
/// bitmap word below it. Changed only under the owning pool's lock (large
/// spans: the area lock).
struct SpanDesc {
  SpanRef prev;
  SpanRef next;
  std::uint32_t npages;
  std::uint8_t size_class;  // < kNumClasses, or kLargeClass
  std::uint8_t fullness;    // the list it is on (kFull…), or kSpare
  std::uint16_t nmax;       // objects that fit
  std::uint16_t ninit;
  std::uint16_t nfree;      // free objects among the first ninit
  std::uint16_t hint;
  std::uint16_t pad;
};
static_assert(sizeof(SpanDesc) == 32);

// Fullness lists of a pool. Allocation takes from kActive; when that runs
// dry, the fullest partially used span is promoted (so emptier ones drain
// and go back to their segment).
inline constexpr std::uint8_t kFull = 0;        // nothing free
inline constexpr std::uint8_t kActive = 1;      // allocation source
inline constexpr std::uint8_t kMostlyUsed = 2;  // ≥ half used
inline constexpr std::uint8_t kMostlyFree = 3;  // < half used
inline constexpr int kFullnessLists = 4;
inline constexpr std::uint8_t kSpare = 4;  // the pool's one empty span kept for reuse

/// At the start of every segment but the first, and after the area control
/// in the first. Offsets are from the segment's base (a dsa_pointer's offset).
struct SegmentHeader {
  std::uint64_t magic;
  std::uint32_t index;
  std::uint32_t npages;
  std::uint64_t size;  // bytes addressable from the base
  std::uint64_t fpm_offset;
  std::uint64_t pagemap_offset;  // uint32 per page: first page of its span + 1, or 0
  std::uint64_t spans_offset;    // SpanDesc per page (meaningful at a span's first page)
  std::uint64_t bitmap_offset;   // kBitmapBytesPerPage per page (a superblock's at its first page)
  std::uint64_t pages_offset;    // page 0
};

/// The area's view of one segment.
struct SegmentSlot {
  dsm_handle handle;           // DSM_HANDLE_INVALID for an in-place first segment
  std::uint64_t size;
  std::uint32_t npages;
  std::uint32_t free_pages;
  std::uint32_t largest_run;   // pages: lets a search skip segments without mapping them
  std::uint32_t in_use;
};

struct alignas(64) Pool {
  SharedMutex lock;
  SpanRef lists[kFullnessLists];
  SpanRef spare;
  std::uint64_t nspans;     // superblocks, the spare included
  std::uint64_t allocated;  // objects handed out (to users or attachments' caches)
};

struct AreaControl {
  std::uint64_t magic;
  std::int32_t tranche_id;
  std::int32_t owner_pid;  // segments are recorded in this process's registry
  dsa_handle handle;       // of the segment holding this control; invalid in place
  std::uint64_t header_offset;  // of the first segment's SegmentHeader

  alignas(64) SharedMutex lock;  // the area lock; protects everything below but the pools
  std::uint32_t refcnt;    // attached processes (in place: releases pending), plus one when pinned
  std::uint32_t pinned;
  std::uint64_t total_size;
  std::uint64_t max_total_size;
  std::uint64_t init_segment_size;
  std::uint64_t max_segment_size;
  std::uint32_t high_segment_index;  // one past the highest slot in use
  std::uint32_t released;            // refcnt reached 0: segments unpinned
  std::uint64_t large_objects;
  std::uint64_t large_pages;
  SegmentSlot segments[DSA_MAX_SEGMENTS];

  // Bumped whenever a segment is destroyed: attachments drop stale mappings.
  alignas(64) std::atomic<std::uint64_t> freed_segment_counter;
  alignas(64) Pool pools[kNumClasses];
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// --- per attachment ------------------------------------------------------------------------------

struct SharedMapping;  // a process-wide DSM attachment shared by its dsa_areas

/// This attachment's mapping of one segment (base == nullptr: not mapped).
struct SegmentMap {
  char* base;
  std::size_t size;
  std::size_t pages_offset;
  std::size_t npages;
  std::uint32_t* pagemap;
  SpanDesc* spans;
  std::uint64_t* bitmaps;
  FreePageManager* fpm;
  SegmentHeader* header;
  SharedMapping* mapping;  // nullptr: memory this attachment does not map itself (in place)
  dsm_handle handle;
};

/// Free objects of one size class held by this attachment: a stack of
/// dsa_pointers, refilled and drained by half its capacity at a time.
struct ClassCache {
  std::uint32_t count;
  std::uint32_t capacity;
  dsa_pointer* items;
};

inline constexpr std::uint32_t kMaxCacheCapacity = 128;

}  // namespace grove::dsa_internal

namespace grove {

struct dsa_area {
  std::uint32_t fork_generation;  // dsa_internal::g_fork_generation when attached
  dsa_internal::AreaControl* control;
  dsa_handle handle;
  bool in_place;
  pid_t pid;                 // the process that attached (a forked child must attach anew)
  ResourceOwner owner;       // nullptr: the process holds it
  std::uint64_t freed_seen;  // control->freed_segment_counter when mappings were last checked
  dsa_internal::ClassCache caches[dsa_internal::kNumClasses];
  dsa_internal::SegmentMap maps[DSA_MAX_SEGMENTS];
  dsa_pointer cache_storage[dsa_internal::kNumClasses * dsa_internal::kMaxCacheCapacity];
};

}  // namespace grove

namespace grove::dsa_internal {

/// Bumped in a child after fork(): a dsa_area inherited from the parent
/// belongs to the parent (its cache holds the parent's objects), and using
/// it would hand the same object out twice. Checked on every call, as a
/// plain load: cheaper than getpid(), a system call.
extern std::uint32_t g_fork_generation;
[[noreturn]] void UsedAfterFork(dsa_area* area);
inline void CheckSameProcess(dsa_area* area) {
  if (__builtin_expect(area->fork_generation != g_fork_generation, 0)) UsedAfterFork(area);
}

// dsa_segments.cc
/// Bytes a segment of `npages` usable pages needs, its header at `header_offset`.
std::size_t SegmentBytesFor(std::size_t header_offset, std::size_t npages);
/// Lays out a segment of `size` bytes at `base` (header at header_offset),
/// all pages free. Returns its page count (0 possible).
std::uint32_t InitializeSegment(char* base, std::size_t header_offset, std::size_t size, std::uint32_t index);
/// Fills area->maps[index] for memory already mapped here (first segment).
void SetMap(dsa_area* area, std::size_t index, char* base, std::size_t size, SharedMapping* mapping,
            dsm_handle handle);
/// Maps segment `index` in this attachment; ERROR if no such segment.
SegmentMap* MapSegment(dsa_area* area, std::size_t index);
inline SegmentMap* GetSegment(dsa_area* area, std::size_t index) {
  SegmentMap* m = &area->maps[index];
  return m->base != nullptr ? m : MapSegment(area, index);
}
/// The same with the area lock held by the caller.
SegmentMap* GetSegmentLocked(dsa_area* area, std::size_t index);
/// Drops mappings of segments destroyed since this attachment last looked
/// (takes the area lock; the Locked variant expects it held).
void RefreshFreedSegments(dsa_area* area);
void RefreshFreedSegmentsLocked(dsa_area* area);
inline void CheckFreedSegments(dsa_area* area) {
  if (area->freed_seen != area->control->freed_segment_counter.load(std::memory_order_acquire))
    RefreshFreedSegments(area);
}
inline void CheckFreedSegmentsLocked(dsa_area* area) {
  if (area->freed_seen != area->control->freed_segment_counter.load(std::memory_order_acquire))
    RefreshFreedSegmentsLocked(area);
}
/// `npages` contiguous pages from some segment, growing the area if needed
/// (the area lock held by the caller). False when the area cannot grow.
bool GetPages(dsa_area* area, std::size_t npages, std::size_t* index, std::size_t* first);
/// Returns pages to their segment (area lock held); a segment left with no
/// page in use is kept for reuse within a budget, or destroyed.
void PutPages(dsa_area* area, std::size_t index, std::size_t first, std::size_t npages);
/// Destroys every segment but the first with no page in use (area lock held).
void DestroyFreeSegments(dsa_area* area);
/// Unmaps everything this attachment mapped.
void UnmapAll(dsa_area* area);
/// A DSM attachment shared by this process's dsa_areas.
SharedMapping* AcquireMapping(dsm_handle handle);
SharedMapping* AdoptMapping(dsm_segment* seg);  // one just created here
void ReleaseMapping(SharedMapping* m);
char* MappingBase(SharedMapping* m);
std::size_t MappingSize(SharedMapping* m);

// dsa_alloc.cc
/// Gives every cached object back to its pool. Never throws when
/// `best_effort` (objects of a pool whose lock fails stay lost).
void FlushAllCaches(dsa_area* area, bool best_effort);
/// Returns every empty superblock (spares, and empty ones still on the
/// allocation list) to its segment.
void ReleaseEmptySpans(dsa_area* area);
void InitializeCaches(dsa_area* area);

[[noreturn]] void BadPointer(dsa_pointer dp, const char* why);
const char* AreaLockName();
const char* PoolLockName(int size_class);

}  // namespace grove::dsa_internal
