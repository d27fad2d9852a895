// The built-in resource kinds. Each descriptor's release function is a
// trampoline to the function the owning layer installs at start-up
// (SetResourceKindRelease), so resowner/ depends on none of those layers.
#include <atomic>
#include <string>

#include "grove/base/error.h"
#include "grove/contexts/palloc.h"
#include "grove/resowner/resource_kinds.h"

namespace grove {

namespace {

struct KindSlot {
  std::atomic<void (*)(Datum)> release{nullptr};
  std::atomic<char* (*)(Datum)> debug_print{nullptr};
};

enum BuiltinKind { kBufferPin, kDsmSegment, kRelationLock, kPlanCacheRef, kTupleDescRef, kSnapshotRef, kFile, kNumBuiltin };

KindSlot slots[kNumBuiltin];
const char* const kNames[kNumBuiltin] = {"buffer pin", "DSM segment",  "relation lock", "plan cache reference",
                                         "tuple descriptor reference", "snapshot reference", "file"};

template <int K>
void ReleaseTrampoline(Datum res) {
  void (*release)(Datum) = slots[K].release.load(std::memory_order_acquire);
  if (release != nullptr) {
    release(res);
    return;
  }
  ereport(WARNING, errmsg("no release function is installed for resource kind \"%s\"; %p dropped", kNames[K],
                          DatumGetPointer(res)));
}

template <int K>
char* PrintTrampoline(Datum res) {
  char* (*print)(Datum) = slots[K].debug_print.load(std::memory_order_acquire);
  if (print != nullptr) return print(res);
  return psprintf("%s %p", kNames[K], DatumGetPointer(res));
}

template <int K>
constexpr ResourceOwnerDesc MakeDesc(ResourceReleasePhase phase, ResourceReleasePriority priority) {
  return ResourceOwnerDesc{kNames[K], phase, priority, &ReleaseTrampoline<K>, &PrintTrampoline<K>};
}

void ReleaseCxxObject(Datum res) { delete DatumGetPointer<OwnedObjectBase>(res); }
char* PrintCxxObject(Datum res) {
  return psprintf("C++ object %s %p", DatumGetPointer<OwnedObjectBase>(res)->Describe().c_str(), DatumGetPointer(res));
}

int SlotOf(const ResourceOwnerDesc* kind) {
  const ResourceOwnerDesc* const table[kNumBuiltin] = {&kBufferPinResourceKind,    &kDsmSegmentResourceKind,
                                                       &kRelationLockResourceKind, &kPlanCacheRefResourceKind,
                                                       &kTupleDescRefResourceKind, &kSnapshotRefResourceKind,
                                                       &kFileResourceKind};
  for (int i = 0; i < kNumBuiltin; ++i)
    if (table[i] == kind) return i;
  return -1;
}

}  // namespace

const ResourceOwnerDesc kBufferPinResourceKind =
    MakeDesc<kBufferPin>(RESOURCE_RELEASE_BEFORE_LOCKS, RELEASE_PRIO_BUFFER_PINS);
const ResourceOwnerDesc kDsmSegmentResourceKind = MakeDesc<kDsmSegment>(RESOURCE_RELEASE_BEFORE_LOCKS, RELEASE_PRIO_DSMS);
const ResourceOwnerDesc kRelationLockResourceKind =
    MakeDesc<kRelationLock>(RESOURCE_RELEASE_LOCKS, RELEASE_PRIO_RELATION_LOCKS);
const ResourceOwnerDesc kPlanCacheRefResourceKind =
    MakeDesc<kPlanCacheRef>(RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_PLANCACHE_REFS);
const ResourceOwnerDesc kTupleDescRefResourceKind =
    MakeDesc<kTupleDescRef>(RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_TUPDESC_REFS);
const ResourceOwnerDesc kSnapshotRefResourceKind =
    MakeDesc<kSnapshotRef>(RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_SNAPSHOT_REFS);
const ResourceOwnerDesc kFileResourceKind = MakeDesc<kFile>(RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_FILES);
const ResourceOwnerDesc kCxxObjectResourceKind = ResourceOwnerDesc{
    "C++ object", RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_CXX_OBJECTS, &ReleaseCxxObject, &PrintCxxObject};

void SetResourceKindRelease(const ResourceOwnerDesc* kind, void (*release)(Datum), char* (*debug_print)(Datum)) {
  const int slot = SlotOf(kind);
  if (slot < 0)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("SetResourceKindRelease: \"%s\" is not a built-in resource kind", kind != nullptr ? kind->name : "(null)"),
            errhint("A kind of your own carries its release function in its ResourceOwnerDesc."));
  slots[slot].release.store(release, std::memory_order_release);
  slots[slot].debug_print.store(debug_print, std::memory_order_release);
}

}  // namespace grove
