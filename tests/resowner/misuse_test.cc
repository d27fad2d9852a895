// Misuse: every path is an ERROR (grove::Error) with a clear message, and the
// owner stays usable afterwards (it can still be released and deleted, and,
// where release has not started, still remembers and forgets).
#include <string>
#include <vector>

#include "resowner_test_support.h"

namespace grove::test {
namespace {

using MisuseTest = ResourceOwnerTest;

// Forgetting a resource the owner does not hold: "... is not owned by
// resource owner ...". What it holds is untouched.
TEST_F(MisuseTest, ForgetOfUnknownResource) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "misuse-forget");
  RememberCounted(owner, 1);
  RememberCounted(owner, 2);
  auto err = CatchError([&] { ResourceOwnerForget(owner, 3, &kCountedA); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "is not owned by resource owner")) << err->message();
  EXPECT_EQ(ResourceOwnerCount(owner), 2u);
  // Still usable: remember, forget, release.
  RememberCounted(owner, 3);
  ForgetCounted(owner, 3);
  ForgetCounted(owner, 1);
  EXPECT_EQ(ResourceOwnerCount(owner), 1u);
  ReleaseAllPhases(owner, false);
  ResourceOwnerDelete(owner);
}

// The right value under the wrong kind is not held either; neither is a
// resource held by another owner (a child, a parent).
TEST_F(MisuseTest, ForgetWithWrongKindOrWrongOwner) {
  ResourceOwner parent = ResourceOwnerCreate(nullptr, "misuse-parent");
  ResourceOwner child = ResourceOwnerCreate(parent, "misuse-child");
  RememberCounted(child, 7, &kCountedA);
  for (auto f : {+[](ResourceOwner, ResourceOwner c) { ResourceOwnerForget(c, 7, &kCountedB); },
                 +[](ResourceOwner p, ResourceOwner) { ResourceOwnerForget(p, 7, &kCountedA); }}) {
    auto err = CatchError([&] { f(parent, child); });
    ASSERT_TRUE(err.has_value());
    EXPECT_TRUE(Contains(err->message(), "is not owned by resource owner")) << err->message();
  }
  EXPECT_EQ(ResourceOwnerCount(child), 1u);
  ForgetCounted(child, 7);
  ResourceOwnerDelete(parent);
}

// The message names the owner (so the bug can be found).
TEST_F(MisuseTest, ForgetMessageNamesTheOwner) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "the-named-owner");
  auto err = CatchError([&] { ResourceOwnerForget(owner, 42, &kCountedA); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "the-named-owner")) << err->message();
  ResourceOwnerDelete(owner);
}

// Forget of an unknown resource when the owner already spilled into its
// hash: same ERROR, and all held resources are still found.
TEST_F(MisuseTest, ForgetOfUnknownResourceWithHash) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "misuse-hash");
  for (std::uint32_t v = 1; v <= 1000; ++v) RememberCounted(owner, v);
  for (std::uint32_t v : {0u, 1001u, 5000u, 123456u}) {
    auto err = CatchError([&] { ResourceOwnerForget(owner, v, &kCountedA); });
    ASSERT_TRUE(err.has_value()) << v;
    EXPECT_TRUE(Contains(err->message(), "is not owned by resource owner")) << err->message();
  }
  EXPECT_EQ(ResourceOwnerCount(owner), 1000u);
  for (std::uint32_t v = 1; v <= 1000; ++v) ForgetCounted(owner, v);
  ResourceOwnerDelete(owner);
}

// Remember without Enlarge: after one Enlarge, Remember is called over and
// over; once the small array is full (at the 33rd call at the latest) it is
// an ERROR. Everything remembered before is held; the refused one is not;
// after a proper Enlarge the owner accepts more.
TEST_F(MisuseTest, RememberWithoutEnlargeOnceArrayIsFull) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "misuse-remember");
  ResourceOwnerEnlarge(owner);
  std::uint32_t remembered = 0;
  std::optional<Error> err;
  for (std::uint32_t v = 1; v <= 40 && !err; ++v) {
    err = CatchError([&] { ResourceOwnerRemember(owner, v, &kCountedA); });
    if (!err) {
      ++CountedCounters().acquired;
      ++remembered;
    }
  }
  ASSERT_TRUE(err.has_value()) << "40 Remembers after one Enlarge were all accepted";
  EXPECT_LE(remembered, 32u) << "Remember without Enlarge accepted more than the array holds";
  EXPECT_FALSE(err->message().empty());
  EXPECT_TRUE(Contains(err->message(), "Enlarge")) << "the message should name the missing call: " << err->message();
  EXPECT_EQ(ResourceOwnerCount(owner), remembered);
  // The owner is still usable.
  RememberCounted(owner, 1000);
  ForgetCounted(owner, 1000);
  for (std::uint32_t v = 1; v <= remembered; ++v) ForgetCounted(owner, v);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// Remember from inside a release function, into the owner being released:
// an ERROR (caught by the release function, which must not throw), the
// resource is not held, and the release completes.
ResourceOwner reentry_owner = nullptr;
std::vector<std::string> reentry_errors;
void ReleaseThatRemembers(Datum d) {
  RecordRelease(d);
  try {
    ResourceOwnerEnlarge(reentry_owner);
    ResourceOwnerRemember(reentry_owner, 999, &kCountedA);
    reentry_errors.push_back("(accepted)");
  } catch (const Error& e) {
    reentry_errors.push_back(e.message());
  }
  try {
    // Even with room (Enlarge skipped), Remember itself refuses.
    ResourceOwnerRemember(reentry_owner, 998, &kCountedA);
    reentry_errors.push_back("(accepted)");
  } catch (const Error& e) {
    reentry_errors.push_back(e.message());
  }
}
const ResourceOwnerDesc kRemembersOnRelease = {"test remembers on release", RESOURCE_RELEASE_BEFORE_LOCKS, 10,
                                               ReleaseThatRemembers, nullptr};

TEST_F(MisuseTest, RememberFromReleaseFunction) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "misuse-release-fn");
  reentry_owner = owner;
  reentry_errors.clear();
  TestResource r{"reentrant"}, other{"other"};
  RememberRecorded(owner, r, &kRemembersOnRelease);
  RememberRecorded(owner, other, &kAfterMid);
  ReleaseAllPhases(owner, false);
  reentry_owner = nullptr;
  ASSERT_EQ(reentry_errors.size(), 2u);
  for (const std::string& m : reentry_errors) {
    EXPECT_NE(m, "(accepted)") << "Remember into an owner being released was accepted";
    EXPECT_TRUE(Contains(m, "release")) << m;
  }
  EXPECT_EQ(r.releases, 1);
  EXPECT_EQ(other.releases, 1) << "the release went on after the refused Remember";
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// Remember from a release callback into the owner being released: an ERROR
// (caught by the callback), nothing held afterwards.
std::vector<std::string> callback_errors;
void CallbackThatRemembers(ResourceReleasePhase phase, bool, bool, void* arg) {
  auto* owner = static_cast<ResourceOwner>(arg);
  if (phase != RESOURCE_RELEASE_LOCKS) return;
  try {
    ResourceOwnerEnlarge(owner);
    ResourceOwnerRemember(owner, 77, &kCountedA);
    callback_errors.push_back("(accepted)");
  } catch (const Error& e) {
    callback_errors.push_back(e.message());
  }
}

TEST_F(MisuseTest, RememberFromReleaseCallback) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "misuse-callback");
  callback_errors.clear();
  TestResource later{"after-locks"};
  RememberRecorded(owner, later, &kAfterMid);
  {
    ScopedReleaseCallback cb(CallbackThatRemembers, owner);
    ReleaseAllPhases(owner, false);
  }
  ASSERT_EQ(callback_errors.size(), 1u);
  EXPECT_NE(callback_errors[0], "(accepted)") << "Remember into an owner being released was accepted";
  EXPECT_EQ(later.releases, 1);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// Forget after release started (between phases): an ERROR, the resource is
// still held, and the remaining phases release it exactly once.
TEST_F(MisuseTest, ForgetAfterReleaseStarted) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "misuse-forget-late");
  TestResource r{"late"};
  RememberRecorded(owner, r, &kAfterMid);
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, false, true);
  auto err = CatchError([&] { ResourceOwnerForget(owner, D(r), &kAfterMid); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "release")) << err->message();
  EXPECT_EQ(r.releases, 0);
  // Enlarge (and so acquiring anything new) is refused as well.
  auto err2 = CatchError([&] { ResourceOwnerEnlarge(owner); });
  ASSERT_TRUE(err2.has_value());
  EXPECT_FALSE(err2->message().empty());
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, false, true);
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, false, true);
  EXPECT_EQ(r.releases, 1);
  ResourceOwnerDelete(owner);
}

// Forget from inside a release function (of the owner being released): an
// ERROR caught by the release function; the other resource is released by
// the owner, once.
ResourceOwner forget_owner = nullptr;
TestResource* forget_target = nullptr;
std::string forget_error;
void ReleaseThatForgets(Datum d) {
  RecordRelease(d);
  try {
    ResourceOwnerForget(forget_owner, D(*forget_target), &kAfterMid);
    forget_error = "(accepted)";
  } catch (const Error& e) {
    forget_error = e.message();
  }
}
const ResourceOwnerDesc kForgetsOnRelease = {"test forgets on release", RESOURCE_RELEASE_BEFORE_LOCKS, 10,
                                             ReleaseThatForgets, nullptr};

TEST_F(MisuseTest, ForgetFromReleaseFunction) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "misuse-forget-in-release");
  TestResource first{"first"}, target{"target"};
  RememberRecorded(owner, first, &kForgetsOnRelease);
  RememberRecorded(owner, target, &kAfterMid);
  forget_owner = owner;
  forget_target = &target;
  forget_error.clear();
  ReleaseAllPhases(owner, false);
  forget_owner = nullptr;
  forget_target = nullptr;
  EXPECT_NE(forget_error, "(accepted)");
  EXPECT_FALSE(forget_error.empty());
  EXPECT_EQ(target.releases, 1);
  ResourceOwnerDelete(owner);
}

// Deleting an owner that (or whose descendant) still holds a resource: an
// ERROR, and nothing is deleted — the tree and its resources are intact and
// can be released and deleted properly.
TEST_F(MisuseTest, DeleteOfNonEmptyOwner) {
  ResourceOwner parent = ResourceOwnerCreate(nullptr, "misuse-delete");
  ResourceOwner child = ResourceOwnerCreate(parent, "misuse-delete-child");
  ResourceOwner empty_child = ResourceOwnerCreate(parent, "misuse-delete-empty");
  RememberCounted(child, 1);

  auto err = CatchError([&] { ResourceOwnerDelete(parent); });
  ASSERT_TRUE(err.has_value());
  EXPECT_FALSE(err->message().empty());
  auto err_child = CatchError([&] { ResourceOwnerDelete(child); });
  ASSERT_TRUE(err_child.has_value());
  // Intact: links, names, resources.
  EXPECT_EQ(ResourceOwnerGetParent(child), parent);
  EXPECT_EQ(ResourceOwnerGetParent(empty_child), parent);
  EXPECT_STREQ(ResourceOwnerGetName(child), "misuse-delete-child");
  EXPECT_EQ(ResourceOwnerCount(child), 1u);
  EXPECT_FALSE(ResourceOwnerIsEmpty(parent));
  ForgetCounted(child, 1);
  RememberCounted(child, 2);
  // Released: now it can go.
  ReleaseAllPhases(parent, false);
  ResourceOwnerDelete(parent);
}

// An owner that holds resources directly (not via a child) cannot be
// deleted either, and a forget-then-delete works.
TEST_F(MisuseTest, DeleteOfOwnerHoldingResourcesDirectly) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "misuse-delete-direct");
  for (std::uint32_t v = 1; v <= 100; ++v) RememberCounted(owner, v);
  ASSERT_TRUE(CatchError([&] { ResourceOwnerDelete(owner); }).has_value());
  EXPECT_EQ(ResourceOwnerCount(owner), 100u);
  for (std::uint32_t v = 1; v <= 100; ++v) ForgetCounted(owner, v);
  ResourceOwnerDelete(owner);
}

// ResourceOwnerNewParent making a cycle (the owner under itself or under a
// descendant): an ERROR, and the tree is unchanged.
TEST_F(MisuseTest, NewParentMakingACycle) {
  ResourceOwner a = ResourceOwnerCreate(nullptr, "A");
  ResourceOwner b = ResourceOwnerCreate(a, "B");
  ResourceOwner c = ResourceOwnerCreate(b, "C");
  for (ResourceOwner target : {a, b, c}) {
    auto err = CatchError([&] { ResourceOwnerNewParent(a, target); });
    ASSERT_TRUE(err.has_value()) << ResourceOwnerGetName(target);
    EXPECT_FALSE(err->message().empty());
  }
  ASSERT_TRUE(CatchError([&] { ResourceOwnerNewParent(b, c); }).has_value());
  EXPECT_EQ(ResourceOwnerGetParent(a), nullptr);
  EXPECT_EQ(ResourceOwnerGetParent(b), a);
  EXPECT_EQ(ResourceOwnerGetParent(c), b);
  // The tree still works: release order children-first, then delete.
  TestResource ra{"a"}, rb{"b"}, rc{"c"};
  RememberRecorded(a, ra, &kAfterMid);
  RememberRecorded(b, rb, &kAfterMid);
  RememberRecorded(c, rc, &kAfterMid);
  ReleaseAllPhases(a, false);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"c", "b", "a"}));
  ResourceOwnerDelete(a);
}

}  // namespace
}  // namespace grove::test
