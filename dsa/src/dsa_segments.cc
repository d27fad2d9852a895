// The segments of a dynamic shared area: layout, growth, mapping in each
// attachment, freeing, and the process-wide DSM attachments that the
// dsa_areas of one process (one per thread, say) share.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <pthread.h>
#include <unistd.h>
#include <vector>

#include "dsa_internal.h"
#include "grove/base/assert.h"
#include "grove/base/error.h"

namespace grove::dsa_internal {

namespace {

constexpr std::uint64_t kSegmentMagic = 0x67726f7665736567ull;  // "grovesegm"
/// Segments with no page in use are kept for reuse up to this many bytes
/// (beyond it they are destroyed at once); dsa_trim destroys them all.
constexpr std::size_t kRetainedFreeSegmentBytes = std::size_t{8} << 20;

std::size_t AlignUp(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

struct Layout {
  std::size_t fpm, pagemap, spans, bitmaps, pages, total;
};

Layout LayoutFor(std::size_t header_offset, std::size_t npages) {
  Layout l;
  l.fpm = AlignUp(header_offset + sizeof(SegmentHeader), 64);
  l.pagemap = AlignUp(l.fpm + FreePageManagerSize(npages), 8);
  l.spans = AlignUp(l.pagemap + sizeof(std::uint32_t) * npages, 64);
  l.bitmaps = AlignUp(l.spans + sizeof(SpanDesc) * npages, 64);
  l.pages = AlignUp(l.bitmaps + kBitmapBytesPerPage * npages, kPageSize);
  l.total = l.pages + npages * kPageSize;
  return l;
}

}  // namespace

std::size_t SegmentBytesFor(std::size_t header_offset, std::size_t npages) {
  return LayoutFor(header_offset, npages).total;
}

std::uint32_t InitializeSegment(char* base, std::size_t header_offset, std::size_t size, std::uint32_t index) {
  // The largest page count whose layout fits: estimate, then adjust.
  const std::size_t per_page = kPageSize + sizeof(SpanDesc) + sizeof(std::uint32_t) + kBitmapBytesPerPage + 16;
  std::size_t n = size > header_offset ? (size - header_offset) / per_page : 0;
  while (n > 0 && SegmentBytesFor(header_offset, n) > size) --n;
  while (SegmentBytesFor(header_offset, n + 1) <= size) ++n;
  Assert(n >= 1);
  const Layout l = LayoutFor(header_offset, n);
  auto* h = reinterpret_cast<SegmentHeader*>(base + header_offset);
  h->index = index;
  h->npages = static_cast<std::uint32_t>(n);
  h->size = size;
  h->fpm_offset = l.fpm;
  h->pagemap_offset = l.pagemap;
  h->spans_offset = l.spans;
  h->bitmap_offset = l.bitmaps;
  h->pages_offset = l.pages;
  std::memset(base + l.pagemap, 0, l.pages - l.pagemap);  // in-place memory is not zeroed
  FreePageManager* fpm = FreePageManagerInitialize(base + l.fpm, n);
  FreePageManagerPut(fpm, 0, n);
  h->magic = kSegmentMagic;
  return static_cast<std::uint32_t>(n);
}

// --- process-wide DSM attachments ---------------------------------------------------------------

struct SharedMapping {
  dsm_handle handle;
  dsm_segment* seg;
  std::uint32_t refs;
};

namespace {

struct Mappings {
  std::mutex mutex;
  pid_t pid = 0;  // whose attachments these are (a forked child starts afresh)
  std::vector<SharedMapping*> list;
};

Mappings* NewMappings();
Mappings& TheMappings() {
  static Mappings* m = NewMappings();  // never destroyed: areas may be detached at exit
  return *m;
}

// A thread may hold the mutex (attaching, populating a segment) while
// another forks a worker: the child starts with a fresh one.
void ResetMappingsAfterFork() {
  Mappings& ms = TheMappings();
  new (&ms.mutex) std::mutex;
}
Mappings* NewMappings() {
  auto* m = new Mappings;
  pthread_atfork(nullptr, nullptr, &ResetMappingsAfterFork);
  return m;
}

void ForgetIfForked(Mappings& ms) {
  if (ms.pid == getpid()) return;
  ms.list.clear();  // the parent's: not ours to detach (the DSM layer reset them too)
  ms.pid = getpid();
}

// The attachment belongs to the process, not to CurrentResourceOwner: the
// dsa_area that uses it decides when it goes.
class NoResourceOwner {
 public:
  NoResourceOwner() : saved_(CurrentResourceOwner) { CurrentResourceOwner = nullptr; }
  ~NoResourceOwner() { CurrentResourceOwner = saved_; }
  NoResourceOwner(const NoResourceOwner&) = delete;
  NoResourceOwner& operator=(const NoResourceOwner&) = delete;

 private:
  ResourceOwner saved_;
};

}  // namespace

SharedMapping* AcquireMapping(dsm_handle handle) {
  Mappings& ms = TheMappings();
  std::lock_guard<std::mutex> lock(ms.mutex);
  ForgetIfForked(ms);
  for (SharedMapping* m : ms.list) {
    if (m->handle == handle) {
      ++m->refs;
      return m;
    }
  }
  ms.list.reserve(ms.list.size() + 1);  // before attaching: nothing to undo if it throws
  dsm_segment* seg;
  {
    NoResourceOwner no_owner;
    seg = dsm_attach(handle);
  }
  auto* m = new SharedMapping{handle, seg, 1};
  ms.list.push_back(m);
  return m;
}

SharedMapping* AdoptMapping(dsm_segment* seg) {
  Mappings& ms = TheMappings();
  std::lock_guard<std::mutex> lock(ms.mutex);
  ForgetIfForked(ms);
  dsm_pin_mapping(seg);
  auto* m = new SharedMapping{dsm_segment_handle(seg), seg, 1};
  ms.list.push_back(m);
  return m;
}

void ReleaseMapping(SharedMapping* m) {
  Mappings& ms = TheMappings();
  // The lock is held across the detach: another thread acquiring the same
  // handle meanwhile must find it either still listed or fully detached
  // (else its dsm_attach would find this one half-gone: "already attached").
  // DSA segments carry no detach callbacks that could come back here.
  std::lock_guard<std::mutex> lock(ms.mutex);
  if (ms.pid != getpid()) return;  // inherited through fork: the parent's
  if (--m->refs > 0) return;
  std::erase(ms.list, m);
  dsm_detach(m->seg);
  delete m;
}

char* MappingBase(SharedMapping* m) { return static_cast<char*>(dsm_segment_address(m->seg)); }
std::size_t MappingSize(SharedMapping* m) { return dsm_segment_map_length(m->seg); }

// --- this attachment's maps -----------------------------------------------------------------------

void SetMap(dsa_area* area, std::size_t index, char* base, std::size_t size, SharedMapping* mapping,
            dsm_handle handle) {
  const std::size_t header_offset = index == 0 ? area->control->header_offset : 0;
  auto* h = reinterpret_cast<SegmentHeader*>(base + header_offset);
  if (header_offset + sizeof(SegmentHeader) > size || h->magic != kSegmentMagic || h->index != index ||
      h->size > size) {
    // The caller releases `mapping`: it may still need what it maps.
    ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED),
            errmsg("segment %zu of dynamic shared area %llx is not a valid DSA segment", index,
                   static_cast<unsigned long long>(area->handle)));
  }
  SegmentMap& m = area->maps[index];
  m.base = base;
  m.size = h->size;
  m.pages_offset = h->pages_offset;
  m.npages = h->npages;
  m.pagemap = reinterpret_cast<std::uint32_t*>(base + h->pagemap_offset);
  m.spans = reinterpret_cast<SpanDesc*>(base + h->spans_offset);
  m.bitmaps = reinterpret_cast<std::uint64_t*>(base + h->bitmap_offset);
  m.fpm = reinterpret_cast<FreePageManager*>(base + h->fpm_offset);
  m.header = h;
  m.mapping = mapping;
  m.handle = handle;
}

namespace {

SegmentMap* MapSlot(dsa_area* area, std::size_t index, const SegmentSlot& slot) {
  if (!slot.in_use)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("segment %zu of dynamic shared area %llx does not exist", index,
                   static_cast<unsigned long long>(area->handle)),
            errdetail("The pointer refers to a segment that was never created or has been freed."));
  SharedMapping* mapping = AcquireMapping(slot.handle);
  try {
    SetMap(area, index, MappingBase(mapping), std::min<std::size_t>(slot.size, MappingSize(mapping)), mapping,
           slot.handle);
  } catch (...) {
    ReleaseMapping(mapping);
    throw;
  }
  return &area->maps[index];
}

void ClearMap(dsa_area* area, std::size_t index) {
  SegmentMap& m = area->maps[index];
  if (m.mapping != nullptr) ReleaseMapping(m.mapping);
  m = SegmentMap{};
}

void UpdateSlotStats(AreaControl* c, std::size_t index, FreePageManager* fpm) {
  c->segments[index].free_pages = static_cast<std::uint32_t>(FreePageManagerFreePages(fpm));
  c->segments[index].largest_run = static_cast<std::uint32_t>(FreePageManagerLargestRun(fpm));
}

// Creates segment slot `index` able to hold `npages` contiguous pages.
// Returns false if the size limit or /dev/shm does not allow it.
bool MakeSegment(dsa_area* area, std::size_t npages, std::size_t* index_out) {
  AreaControl* c = area->control;
  std::size_t index = 1;
  while (index < DSA_MAX_SEGMENTS && c->segments[index].in_use) ++index;
  if (index == DSA_MAX_SEGMENTS) return false;
  const std::size_t required = SegmentBytesFor(0, npages);
  // Two segments of each size, doubling (PostgreSQL's geometric growth).
  const std::size_t shift = std::min<std::size_t>(index / 2, 40);
  std::size_t size = c->init_segment_size;
  size = size > (c->max_segment_size >> shift) ? c->max_segment_size : size << shift;
  size = std::max(size, required);
  if (c->total_size >= c->max_total_size) return false;
  size = std::min<std::size_t>(size, c->max_total_size - c->total_size);
  size = size / kPageSize * kPageSize;
  if (size < required) return false;

  dsm_segment* seg;
  {
    NoResourceOwner no_owner;
    seg = dsm_create_owned_by(c->owner_pid, size, DSM_CREATE_NULL_IF_MAXSEGMENTS);
  }
  if (seg == nullptr) return false;
  SharedMapping* mapping;
  std::uint32_t n;
  try {
    dsm_pin_segment(seg);  // lives with nothing attached, until the area is released or frees it
    n = InitializeSegment(static_cast<char*>(dsm_segment_address(seg)), 0, size, static_cast<std::uint32_t>(index));
    mapping = AdoptMapping(seg);
  } catch (...) {
    dsm_detach_and_remove(seg);  // nobody else knows it yet
    throw;
  }
  SegmentSlot& slot = c->segments[index];
  slot.handle = dsm_segment_handle(seg);
  slot.size = size;
  slot.npages = n;
  slot.free_pages = n;
  slot.largest_run = n;
  slot.in_use = 1;
  c->total_size += size;
  c->high_segment_index = std::max<std::uint32_t>(c->high_segment_index, static_cast<std::uint32_t>(index + 1));
  SetMap(area, index, MappingBase(mapping), size, mapping, slot.handle);
  *index_out = index;
  return true;
}

void DestroySegment(dsa_area* area, std::size_t index) {
  AreaControl* c = area->control;
  SegmentSlot& slot = c->segments[index];
  const dsm_handle handle = slot.handle;
  c->total_size -= slot.size;
  slot = SegmentSlot{};
  while (c->high_segment_index > 1 && !c->segments[c->high_segment_index - 1].in_use) --c->high_segment_index;
  c->freed_segment_counter.fetch_add(1, std::memory_order_acq_rel);
  ClearMap(area, index);
  // The pin's reference goes last: attachments elsewhere keep the memory
  // until they notice the counter and drop their mappings.
  dsm_unpin_segment(handle);
}

}  // namespace

SegmentMap* GetSegmentLocked(dsa_area* area, std::size_t index) {
  if (index >= DSA_MAX_SEGMENTS) BadPointer(MakeDsaPointer(index, 0), "segment index out of range");
  SegmentMap* m = &area->maps[index];
  return m->base != nullptr ? m : MapSlot(area, index, area->control->segments[index]);
}

SegmentMap* MapSegment(dsa_area* area, std::size_t index) {
  if (index >= DSA_MAX_SEGMENTS) BadPointer(MakeDsaPointer(index, 0), "segment index out of range");
  SegmentSlot slot;
  {
    SharedMutexGuard guard(&area->control->lock, AreaLockName());
    slot = area->control->segments[index];
  }
  return MapSlot(area, index, slot);
}

void RefreshFreedSegmentsLocked(dsa_area* area) {
  AreaControl* c = area->control;
  const std::uint64_t now = c->freed_segment_counter.load(std::memory_order_acquire);
  for (std::size_t i = 1; i < DSA_MAX_SEGMENTS; ++i)
    if (area->maps[i].base != nullptr && (!c->segments[i].in_use || c->segments[i].handle != area->maps[i].handle))
      ClearMap(area, i);
  area->freed_seen = now;
}

void RefreshFreedSegments(dsa_area* area) {
  SharedMutexGuard guard(&area->control->lock, AreaLockName());
  RefreshFreedSegmentsLocked(area);
}

bool GetPages(dsa_area* area, std::size_t npages, std::size_t* index, std::size_t* first) {
  AreaControl* c = area->control;
  // A slot whose segment was destroyed may hold a new one by now: our map
  // of it must not be the old segment's.
  CheckFreedSegmentsLocked(area);
  // The lowest segment with room: later segments are left to empty out.
  std::size_t found = DSA_MAX_SEGMENTS;
  for (std::size_t i = 0; i < c->high_segment_index; ++i) {
    if (c->segments[i].in_use && c->segments[i].largest_run >= npages) {
      found = i;
      break;
    }
  }
  if (found == DSA_MAX_SEGMENTS && !MakeSegment(area, npages, &found)) return false;
  SegmentMap* m = GetSegmentLocked(area, found);
  if (!FreePageManagerGet(m->fpm, npages, first))
    ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED),
            errmsg("dynamic shared area %llx: segment %zu has no run of %zu free pages it claims to have",
                   static_cast<unsigned long long>(area->handle), found, npages));
  UpdateSlotStats(c, found, m->fpm);
  *index = found;
  return true;
}

void PutPages(dsa_area* area, std::size_t index, std::size_t first, std::size_t npages) {
  AreaControl* c = area->control;
  SegmentMap* m = GetSegmentLocked(area, index);
  FreePageManagerPut(m->fpm, first, npages);
  UpdateSlotStats(c, index, m->fpm);
  const SegmentSlot& slot = c->segments[index];
  if (index == 0 || slot.free_pages != slot.npages) return;
  std::size_t retained = 0;
  for (std::size_t i = 1; i < c->high_segment_index; ++i)
    if (i != index && c->segments[i].in_use && c->segments[i].free_pages == c->segments[i].npages)
      retained += c->segments[i].size;
  if (retained + slot.size > kRetainedFreeSegmentBytes) DestroySegment(area, index);
}

void DestroyFreeSegments(dsa_area* area) {
  AreaControl* c = area->control;
  for (std::size_t i = c->high_segment_index; i-- > 1;) {
    const SegmentSlot& slot = c->segments[i];
    if (slot.in_use && slot.free_pages == slot.npages) DestroySegment(area, i);
  }
}

void UnmapAll(dsa_area* area) {
  for (std::size_t i = 0; i < DSA_MAX_SEGMENTS; ++i)
    if (area->maps[i].base != nullptr) ClearMap(area, i);
}

}  // namespace grove::dsa_internal
