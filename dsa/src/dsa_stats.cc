// Statistics of a dynamic shared area, its dump, and the test hooks
// (dsa_testing.h): taking its locks by hand and checking every invariant.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>
#include <unordered_set>

#include "dsa_internal.h"
#include "grove/base/error.h"
#include "grove/dsa/dsa_testing.h"

namespace grove {

using namespace dsa_internal;

namespace {

struct PoolCounts {
  std::size_t spans = 0, objects = 0, allocated = 0;
};

// Walks a pool's lists (pool lock held), counting spans and objects.
PoolCounts CountPool(dsa_area* area, Pool* pool) {
  PoolCounts counts;
  auto visit = [&](SpanRef ref) {
    while (ref != kNoSpan) {
      SegmentMap* seg = GetSegment(area, ref >> 32);
      const SpanDesc& s = seg->spans[ref & 0xffffffffu];
      ++counts.spans;
      counts.objects += s.nmax;
      counts.allocated += s.ninit - s.nfree;
      ref = s.next;
    }
  };
  for (SpanRef head : pool->lists) visit(head);
  visit(pool->spare);
  return counts;
}

}  // namespace

DsaStats dsa_get_stats(dsa_area* area) {
  CheckSameProcess(area);
  DsaStats st{};
  AreaControl* c = area->control;
  for (int cls = 0; cls < kNumClasses; ++cls) {
    Pool* pool = &c->pools[cls];
    SharedMutexGuard guard(&pool->lock, PoolLockName(cls));
    CheckFreedSegments(area);
    const PoolCounts counts = CountPool(area, pool);
    if (counts.spans == 0) continue;
    st.classes.push_back({kClassSizes[cls], counts.spans, counts.objects, counts.allocated, area->caches[cls].count});
  }
  SharedMutexGuard guard(&c->lock, AreaLockName());
  st.tranche_id = c->tranche_id;
  st.total_size = c->total_size;
  st.size_limit = c->max_total_size;
  st.large_objects = c->large_objects;
  st.large_pages = c->large_pages;
  for (std::size_t i = 0; i < c->high_segment_index; ++i) {
    const SegmentSlot& slot = c->segments[i];
    if (!slot.in_use) continue;
    ++st.segments;
    st.pages += slot.npages;
    st.free_pages += slot.free_pages;
    st.largest_free_run = std::max<std::size_t>(st.largest_free_run, slot.largest_run);
  }
  return st;
}

std::string dsa_dump_string(dsa_area* area) {
  const DsaStats st = dsa_get_stats(area);
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "dsa_area handle %llx (tranche %d):\n", static_cast<unsigned long long>(area->handle),
                st.tranche_id);
  out += line;
  std::snprintf(line, sizeof line, "  total size: %zu bytes in %zu segments; limit %s\n", st.total_size, st.segments,
                st.size_limit == SIZE_MAX ? "none" : std::to_string(st.size_limit).c_str());
  out += line;
  std::snprintf(line, sizeof line, "  pages: %zu, free %zu, largest free run %zu\n", st.pages, st.free_pages,
                st.largest_free_run);
  out += line;
  std::snprintf(line, sizeof line, "  large objects: %zu in %zu pages\n", st.large_objects, st.large_pages);
  out += line;
  out += "  size classes:\n";
  for (const DsaSizeClassStats& cs : st.classes) {
    std::snprintf(line, sizeof line,
                  "    class %5zu: %zu superblocks, %zu objects, %zu allocated (%zu cached in this attachment)\n",
                  cs.object_size, cs.superblocks, cs.objects, cs.allocated, cs.cached_here);
    out += line;
  }
  return out;
}

void dsa_dump(dsa_area* area) {
  const std::string text = dsa_dump_string(area);
  std::fputs(text.c_str(), stderr);
}

namespace dsa_testing {

void LockArea(dsa_area* area) { SharedMutexLock(&area->control->lock, AreaLockName()); }
void UnlockArea(dsa_area* area) { SharedMutexUnlock(&area->control->lock); }

void LockSizeClass(dsa_area* area, std::size_t size) {
  const int cls = SizeClassOf(size);
  if (cls < 0) ereport(ERROR, errmsg("%zu bytes are served by no size class", size));
  SharedMutexLock(&area->control->pools[cls].lock, PoolLockName(cls));
}
void UnlockSizeClass(dsa_area* area, std::size_t size) {
  SharedMutexUnlock(&area->control->pools[SizeClassOf(size)].lock);
}

int SizeClassOf(std::size_t size) { return size > kMaxSmallSize ? -1 : SizeClassFor(size); }
std::size_t SizeClassObjectSize(int size_class) { return kClassSizes[size_class]; }
int SizeClassCount() { return kNumClasses; }

std::size_t CachedObjects(dsa_area* area) {
  std::size_t n = 0;
  for (const ClassCache& cache : area->caches) n += cache.count;
  return n;
}

bool Check(dsa_area* area, std::string* why) {
  auto fail = [&](const std::string& text) {
    *why = text;
    return false;
  };
  AreaControl* c = area->control;
  // A consistent picture needs everything still: every class lock, in
  // class order (as the allocator never holds two, no deadlock), then the
  // area lock — a superblock's pages and its page map are written under
  // different locks.
  std::vector<std::unique_ptr<SharedMutexGuard>> class_locks;
  for (int cls = 0; cls < kNumClasses; ++cls)
    class_locks.push_back(std::make_unique<SharedMutexGuard>(&c->pools[cls].lock, PoolLockName(cls)));
  CheckFreedSegments(area);
  // Every segment mapped before the area lock: mapping takes it.
  for (std::size_t i = 0; i < DSA_MAX_SEGMENTS; ++i)
    if (__atomic_load_n(&c->segments[i].in_use, __ATOMIC_ACQUIRE)) GetSegment(area, i);
  // Spans reachable from the pools, per segment page.
  std::unordered_set<SpanRef> listed;
  for (int cls = 0; cls < kNumClasses; ++cls) {
    Pool* pool = &c->pools[cls];
    std::size_t allocated = 0, spans = 0;
    for (int list = 0; list <= kFullnessLists; ++list) {
      SpanRef ref = list < kFullnessLists ? pool->lists[list] : pool->spare;
      SpanRef prev = kNoSpan;
      std::size_t steps = 0;
      while (ref != kNoSpan) {
        if (++steps > (std::size_t{1} << 24)) return fail("a span list of class " + std::to_string(cls) + " loops");
        if (!listed.insert(ref).second) return fail("a span is on two lists");
        SegmentMap* seg = GetSegment(area, ref >> 32);
        const std::size_t page = ref & 0xffffffffu;
        const SpanDesc& s = seg->spans[page];
        const std::string where = "span (" + std::to_string(ref >> 32) + ", " + std::to_string(page) + ") of class " +
                                  std::to_string(kClassSizes[cls]) + ": ";
        if (s.size_class != cls) return fail(where + "wrong size class");
        if (s.prev != prev) return fail(where + "broken prev link");
        if (s.fullness != (list < kFullnessLists ? list : kSpare)) return fail(where + "on the wrong list");
        if (s.npages != kSuperblockPages || s.nmax != kSuperblockSize / kClassSizes[cls] || s.ninit > s.nmax ||
            s.nfree > s.ninit)
          return fail(where + "inconsistent counts");
        for (std::size_t p = 0; p < s.npages; ++p)
          if (seg->pagemap[page + p] != page + 1) return fail(where + "page map does not point at the span");
        // The bitmap: nfree bits set, all below ninit, none below the hint's word.
        const std::uint64_t* bitmap = &seg->bitmaps[page * kBitmapBytesPerPage / 8];
        std::size_t set = 0;
        for (std::size_t w = 0; w < kSuperblockPages * kBitmapBytesPerPage / 8; ++w) {
          if (bitmap[w] == 0) continue;
          if (w < s.hint) return fail(where + "free objects below the bitmap hint");
          set += static_cast<std::size_t>(__builtin_popcountll(bitmap[w]));
          const std::size_t highest = w * 64 + 63 - static_cast<std::size_t>(__builtin_clzll(bitmap[w]));
          if (highest >= s.ninit) return fail(where + "a free bit beyond the objects handed out");
        }
        if (set != s.nfree) return fail(where + "free count does not match the bitmap");
        const std::size_t used = s.ninit - s.nfree;
        if (list == kFull && (s.nfree != 0 || s.ninit != s.nmax)) return fail(where + "on the full list with room");
        if (list == kFullnessLists && used != 0) return fail(where + "spare but not empty");
        allocated += used;
        ++spans;
        prev = ref;
        ref = s.next;
      }
    }
    if (allocated != pool->allocated) return fail("class " + std::to_string(kClassSizes[cls]) + ": allocated count off");
    if (spans != pool->nspans) return fail("class " + std::to_string(kClassSizes[cls]) + ": span count off");
  }
  SharedMutexGuard guard(&c->lock, AreaLockName());
  std::size_t total = 0, large_objects = 0, large_pages = 0;
  for (std::size_t i = 0; i < DSA_MAX_SEGMENTS; ++i) {
    const SegmentSlot& slot = c->segments[i];
    if (!slot.in_use) {
      if (i < c->high_segment_index || slot.handle == 0) continue;
      return fail("a free slot has a handle");
    }
    if (i >= c->high_segment_index) return fail("a segment beyond the high index");
    total += slot.size;
    SegmentMap* seg = &area->maps[i];
    if (seg->base == nullptr) return fail("segment " + std::to_string(i) + " appeared during the check");
    const char* fpm_why = nullptr;
    if (!FreePageManagerCheck(seg->fpm, &fpm_why)) return fail("segment " + std::to_string(i) + ": " + fpm_why);
    if (FreePageManagerFreePages(seg->fpm) != slot.free_pages ||
        FreePageManagerLargestRun(seg->fpm) != slot.largest_run)
      return fail("segment " + std::to_string(i) + ": slot statistics off");
    std::size_t used_pages = 0;
    for (std::size_t p = 0; p < slot.npages;) {
      const std::uint32_t e = seg->pagemap[p];
      if (e == 0) {
        ++p;
        continue;
      }
      if (e != p + 1) return fail("segment " + std::to_string(i) + ": page map entry inside no span");
      const SpanDesc& s = seg->spans[p];
      if (s.size_class == kLargeClass) {
        ++large_objects;
        large_pages += s.npages;
      } else if (!listed.count(MakeSpanRef(i, p))) {
        return fail("segment " + std::to_string(i) + ": a superblock on no list");
      }
      used_pages += s.npages;
      p += s.npages;
    }
    if (used_pages + slot.free_pages != slot.npages)
      return fail("segment " + std::to_string(i) + ": pages neither free nor in a span");
  }
  if (total != c->total_size) return fail("total size off");
  if (large_objects != c->large_objects || large_pages != c->large_pages) return fail("large object counts off");
  return true;
}

}  // namespace dsa_testing

}  // namespace grove
