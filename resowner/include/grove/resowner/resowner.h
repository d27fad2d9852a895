// Resource owners: the second tree of lifetimes (PostgreSQL 17's design).
//
// A resource owner tracks resources that are not memory — buffer pins,
// locks, open files, DSM attachments, snapshots, plan references, tuple
// descriptors, any C++ object — and releases what is still held when its
// transaction, subtransaction or portal ends.
//
// The protocol, for code that acquires a resource:
//
//   ResourceOwnerEnlarge(owner);                 // may allocate, may ERROR
//   Datum r = AcquireSomething();                // may ERROR: nothing to undo
//   ResourceOwnerRemember(owner, r, &kDesc);     // never allocates, never fails
//   ...
//   ResourceOwnerForget(owner, r, &kDesc);       // before releasing it yourself
//   ReleaseSomething(r);
//
// Release (ResourceOwnerRelease) runs children first, then the owner's own
// resources phase by phase (before-locks, locks, after-locks) and, within a
// phase, by priority (lower first). On commit, anything still held is a leak
// and is reported as a WARNING "resource was not closed: ..." before it is
// released; on abort it is released silently.
//
// Owners are per thread (CurrentResourceOwner is thread-local) and are
// allocated in TopMemoryContext.
#pragma once

#include <cstddef>
#include <cstdint>

#include "grove/base/datum.h"

namespace grove {

struct ResourceOwnerData;
using ResourceOwner = ResourceOwnerData*;

/// Release phases, in the order ResourceOwnerRelease runs them.
enum ResourceReleasePhase {
  RESOURCE_RELEASE_BEFORE_LOCKS = 1,
  RESOURCE_RELEASE_LOCKS,
  RESOURCE_RELEASE_AFTER_LOCKS,
};

/// Lower priorities are released first within a phase.
using ResourceReleasePriority = std::uint32_t;

/// Describes one kind of resource. Instances have static storage duration;
/// their addresses identify the kind.
struct ResourceOwnerDesc {
  const char* name;                     ///< "buffer pin", "file", ...
  ResourceReleasePhase release_phase;
  ResourceReleasePriority release_priority;
  /// Releases the resource. Called with the resource already forgotten; must
  /// not call ResourceOwnerForget/Remember, must not allocate, must not throw.
  void (*ReleaseResource)(Datum res);
  /// Optional: describes the resource in a leak warning. May return a string
  /// palloc'd in CurrentMemoryContext. nullptr: "<name> <value as hex>".
  char* (*DebugPrint)(Datum res);
};

// Priorities as PostgreSQL's, per phase (resowner.h).
inline constexpr ResourceReleasePriority RELEASE_PRIO_BUFFER_IOS = 100;
inline constexpr ResourceReleasePriority RELEASE_PRIO_BUFFER_PINS = 200;
inline constexpr ResourceReleasePriority RELEASE_PRIO_RELCACHE_REFS = 300;
inline constexpr ResourceReleasePriority RELEASE_PRIO_DSMS = 400;
inline constexpr ResourceReleasePriority RELEASE_PRIO_RELATION_LOCKS = 100;
inline constexpr ResourceReleasePriority RELEASE_PRIO_CATCACHE_REFS = 100;
inline constexpr ResourceReleasePriority RELEASE_PRIO_PLANCACHE_REFS = 300;
inline constexpr ResourceReleasePriority RELEASE_PRIO_TUPDESC_REFS = 400;
inline constexpr ResourceReleasePriority RELEASE_PRIO_SNAPSHOT_REFS = 500;
inline constexpr ResourceReleasePriority RELEASE_PRIO_FILES = 600;
inline constexpr ResourceReleasePriority RELEASE_PRIO_CXX_OBJECTS = 700;
inline constexpr ResourceReleasePriority RELEASE_PRIO_FIRST = 1;
inline constexpr ResourceReleasePriority RELEASE_PRIO_LAST = UINT32_MAX;

/// The owner new resources go to. Per thread.
extern thread_local constinit ResourceOwner CurrentResourceOwner;
/// The owner of the current (sub)transaction and of the top transaction;
/// set by the transaction machinery (runtime/xact), nullptr outside one.
extern thread_local constinit ResourceOwner CurTransactionResourceOwner;
extern thread_local constinit ResourceOwner TopTransactionResourceOwner;

/// Creates an owner under `parent` (nullptr: a root). `name` must have
/// static lifetime.
ResourceOwner ResourceOwnerCreate(ResourceOwner parent, const char* name);
/// Deletes the owner and its descendants. ERROR if any of them still holds a
/// resource (release it first), or if it is CurrentResourceOwner.
void ResourceOwnerDelete(ResourceOwner owner);
/// Moves `owner` under `new_parent` (nullptr: make it a root). ERROR if that
/// would make it its own ancestor.
void ResourceOwnerNewParent(ResourceOwner owner, ResourceOwner new_parent);
ResourceOwner ResourceOwnerGetParent(ResourceOwner owner);
const char* ResourceOwnerGetName(ResourceOwner owner);

/// Makes room for one more Remember. May allocate; ERROR if the owner is
/// being released.
void ResourceOwnerEnlarge(ResourceOwner owner);
/// Records a resource. Never allocates. ERROR (a bug in the caller) if
/// Enlarge was not called first or the owner is being released.
void ResourceOwnerRemember(ResourceOwner owner, Datum value, const ResourceOwnerDesc* kind);
/// Removes a resource the owner holds. ERROR "... is not owned by resource
/// owner ..." if it does not hold it.
void ResourceOwnerForget(ResourceOwner owner, Datum value, const ResourceOwnerDesc* kind);

/// Releases what the owner and its descendants hold in `phase`.
void ResourceOwnerRelease(ResourceOwner owner, ResourceReleasePhase phase, bool isCommit, bool isTopLevel);
/// Releases every resource of `kind` the owner itself holds (not its
/// children), silently, without starting the owner's release.
void ResourceOwnerReleaseAllOfKind(ResourceOwner owner, const ResourceOwnerDesc* kind);
/// Moves every resource `from` holds, and every owner created under it, to
/// `to` (a subtransaction's resources to its parent on commit). May allocate
/// in `to`; nothing moves if that fails.
void ResourceOwnerReassignAll(ResourceOwner from, ResourceOwner to);

/// Number of resources the owner itself holds.
std::size_t ResourceOwnerCount(ResourceOwner owner);
/// Whether the owner and all its descendants hold nothing.
bool ResourceOwnerIsEmpty(ResourceOwner owner);

/// Called for every owner, after that owner's resources of each phase are
/// released. Must not throw.
using ResourceReleaseCallback = void (*)(ResourceReleasePhase phase, bool isCommit, bool isTopLevel, void* arg);
void RegisterResourceReleaseCallback(ResourceReleaseCallback callback, void* arg);
void UnregisterResourceReleaseCallback(ResourceReleaseCallback callback, void* arg);

}  // namespace grove
