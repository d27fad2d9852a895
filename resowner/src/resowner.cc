// Resource owners (PostgreSQL 17's resowner.c design, grove's own code).
//
// Storage per owner: the most recent kArraySize resources in a small array
// (Remember appends, Forget searches from the end: the common LIFO pattern
// costs a few compares), and an open-addressing hash table that the array
// spills into when full. Enlarge does the spilling, so that Remember never
// allocates: code acquires a resource only after Enlarge succeeded, and then
// recording it cannot fail.
//
// Release: the first release call sorts everything the owner holds by
// (phase, priority), last-to-release first, into one array; each phase then
// pops from the end. From then on the owner is "releasing": it accepts no
// more resources and no Forget (release functions must not recurse into it).
#include "grove/resowner/resowner.h"

#include <algorithm>
#include <cstring>

#include "grove/base/assert.h"
#include "grove/base/error.h"
#include "grove/contexts/memutils.h"

namespace grove {

thread_local constinit ResourceOwner CurrentResourceOwner = nullptr;
thread_local constinit ResourceOwner CurTransactionResourceOwner = nullptr;
thread_local constinit ResourceOwner TopTransactionResourceOwner = nullptr;

namespace {

struct ResourceElem {
  Datum item;
  const ResourceOwnerDesc* kind;  // nullptr: an empty hash slot
};

// As PostgreSQL: 32 recent entries; a hash of 64 slots at first, doubling,
// filled to at most 3/4 so that probe sequences stay short — and never past
// capacity - kArraySize, so that the array always fits beside the hash's
// entries when release gathers them into the table.
constexpr std::uint32_t kArraySize = 32;
constexpr std::uint32_t kInitialCapacity = 64;
constexpr std::uint32_t MaxHashItems(std::uint32_t capacity) {
  return capacity / 4 * 3 < capacity - kArraySize ? capacity / 4 * 3 : capacity - kArraySize;
}
static_assert(MaxHashItems(kInitialCapacity) + kArraySize <= kInitialCapacity, "the array fits beside a full table");

struct ReleaseCallbackItem {
  ResourceReleaseCallback callback;
  void* arg;
  ReleaseCallbackItem* next;
};
thread_local ReleaseCallbackItem* release_callbacks = nullptr;

}  // namespace

struct ResourceOwnerData {
  ResourceOwner parent;
  ResourceOwner firstchild;
  ResourceOwner nextchild;
  const char* name;
  bool releasing;  // release started: no more Remember, Forget or Enlarge
  bool sorted;     // `hash` holds every resource, sorted for release
  std::uint32_t narr;
  std::uint32_t nhash;
  std::uint32_t capacity;  // hash slots, a power of two (0: no table yet)
  std::uint32_t grow_at;   // nhash + narr may not reach this without growing
  ResourceElem* hash;
  ResourceElem arr[kArraySize];
};

namespace {

inline std::uint32_t HashElem(Datum value, const ResourceOwnerDesc* kind) {
  // murmur3's 64-bit finalizer over the value combined with the kind.
  std::uint64_t x = static_cast<std::uint64_t>(value) ^
                    (static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(kind)) * 0x9E3779B97F4A7C15ull);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<std::uint32_t>(x);
}

void HashInsert(ResourceOwner owner, Datum value, const ResourceOwnerDesc* kind) {
  const std::uint32_t mask = owner->capacity - 1;
  std::uint32_t idx = HashElem(value, kind) & mask;
  while (owner->hash[idx].kind != nullptr) idx = (idx + 1) & mask;
  owner->hash[idx] = ResourceElem{value, kind};
  ++owner->nhash;
}

// Removes the entry at `idx` by shifting later members of its probe run back
// (no tombstones, so lookups can stop at the first empty slot).
void HashDeleteAt(ResourceOwner owner, std::uint32_t idx) {
  const std::uint32_t mask = owner->capacity - 1;
  ResourceElem* h = owner->hash;
  std::uint32_t hole = idx;
  std::uint32_t j = idx;
  for (;;) {
    j = (j + 1) & mask;
    if (h[j].kind == nullptr) break;
    const std::uint32_t home = HashElem(h[j].item, h[j].kind) & mask;
    // h[j] may move into the hole unless its home lies cyclically in (hole, j].
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    h[hole] = h[j];
    hole = j;
  }
  h[hole] = ResourceElem{0, nullptr};
  --owner->nhash;
}

// Grows the table until `needed` entries fit below the fill limit; rehashes.
void GrowHash(ResourceOwner owner, std::uint32_t needed) {
  std::uint32_t capacity = owner->capacity == 0 ? kInitialCapacity : owner->capacity;
  while (needed >= MaxHashItems(capacity)) {
    if (capacity > (std::uint32_t{1} << 30))
      ereport(ERROR, errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
              errmsg("resource owner \"%s\" cannot hold more resources", owner->name));
    capacity *= 2;
  }
  if (capacity == owner->capacity) return;
  auto* fresh = static_cast<ResourceElem*>(
      MemoryContextAllocExtended(TopMemoryContext, sizeof(ResourceElem) * capacity, MCXT_ALLOC_ZERO | MCXT_ALLOC_HUGE));
  ResourceElem* old = owner->hash;
  const std::uint32_t old_capacity = owner->capacity;
  owner->hash = fresh;
  owner->capacity = capacity;
  owner->grow_at = MaxHashItems(capacity);
  owner->nhash = 0;
  for (std::uint32_t i = 0; i < old_capacity; ++i)
    if (old[i].kind != nullptr) HashInsert(owner, old[i].item, old[i].kind);
  if (old != nullptr) pfree(old);
}

// Moves the array's entries into the hash (which must have room).
void SpillArray(ResourceOwner owner) {
  for (std::uint32_t i = 0; i < owner->narr; ++i) HashInsert(owner, owner->arr[i].item, owner->arr[i].kind);
  owner->narr = 0;
}

[[noreturn]] void Misuse(const char* fmt, const char* a, const char* b) {
  ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR), errmsg(fmt, a, b));
  __builtin_unreachable();
}

void CheckOwner(ResourceOwner owner, const char* caller) {
  if (owner == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s called with a null resource owner", caller),
            errhint("Is a transaction in progress? CurrentResourceOwner is set only inside one."));
}

char* DescribeResource(Datum value, const ResourceOwnerDesc* kind) {
  if (kind->DebugPrint != nullptr) return kind->DebugPrint(value);
  return psprintf("%s %p", kind->name, DatumGetPointer(value));
}

// The resources in release order, last-to-release first: the array itself
// when there is no hash, else the hash table compacted (the array's entries
// moved in). Never allocates — release runs on the abort path. Whenever a
// table exists nhash < grow_at <= capacity - kArraySize (Enlarge and
// ReassignAll grow it first), and narr <= kArraySize, so they fit.
struct ReleaseList {
  ResourceElem* items;
  std::uint32_t* count;
};

ReleaseList SortForRelease(ResourceOwner owner) {
  ReleaseList list = owner->capacity == 0 ? ReleaseList{owner->arr, &owner->narr} : ReleaseList{owner->hash, &owner->nhash};
  if (owner->sorted) return list;
  if (owner->capacity != 0) {
    ResourceElem* h = owner->hash;
    std::uint32_t n = 0;
    for (std::uint32_t i = 0; i < owner->capacity; ++i)
      if (h[i].kind != nullptr) h[n++] = h[i];
    for (std::uint32_t i = 0; i < owner->narr; ++i) h[n++] = owner->arr[i];
    std::fill(h + n, h + owner->capacity, ResourceElem{0, nullptr});
    owner->nhash = n;
    owner->narr = 0;
  }
  std::sort(list.items, list.items + *list.count, [](const ResourceElem& a, const ResourceElem& b) {
    if (a.kind->release_phase != b.kind->release_phase) return a.kind->release_phase > b.kind->release_phase;
    return a.kind->release_priority > b.kind->release_priority;
  });
  owner->sorted = true;
  return list;
}

// Releases the owner's own resources of `phase` (it is releasing).
void ReleaseOwnPhase(ResourceOwner owner, ResourceReleasePhase phase, bool printLeakWarnings) {
  const ReleaseList list = SortForRelease(owner);
  while (*list.count > 0) {
    const ResourceElem e = list.items[*list.count - 1];
    if (e.kind->release_phase > phase) break;
    // Forgotten before release: if the release function fails, the resource
    // is not released twice.
    list.items[--*list.count] = ResourceElem{0, nullptr};
    if (printLeakWarnings) {
      // Reporting allocates and may fail; the resource is released anyway.
      try {
        char* text = DescribeResource(e.item, e.kind);
        ereport(WARNING, errmsg("resource was not closed: %s", text));
        pfree(text);
      } catch (...) {
        e.kind->ReleaseResource(e.item);
        throw;
      }
    }
    e.kind->ReleaseResource(e.item);
  }
}

void ReleaseInternal(ResourceOwner owner, ResourceReleasePhase phase, bool isCommit, bool isTopLevel) {
  for (ResourceOwner child = owner->firstchild; child != nullptr; child = child->nextchild)
    ReleaseInternal(child, phase, isCommit, isTopLevel);
  // Release functions and callbacks see the owner being released as current.
  ResourceOwner save = CurrentResourceOwner;
  CurrentResourceOwner = owner;
  try {
    owner->releasing = true;
    ReleaseOwnPhase(owner, phase, isCommit);
    for (ReleaseCallbackItem* item = release_callbacks; item != nullptr;) {
      ReleaseCallbackItem* next = item->next;  // a callback may unregister itself
      item->callback(phase, isCommit, isTopLevel, item->arg);
      item = next;
    }
  } catch (...) {
    CurrentResourceOwner = save;
    throw;
  }
  CurrentResourceOwner = save;
}

bool SubtreeContains(ResourceOwner root, ResourceOwner target) {
  for (ResourceOwner o = target; o != nullptr; o = o->parent)
    if (o == root) return true;
  return false;
}

std::size_t SubtreeCount(ResourceOwner owner) {
  std::size_t n = owner->narr + owner->nhash;
  for (ResourceOwner child = owner->firstchild; child != nullptr; child = child->nextchild) n += SubtreeCount(child);
  return n;
}

void Unlink(ResourceOwner owner) {
  if (owner->parent == nullptr) return;
  for (ResourceOwner* link = &owner->parent->firstchild; *link != nullptr; link = &(*link)->nextchild) {
    if (*link == owner) {
      *link = owner->nextchild;
      break;
    }
  }
  owner->parent = nullptr;
  owner->nextchild = nullptr;
}

void Link(ResourceOwner owner, ResourceOwner parent) {
  owner->parent = parent;
  if (parent != nullptr) {
    owner->nextchild = parent->firstchild;
    parent->firstchild = owner;
  }
}

void DeleteTree(ResourceOwner owner) {
  while (owner->firstchild != nullptr) DeleteTree(owner->firstchild);
  Unlink(owner);
  if (owner->hash != nullptr) pfree(owner->hash);
  pfree(owner);
}

}  // namespace

ResourceOwner ResourceOwnerCreate(ResourceOwner parent, const char* name) {
  MemoryContextInit();
  auto* owner = static_cast<ResourceOwner>(MemoryContextAllocZero(TopMemoryContext, sizeof(ResourceOwnerData)));
  owner->name = name != nullptr ? name : "(unnamed)";
  Link(owner, parent);
  return owner;
}

void ResourceOwnerDelete(ResourceOwner owner) {
  CheckOwner(owner, "ResourceOwnerDelete");
  const std::size_t held = SubtreeCount(owner);
  if (held != 0)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot delete resource owner \"%s\": it still holds %zu resources", owner->name, held),
            errhint("Release the owner (ResourceOwnerRelease, all three phases) before deleting it."));
  if (SubtreeContains(owner, CurrentResourceOwner))
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot delete resource owner \"%s\": it or one of its children is CurrentResourceOwner",
                   owner->name));
  DeleteTree(owner);
}

void ResourceOwnerNewParent(ResourceOwner owner, ResourceOwner new_parent) {
  CheckOwner(owner, "ResourceOwnerNewParent");
  if (new_parent != nullptr && SubtreeContains(owner, new_parent))
    Misuse("cannot make resource owner \"%s\" a child of \"%s\": the tree would have a cycle", owner->name,
           new_parent->name);
  Unlink(owner);
  Link(owner, new_parent);
}

ResourceOwner ResourceOwnerGetParent(ResourceOwner owner) { return owner->parent; }
const char* ResourceOwnerGetName(ResourceOwner owner) { return owner->name; }

void ResourceOwnerEnlarge(ResourceOwner owner) {
  CheckOwner(owner, "ResourceOwnerEnlarge");
  if (GROVE_UNLIKELY(owner->releasing))
    Misuse("ResourceOwnerEnlarge called for resource owner \"%s\" after release started%s", owner->name, "");
  if (GROVE_LIKELY(owner->narr < kArraySize)) return;
  // The array is full: spill it into the hash, growing the hash first.
  if (owner->nhash + owner->narr >= owner->grow_at) GrowHash(owner, owner->nhash + owner->narr);
  SpillArray(owner);
}

void ResourceOwnerRemember(ResourceOwner owner, Datum value, const ResourceOwnerDesc* kind) {
  if (GROVE_UNLIKELY(owner->releasing))
    Misuse("ResourceOwnerRemember called for %s after release of resource owner \"%s\" started", kind->name,
           owner->name);
  if (GROVE_UNLIKELY(owner->narr >= kArraySize))
    Misuse("ResourceOwnerRemember called for %s without room in resource owner \"%s\" (call ResourceOwnerEnlarge "
           "first)",
           kind->name, owner->name);
  owner->arr[owner->narr++] = ResourceElem{value, kind};
}

void ResourceOwnerForget(ResourceOwner owner, Datum value, const ResourceOwnerDesc* kind) {
  if (GROVE_UNLIKELY(owner->releasing))
    Misuse("ResourceOwnerForget called for %s after release of resource owner \"%s\" started", kind->name,
           owner->name);
  // Most resources are forgotten soon after they are remembered: search the
  // array from its end first.
  for (std::uint32_t i = owner->narr; i-- > 0;) {
    if (owner->arr[i].item == value && owner->arr[i].kind == kind) {
      owner->arr[i] = owner->arr[--owner->narr];
      return;
    }
  }
  if (owner->nhash > 0) {
    const std::uint32_t mask = owner->capacity - 1;
    for (std::uint32_t idx = HashElem(value, kind) & mask; owner->hash[idx].kind != nullptr; idx = (idx + 1) & mask) {
      if (owner->hash[idx].item == value && owner->hash[idx].kind == kind) {
        HashDeleteAt(owner, idx);
        return;
      }
    }
  }
  ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR),
          errmsg("%s %p is not owned by resource owner %s", kind->name, DatumGetPointer(value), owner->name));
}

void ResourceOwnerRelease(ResourceOwner owner, ResourceReleasePhase phase, bool isCommit, bool isTopLevel) {
  CheckOwner(owner, "ResourceOwnerRelease");
  ReleaseInternal(owner, phase, isCommit, isTopLevel);
}

void ResourceOwnerReleaseAllOfKind(ResourceOwner owner, const ResourceOwnerDesc* kind) {
  CheckOwner(owner, "ResourceOwnerReleaseAllOfKind");
  if (owner->releasing)
    Misuse("ResourceOwnerReleaseAllOfKind called for %s after release of resource owner \"%s\" started", kind->name,
           owner->name);
  // Release functions must not remember into or forget from this owner.
  owner->releasing = true;
  try {
    for (std::uint32_t i = owner->narr; i-- > 0;) {
      if (owner->arr[i].kind != kind) continue;
      const Datum value = owner->arr[i].item;
      owner->arr[i] = owner->arr[--owner->narr];
      kind->ReleaseResource(value);
    }
    for (std::uint32_t idx = 0; idx < owner->capacity; ++idx) {
      // A deletion shifts a later entry into this slot: look again.
      while (owner->hash[idx].kind == kind) {
        const Datum value = owner->hash[idx].item;
        HashDeleteAt(owner, idx);
        kind->ReleaseResource(value);
      }
    }
  } catch (...) {
    owner->releasing = false;
    throw;
  }
  owner->releasing = false;
}

void ResourceOwnerReassignAll(ResourceOwner from, ResourceOwner to) {
  CheckOwner(from, "ResourceOwnerReassignAll");
  CheckOwner(to, "ResourceOwnerReassignAll");
  if (from == to) return;
  if (from->releasing || to->releasing)
    Misuse("cannot move resources from resource owner \"%s\" to \"%s\": release has started", from->name, to->name);
  const std::uint32_t moving = from->narr + from->nhash;
  // All allocation first, so that the move itself cannot fail half-way.
  const std::uint32_t needed = to->nhash + to->narr + moving;
  if (moving > 0 && needed >= to->grow_at) GrowHash(to, needed);
  if (moving > 0) SpillArray(to);
  for (std::uint32_t i = 0; i < from->narr; ++i) HashInsert(to, from->arr[i].item, from->arr[i].kind);
  for (std::uint32_t i = 0; i < from->capacity; ++i)
    if (from->hash[i].kind != nullptr) HashInsert(to, from->hash[i].item, from->hash[i].kind);
  from->narr = 0;
  from->nhash = 0;
  if (from->hash != nullptr) std::memset(from->hash, 0, sizeof(ResourceElem) * from->capacity);
  // Owners created under `from` (a portal's, say) move with its resources.
  while (from->firstchild != nullptr) {
    ResourceOwner child = from->firstchild;
    Unlink(child);
    Link(child, to);
  }
}

std::size_t ResourceOwnerCount(ResourceOwner owner) { return owner->narr + owner->nhash; }
bool ResourceOwnerIsEmpty(ResourceOwner owner) { return SubtreeCount(owner) == 0; }

void RegisterResourceReleaseCallback(ResourceReleaseCallback callback, void* arg) {
  MemoryContextInit();
  auto* item = static_cast<ReleaseCallbackItem*>(MemoryContextAlloc(TopMemoryContext, sizeof(ReleaseCallbackItem)));
  *item = ReleaseCallbackItem{callback, arg, release_callbacks};
  release_callbacks = item;
}

void UnregisterResourceReleaseCallback(ResourceReleaseCallback callback, void* arg) {
  for (ReleaseCallbackItem** link = &release_callbacks; *link != nullptr; link = &(*link)->next) {
    if ((*link)->callback == callback && (*link)->arg == arg) {
      ReleaseCallbackItem* item = *link;
      *link = item->next;
      pfree(item);
      return;
    }
  }
}

}  // namespace grove
