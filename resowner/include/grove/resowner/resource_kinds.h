// The built-in resource kinds, declared here and used by later layers, and
// the generic kind that lets an owner hold any C++ object.
#pragma once

#include <memory>
#include <string>
#include <typeinfo>
#include <utility>

#include "grove/resowner/resowner.h"

namespace grove {

// Descriptors of the kinds the runtime's layers remember. Their release
// functions call back into the layer that registered them (see
// SetResourceKindRelease), so that this layer depends on none of them.
extern const ResourceOwnerDesc kBufferPinResourceKind;         // before locks, 200
extern const ResourceOwnerDesc kDsmSegmentResourceKind;      // before locks, 400
extern const ResourceOwnerDesc kRelationLockResourceKind;    // locks, 100
extern const ResourceOwnerDesc kPlanCacheRefResourceKind;    // after locks, 300
extern const ResourceOwnerDesc kTupleDescRefResourceKind;    // after locks, 400
extern const ResourceOwnerDesc kSnapshotRefResourceKind;     // after locks, 500
extern const ResourceOwnerDesc kFileResourceKind;            // after locks, 600
extern const ResourceOwnerDesc kCxxObjectResourceKind;       // after locks, 700

/// Installs the release (and optional debug-print) function of a built-in
/// kind: the layer that owns those resources does this once at start-up.
/// Until then, releasing such a resource reports a WARNING and drops it.
void SetResourceKindRelease(const ResourceOwnerDesc* kind, void (*release)(Datum), char* (*debug_print)(Datum));

// --- any C++ object ------------------------------------------------------------

/// Base of owned objects: deleting it runs the object's destructor.
class OwnedObjectBase {
 public:
  virtual ~OwnedObjectBase() = default;
  virtual std::string Describe() const = 0;
};

template <typename T>
class OwnedObject final : public OwnedObjectBase {
 public:
  explicit OwnedObject(std::unique_ptr<T> object) : object_(std::move(object)) {}
  T* get() const noexcept { return object_.get(); }
  std::unique_ptr<T> release() noexcept { return std::move(object_); }
  std::string Describe() const override { return typeid(T).name(); }

 private:
  std::unique_ptr<T> object_;
};

/// A handle to an object an owner holds. The object lives until the owner
/// releases it, or until ResourceOwnerDisown gives it back.
template <typename T>
class OwnedRef {
 public:
  OwnedRef() = default;
  explicit OwnedRef(OwnedObject<T>* holder) : holder_(holder) {}
  T* get() const noexcept { return holder_ ? holder_->get() : nullptr; }
  T* operator->() const noexcept { return get(); }
  T& operator*() const noexcept { return *get(); }
  OwnedObject<T>* holder() const noexcept { return holder_; }

 private:
  OwnedObject<T>* holder_ = nullptr;
};

/// Gives `object` to `owner`: it is destroyed when the owner releases it
/// (after-locks phase; a leak warning on commit, as any resource).
template <typename T>
OwnedRef<T> ResourceOwnerAdopt(ResourceOwner owner, std::unique_ptr<T> object) {
  ResourceOwnerEnlarge(owner);  // may throw: nothing is held yet
  auto* holder = new OwnedObject<T>(std::move(object));
  ResourceOwnerRemember(owner, PointerGetDatum(static_cast<OwnedObjectBase*>(holder)), &kCxxObjectResourceKind);
  return OwnedRef<T>(holder);
}

/// Takes the object back from `owner`, which must hold it (after a
/// subtransaction commit, that is the parent's owner). ERROR if it does not.
template <typename T>
std::unique_ptr<T> ResourceOwnerDisown(ResourceOwner owner, const OwnedRef<T>& ref) {
  ResourceOwnerForget(owner, PointerGetDatum(static_cast<OwnedObjectBase*>(ref.holder())), &kCxxObjectResourceKind);
  std::unique_ptr<T> object = ref.holder()->release();
  delete ref.holder();
  return object;
}

}  // namespace grove
