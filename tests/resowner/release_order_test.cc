// Release order: phases (before-locks, locks, after-locks), priorities
// within a phase (lower first), nesting (children before their parent, in
// every phase), and release callbacks (once per owner per phase, after that
// owner's resources of the phase).
#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "resowner_test_support.h"

namespace grove::test {
namespace {

using ReleaseOrderTest = ResourceOwnerTest;

// The label of a resource encodes "<owner>/<phase>/<priority>" so the log
// alone tells where each release came from.
std::string Label(const char* owner, const ResourceOwnerDesc& kind) {
  return std::string(owner) + "/" + std::to_string(static_cast<int>(kind.release_phase)) + "/" +
         std::to_string(kind.release_priority);
}

struct ParsedLabel {
  std::string owner;
  int phase = 0;
  unsigned long long priority = 0;
};

ParsedLabel Parse(const std::string& label) {
  ParsedLabel p;
  const auto a = label.find('/');
  const auto b = label.find('/', a + 1);
  p.owner = label.substr(0, a);
  p.phase = std::stoi(label.substr(a + 1, b - a - 1));
  p.priority = std::stoull(label.substr(b + 1));
  return p;
}

const std::vector<const ResourceOwnerDesc*>& AllRecordedKinds() {
  static const std::vector<const ResourceOwnerDesc*> kinds = {&kAfterLast, &kLocksHi,  &kBeforeHi,  &kAfterMid,
                                                              &kBeforeLo,  &kLocksLo,  &kAfterFirst, &kNoPrint};
  return kinds;
}

// One owner holding resources of every phase and priority, remembered in an
// order unrelated to the release order, comes out sorted by (phase, priority).
TEST_F(ReleaseOrderTest, PhasesThenPrioritiesLowerFirst) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "order");
  std::deque<TestResource> res;
  for (int round = 0; round < 3; ++round)
    for (const ResourceOwnerDesc* kind : AllRecordedKinds()) {
      res.push_back({Label("o", *kind)});
      RememberRecorded(owner, res.back(), kind);
    }
  ASSERT_EQ(ResourceOwnerCount(owner), res.size());

  ReleaseAllPhases(owner, /*isCommit=*/false);

  ASSERT_EQ(ReleaseLog().size(), res.size());
  for (std::size_t i = 1; i < ReleaseLog().size(); ++i) {
    const ParsedLabel prev = Parse(ReleaseLog()[i - 1]);
    const ParsedLabel cur = Parse(ReleaseLog()[i]);
    EXPECT_TRUE(prev.phase < cur.phase || (prev.phase == cur.phase && prev.priority <= cur.priority))
        << ReleaseLog()[i - 1] << " was released before " << ReleaseLog()[i];
  }
  for (const TestResource& r : res) EXPECT_EQ(r.releases, 1) << r.label;
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// Calling ResourceOwnerRelease for one phase releases only that phase's
// resources; the others stay held (and counted) until their phase.
TEST_F(ReleaseOrderTest, EachCallReleasesOnlyItsPhase) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "phases");
  TestResource before{"before"}, locks{"locks"}, after{"after"};
  RememberRecorded(owner, after, &kAfterMid);
  RememberRecorded(owner, locks, &kLocksLo);
  RememberRecorded(owner, before, &kBeforeHi);

  ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, false, true);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"before"}));
  EXPECT_EQ(ResourceOwnerCount(owner), 2u);

  ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, false, true);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"before", "locks"}));
  EXPECT_EQ(ResourceOwnerCount(owner), 1u);

  ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, false, true);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"before", "locks", "after"}));
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// More than the small array holds (the hash table path) still releases in
// (phase, priority) order.
TEST_F(ReleaseOrderTest, OrderHoldsBeyondTheSmallArray) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "order-hash");
  std::deque<TestResource> res;
  for (int round = 0; round < 40; ++round)
    for (const ResourceOwnerDesc* kind : AllRecordedKinds()) {
      res.push_back({Label("o", *kind)});
      RememberRecorded(owner, res.back(), kind);
    }
  ReleaseAllPhases(owner, false);
  ASSERT_EQ(ReleaseLog().size(), res.size());
  for (std::size_t i = 1; i < ReleaseLog().size(); ++i) {
    const ParsedLabel prev = Parse(ReleaseLog()[i - 1]);
    const ParsedLabel cur = Parse(ReleaseLog()[i]);
    ASSERT_TRUE(prev.phase < cur.phase || (prev.phase == cur.phase && prev.priority <= cur.priority))
        << ReleaseLog()[i - 1] << " was released before " << ReleaseLog()[i];
  }
  for (const TestResource& r : res) EXPECT_EQ(r.releases, 1) << r.label;
  ResourceOwnerDelete(owner);
}

// A release callback that logs "cb:<phase>:<isCommit>:<isTopLevel>" into the
// release log, interleaved with the resources' releases.
void LoggingCallback(ResourceReleasePhase phase, bool isCommit, bool isTopLevel, void* arg) {
  ++*static_cast<int*>(arg);
  ReleaseLog().push_back(std::string("cb:") + std::to_string(static_cast<int>(phase)) + ":" + (isCommit ? "1" : "0") +
                         ":" + (isTopLevel ? "1" : "0"));
}

// A tree P -> {C1 -> {G}, C2}, each owner holding one resource of each phase,
// released phase by phase as the transaction machinery does:
// * every phase is finished for the whole tree before the next one starts;
// * within a phase each owner's resources are released, then the callback
//   runs for that owner: the log is a sequence of groups "resources of one
//   owner, then cb";
// * G's group comes before C1's, and P's group is last (children first);
// * the callback sees the phase, isCommit and isTopLevel passed in.
TEST_F(ReleaseOrderTest, ChildrenBeforeParentInEveryPhaseWithCallbacksPerOwner) {
  ResourceOwner p = ResourceOwnerCreate(nullptr, "P");
  ResourceOwner c1 = ResourceOwnerCreate(p, "C1");
  ResourceOwner c2 = ResourceOwnerCreate(p, "C2");
  ResourceOwner g = ResourceOwnerCreate(c1, "G");
  std::deque<TestResource> res;
  const std::vector<std::pair<const char*, ResourceOwner>> owners = {{"P", p}, {"C1", c1}, {"C2", c2}, {"G", g}};
  for (const auto& [name, owner] : owners)
    for (const ResourceOwnerDesc* kind : {&kAfterMid, &kBeforeLo, &kLocksHi}) {
      res.push_back({Label(name, *kind)});
      RememberRecorded(owner, res.back(), kind);
    }

  int calls = 0;
  ScopedReleaseCallback cb(LoggingCallback, &calls);
  for (ResourceReleasePhase phase :
       {RESOURCE_RELEASE_BEFORE_LOCKS, RESOURCE_RELEASE_LOCKS, RESOURCE_RELEASE_AFTER_LOCKS})
    ResourceOwnerRelease(p, phase, /*isCommit=*/false, /*isTopLevel=*/false);

  EXPECT_EQ(calls, 12) << "one callback per owner per phase";
  // Split the log into groups ending at a callback entry.
  struct Group {
    int phase;
    std::string owner;
  };
  std::vector<Group> groups;
  std::vector<std::string> pending;
  for (const std::string& entry : ReleaseLog()) {
    if (entry.rfind("cb:", 0) != 0) {
      pending.push_back(entry);
      continue;
    }
    const int cb_phase = entry[3] - '0';
    EXPECT_EQ(entry.substr(4), ":0:0") << "isCommit/isTopLevel as passed";
    ASSERT_EQ(pending.size(), 1u) << "each owner holds one resource per phase; entry " << entry;
    const ParsedLabel label = Parse(pending[0]);
    EXPECT_EQ(label.phase, cb_phase) << pending[0] << " released in the wrong phase's group";
    groups.push_back({cb_phase, label.owner});
    pending.clear();
  }
  EXPECT_TRUE(pending.empty()) << "resources released after the last callback";
  ASSERT_EQ(groups.size(), 12u);
  for (int phase = 1; phase <= 3; ++phase) {
    // Groups 4*(phase-1) .. 4*phase-1 belong to this phase, one per owner.
    std::map<std::string, int> position;
    for (int i = 0; i < 4; ++i) {
      const Group& grp = groups[static_cast<std::size_t>(4 * (phase - 1) + i)];
      EXPECT_EQ(grp.phase, phase) << "phase " << grp.phase << " interleaved with phase " << phase;
      EXPECT_TRUE(position.emplace(grp.owner, i).second) << grp.owner << " twice in phase " << phase;
    }
    ASSERT_EQ(position.size(), 4u);
    EXPECT_LT(position["G"], position["C1"]) << "grandchild before its parent in phase " << phase;
    EXPECT_EQ(position["P"], 3) << "the parent last in phase " << phase;
  }
  for (const TestResource& r : res) EXPECT_EQ(r.releases, 1) << r.label;
  ResourceOwnerDelete(p);
}

// A deep chain: in each phase the deepest owner's resources come first and the
// root's last.
TEST_F(ReleaseOrderTest, DeepChainReleasesDeepestFirst) {
  constexpr int kDepth = 50;
  std::vector<ResourceOwner> chain;
  chain.push_back(ResourceOwnerCreate(nullptr, "root"));
  for (int i = 1; i < kDepth; ++i) chain.push_back(ResourceOwnerCreate(chain.back(), "link"));
  std::deque<TestResource> res;
  for (int i = 0; i < kDepth; ++i) {
    res.push_back({"before:" + std::to_string(i)});
    RememberRecorded(chain[static_cast<std::size_t>(i)], res.back(), &kBeforeLo);
    res.push_back({"after:" + std::to_string(i)});
    RememberRecorded(chain[static_cast<std::size_t>(i)], res.back(), &kAfterMid);
  }
  MessageCapture capture;
  ReleaseAllPhases(chain[0], /*isCommit=*/true);
  EXPECT_EQ(capture.LeakTexts().size(), res.size());

  std::vector<std::string> expected;
  for (int i = kDepth - 1; i >= 0; --i) expected.push_back("before:" + std::to_string(i));
  for (int i = kDepth - 1; i >= 0; --i) expected.push_back("after:" + std::to_string(i));
  EXPECT_EQ(ReleaseLog(), expected);
  ResourceOwnerDelete(chain[0]);
}

// The release callback runs for every owner and every phase even when the
// owners hold nothing, and not after it is unregistered.
TEST_F(ReleaseOrderTest, CallbacksRunForEmptyOwnersAndStopWhenUnregistered) {
  ResourceOwner p = ResourceOwnerCreate(nullptr, "P");
  ResourceOwnerCreate(p, "C1");
  ResourceOwnerCreate(p, "C2");
  int calls = 0;
  {
    ScopedReleaseCallback cb(LoggingCallback, &calls);
    ReleaseAllPhases(p, true, true);
    EXPECT_EQ(calls, 9);
    for (const std::string& e : ReleaseLog()) EXPECT_EQ(e.substr(4), ":1:1") << "isCommit/isTopLevel as passed";
  }
  ResourceOwner q = ResourceOwnerCreate(nullptr, "Q");
  ReleaseAllPhases(q, true, true);
  EXPECT_EQ(calls, 9) << "an unregistered callback still ran";
  ResourceOwnerDelete(q);
  ResourceOwnerDelete(p);
}

// Two callbacks (and the same function with two arguments) are each called;
// unregistering one keeps the other.
int first_calls = 0;
int second_calls = 0;
void CountFirst(ResourceReleasePhase, bool, bool, void* arg) { first_calls += *static_cast<int*>(arg); }
void CountSecond(ResourceReleasePhase, bool, bool, void*) { ++second_calls; }

TEST_F(ReleaseOrderTest, SeveralCallbacksIndependently) {
  first_calls = 0;
  second_calls = 0;
  int one = 1, hundred = 100;
  RegisterResourceReleaseCallback(CountFirst, &one);
  RegisterResourceReleaseCallback(CountFirst, &hundred);
  RegisterResourceReleaseCallback(CountSecond, nullptr);
  ResourceOwner o = ResourceOwnerCreate(nullptr, "o");
  ResourceOwnerRelease(o, RESOURCE_RELEASE_BEFORE_LOCKS, false, true);
  EXPECT_EQ(first_calls, 101);
  EXPECT_EQ(second_calls, 1);
  UnregisterResourceReleaseCallback(CountFirst, &hundred);
  ResourceOwnerRelease(o, RESOURCE_RELEASE_LOCKS, false, true);
  EXPECT_EQ(first_calls, 102);
  EXPECT_EQ(second_calls, 2);
  UnregisterResourceReleaseCallback(CountFirst, &one);
  UnregisterResourceReleaseCallback(CountSecond, nullptr);
  ResourceOwnerRelease(o, RESOURCE_RELEASE_AFTER_LOCKS, false, true);
  EXPECT_EQ(first_calls, 102);
  EXPECT_EQ(second_calls, 2);
  ResourceOwnerDelete(o);
}

// Releasing a subtree (a child) leaves the parent's and siblings' resources
// alone.
TEST_F(ReleaseOrderTest, ReleasingAChildLeavesTheRestOfTheTree) {
  ResourceOwner p = ResourceOwnerCreate(nullptr, "P");
  ResourceOwner c1 = ResourceOwnerCreate(p, "C1");
  ResourceOwner c2 = ResourceOwnerCreate(p, "C2");
  TestResource rp{"p"}, r1{"c1"}, r2{"c2"};
  RememberRecorded(p, rp, &kAfterMid);
  RememberRecorded(c1, r1, &kAfterMid);
  RememberRecorded(c2, r2, &kAfterMid);
  ReleaseAllPhases(c1, false, false);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"c1"}));
  EXPECT_EQ(ResourceOwnerCount(p), 1u);
  EXPECT_EQ(ResourceOwnerCount(c2), 1u);
  ResourceOwnerDelete(c1);
  EXPECT_EQ(ResourceOwnerGetParent(c2), p);
  ReleaseAllPhases(p, false);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"c1", "c2", "p"}));
  ResourceOwnerDelete(p);
}

}  // namespace
}  // namespace grove::test
