// The C++ object kind: ResourceOwnerAdopt gives a std::unique_ptr<T> to an
// owner; the owner destroys it at release (after-locks, priority 700), with
// a leak warning on commit; ResourceOwnerDisown gives it back.
#include <memory>
#include <string>
#include <vector>

#include "resowner_test_support.h"

namespace grove::test {
namespace {

using CxxObjectTest = ResourceOwnerTest;

// Adopt: the owner holds one resource of kCxxObjectResourceKind; the handle
// reaches the object; an abort release destroys it once, silently.
TEST_F(CxxObjectTest, AdoptedObjectIsDestroyedAtRelease) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "cxx");
  const long live = Tracked::Live();
  OwnedRef<Tracked> ref = ResourceOwnerAdopt(owner, std::make_unique<Tracked>("obj"));
  ASSERT_NE(ref.get(), nullptr);
  EXPECT_EQ(ref->name, "obj");
  EXPECT_EQ((*ref).name, "obj");
  EXPECT_EQ(Tracked::Live(), live + 1);
  EXPECT_EQ(ResourceOwnerCount(owner), 1u);

  MessageCapture capture;
  ReleaseAllPhases(owner, /*isCommit=*/false);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(Tracked::Live(), live);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"~obj"}));
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// On commit a still-held object is a leak: one WARNING per object, and it is
// destroyed.
TEST_F(CxxObjectTest, LeakWarningOnCommit) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "cxx-commit");
  ResourceOwnerAdopt(owner, std::make_unique<Tracked>("one"));
  ResourceOwnerAdopt(owner, std::make_unique<Tracked>("two"));
  ResourceOwnerAdopt(owner, std::make_unique<std::string>("a plain string"));
  MessageCapture capture;
  ReleaseAllPhases(owner, /*isCommit=*/true);
  EXPECT_EQ(capture.LeakTexts().size(), 3u) << capture.All();
  EXPECT_EQ(capture.CountLevel(WARNING), 3u) << capture.All();
  EXPECT_EQ(ReleaseLog().size(), 2u);
  ResourceOwnerDelete(owner);
}

// Disown returns the object: the owner no longer holds it, releasing the
// owner does not destroy it, and it dies with the returned unique_ptr.
TEST_F(CxxObjectTest, DisownGivesItBack) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "cxx-disown");
  const long live = Tracked::Live();
  OwnedRef<Tracked> ref = ResourceOwnerAdopt(owner, std::make_unique<Tracked>("returned"));
  Tracked* raw = ref.get();
  std::unique_ptr<Tracked> back = ResourceOwnerDisown(owner, ref);
  ASSERT_EQ(back.get(), raw) << "the very same object comes back";
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  MessageCapture capture;
  ReleaseAllPhases(owner, true);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(Tracked::Live(), live + 1);
  EXPECT_TRUE(ReleaseLog().empty());
  back.reset();
  EXPECT_EQ(Tracked::Live(), live);
  ResourceOwnerDelete(owner);
}

// Disown from an owner that does not hold the object: an ERROR naming the
// ownership problem; the right owner still holds (and later destroys) it.
TEST_F(CxxObjectTest, DisownFromTheWrongOwner) {
  ResourceOwner right = ResourceOwnerCreate(nullptr, "right");
  ResourceOwner wrong = ResourceOwnerCreate(nullptr, "wrong");
  OwnedRef<Tracked> ref = ResourceOwnerAdopt(right, std::make_unique<Tracked>("kept"));
  auto err = CatchError([&] { (void)ResourceOwnerDisown(wrong, ref); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "is not owned by resource owner")) << err->message();
  EXPECT_EQ(ref->name, "kept") << "the object survived the failed Disown";
  EXPECT_EQ(ResourceOwnerCount(right), 1u);
  ReleaseAllPhases(right, false);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"~kept"}));
  ResourceOwnerDelete(right);
  ResourceOwnerDelete(wrong);
}

// Objects are released in the after-locks phase at their priority (700):
// after an after-locks resource of priority 650, before RELEASE_PRIO_LAST,
// and after everything of the earlier phases.
TEST_F(CxxObjectTest, ReleasedAfterLocksAtItsPriority) {
  EXPECT_EQ(kCxxObjectResourceKind.release_phase, RESOURCE_RELEASE_AFTER_LOCKS);
  EXPECT_EQ(kCxxObjectResourceKind.release_priority, RELEASE_PRIO_CXX_OBJECTS);
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "cxx-order");
  TestResource last{"last"}, mid{"650"}, before{"before"};
  RememberRecorded(owner, last, &kAfterLast);
  ResourceOwnerAdopt(owner, std::make_unique<Tracked>("object"));
  RememberRecorded(owner, mid, &kAfterMid);
  RememberRecorded(owner, before, &kBeforeHi);
  ReleaseAllPhases(owner, false);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"before", "650", "~object", "last"}));
  ResourceOwnerDelete(owner);
}

// Adopting into an owner whose release has started is an ERROR; the object
// is not leaked (the unique_ptr argument still destroys it).
TEST_F(CxxObjectTest, AdoptIntoReleasingOwnerDestroysTheObject) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "cxx-late");
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, false, true);
  const long live = Tracked::Live();
  auto err = CatchError([&] { ResourceOwnerAdopt(owner, std::make_unique<Tracked>("refused")); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(Tracked::Live(), live);
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, false, true);
  ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, false, true);
  ResourceOwnerDelete(owner);
}

// Many objects (into the hash): all destroyed once; disowning half of them in
// between leaves the other half to the owner.
TEST_F(CxxObjectTest, ManyObjects) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "cxx-many");
  const long live = Tracked::Live();
  std::vector<OwnedRef<Tracked>> refs;
  for (int i = 0; i < 500; ++i) refs.push_back(ResourceOwnerAdopt(owner, std::make_unique<Tracked>("o")));
  EXPECT_EQ(Tracked::Live(), live + 500);
  for (std::size_t i = 0; i < refs.size(); i += 2) ResourceOwnerDisown(owner, refs[i]).reset();
  EXPECT_EQ(Tracked::Live(), live + 250);
  EXPECT_EQ(ResourceOwnerCount(owner), 250u);
  ReleaseAllPhases(owner, false);
  EXPECT_EQ(Tracked::Live(), live);
  ResourceOwnerDelete(owner);
}

// An object moved by ReassignAll is disowned from its new owner.
TEST_F(CxxObjectTest, DisownAfterReassign) {
  ResourceOwner parent = ResourceOwnerCreate(nullptr, "parent");
  ResourceOwner child = ResourceOwnerCreate(parent, "child");
  OwnedRef<Tracked> ref = ResourceOwnerAdopt(child, std::make_unique<Tracked>("moved"));
  ResourceOwnerReassignAll(child, parent);
  ASSERT_TRUE(CatchError([&] { (void)ResourceOwnerDisown(child, ref); }).has_value());
  std::unique_ptr<Tracked> back = ResourceOwnerDisown(parent, ref);
  EXPECT_EQ(back->name, "moved");
  ResourceOwnerDelete(parent);
}

}  // namespace
}  // namespace grove::test
