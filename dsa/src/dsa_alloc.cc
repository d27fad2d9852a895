// Allocation and free in a dynamic shared area: size classes, superblocks
// and their spans, the per-attachment caches, and large objects.
//
// Small objects (≤ 8 KiB) go through the attachment's cache of its size
// class: a stack of free objects. An empty cache is refilled with half its
// capacity from the class's pool (one lock for the whole batch); a full one
// gives half back. So a process allocating and freeing small objects takes a
// lock once per batch, and two processes rarely take the same one.
//
// Large objects are runs of whole pages from a segment's free pages, taken
// and returned under the area lock.
#include <cstring>

#include "dsa_internal.h"
#include "grove/base/error.h"

namespace grove::dsa_internal {

namespace {

// Class of sizes 1…1024, by (size + 7) / 8.
struct SmallClassTable {
  std::uint8_t by_eighth[129];
  constexpr SmallClassTable() : by_eighth() {
    int cls = 0;
    for (int i = 0; i <= 128; ++i) {
      const int size = i * 8;
      while (kClassSizes[cls] < size) ++cls;
      by_eighth[i] = static_cast<std::uint8_t>(cls);
    }
  }
};
constexpr SmallClassTable kSmallClasses;

// ceil(2^32 / size): offset * recip >> 32 == offset / size exactly for
// offsets below 2^16 (a superblock) and sizes below 2^14.
struct Reciprocals {
  std::uint32_t value[kNumClasses];
  constexpr Reciprocals() : value() {
    for (int i = 0; i < kNumClasses; ++i)
      value[i] = static_cast<std::uint32_t>(((std::uint64_t{1} << 32) + kClassSizes[i] - 1) / kClassSizes[i]);
  }
};
constexpr Reciprocals kReciprocals;

constexpr std::uint32_t CacheCapacity(int cls) {
  const std::uint32_t by_bytes = 32768 / kClassSizes[cls];
  return by_bytes < 4 ? 4 : by_bytes > kMaxCacheCapacity ? kMaxCacheCapacity : by_bytes;
}

const char* const kPoolLockNames[kNumClasses] = {
    "DSA size class 8",    "DSA size class 16",   "DSA size class 24",   "DSA size class 32",
    "DSA size class 40",   "DSA size class 48",   "DSA size class 56",   "DSA size class 64",
    "DSA size class 80",   "DSA size class 96",   "DSA size class 112",  "DSA size class 128",
    "DSA size class 160",  "DSA size class 192",  "DSA size class 224",  "DSA size class 256",
    "DSA size class 320",  "DSA size class 384",  "DSA size class 448",  "DSA size class 512",
    "DSA size class 640",  "DSA size class 768",  "DSA size class 896",  "DSA size class 1024",
    "DSA size class 1280", "DSA size class 1560", "DSA size class 1816", "DSA size class 2048",
    "DSA size class 2616", "DSA size class 3120", "DSA size class 3640", "DSA size class 4096",
    "DSA size class 5456", "DSA size class 6552", "DSA size class 7280", "DSA size class 8192"};

// --- spans and their lists (pool lock held) ------------------------------------------------------

struct SpanAt {
  SpanDesc* desc;
  SegmentMap* seg;
  std::size_t index;
  std::size_t page;
};

SpanAt Resolve(dsa_area* area, SpanRef ref) {
  const std::size_t index = ref >> 32;
  const std::size_t page = ref & 0xffffffffu;
  SegmentMap* seg = GetSegment(area, index);
  return {&seg->spans[page], seg, index, page};
}

void Unlink(dsa_area* area, Pool* pool, SpanRef ref, SpanDesc* s) {
  if (s->prev != kNoSpan)
    Resolve(area, s->prev).desc->next = s->next;
  else if (s->fullness == kSpare)
    pool->spare = kNoSpan;
  else
    pool->lists[s->fullness] = s->next;
  if (s->next != kNoSpan) Resolve(area, s->next).desc->prev = s->prev;
  s->prev = s->next = kNoSpan;
  (void)ref;
}

void PushFront(dsa_area* area, Pool* pool, SpanRef ref, SpanDesc* s, std::uint8_t list) {
  s->fullness = list;
  s->prev = kNoSpan;
  s->next = pool->lists[list];
  if (s->next != kNoSpan) Resolve(area, s->next).desc->prev = ref;
  pool->lists[list] = ref;
}

// A fresh superblock for class `cls`, on kActive. False if the area cannot grow.
bool NewSuperblock(dsa_area* area, Pool* pool, int cls) {
  std::size_t index, first;
  {
    SharedMutexGuard guard(&area->control->lock, AreaLockName());
    if (!GetPages(area, kSuperblockPages, &index, &first)) return false;
  }
  SegmentMap* seg = GetSegment(area, index);
  SpanDesc* s = &seg->spans[first];
  *s = SpanDesc{};
  s->npages = kSuperblockPages;
  s->size_class = static_cast<std::uint8_t>(cls);
  s->nmax = static_cast<std::uint16_t>(kSuperblockSize / kClassSizes[cls]);
  std::memset(&seg->bitmaps[first * kBitmapBytesPerPage / 8], 0, kSuperblockPages * kBitmapBytesPerPage);
  for (std::size_t p = 0; p < kSuperblockPages; ++p)
    __atomic_store_n(&seg->pagemap[first + p], static_cast<std::uint32_t>(first + 1), __ATOMIC_RELEASE);
  ++pool->nspans;
  PushFront(area, pool, MakeSpanRef(index, first), s, kActive);
  return true;
}

// Gives an empty superblock's pages back (pool lock held; takes the area lock).
void ReturnSuperblock(dsa_area* area, Pool* pool, const SpanAt& at) {
  for (std::size_t p = 0; p < at.desc->npages; ++p)
    __atomic_store_n(&at.seg->pagemap[at.page + p], 0u, __ATOMIC_RELEASE);
  const std::size_t npages = at.desc->npages;
  --pool->nspans;
  SharedMutexGuard guard(&area->control->lock, AreaLockName());
  PutPages(area, at.index, at.page, npages);
}

// Makes sure kActive has a span with a free object; false if none can be had.
bool EnsureActive(dsa_area* area, Pool* pool, int cls) {
  for (;;) {
    const SpanRef head = pool->lists[kActive];
    if (head != kNoSpan) {
      const SpanAt at = Resolve(area, head);
      if (at.desc->nfree > 0 || at.desc->ninit < at.desc->nmax) return true;
      Unlink(area, pool, head, at.desc);  // exhausted: to kFull
      PushFront(area, pool, head, at.desc, kFull);
      continue;
    }
    // The fullest partially used span first, so that emptier ones drain.
    for (std::uint8_t list : {kMostlyUsed, kMostlyFree}) {
      const SpanRef ref = pool->lists[list];
      if (ref != kNoSpan) {
        const SpanAt at = Resolve(area, ref);
        Unlink(area, pool, ref, at.desc);
        PushFront(area, pool, ref, at.desc, kActive);
        return true;
      }
    }
    if (pool->spare != kNoSpan) {
      const SpanRef ref = pool->spare;
      const SpanAt at = Resolve(area, ref);
      Unlink(area, pool, ref, at.desc);
      PushFront(area, pool, ref, at.desc, kActive);
      return true;
    }
    return NewSuperblock(area, pool, cls);
  }
}

// Takes up to `want` objects of class `cls` into the cache. Returns how many.
std::uint32_t Refill(dsa_area* area, int cls, std::uint32_t want) {
  Pool* pool = &area->control->pools[cls];
  ClassCache& cache = area->caches[cls];
  SharedMutexGuard guard(&pool->lock, kPoolLockNames[cls]);
  CheckFreedSegments(area);  // after the lock: spans on the lists are in live segments
  std::uint32_t got = 0;
  while (got < want && EnsureActive(area, pool, cls)) {
    const SpanRef ref = pool->lists[kActive];
    const SpanAt at = Resolve(area, ref);
    SpanDesc* s = at.desc;
    const dsa_pointer span_dp = MakeDsaPointer(at.index, at.seg->pages_offset + at.page * kPageSize);
    if (s->nfree > 0) {
      // Lowest free objects first: allocation stays packed at the start.
      std::uint64_t* bitmap = &at.seg->bitmaps[at.page * kBitmapBytesPerPage / 8];
      std::size_t word = s->hint;
      while (got < want && s->nfree > 0) {
        std::uint64_t bits = bitmap[word];
        while (bits != 0 && got < want) {
          const std::size_t object = word * 64 + static_cast<std::size_t>(__builtin_ctzll(bits));
          bits &= bits - 1;
          cache.items[cache.count++] = span_dp + object * kClassSizes[cls];
          --s->nfree;
          ++got;
          ++pool->allocated;
        }
        bitmap[word] = bits;
        if (bits == 0) ++word;
      }
      s->hint = static_cast<std::uint16_t>(word);
    }
    while (got < want && s->ninit < s->nmax) {
      cache.items[cache.count++] = span_dp + std::size_t{s->ninit} * kClassSizes[cls];
      ++s->ninit;
      ++got;
      ++pool->allocated;
    }
  }
  return got;
}

// Gives the `n` objects on top of the cache back to their spans.
void Flush(dsa_area* area, int cls, std::uint32_t n) {
  Pool* pool = &area->control->pools[cls];
  ClassCache& cache = area->caches[cls];
  SharedMutexGuard guard(&pool->lock, kPoolLockNames[cls]);
  CheckFreedSegments(area);
  while (n-- > 0) {
    // Locate before popping: if mapping throws, the object stays cached.
    const dsa_pointer dp = cache.items[cache.count - 1];
    SegmentMap* seg = GetSegment(area, SegmentIndexOf(dp));
    --cache.count;
    // Checked again, under the lock: dsa_free checked the pointer when it
    // cached it, but a pointer freed twice (here and in another cache) may
    // since have emptied its superblock, which went back to the segment and
    // perhaps to another class. Only this lock changes a span of this class.
    const std::size_t rel = OffsetOf(dp) - seg->pages_offset;
    const std::uint32_t entry = seg->pagemap[rel / kPageSize];
    const std::size_t first = entry - 1;
    SpanDesc* s = entry != 0 ? &seg->spans[first] : nullptr;
    const std::size_t in_span = rel - first * kPageSize;
    const std::size_t object = (in_span * kReciprocals.value[cls]) >> 32;
    std::uint64_t* word = nullptr;
    std::uint64_t bit = 0;
    if (s != nullptr && s->size_class == cls && s->npages == kSuperblockPages && object < s->ninit) {
      word = &seg->bitmaps[first * kBitmapBytesPerPage / 8 + object / 64];
      bit = std::uint64_t{1} << (object % 64);
    }
    if (word == nullptr || (*word & bit)) {
      // Already free (or its superblock already gone): freed twice.
      // Counting it again would corrupt the span.
      ereport(WARNING, errmsg("DSA pointer %llx was freed twice; the second free is ignored",
                              static_cast<unsigned long long>(dp)));
      continue;
    }
    std::uint64_t& w = *word;
    w |= bit;
    if (object / 64 < s->hint) s->hint = static_cast<std::uint16_t>(object / 64);
    ++s->nfree;
    --pool->allocated;
    const std::uint32_t used = s->ninit - s->nfree;
    const SpanRef ref = MakeSpanRef(SegmentIndexOf(dp), first);
    if (used == 0 && s->fullness != kActive) {
      // Empty: kept as the pool's spare, or its pages go back.
      Unlink(area, pool, ref, s);
      if (pool->spare == kNoSpan) {
        s->fullness = kSpare;
        pool->spare = ref;
      } else {
        ReturnSuperblock(area, pool, SpanAt{s, seg, SegmentIndexOf(dp), first});
      }
    } else if (s->fullness == kFull) {
      Unlink(area, pool, ref, s);
      PushFront(area, pool, ref, s, used * 2 >= s->nmax ? kMostlyUsed : kMostlyFree);
    } else if (s->fullness == kMostlyUsed && used * 2 < s->nmax) {
      Unlink(area, pool, ref, s);
      PushFront(area, pool, ref, s, kMostlyFree);
    }
  }
}

[[noreturn]] void InvalidSize(std::size_t size) {
  ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid DSA memory alloc request size %zu", size));
  __builtin_unreachable();
}

dsa_pointer OutOfMemory(dsa_area* area, std::size_t size, int flags) {
  if (flags & DSA_ALLOC_NO_OOM) return InvalidDsaPointer;
  ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
          errdetail("Failed on DSA request of size %zu in area %llx (%zu bytes in segments, limit %zu).", size,
                    static_cast<unsigned long long>(area->handle),
                    static_cast<std::size_t>(area->control->total_size),
                    static_cast<std::size_t>(area->control->max_total_size)));
  __builtin_unreachable();
}

dsa_pointer AllocateLarge(dsa_area* area, std::size_t size, int flags) {
  const std::size_t npages = (size + kPageSize - 1) / kPageSize;
  if (npages > (std::size_t{1} << 30) - 1) return OutOfMemory(area, size, flags);
  std::size_t index, first;
  {
    SharedMutexGuard guard(&area->control->lock, AreaLockName());
    CheckFreedSegmentsLocked(area);
    if (!GetPages(area, npages, &index, &first)) return OutOfMemory(area, size, flags);
    SegmentMap* seg = GetSegmentLocked(area, index);
    SpanDesc* s = &seg->spans[first];
    *s = SpanDesc{};
    s->prev = s->next = kNoSpan;
    s->npages = static_cast<std::uint32_t>(npages);
    s->size_class = kLargeClass;
    // Only the first page is mapped: a pointer anywhere else is not an object.
    __atomic_store_n(&seg->pagemap[first], static_cast<std::uint32_t>(first + 1), __ATOMIC_RELEASE);
    ++area->control->large_objects;
    area->control->large_pages += npages;
  }
  SegmentMap* seg = &area->maps[index];
  const dsa_pointer dp = MakeDsaPointer(index, seg->pages_offset + first * kPageSize);
  if (flags & DSA_ALLOC_ZERO) std::memset(seg->base + OffsetOf(dp), 0, size);
  return dp;
}

void FreeLarge(dsa_area* area, dsa_pointer dp, std::size_t index, std::size_t first) {
  SharedMutexGuard guard(&area->control->lock, AreaLockName());
  SegmentMap* seg = GetSegmentLocked(area, index);
  SpanDesc* s = &seg->spans[first];
  // Rechecked under the lock: another process may have freed it meanwhile.
  if (seg->pagemap[first] != first + 1 || s->size_class != kLargeClass) BadPointer(dp, "not an allocated object");
  const std::size_t npages = s->npages;
  seg->pagemap[first] = 0;
  s->size_class = 0;
  --area->control->large_objects;
  area->control->large_pages -= npages;
  PutPages(area, index, first, npages);
}

}  // namespace

int SizeClassFor(std::size_t size) {
  if (size <= 1024) return kSmallClasses.by_eighth[(size + 7) / 8 == 0 ? 1 : (size + 7) / 8];
  int cls = kSmallClasses.by_eighth[128];
  while (kClassSizes[cls] < size) ++cls;
  return cls;
}

const char* PoolLockName(int size_class) { return kPoolLockNames[size_class]; }

void InitializeCaches(dsa_area* area) {
  dsa_pointer* storage = area->cache_storage;
  for (int cls = 0; cls < kNumClasses; ++cls) {
    area->caches[cls] = ClassCache{0, CacheCapacity(cls), storage};
    storage += kMaxCacheCapacity;
  }
}

void FlushAllCaches(dsa_area* area, bool best_effort) {
  for (int cls = 0; cls < kNumClasses; ++cls) {
    ClassCache& cache = area->caches[cls];
    if (cache.count == 0) continue;
    if (!best_effort) {
      Flush(area, cls, cache.count);
      continue;
    }
    try {
      Flush(area, cls, cache.count);
    } catch (const Error& e) {
      ereport(WARNING, errmsg("could not give %u cached objects back to dynamic shared area %llx: %s", cache.count,
                              static_cast<unsigned long long>(area->handle), e.data().message.c_str()));
      cache.count = 0;  // lost to the area, which is inconsistent anyway
    }
  }
}

void ReleaseEmptySpans(dsa_area* area) {
  for (int cls = 0; cls < kNumClasses; ++cls) {
    Pool* pool = &area->control->pools[cls];
    SharedMutexGuard guard(&pool->lock, kPoolLockNames[cls]);
    CheckFreedSegments(area);
    // Empty spans are the spare and those on kActive (a span elsewhere goes
    // back the moment it empties).
    for (SpanRef ref : {pool->spare, pool->lists[kActive]}) {
      while (ref != kNoSpan) {
        const SpanAt at = Resolve(area, ref);
        const SpanRef next = at.desc->next;
        if (at.desc->ninit == at.desc->nfree) {
          Unlink(area, pool, ref, at.desc);
          ReturnSuperblock(area, pool, at);
        }
        ref = next;
      }
    }
  }
}

[[noreturn]] void BadPointer(dsa_pointer dp, const char* why) {
  ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
          errmsg("invalid DSA pointer %llx: %s", static_cast<unsigned long long>(dp), why));
  __builtin_unreachable();
}

}  // namespace grove::dsa_internal

namespace grove {

using namespace dsa_internal;

dsa_pointer dsa_allocate_extended(dsa_area* area, std::size_t size, int flags) {
  CheckSameProcess(area);
  if (flags & ~(DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM | DSA_ALLOC_ZERO))
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid DSA allocation flags 0x%x", flags));
  if (size > kMaxSmallSize) {
    if (size > DSA_MAX_ALLOC_SIZE && !(flags & DSA_ALLOC_HUGE)) InvalidSize(size);
    if (size > DSA_MAX_SEGMENT_SIZE) InvalidSize(size);
    return AllocateLarge(area, size, flags);
  }
  const int cls = SizeClassFor(size);
  ClassCache& cache = area->caches[cls];
  if (cache.count == 0 && Refill(area, cls, cache.capacity / 2) == 0) return OutOfMemory(area, size, flags);
  const dsa_pointer dp = cache.items[--cache.count];
  if (flags & DSA_ALLOC_ZERO) std::memset(dsa_get_address(area, dp), 0, size);
  return dp;
}

dsa_pointer dsa_allocate(dsa_area* area, std::size_t size) { return dsa_allocate_extended(area, size, 0); }
dsa_pointer dsa_allocate0(dsa_area* area, std::size_t size) {
  return dsa_allocate_extended(area, size, DSA_ALLOC_ZERO);
}

void dsa_free(dsa_area* area, dsa_pointer dp) {
  CheckSameProcess(area);
  const std::size_t index = SegmentIndexOf(dp);
  if (dp == InvalidDsaPointer) BadPointer(dp, "InvalidDsaPointer");
  if (index >= DSA_MAX_SEGMENTS) BadPointer(dp, "segment index out of range");
  CheckFreedSegments(area);
  SegmentMap* seg = GetSegment(area, index);
  const std::size_t offset = OffsetOf(dp);
  if (offset < seg->pages_offset || offset >= seg->size) BadPointer(dp, "outside the segment's pages");
  const std::size_t rel = offset - seg->pages_offset;
  const std::size_t page = rel / kPageSize;
  if (page >= seg->npages) BadPointer(dp, "outside the segment's pages");
  const std::uint32_t entry = __atomic_load_n(&seg->pagemap[page], __ATOMIC_ACQUIRE);
  if (entry == 0) BadPointer(dp, "not an allocated object (a free page)");
  const std::size_t first = entry - 1;
  const SpanDesc* s = &seg->spans[first];
  const std::uint8_t cls = __atomic_load_n(&s->size_class, __ATOMIC_RELAXED);
  if (cls == kLargeClass) {
    if (page != first || rel % kPageSize != 0) BadPointer(dp, "inside a large object");
    FreeLarge(area, dp, index, first);
    return;
  }
  if (cls >= kNumClasses) BadPointer(dp, "the page map is corrupted");
  const std::size_t in_span = rel - first * kPageSize;
  const std::size_t object = (in_span * kReciprocals.value[cls]) >> 32;
  if (object * kClassSizes[cls] != in_span) BadPointer(dp, "not the start of an object");
  if (object >= __atomic_load_n(&s->ninit, __ATOMIC_RELAXED)) BadPointer(dp, "an object never allocated");
  ClassCache& cache = area->caches[cls];
  if (cache.count == cache.capacity) Flush(area, cls, cache.capacity / 2);
  cache.items[cache.count++] = dp;
}

void* dsa_get_address(dsa_area* area, dsa_pointer dp) {
  if (dp == InvalidDsaPointer) return nullptr;
  CheckSameProcess(area);
  const std::size_t index = SegmentIndexOf(dp);
  if (__builtin_expect(index >= DSA_MAX_SEGMENTS, 0)) BadPointer(dp, "segment index out of range");
  CheckFreedSegments(area);
  SegmentMap* seg = GetSegment(area, index);
  if (__builtin_expect(OffsetOf(dp) >= seg->size, 0)) BadPointer(dp, "offset beyond the end of its segment");
  return seg->base + OffsetOf(dp);
}

}  // namespace grove
