// A dynamic shared area's life: creation (in its own DSM segment or in
// place), attachment, pins, resource owners, detach and release, the size
// limit and trim.
//
// Reference counting (as PostgreSQL's): control->refcnt counts attached
// processes' references plus one while pinned. For an area in its own
// segment, dsa_attach takes a reference and dsa_detach drops it. For an area
// in place, the reference is tied to the memory holding it: dsa_release_in_place
// (or detaching the DSM segment given at creation/attach) drops it, and
// dsa_detach only unmaps. The last reference unpins every segment, so each
// is destroyed when its last mapping goes.
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <pthread.h>
#include <unistd.h>
#include <vector>

#include "dsa_internal.h"
#include "grove/base/error.h"
#include "grove/contexts/palloc.h"
#include "grove/resowner/resource_kinds.h"

namespace grove {

using namespace dsa_internal;

namespace {

constexpr std::uint64_t kAreaMagic = 0x67726f7665647361ull;  // "grovedsa"

std::size_t ControlBytes() { return (sizeof(AreaControl) + 63) / 64 * 64; }

void ReleaseAreaFromOwner(Datum res);
char* PrintArea(Datum res) {
  const auto* area = DatumGetPointer<dsa_area>(res);
  return psprintf("dynamic shared area %llx", static_cast<unsigned long long>(area->handle));
}

// "DSA area": released before locks, just before DSM segments (an area's
// segments are the process's own attachments, not the owner's).
const ResourceOwnerDesc kDsaAreaResourceKind = {"DSA area", RESOURCE_RELEASE_BEFORE_LOCKS, RELEASE_PRIO_DSMS - 1,
                                                &ReleaseAreaFromOwner, &PrintArea};

void CheckAttached(dsa_area* area) { CheckSameProcess(area); }

void BumpForkGeneration() { ++g_fork_generation; }
pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
void InstallForkHandler() { pthread_atfork(nullptr, nullptr, &BumpForkGeneration); }

// Drops one reference (area lock not held). The last one unpins every
// segment; returns the handles to unpin outside the lock.
void DropReference(AreaControl* c) {
  std::vector<dsm_handle> unpin;
  {
    SharedMutexGuard guard(&c->lock, AreaLockName());
    if (c->refcnt == 0)
      ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
              errmsg("dynamic shared area %llx has already been released", static_cast<unsigned long long>(c->handle)));
    if (--c->refcnt > 0) return;
    c->released = 1;
    for (std::size_t i = 0; i < c->high_segment_index; ++i)
      if (c->segments[i].in_use && c->segments[i].handle != DSM_HANDLE_INVALID) unpin.push_back(c->segments[i].handle);
  }
  for (dsm_handle h : unpin) {
    try {
      dsm_unpin_segment(h);
    } catch (const Error& e) {
      ereport(WARNING, errmsg("could not release a segment of dynamic shared area: %s", e.what()));
    }
  }
}

// A detach callback must not throw; dsa_release_in_place does not.
void ReleaseInPlaceOnDetach(dsm_segment*, Datum place) { dsa_release_in_place(DatumGetPointer<void>(place)); }

std::unique_ptr<dsa_area> NewArea(AreaControl* control, dsa_handle handle, bool in_place) {
  pthread_once(&fork_handler_once, &InstallForkHandler);
  std::unique_ptr<dsa_area> area(new dsa_area);  // large arrays: left uninitialized, set below
  area->fork_generation = g_fork_generation;
  area->control = control;
  area->handle = handle;
  area->in_place = in_place;
  area->pid = getpid();
  area->owner = nullptr;
  area->freed_seen = control->freed_segment_counter.load(std::memory_order_acquire);
  for (SegmentMap& m : area->maps) m = SegmentMap{};
  InitializeCaches(area.get());
  return area;
}

// Sets up the control and the first segment at `place` (`size` bytes).
AreaControl* InitializeArea(void* place, std::size_t size, int tranche_id, dsa_handle handle,
                            std::size_t init_segment_size, std::size_t max_segment_size) {
  if (size < dsa_minimum_size())
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("%zu bytes are too few for a dynamic shared area", size),
            errdetail("dsa_minimum_size() is %zu.", dsa_minimum_size()));
  if (reinterpret_cast<std::uintptr_t>(place) % 8 != 0)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("a dynamic shared area must be 8-byte aligned"));
  auto* c = new (place) AreaControl;
  std::memset(static_cast<void*>(c), 0, sizeof(AreaControl));
  c->tranche_id = tranche_id;
  c->owner_pid = getpid();
  c->handle = handle;
  c->header_offset = ControlBytes();
  SharedMutexInit(&c->lock);
  c->refcnt = 1;
  c->max_total_size = SIZE_MAX;
  c->init_segment_size = init_segment_size;
  c->max_segment_size = max_segment_size;
  for (Pool& pool : c->pools) {
    SharedMutexInit(&pool.lock);
    for (SpanRef& head : pool.lists) head = kNoSpan;
    pool.spare = kNoSpan;
  }
  const std::uint32_t npages = InitializeSegment(static_cast<char*>(place), c->header_offset, size, 0);
  c->segments[0] = SegmentSlot{handle, size, npages, npages, npages, 1};
  c->total_size = size;
  c->high_segment_index = 1;
  c->freed_segment_counter.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  c->magic = kAreaMagic;
  return c;
}

AreaControl* CheckControl(void* place, dsa_handle handle) {
  auto* c = static_cast<AreaControl*>(place);
  if (c->magic != kAreaMagic)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("no dynamic shared area at %s %llx", handle != DSA_HANDLE_INVALID ? "handle" : "address",
                   handle != DSA_HANDLE_INVALID ? static_cast<unsigned long long>(handle)
                                                : static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(place))));
  return c;
}

// Takes a reference for a new attachment; ERROR if the area is gone.
void AddReference(AreaControl* c) {
  SharedMutexGuard guard(&c->lock, AreaLockName());
  if (c->refcnt == 0 || c->released)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("could not attach to dynamic shared area %llx: it has been released",
                   static_cast<unsigned long long>(c->handle)));
  ++c->refcnt;
}

// Gives a new attachment to CurrentResourceOwner (room was made beforehand).
dsa_area* Finish(std::unique_ptr<dsa_area> area, ResourceOwner owner) {
  area->owner = owner;
  if (owner != nullptr) ResourceOwnerRemember(owner, PointerGetDatum(area.get()), &kDsaAreaResourceKind);
  return area.release();
}

// Everything dsa_detach does, without the resource owner (already forgotten
// or never remembered). Never throws: this also runs from owner release.
void DetachInternal(dsa_area* area) {
  if (area->pid != getpid()) {
    delete area;  // a forked child's copy: the mappings are the parent's
    return;
  }
  FlushAllCaches(area, true);
  AreaControl* c = area->control;
  const bool in_place = area->in_place;
  if (!in_place) {
    try {
      DropReference(c);
    } catch (const Error& e) {
      ereport(WARNING, errmsg("could not detach from dynamic shared area %llx cleanly: %s",
                              static_cast<unsigned long long>(area->handle), e.what()));
    }
  }
  // Highest first: the first segment holds the control the others need.
  for (std::size_t i = DSA_MAX_SEGMENTS; i-- > 0;)
    if (area->maps[i].mapping != nullptr) ReleaseMapping(area->maps[i].mapping);
  delete area;
}

void ReleaseAreaFromOwner(Datum res) { DetachInternal(DatumGetPointer<dsa_area>(res)); }

}  // namespace

namespace dsa_internal {

std::uint32_t g_fork_generation = 0;

const char* AreaLockName() { return "dynamic shared area"; }

void UsedAfterFork(dsa_area* area) {
  ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
          errmsg("dynamic shared area %llx was attached by another process", static_cast<unsigned long long>(area->handle)),
          errhint("A forked process must dsa_attach the area itself."));
  __builtin_unreachable();
}

}  // namespace dsa_internal

std::size_t dsa_minimum_size() { return SegmentBytesFor(ControlBytes(), 1); }

dsa_area* dsa_create_ext(int tranche_id, std::size_t init_segment_size, std::size_t max_segment_size) {
  if (init_segment_size < dsa_minimum_size() || max_segment_size < init_segment_size ||
      max_segment_size > DSA_MAX_SEGMENT_SIZE)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("invalid dynamic shared area segment sizes %zu and %zu", init_segment_size, max_segment_size),
            errdetail("The first segment needs at least %zu bytes; the largest may not be smaller than the first nor "
                      "above %zu.",
                      dsa_minimum_size(), DSA_MAX_SEGMENT_SIZE));
  ResourceOwner owner = CurrentResourceOwner;
  if (owner != nullptr) ResourceOwnerEnlarge(owner);
  dsm_segment* seg;
  {
    CurrentResourceOwner = nullptr;  // the area holds its segments itself
    try {
      seg = dsm_create(init_segment_size);
    } catch (...) {
      CurrentResourceOwner = owner;
      throw;
    }
    CurrentResourceOwner = owner;
  }
  SharedMapping* mapping = nullptr;
  try {
    dsm_pin_segment(seg);
    AreaControl* c = InitializeArea(dsm_segment_address(seg), init_segment_size, tranche_id, dsm_segment_handle(seg),
                                    init_segment_size, max_segment_size);
    mapping = AdoptMapping(seg);
    std::unique_ptr<dsa_area> area = NewArea(c, dsm_segment_handle(seg), false);
    SetMap(area.get(), 0, MappingBase(mapping), init_segment_size, mapping, c->handle);
    return Finish(std::move(area), owner);
  } catch (...) {
    const dsm_handle h = dsm_segment_handle(seg);
    if (mapping != nullptr)
      ReleaseMapping(mapping);
    else
      dsm_detach(seg);
    try {
      dsm_unpin_segment(h);
    } catch (...) {
    }
    throw;
  }
}

dsa_area* dsa_create(int tranche_id) {
  return dsa_create_ext(tranche_id, DSA_DEFAULT_INIT_SEGMENT_SIZE, DSA_MAX_SEGMENT_SIZE);
}

dsa_area* dsa_create_in_place(void* place, std::size_t size, int tranche_id, dsm_segment* segment) {
  ResourceOwner owner = CurrentResourceOwner;
  if (owner != nullptr) ResourceOwnerEnlarge(owner);
  AreaControl* c = InitializeArea(place, size, tranche_id, DSA_HANDLE_INVALID, DSA_DEFAULT_INIT_SEGMENT_SIZE,
                                  DSA_MAX_SEGMENT_SIZE);
  std::unique_ptr<dsa_area> area = NewArea(c, DSA_HANDLE_INVALID, true);
  SetMap(area.get(), 0, static_cast<char*>(place), size, nullptr, DSA_HANDLE_INVALID);
  if (segment != nullptr) on_dsm_detach(segment, &ReleaseInPlaceOnDetach, PointerGetDatum(place));
  return Finish(std::move(area), owner);
}

dsa_area* dsa_attach(dsa_handle handle) {
  ResourceOwner owner = CurrentResourceOwner;
  if (owner != nullptr) ResourceOwnerEnlarge(owner);
  SharedMapping* mapping = AcquireMapping(handle);
  try {
    if (MappingSize(mapping) < dsa_minimum_size())
      ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
              errmsg("no dynamic shared area at handle %llx", static_cast<unsigned long long>(handle)));
    AreaControl* c = CheckControl(MappingBase(mapping), handle);
    AddReference(c);
    try {
      std::unique_ptr<dsa_area> area = NewArea(c, handle, false);
      SetMap(area.get(), 0, MappingBase(mapping), c->segments[0].size, mapping, handle);
      return Finish(std::move(area), owner);
    } catch (...) {
      DropReference(c);  // while the control is still mapped; the mapping goes below
      throw;
    }
  } catch (...) {
    if (mapping != nullptr) ReleaseMapping(mapping);
    throw;
  }
}

dsa_area* dsa_attach_in_place(void* place, dsm_segment* segment) {
  ResourceOwner owner = CurrentResourceOwner;
  if (owner != nullptr) ResourceOwnerEnlarge(owner);
  AreaControl* c = CheckControl(place, DSA_HANDLE_INVALID);
  AddReference(c);
  try {
    std::unique_ptr<dsa_area> area = NewArea(c, DSA_HANDLE_INVALID, true);
    SetMap(area.get(), 0, static_cast<char*>(place), c->segments[0].size, nullptr, DSA_HANDLE_INVALID);
    if (segment != nullptr) on_dsm_detach(segment, &ReleaseInPlaceOnDetach, PointerGetDatum(place));
    return Finish(std::move(area), owner);
  } catch (...) {
    DropReference(c);
    throw;
  }
}

void dsa_release_in_place(void* place) {
  // Never throws (it also runs as a detach callback): an area whose lock
  // holder died is inconsistent, and its reference can only be reported.
  try {
    DropReference(CheckControl(place, DSA_HANDLE_INVALID));
  } catch (const Error& e) {
    ereport(WARNING, errmsg("could not release dynamic shared area in place: %s", e.what()),
            errdetail("Its segments stay until the process that created it exits."));
  }
}

dsa_handle dsa_get_handle(dsa_area* area) {
  if (area->in_place)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("a dynamic shared area created in place has no handle"),
            errhint("Share the address of its place (for instance through a shm_toc) instead."));
  return area->handle;
}

void dsa_pin(dsa_area* area) {
  CheckAttached(area);
  SharedMutexGuard guard(&area->control->lock, AreaLockName());
  if (area->control->pinned)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("dynamic shared area %llx is already pinned", static_cast<unsigned long long>(area->handle)));
  area->control->pinned = 1;
  ++area->control->refcnt;
}

void dsa_unpin(dsa_area* area) {
  CheckAttached(area);
  {
    SharedMutexGuard guard(&area->control->lock, AreaLockName());
    if (!area->control->pinned)
      ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
              errmsg("dynamic shared area %llx is not pinned", static_cast<unsigned long long>(area->handle)));
    area->control->pinned = 0;
    // This attachment holds a reference of its own, so this is never the last.
    --area->control->refcnt;
  }
}

void dsa_pin_mapping(dsa_area* area) {
  if (area->owner == nullptr) return;
  ResourceOwnerForget(area->owner, PointerGetDatum(area), &kDsaAreaResourceKind);
  area->owner = nullptr;
}

void dsa_detach(dsa_area* area) {
  if (area->owner != nullptr && area->pid == getpid()) {
    ResourceOwnerForget(area->owner, PointerGetDatum(area), &kDsaAreaResourceKind);
    area->owner = nullptr;
  }
  DetachInternal(area);
}

void dsa_trim(dsa_area* area) {
  CheckAttached(area);
  FlushAllCaches(area, false);
  ReleaseEmptySpans(area);
  SharedMutexGuard guard(&area->control->lock, AreaLockName());
  DestroyFreeSegments(area);
}

void dsa_set_size_limit(dsa_area* area, std::size_t limit) {
  CheckAttached(area);
  SharedMutexGuard guard(&area->control->lock, AreaLockName());
  area->control->max_total_size = limit;
}

std::size_t dsa_get_total_size(dsa_area* area) {
  CheckAttached(area);
  SharedMutexGuard guard(&area->control->lock, AreaLockName());
  return area->control->total_size;
}

}  // namespace grove
