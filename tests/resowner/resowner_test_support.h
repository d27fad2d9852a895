// Shared helpers for the resowner/ and runtime/ tests: resource kinds of the
// tests' own that record every release, counters of acquired and released
// resources, message capture, error capture, and a fixture that checks each
// test leaves nothing behind.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "grove/base/error.h"
#include "grove/contexts/memutils.h"
#include "grove/contexts/palloc.h"
#include "grove/contexts/testing.h"
#include "grove/resowner/resource_kinds.h"
#include "grove/resowner/resowner.h"
#include "../support/report_capture.h"

namespace grove::test {

// --- errors and messages ------------------------------------------------------------

// --- recording resources ------------------------------------------------------------
//
// A "recorded" resource is a TestResource; its Datum is the object's address.
// Every recorded kind shares one release function, which appends the label to
// the release log and counts the release on the object, so a test sees both
// the order of releases and that each resource was released exactly once.

struct TestResource {
  std::string label;
  int releases = 0;
};

inline std::vector<std::string>& ReleaseLog() {
  static std::vector<std::string> log;
  return log;
}

inline void RecordRelease(Datum d) {
  auto* r = DatumGetPointer<TestResource>(d);
  ++r->releases;
  ReleaseLog().push_back(r->label);
}

inline char* RecordDebugPrint(Datum d) { return psprintf("test resource %s", DatumGetPointer<TestResource>(d)->label.c_str()); }

inline Datum D(TestResource& r) { return PointerGetDatum(&r); }

// Kinds of every phase and a spread of priorities (lower first within a phase).
inline const ResourceOwnerDesc kBeforeLo = {"test before-locks 10", RESOURCE_RELEASE_BEFORE_LOCKS, 10, RecordRelease,
                                            RecordDebugPrint};
inline const ResourceOwnerDesc kBeforeHi = {"test before-locks 20", RESOURCE_RELEASE_BEFORE_LOCKS, 20, RecordRelease,
                                            RecordDebugPrint};
inline const ResourceOwnerDesc kLocksLo = {"test locks 5", RESOURCE_RELEASE_LOCKS, 5, RecordRelease, RecordDebugPrint};
inline const ResourceOwnerDesc kLocksHi = {"test locks 50", RESOURCE_RELEASE_LOCKS, 50, RecordRelease,
                                           RecordDebugPrint};
inline const ResourceOwnerDesc kAfterFirst = {"test after-locks first", RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_FIRST,
                                              RecordRelease, RecordDebugPrint};
inline const ResourceOwnerDesc kAfterMid = {"test after-locks 650", RESOURCE_RELEASE_AFTER_LOCKS, 650, RecordRelease,
                                            RecordDebugPrint};
inline const ResourceOwnerDesc kAfterLast = {"test after-locks last", RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_LAST,
                                             RecordRelease, RecordDebugPrint};
/// No DebugPrint: leak warnings fall back to "<name> <value as hex>".
inline const ResourceOwnerDesc kNoPrint = {"test unprintable", RESOURCE_RELEASE_AFTER_LOCKS, 100, RecordRelease,
                                           nullptr};

// --- counted resources ------------------------------------------------------------------
//
// A "counted" resource is just a number; releasing it counts (and marks the
// number in an optional per-value tally), for tests that hold many.

struct Counters {
  std::size_t acquired = 0;
  std::size_t released = 0;
  std::size_t live() const { return acquired - released; }
};

inline Counters& CountedCounters() {
  static Counters c;
  return c;
}

/// When set, CountedRelease increments tally[value] (values must be in range).
inline std::vector<std::uint32_t>*& CountedTally() {
  static std::vector<std::uint32_t>* tally = nullptr;
  return tally;
}

inline void CountedRelease(Datum d) {
  ++CountedCounters().released;
  if (auto* t = CountedTally(); t != nullptr && d < t->size()) ++(*t)[d];
}

inline const ResourceOwnerDesc kCountedA = {"test counted A", RESOURCE_RELEASE_AFTER_LOCKS, 300, CountedRelease,
                                            nullptr};
inline const ResourceOwnerDesc kCountedB = {"test counted B", RESOURCE_RELEASE_BEFORE_LOCKS, 300, CountedRelease,
                                            nullptr};

/// Enlarge + acquire + Remember, the protocol a real acquirer follows.
inline void RememberCounted(ResourceOwner owner, Datum value, const ResourceOwnerDesc* kind = &kCountedA) {
  ResourceOwnerEnlarge(owner);
  ++CountedCounters().acquired;
  ResourceOwnerRemember(owner, value, kind);
}

/// Forget + release, as the holder of a counted resource does when done.
inline void ForgetCounted(ResourceOwner owner, Datum value, const ResourceOwnerDesc* kind = &kCountedA) {
  ResourceOwnerForget(owner, value, kind);
  ++CountedCounters().released;
}

inline void RememberRecorded(ResourceOwner owner, TestResource& r, const ResourceOwnerDesc* kind) {
  ResourceOwnerEnlarge(owner);
  ResourceOwnerRemember(owner, D(r), kind);
}

/// All three phases, as the transaction machinery calls them.
inline void ReleaseAllPhases(ResourceOwner owner, bool isCommit, bool isTopLevel = true) {
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, isCommit, isTopLevel);
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, isCommit, isTopLevel);
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, isCommit, isTopLevel);
}

/// A C++ object that counts its live instances and logs its destruction.
struct Tracked {
  explicit Tracked(std::string n) : name(std::move(n)) { ++Live(); }
  ~Tracked() {
    --Live();
    ReleaseLog().push_back("~" + name);
  }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  static long& Live() {
    static long live = 0;
    return live;
  }
  std::string name;
};

// --- release callbacks ------------------------------------------------------------------

/// Registers a release callback for its lifetime.
class ScopedReleaseCallback {
 public:
  ScopedReleaseCallback(ResourceReleaseCallback cb, void* arg) : cb_(cb), arg_(arg) {
    RegisterResourceReleaseCallback(cb_, arg_);
  }
  ~ScopedReleaseCallback() { UnregisterResourceReleaseCallback(cb_, arg_); }
  ScopedReleaseCallback(const ScopedReleaseCallback&) = delete;
  ScopedReleaseCallback& operator=(const ScopedReleaseCallback&) = delete;

 private:
  ResourceReleaseCallback cb_;
  void* arg_;
};

inline const char* PhaseName(ResourceReleasePhase phase) {
  switch (phase) {
    case RESOURCE_RELEASE_BEFORE_LOCKS: return "before-locks";
    case RESOURCE_RELEASE_LOCKS: return "locks";
    case RESOURCE_RELEASE_AFTER_LOCKS: return "after-locks";
  }
  return "?";
}

// --- fixture ------------------------------------------------------------------------------

/// Every test starts with the thread's contexts set up, no current resource
/// owner, an empty release log and zeroed counters; it ends by checking that
/// every counted resource and C++ object was released and that
/// CurrentResourceOwner and CurrentMemoryContext are as they were.
class ResourceOwnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MemoryContextInit();
    old_dump_ = mcxt::SetDumpStatsOnOutOfMemory(false);
    old_context_ = CurrentMemoryContext;
    old_owner_ = CurrentResourceOwner;
    ReleaseLog().clear();
    CountedCounters() = Counters{};
    CountedTally() = nullptr;
    live_objects_ = Tracked::Live();
  }
  void TearDown() override {
    EXPECT_EQ(CountedCounters().acquired, CountedCounters().released) << "a counted resource was not released";
    EXPECT_EQ(Tracked::Live(), live_objects_) << "an adopted C++ object was not destroyed";
    EXPECT_EQ(CurrentResourceOwner, old_owner_);
    CurrentResourceOwner = old_owner_;
    CurrentMemoryContext = old_context_;
    CountedTally() = nullptr;
    mcxt::SetDumpStatsOnOutOfMemory(old_dump_);
  }

 private:
  bool old_dump_ = true;
  MemoryContext old_context_ = nullptr;
  ResourceOwner old_owner_ = nullptr;
  long live_objects_ = 0;
};

}  // namespace grove::test
