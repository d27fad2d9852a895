// A /dev/shm too small for the segment: dsm_create reserves the space at
// creation, so it fails there — an ERROR "could not resize shared memory
// segment ...: No space left on device", or nullptr with
// DSM_CREATE_NULL_IF_MAXSEGMENTS — and leaves nothing in /dev/shm.
//
// The request is twice /dev/shm's total size: tmpfs refuses an fallocate
// larger than the whole filesystem at once, without allocating a page, so
// the test costs no memory and is not affected by what else uses /dev/shm.
#include <sys/statvfs.h>

#include <optional>
#include <string>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

class DsmOutOfSpaceTest : public DsmTest {
 protected:
  void SetUp() override {
    DsmTest::SetUp();
    struct statvfs vfs;
    ASSERT_EQ(statvfs("/dev/shm", &vfs), 0) << std::strerror(errno);
    if (vfs.f_blocks == 0) GTEST_SKIP() << "/dev/shm reports no size limit";
    too_big_ = static_cast<std::size_t>(vfs.f_blocks) * static_cast<std::size_t>(vfs.f_frsize) * 2;
  }
  std::size_t too_big_ = 0;
};

// ERROR naming the failure ("could not resize shared memory segment", "No
// space left"); no name of this process's is left, the registry does not
// count it, and a transaction's owner holds nothing (the commit reports
// nothing).
TEST_F(DsmOutOfSpaceTest, TooLargeIsAnErrorAndLeavesNothing) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t base = dsm_created_segment_count();
  StartTransactionCommand();
  auto err = CatchError([&] { Create(too_big_); });
  ASSERT_TRUE(err.has_value()) << "a segment twice the size of /dev/shm must not be created";
  EXPECT_TRUE(Contains(err->message(), "could not resize shared memory segment")) << err->Format();
  EXPECT_TRUE(Contains(err->message(), "No space left")) << err->Format();
  EXPECT_EQ(err->sqlstate(), ERRCODE_DISK_FULL) << err->sqlstate().c_str();
  EXPECT_EQ(SegmentNamesOf(self_), before) << "the failed segment's name must be removed";
  EXPECT_EQ(dsm_created_segment_count(), base);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

// With DSM_CREATE_NULL_IF_MAXSEGMENTS: nullptr, no ERROR, nothing left.
TEST_F(DsmOutOfSpaceTest, TooLargeWithNullIfFlagReturnsNull) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t base = dsm_created_segment_count();
  dsm_segment* seg = nullptr;
  auto err = CatchError([&] { seg = Create(too_big_, DSM_CREATE_NULL_IF_MAXSEGMENTS); });
  EXPECT_FALSE(err.has_value()) << err->Format();
  EXPECT_EQ(seg, nullptr);
  EXPECT_EQ(SegmentNamesOf(self_), before);
  EXPECT_EQ(dsm_created_segment_count(), base);
}

// After the failures, creating a normal segment works and its handle is
// new; everything goes with its detach.
TEST_F(DsmOutOfSpaceTest, FailureDoesNotPoisonLaterCreates) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  EXPECT_TRUE(CatchError([&] { Create(too_big_); }).has_value());
  EXPECT_EQ(Create(too_big_, DSM_CREATE_NULL_IF_MAXSEGMENTS), nullptr);
  dsm_segment* seg = Create(4096);
  ASSERT_NE(seg, nullptr);
  EXPECT_EQ(NewNames(before, SegmentNamesOf(self_)).size(), 1u);
  FillPattern(dsm_segment_address(seg), 4096, 13);
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 4096, 13));
  dsm_detach(seg);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// Many failures in a row leave nothing either (no name, no registry slot):
// 200 failed creates, then the registry still counts only what exists.
TEST_F(DsmOutOfSpaceTest, RepeatedFailuresLeakNothing) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t base = dsm_created_segment_count();
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(CatchError([&] { Create(too_big_); }).has_value());
    EXPECT_EQ(Create(too_big_, DSM_CREATE_NULL_IF_MAXSEGMENTS), nullptr);
  }
  EXPECT_EQ(SegmentNamesOf(self_), before);
  EXPECT_EQ(dsm_created_segment_count(), base);
}

// Out of segments rather than out of bytes: a process can have only so many
// segments it created alive at once (its registry has a fixed number of
// slots, which the header does not state). Creating one-byte segments until
// dsm_create refuses: the refusal is an ERROR that leaves no name; with
// DSM_CREATE_NULL_IF_MAXSEGMENTS — the flag named after exactly this case,
// documented as "return nullptr instead of ERROR when out of space" — it is
// nullptr; and once one segment is destroyed, creating works again.
// (No limit below 20,000 segments: nothing to test, skipped.)
using DsmSegmentLimitTest = DsmTest;

TEST_F(DsmSegmentLimitTest, TooManySegmentsIsAnErrorOrNullWithTheFlag) {
  constexpr std::size_t kCap = 20000;
  const std::vector<std::string> before = SegmentNamesOf(self_);
  struct DetachAll {
    std::vector<dsm_segment*> segs;
    ~DetachAll() {
      for (dsm_segment* s : segs) dsm_detach(s);
    }
  } held;
  held.segs.reserve(kCap);
  std::optional<Error> err;
  while (held.segs.size() < kCap) {
    dsm_segment* seg = nullptr;
    err = CatchError([&] { seg = dsm_create(1); });
    if (err.has_value()) break;
    held.segs.push_back(seg);
  }
  if (!err.has_value()) GTEST_SKIP() << "no limit below " << kCap << " segments";
  const std::size_t limit = held.segs.size();
  EXPECT_GT(limit, 0u) << err->Format();
  EXPECT_EQ(NewNames(before, SegmentNamesOf(self_)).size(), limit) << "the refused segment must leave no name";
  EXPECT_EQ(dsm_created_segment_count(), limit);

  dsm_segment* extra = nullptr;
  auto flagged = CatchError([&] { extra = dsm_create(1, DSM_CREATE_NULL_IF_MAXSEGMENTS); });
  EXPECT_FALSE(flagged.has_value()) << "with DSM_CREATE_NULL_IF_MAXSEGMENTS, out of segments must be nullptr, not: "
                                    << flagged->Format();
  EXPECT_EQ(extra, nullptr);
  if (extra != nullptr) held.segs.push_back(extra);
  EXPECT_EQ(NewNames(before, SegmentNamesOf(self_)).size(), held.segs.size());

  dsm_detach(held.segs.back());
  held.segs.pop_back();
  dsm_segment* again = nullptr;
  auto after = CatchError([&] { again = dsm_create(1); });
  EXPECT_FALSE(after.has_value()) << "a slot was freed: " << after->Format();
  if (again != nullptr) held.segs.push_back(again);
}

}  // namespace
}  // namespace grove::test
