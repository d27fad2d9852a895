// Built-in kinds: their phases and priorities as PostgreSQL's; the layer that
// owns such resources installs the release with SetResourceKindRelease;
// before that, releasing one reports a WARNING and drops it.
//
// SetResourceKindRelease is process-wide and cannot be undone through the
// public API, so each kind is either installed by exactly one case here or
// never installed in this binary (kTupleDescRefResourceKind,
// kPlanCacheRefResourceKind stay uninstalled).
#include <string>
#include <vector>

#include "resowner_test_support.h"

namespace grove::test {
namespace {

using BuiltinKindsTest = ResourceOwnerTest;

// Phases and priorities of every built-in kind, as documented.
TEST_F(BuiltinKindsTest, PhasesAndPriorities) {
  struct Expected {
    const ResourceOwnerDesc* kind;
    ResourceReleasePhase phase;
    ResourceReleasePriority priority;
  };
  const Expected expected[] = {
      {&kBufferPinResourceKind, RESOURCE_RELEASE_BEFORE_LOCKS, RELEASE_PRIO_BUFFER_PINS},
      {&kDsmSegmentResourceKind, RESOURCE_RELEASE_BEFORE_LOCKS, RELEASE_PRIO_DSMS},
      {&kRelationLockResourceKind, RESOURCE_RELEASE_LOCKS, RELEASE_PRIO_RELATION_LOCKS},
      {&kPlanCacheRefResourceKind, RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_PLANCACHE_REFS},
      {&kTupleDescRefResourceKind, RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_TUPDESC_REFS},
      {&kSnapshotRefResourceKind, RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_SNAPSHOT_REFS},
      {&kFileResourceKind, RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_FILES},
      {&kCxxObjectResourceKind, RESOURCE_RELEASE_AFTER_LOCKS, RELEASE_PRIO_CXX_OBJECTS},
  };
  for (const Expected& e : expected) {
    ASSERT_NE(e.kind->name, nullptr);
    EXPECT_GT(std::string(e.kind->name).size(), 0u);
    EXPECT_EQ(e.kind->release_phase, e.phase) << e.kind->name;
    EXPECT_EQ(e.kind->release_priority, e.priority) << e.kind->name;
    EXPECT_NE(e.kind->ReleaseResource, nullptr) << e.kind->name << ": releasing must always be possible";
  }
  EXPECT_EQ(RELEASE_PRIO_FILES, 600u);
  EXPECT_EQ(RELEASE_PRIO_BUFFER_PINS, 200u);
}

// "Files" of this test: a fake descriptor table; the installed release closes
// an entry, the debug print names it.
int open_files = 0;
std::vector<Datum> closed_files;
void CloseTestFile(Datum fd) {
  --open_files;
  closed_files.push_back(fd);
}
char* PrintTestFile(Datum fd) { return psprintf("test file descriptor %d", static_cast<int>(fd)); }

// Once installed, kFileResourceKind's release runs at release (after-locks,
// priority 600 — after a 599 and before a 601 of the same phase), and leak
// warnings use the installed debug print.
TEST_F(BuiltinKindsTest, InstalledReleaseRunsForFiles) {
  SetResourceKindRelease(&kFileResourceKind, CloseTestFile, PrintTestFile);
  static const ResourceOwnerDesc k599 = {"test 599", RESOURCE_RELEASE_AFTER_LOCKS, 599, RecordRelease, nullptr};
  static const ResourceOwnerDesc k601 = {"test 601", RESOURCE_RELEASE_AFTER_LOCKS, 601, RecordRelease, nullptr};
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "files");
  TestResource before{"599"}, after{"601"};
  RememberRecorded(owner, after, &k601);
  for (Datum fd : {Datum{11}, Datum{12}}) {
    ResourceOwnerEnlarge(owner);
    ++open_files;
    ResourceOwnerRemember(owner, fd, &kFileResourceKind);
  }
  RememberRecorded(owner, before, &k599);

  // Closing one by hand: Forget, then close.
  ResourceOwnerForget(owner, 12, &kFileResourceKind);
  CloseTestFile(12);
  closed_files.clear();

  MessageCapture capture;
  ReleaseAllPhases(owner, /*isCommit=*/true);
  EXPECT_EQ(open_files, 0);
  EXPECT_EQ(closed_files, (std::vector<Datum>{11}));
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"599", "601"}));
  EXPECT_EQ(before.releases, 1);
  EXPECT_EQ(after.releases, 1);
  const std::vector<std::string> leaks = capture.LeakTexts();
  EXPECT_EQ(leaks.size(), 3u) << capture.All();
  std::size_t file_leaks = 0;
  for (const std::string& t : leaks)
    if (t == "test file descriptor 11") ++file_leaks;
  EXPECT_EQ(file_leaks, 1u) << capture.All();
  ResourceOwnerDelete(owner);
}

// The ordering against the recorded kinds, checked precisely: a file's
// release happens between the 599 and the 601 resource.
void CloseIntoLog(Datum) { ReleaseLog().push_back("file"); }

TEST_F(BuiltinKindsTest, InstalledReleaseOrderAmongSamePhase) {
  // kSnapshotRefResourceKind (500): between a 499 and a 501.
  SetResourceKindRelease(&kSnapshotRefResourceKind, CloseIntoLog, nullptr);
  static const ResourceOwnerDesc k499 = {"test 499", RESOURCE_RELEASE_AFTER_LOCKS, 499, RecordRelease, nullptr};
  static const ResourceOwnerDesc k501 = {"test 501", RESOURCE_RELEASE_AFTER_LOCKS, 501, RecordRelease, nullptr};
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "snapshots");
  TestResource lo{"499"}, hi{"501"};
  RememberRecorded(owner, hi, &k501);
  ResourceOwnerEnlarge(owner);
  ResourceOwnerRemember(owner, 1, &kSnapshotRefResourceKind);
  RememberRecorded(owner, lo, &k499);
  ReleaseAllPhases(owner, false);
  EXPECT_EQ(ReleaseLog(), (std::vector<std::string>{"499", "file", "501"}));
  ResourceOwnerDelete(owner);
}

// Before a kind's release is installed, releasing its resource reports a
// WARNING (naming the kind) and drops it — on abort as on commit — and the
// owner ends up empty; other resources are released normally.
TEST_F(BuiltinKindsTest, UninstalledReleaseWarnsAndDrops) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "uninstalled");
  TestResource other{"other"};
  RememberRecorded(owner, other, &kAfterMid);
  ResourceOwnerEnlarge(owner);
  ResourceOwnerRemember(owner, 0x1234, &kTupleDescRefResourceKind);
  MessageCapture capture;
  ReleaseAllPhases(owner, /*isCommit=*/false);
  ASSERT_EQ(capture.CountLevel(WARNING), 1u) << capture.All();
  EXPECT_TRUE(Contains(capture.reports[0].message, kTupleDescRefResourceKind.name)) << capture.All();
  EXPECT_EQ(other.releases, 1);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// On commit an uninstalled kind's leftover is both a leak and undroppable:
// the leak warning plus the "no release" warning, and still dropped.
TEST_F(BuiltinKindsTest, UninstalledReleaseOnCommit) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "uninstalled-commit");
  ResourceOwnerEnlarge(owner);
  ResourceOwnerRemember(owner, 0x99, &kPlanCacheRefResourceKind);
  MessageCapture capture;
  ReleaseAllPhases(owner, /*isCommit=*/true);
  EXPECT_EQ(capture.LeakTexts().size(), 1u) << capture.All();
  EXPECT_EQ(capture.CountLevel(WARNING), 2u) << capture.All();
  EXPECT_TRUE(ResourceOwnerIsEmpty(owner));
  ResourceOwnerDelete(owner);
}

// Uninstalled kinds can still be remembered and forgotten (only releasing
// needs the function).
TEST_F(BuiltinKindsTest, UninstalledKindRememberAndForget) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "uninstalled-forget");
  for (Datum v = 1; v <= 50; ++v) {
    ResourceOwnerEnlarge(owner);
    ResourceOwnerRemember(owner, v, &kTupleDescRefResourceKind);
  }
  for (Datum v = 1; v <= 50; ++v) ResourceOwnerForget(owner, v, &kTupleDescRefResourceKind);
  MessageCapture capture;
  ReleaseAllPhases(owner, true);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  ResourceOwnerDelete(owner);
}

}  // namespace
}  // namespace grove::test
