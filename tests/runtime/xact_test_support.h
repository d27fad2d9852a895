// Helpers for the runtime/ (xact) tests: a fixture that starts and ends
// outside a transaction, reset-callback probes that tell when a context is
// deleted, and recorders for transaction and subtransaction events.
#pragma once

#include <string>
#include <vector>

#include "grove/runtime/xact.h"
#include "resowner_test_support.h"

namespace grove::test {

/// Every test starts outside a transaction, with CurrentResourceOwner null;
/// at the end no transaction may be open (one left open is a failure, and is
/// aborted so the next test starts clean).
class XactTest : public ResourceOwnerTest {
 protected:
  void SetUp() override {
    ResourceOwnerTest::SetUp();
    ASSERT_FALSE(IsTransactionState()) << "a previous test left a transaction open";
  }
  void TearDown() override {
    if (IsTransactionState()) {
      ADD_FAILURE() << "the test left a transaction open (nest level " << GetCurrentTransactionNestLevel() << ")";
      AbortCurrentTransaction();
    }
    EXPECT_EQ(TopTransactionContext, nullptr);
    EXPECT_EQ(CurTransactionContext, nullptr);
    EXPECT_EQ(TopTransactionResourceOwner, nullptr);
    EXPECT_EQ(CurTransactionResourceOwner, nullptr);
    ResourceOwnerTest::TearDown();
  }
};

/// Registers a reset callback on a context; `fired` tells whether the
/// context was reset or deleted since.
class DeletionProbe {
 public:
  explicit DeletionProbe(MemoryContext context) {
    cb_.func = [](void* arg) { ++*static_cast<int*>(arg); };
    cb_.arg = &fired_;
    cb_.next = nullptr;
    MemoryContextRegisterResetCallback(context, &cb_);
  }
  DeletionProbe(const DeletionProbe&) = delete;
  DeletionProbe& operator=(const DeletionProbe&) = delete;
  int fired() const { return fired_; }

 private:
  MemoryContextCallback cb_{};
  int fired_ = 0;
};

// Owners and their hash tables live in TopMemoryContext, whose free lists
// keep every chunk once freed (an AllocSet never splits or returns them). A
// test that for the first time holds more tables of one size at once than
// ever before makes TopMemoryContext take a new block — once: a plateau, not
// a leak, but it would make "TopMemoryContext holds exactly what it held"
// depend on the order of events. So before measuring, tests hold more owners
// at once than they will (`owners`) and walk them together through every
// table size up to `max_resources`, then release and delete them.
inline void WarmUpOwnerMemory(int owners = 20, std::uint32_t max_resources = 700) {
  std::vector<ResourceOwner> all;
  for (int i = 0; i < owners; ++i) all.push_back(ResourceOwnerCreate(nullptr, "warm-up"));
  std::uint32_t held = 0;
  for (std::uint32_t target = 8; target <= max_resources; target += 8 + target / 8) {
    for (ResourceOwner o : all)
      for (std::uint32_t v = held + 1; v <= target; ++v) RememberCounted(o, v);
    held = target;
  }
  for (ResourceOwner o : all) {
    ReleaseAllPhases(o, /*isCommit=*/false);
    ResourceOwnerDelete(o);
  }
}

inline const char* XactEventName(XactEvent e) {
  switch (e) {
    case XACT_EVENT_PRE_COMMIT: return "PRE_COMMIT";
    case XACT_EVENT_COMMIT: return "COMMIT";
    case XACT_EVENT_ABORT: return "ABORT";
  }
  return "?";
}

inline const char* SubXactEventName(SubXactEvent e) {
  switch (e) {
    case SUBXACT_EVENT_START_SUB: return "START_SUB";
    case SUBXACT_EVENT_PRE_COMMIT_SUB: return "PRE_COMMIT_SUB";
    case SUBXACT_EVENT_COMMIT_SUB: return "COMMIT_SUB";
    case SUBXACT_EVENT_ABORT_SUB: return "ABORT_SUB";
  }
  return "?";
}

/// Records events as "PRE_COMMIT", "START_SUB 2<1", ... for its lifetime.
class EventRecorder {
 public:
  EventRecorder() {
    RegisterXactCallback(OnXact, this);
    RegisterSubXactCallback(OnSubXact, this);
  }
  ~EventRecorder() {
    UnregisterXactCallback(OnXact, this);
    UnregisterSubXactCallback(OnSubXact, this);
  }
  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  std::vector<std::string> events;

 private:
  static void OnXact(XactEvent event, void* arg) {
    static_cast<EventRecorder*>(arg)->events.push_back(XactEventName(event));
  }
  static void OnSubXact(SubXactEvent event, SubTransactionId mine, SubTransactionId parent, void* arg) {
    static_cast<EventRecorder*>(arg)->events.push_back(std::string(SubXactEventName(event)) + " " +
                                                       std::to_string(mine) + "<" + std::to_string(parent));
  }
};

}  // namespace grove::test
