// Leak warnings: on commit (isCommit=true) every resource still held is a
// WARNING "resource was not closed: <DebugPrint text, or kind name and
// value>", one per resource, and the resource is released; on abort the same
// resources are released silently.
#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "resowner_test_support.h"

namespace grove::test {
namespace {

using LeakWarningTest = ResourceOwnerTest;

// Three resources with a DebugPrint: three WARNINGs carrying its text, and
// each resource released once.
TEST_F(LeakWarningTest, CommitWarnsOncePerResourceWithDebugPrint) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "leaky");
  TestResource a{"alpha"}, b{"beta"}, c{"gamma"};
  RememberRecorded(owner, a, &kBeforeLo);
  RememberRecorded(owner, b, &kLocksLo);
  RememberRecorded(owner, c, &kAfterMid);
  MessageCapture capture;
  ReleaseAllPhases(owner, /*isCommit=*/true);

  std::vector<std::string> texts = capture.LeakTexts();
  std::sort(texts.begin(), texts.end());
  EXPECT_EQ(texts, (std::vector<std::string>{"test resource alpha", "test resource beta", "test resource gamma"}))
      << capture.All();
  EXPECT_EQ(capture.CountLevel(WARNING), 3u) << capture.All();
  EXPECT_EQ(a.releases, 1);
  EXPECT_EQ(b.releases, 1);
  EXPECT_EQ(c.releases, 1);
  ResourceOwnerDelete(owner);
}

// Without a DebugPrint the warning names the kind (and the value).
TEST_F(LeakWarningTest, CommitWarningWithoutDebugPrintNamesTheKind) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "leaky");
  TestResource r{"unprintable"};
  RememberRecorded(owner, r, &kNoPrint);
  MessageCapture capture;
  ReleaseAllPhases(owner, true);
  const std::vector<std::string> texts = capture.LeakTexts();
  ASSERT_EQ(texts.size(), 1u) << capture.All();
  EXPECT_TRUE(Contains(texts[0], kNoPrint.name)) << texts[0];
  EXPECT_EQ(r.releases, 1);
  ResourceOwnerDelete(owner);
}

// Abort: the same resources are released, and nothing is reported.
TEST_F(LeakWarningTest, AbortIsSilentAndReleases) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "aborting");
  ResourceOwner child = ResourceOwnerCreate(owner, "aborting child");
  TestResource a{"a"}, b{"b"}, c{"c"};
  RememberRecorded(owner, a, &kBeforeLo);
  RememberRecorded(owner, b, &kNoPrint);
  RememberRecorded(child, c, &kLocksHi);
  for (std::uint32_t v = 1; v <= 100; ++v) RememberCounted(owner, v);
  MessageCapture capture;
  ReleaseAllPhases(owner, /*isCommit=*/false);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(a.releases, 1);
  EXPECT_EQ(b.releases, 1);
  EXPECT_EQ(c.releases, 1);
  EXPECT_TRUE(ResourceOwnerIsEmpty(owner));
  ResourceOwnerDelete(owner);
}

// Leaks in descendants are reported too, one per resource, whatever the
// number (array and hash).
TEST_F(LeakWarningTest, CommitWarnsForEveryResourceInTheTree) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "tree");
  ResourceOwner child = ResourceOwnerCreate(owner, "child");
  ResourceOwner grandchild = ResourceOwnerCreate(child, "grandchild");
  std::deque<TestResource> res;
  std::size_t n = 0;
  for (ResourceOwner o : {owner, child, grandchild})
    for (int i = 0; i < 50; ++i) {
      res.push_back({"r" + std::to_string(n++)});
      RememberRecorded(o, res.back(), i % 2 ? &kAfterFirst : &kBeforeHi);
    }
  MessageCapture capture;
  ReleaseAllPhases(owner, true);
  std::vector<std::string> texts = capture.LeakTexts();
  EXPECT_EQ(texts.size(), res.size());
  std::sort(texts.begin(), texts.end());
  EXPECT_EQ(std::adjacent_find(texts.begin(), texts.end()), texts.end()) << "a resource was reported twice";
  for (const TestResource& r : res) EXPECT_EQ(r.releases, 1) << r.label;
  ResourceOwnerDelete(owner);
}

// Resources forgotten before commit are not leaks: a commit after a clean
// Forget reports nothing.
TEST_F(LeakWarningTest, ForgottenResourcesAreNotReported) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "clean");
  for (std::uint32_t v = 1; v <= 40; ++v) RememberCounted(owner, v);
  for (std::uint32_t v = 1; v <= 40; ++v) ForgetCounted(owner, v);
  MessageCapture capture;
  ReleaseAllPhases(owner, true);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  ResourceOwnerDelete(owner);
}

// The warning is reported before the resource is released: the release
// function sees the warning already delivered (so the text could be printed
// from the still-valid resource).
std::size_t warnings_seen_at_release = 0;
MessageCapture* active_capture = nullptr;
void ReleaseAfterWarning(Datum) { warnings_seen_at_release = active_capture->LeakTexts().size(); }
const ResourceOwnerDesc kObservesWarning = {"test observes warning", RESOURCE_RELEASE_AFTER_LOCKS, 10,
                                            ReleaseAfterWarning, nullptr};

TEST_F(LeakWarningTest, WarningComesBeforeTheRelease) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "order");
  ResourceOwnerEnlarge(owner);
  ResourceOwnerRemember(owner, 1, &kObservesWarning);
  MessageCapture capture;
  active_capture = &capture;
  warnings_seen_at_release = 0;
  ReleaseAllPhases(owner, true);
  active_capture = nullptr;
  EXPECT_EQ(warnings_seen_at_release, 1u);
  ResourceOwnerDelete(owner);
}

}  // namespace
}  // namespace grove::test
