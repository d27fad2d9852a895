// The owner tree and bulk operations: create/name/parent, NewParent,
// ReleaseAllOfKind, ReassignAll, IsEmpty, Count, Delete of a subtree.
#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "resowner_test_support.h"

namespace grove::test {
namespace {

using OperationsTest = ResourceOwnerTest;

// Create links under the parent and keeps the (static) name.
TEST_F(OperationsTest, CreateNameAndParent) {
  ResourceOwner root = ResourceOwnerCreate(nullptr, "root");
  ResourceOwner child = ResourceOwnerCreate(root, "child");
  EXPECT_EQ(ResourceOwnerGetParent(root), nullptr);
  EXPECT_EQ(ResourceOwnerGetParent(child), root);
  EXPECT_STREQ(ResourceOwnerGetName(root), "root");
  EXPECT_STREQ(ResourceOwnerGetName(child), "child");
  EXPECT_EQ(ResourceOwnerCount(root), 0u);
  EXPECT_TRUE(ResourceOwnerIsEmpty(root));
  ResourceOwnerDelete(root);
}

// NewParent moves a subtree (with its resources): releasing the new parent
// releases it, the old parent no longer does; nullptr makes a root.
TEST_F(OperationsTest, NewParentMovesTheSubtree) {
  ResourceOwner old_parent = ResourceOwnerCreate(nullptr, "old");
  ResourceOwner new_parent = ResourceOwnerCreate(nullptr, "new");
  ResourceOwner moving = ResourceOwnerCreate(old_parent, "moving");
  ResourceOwner below = ResourceOwnerCreate(moving, "below");
  TestResource r{"moved"};
  RememberRecorded(below, r, &kAfterMid);
  ResourceOwnerNewParent(moving, new_parent);
  EXPECT_EQ(ResourceOwnerGetParent(moving), new_parent);
  EXPECT_TRUE(ResourceOwnerIsEmpty(old_parent));
  EXPECT_FALSE(ResourceOwnerIsEmpty(new_parent));

  ReleaseAllPhases(old_parent, false);
  EXPECT_EQ(r.releases, 0);
  ResourceOwnerDelete(old_parent);  // must not take `moving` with it

  ResourceOwnerNewParent(moving, nullptr);
  EXPECT_EQ(ResourceOwnerGetParent(moving), nullptr);
  EXPECT_TRUE(ResourceOwnerIsEmpty(new_parent));
  ReleaseAllPhases(moving, false);
  EXPECT_EQ(r.releases, 1);
  ResourceOwnerDelete(moving);
  ResourceOwnerDelete(new_parent);
}

// ReleaseAllOfKind releases every resource of that kind the owner itself
// holds — in the array and in the hash — silently, leaves other kinds and the
// children alone, and does not start the owner's release (it accepts new
// resources afterwards).
TEST_F(OperationsTest, ReleaseAllOfKind) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "all-of-kind");
  ResourceOwner child = ResourceOwnerCreate(owner, "all-of-kind child");
  std::deque<TestResource> mine, others;
  for (int i = 0; i < 120; ++i) {
    mine.push_back({"mine" + std::to_string(i)});
    RememberRecorded(owner, mine.back(), &kLocksHi);
    others.push_back({"other" + std::to_string(i)});
    RememberRecorded(owner, others.back(), &kAfterMid);
  }
  TestResource childs{"child's"};
  RememberRecorded(child, childs, &kLocksHi);

  MessageCapture capture;
  ResourceOwnerReleaseAllOfKind(owner, &kLocksHi);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  for (const TestResource& r : mine) EXPECT_EQ(r.releases, 1) << r.label;
  for (const TestResource& r : others) EXPECT_EQ(r.releases, 0) << r.label;
  EXPECT_EQ(childs.releases, 0);
  EXPECT_EQ(ResourceOwnerCount(owner), others.size());
  EXPECT_EQ(ResourceOwnerCount(child), 1u);

  // Not releasing: it remembers and forgets as before.
  TestResource fresh{"fresh"};
  RememberRecorded(owner, fresh, &kLocksHi);
  ResourceOwnerForget(owner, D(fresh), &kLocksHi);
  for (TestResource& r : others) ResourceOwnerForget(owner, D(r), &kAfterMid);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ReleaseAllPhases(owner, false);
  EXPECT_EQ(childs.releases, 1);
  ResourceOwnerDelete(owner);
}

// ReleaseAllOfKind of a kind the owner does not hold does nothing.
TEST_F(OperationsTest, ReleaseAllOfKindNotHeld) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "none-of-kind");
  TestResource r{"kept"};
  RememberRecorded(owner, r, &kAfterMid);
  ResourceOwnerReleaseAllOfKind(owner, &kBeforeLo);
  EXPECT_EQ(r.releases, 0);
  EXPECT_EQ(ResourceOwnerCount(owner), 1u);
  ResourceOwnerForget(owner, D(r), &kAfterMid);
  ResourceOwnerDelete(owner);
}

// ReassignAll moves everything `from` holds (array and hash) to `to`: the
// counts move, `to` can forget them, `from` cannot, and releasing `from`
// releases nothing while releasing `to` releases each once.
TEST_F(OperationsTest, ReassignAll) {
  ResourceOwner to = ResourceOwnerCreate(nullptr, "to");
  ResourceOwner from = ResourceOwnerCreate(to, "from");
  std::deque<TestResource> moved, already;
  for (int i = 0; i < 5; ++i) {
    already.push_back({"already" + std::to_string(i)});
    RememberRecorded(to, already.back(), &kBeforeHi);
  }
  for (int i = 0; i < 70; ++i) {
    moved.push_back({"moved" + std::to_string(i)});
    RememberRecorded(from, moved.back(), i % 3 == 0 ? &kLocksLo : &kAfterFirst);
  }
  ResourceOwnerReassignAll(from, to);
  EXPECT_EQ(ResourceOwnerCount(from), 0u);
  EXPECT_EQ(ResourceOwnerCount(to), 75u);
  EXPECT_TRUE(ResourceOwnerIsEmpty(from));

  // `from` no longer holds them; `to` does.
  auto err = CatchError([&] { ResourceOwnerForget(from, D(moved[0]), &kLocksLo); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "is not owned by resource owner")) << err->message();
  ResourceOwnerForget(to, D(moved[0]), &kLocksLo);
  ++moved[0].releases;  // released by hand, as its holder would

  ReleaseAllPhases(from, false, false);
  for (const TestResource& r : moved) EXPECT_EQ(r.releases, &r == &moved[0] ? 1 : 0) << r.label;
  ResourceOwnerDelete(from);
  ReleaseAllPhases(to, false);
  for (const TestResource& r : moved) EXPECT_EQ(r.releases, 1) << r.label;
  for (const TestResource& r : already) EXPECT_EQ(r.releases, 1) << r.label;
  ResourceOwnerDelete(to);
}

// Reassigning into an owner whose array is full (it must grow): nothing is
// lost, even across repeated reassignments into the same owner.
TEST_F(OperationsTest, ReassignAllRepeatedlyIntoOneOwner) {
  ResourceOwner to = ResourceOwnerCreate(nullptr, "to");
  std::uint32_t next = 1;
  for (int round = 0; round < 20; ++round) {
    ResourceOwner from = ResourceOwnerCreate(to, "from");
    for (int i = 0; i < 31 + round * 7; ++i) RememberCounted(from, next++);
    ResourceOwnerReassignAll(from, to);
    ResourceOwnerDelete(from);
    ASSERT_EQ(ResourceOwnerCount(to), next - 1);
  }
  for (std::uint32_t v = 1; v < next; v += 2) ForgetCounted(to, v);
  const std::size_t before = CountedCounters().released;
  ReleaseAllPhases(to, false);
  EXPECT_EQ(CountedCounters().released - before, (next - 1) / 2);
  ResourceOwnerDelete(to);
}

// ReassignAll of an empty owner changes nothing.
TEST_F(OperationsTest, ReassignAllEmpty) {
  ResourceOwner to = ResourceOwnerCreate(nullptr, "to");
  ResourceOwner from = ResourceOwnerCreate(nullptr, "from");
  RememberCounted(to, 1);
  ResourceOwnerReassignAll(from, to);
  EXPECT_EQ(ResourceOwnerCount(to), 1u);
  EXPECT_EQ(ResourceOwnerCount(from), 0u);
  ForgetCounted(to, 1);
  ResourceOwnerDelete(from);
  ResourceOwnerDelete(to);
}

// IsEmpty looks at the whole subtree; Count at the owner alone.
TEST_F(OperationsTest, IsEmptyCoversDescendantsCountDoesNot) {
  ResourceOwner root = ResourceOwnerCreate(nullptr, "root");
  ResourceOwner mid = ResourceOwnerCreate(root, "mid");
  ResourceOwner leaf = ResourceOwnerCreate(mid, "leaf");
  EXPECT_TRUE(ResourceOwnerIsEmpty(root));
  RememberCounted(leaf, 1);
  EXPECT_FALSE(ResourceOwnerIsEmpty(root));
  EXPECT_FALSE(ResourceOwnerIsEmpty(mid));
  EXPECT_FALSE(ResourceOwnerIsEmpty(leaf));
  EXPECT_EQ(ResourceOwnerCount(root), 0u);
  EXPECT_EQ(ResourceOwnerCount(mid), 0u);
  EXPECT_EQ(ResourceOwnerCount(leaf), 1u);
  ForgetCounted(leaf, 1);
  EXPECT_TRUE(ResourceOwnerIsEmpty(root));
  // After release, too.
  RememberCounted(mid, 2);
  EXPECT_FALSE(ResourceOwnerIsEmpty(root));
  ReleaseAllPhases(root, false);
  EXPECT_TRUE(ResourceOwnerIsEmpty(root));
  ResourceOwnerDelete(root);
}

// Deleting a root deletes its whole (empty) subtree, wide and deep; repeated
// create/delete keeps no memory.
TEST_F(OperationsTest, DeleteTakesTheSubtreeAndKeepsNoMemory) {
  auto build_and_delete = [] {
    ResourceOwner root = ResourceOwnerCreate(nullptr, "root");
    std::vector<ResourceOwner> all{root};
    for (int i = 0; i < 300; ++i) all.push_back(ResourceOwnerCreate(all[static_cast<std::size_t>(i / 3)], "node"));
    for (int i = 0; i < 50; ++i) RememberCounted(all[static_cast<std::size_t>(i * 5)], static_cast<Datum>(i + 1));
    ReleaseAllPhases(root, false);
    ResourceOwnerDelete(root);
  };
  build_and_delete();
  const std::size_t held = MemoryContextMemAllocated(TopMemoryContext, true);
  for (int i = 0; i < 10; ++i) build_and_delete();
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), held);
}

// A released (but not deleted) child can be deleted on its own; the parent
// keeps working.
TEST_F(OperationsTest, DeleteChildAlone) {
  ResourceOwner root = ResourceOwnerCreate(nullptr, "root");
  ResourceOwner a = ResourceOwnerCreate(root, "a");
  ResourceOwner b = ResourceOwnerCreate(root, "b");
  ResourceOwner c = ResourceOwnerCreate(root, "c");
  ResourceOwnerDelete(b);
  TestResource ra{"a"}, rc{"c"};
  RememberRecorded(a, ra, &kAfterMid);
  RememberRecorded(c, rc, &kAfterMid);
  ReleaseAllPhases(root, false);
  EXPECT_EQ(ra.releases, 1);
  EXPECT_EQ(rc.releases, 1);
  ResourceOwnerDelete(root);
}

// CurrentResourceOwner is the caller's to set; the release of an owner
// leaves it as it was.
TEST_F(OperationsTest, ReleaseLeavesCurrentResourceOwner) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "o");
  ResourceOwner other = ResourceOwnerCreate(nullptr, "other");
  CurrentResourceOwner = other;
  RememberCounted(owner, 1);
  ReleaseAllPhases(owner, false);
  EXPECT_EQ(CurrentResourceOwner, other);
  CurrentResourceOwner = nullptr;
  ResourceOwnerDelete(owner);
  ResourceOwnerDelete(other);
}

}  // namespace
}  // namespace grove::test
