// dsm_attach and dsm_find_mapping in one process; pinning a segment so that
// it outlives every attachment; and the errors: attaching twice, attaching
// what does not exist (never did, or no more), the invalid handle, pinning
// twice, unpinning what is not pinned.
#include <string>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

using DsmAttachTest = DsmTest;

std::string Hex(dsm_handle h) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(h));
  return buf;
}

// Attaching a segment this process already has attached is an ERROR that
// points at dsm_find_mapping; the existing attachment is untouched.
TEST_F(DsmAttachTest, AttachingTwiceInOneProcessIsAnError) {
  dsm_segment* seg = Create(256);
  const dsm_handle h = dsm_segment_handle(seg);
  FillPattern(dsm_segment_address(seg), 256, 3);
  auto err = CatchError([&] { dsm_attach(h); });
  ASSERT_TRUE(err.has_value()) << "a second attachment in the same process must be refused";
  EXPECT_TRUE(Contains(err->message(), "already attached")) << err->Format();
  EXPECT_EQ(dsm_find_mapping(h), seg);
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 256, 3));
  dsm_detach(seg);
}

// dsm_find_mapping: this process's attachment, or nullptr for a handle it
// does not have attached (unknown, invalid, or detached).
TEST_F(DsmAttachTest, FindMapping) {
  EXPECT_EQ(dsm_find_mapping(DSM_HANDLE_INVALID), nullptr);
  dsm_segment* a = Create(64);
  dsm_segment* b = Create(64);
  EXPECT_EQ(dsm_find_mapping(dsm_segment_handle(a)), a);
  EXPECT_EQ(dsm_find_mapping(dsm_segment_handle(b)), b);
  EXPECT_EQ(dsm_find_mapping(dsm_segment_handle(a) ^ 0x5a5a5a5aULL), nullptr);
  const dsm_handle ha = dsm_segment_handle(a);
  dsm_detach(a);
  EXPECT_EQ(dsm_find_mapping(ha), nullptr);
  EXPECT_EQ(dsm_find_mapping(dsm_segment_handle(b)), b);
  dsm_detach(b);
}

// A handle no segment ever had (this process's pid, a number never handed
// out) is an ERROR that says the segment does not exist, and names it.
TEST_F(DsmAttachTest, AttachingAHandleThatNeverExistedIsAnError) {
  dsm_segment* seg = Create(64);  // a real handle of ours, to derive a fake one from
  const dsm_handle fake = dsm_segment_handle(seg) ^ 0x00ffff00ULL;
  dsm_detach(seg);
  const std::vector<std::string> before = GroveNamesOf(self_);
  auto err = CatchError([&] { Attach(fake); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "does not exist")) << err->Format();
  EXPECT_TRUE(Contains(err->message(), Hex(fake)) || Contains(err->message(), std::to_string(fake)))
      << "the message should name the handle (in hex or decimal): " << err->Format();
  EXPECT_EQ(dsm_find_mapping(fake), nullptr);
  EXPECT_EQ(GroveNamesOf(self_), before) << "a failed attach must not create anything";
}

// A handle whose segment is gone (its last attachment detached) is the same
// ERROR: the segment does not exist any more.
TEST_F(DsmAttachTest, AttachingADestroyedSegmentIsAnError) {
  dsm_segment* seg = Create(64);
  const dsm_handle h = dsm_segment_handle(seg);
  dsm_detach(seg);
  auto err = CatchError([&] { Attach(h); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "does not exist")) << err->Format();
}

// DSM_HANDLE_INVALID (0) is an ERROR, not an attempt to open some name.
TEST_F(DsmAttachTest, AttachingTheInvalidHandleIsAnError) {
  const std::vector<std::string> before = GroveNamesOf(self_);
  auto err = CatchError([&] { dsm_attach(DSM_HANDLE_INVALID); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "invalid")) << err->Format();
  EXPECT_EQ(GroveNamesOf(self_), before);
}

// A handle of a pid that is not a grove process (pid 1 owns no segment) is
// an ERROR too.
TEST_F(DsmAttachTest, AttachingAHandleOfAnotherPidWithoutSegmentsIsAnError) {
  const dsm_handle h = (dsm_handle{1} << 32) | 0x1234u;
  auto err = CatchError([&] { Attach(h); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "does not exist")) << err->Format();
}

// dsm_pin_segment keeps a segment with no attachment: after the creator's
// detach its name stays, it can be attached again in the same process (the
// data is still there), and dsm_unpin_segment + the last detach destroy it.
TEST_F(DsmAttachTest, PinnedSegmentOutlivesItsAttachmentsAndCanBeReattached) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t base = dsm_created_segment_count();
  dsm_segment* seg = Create(4096);
  const dsm_handle h = dsm_segment_handle(seg);
  const std::string name = SingleNewName(before);
  FillPattern(dsm_segment_address(seg), 4096, 4);
  PinSegment(seg);
  dsm_detach(seg);
  EXPECT_TRUE(ShmNameExists(name)) << "a pinned segment must outlive its last attachment";
  EXPECT_EQ(dsm_created_segment_count(), base + 1) << "a pinned segment still exists";

  dsm_segment* again = Attach(h);
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(HasPattern(dsm_segment_address(again), 4096, 4));
  UnpinSegment(h);
  EXPECT_TRUE(ShmNameExists(name)) << "still attached: unpinning must not destroy it";
  dsm_detach(again);
  EXPECT_FALSE(ShmNameExists(name));
  EXPECT_EQ(dsm_created_segment_count(), base);
}

// Unpinning a segment that nobody has attached destroys it at once.
TEST_F(DsmAttachTest, UnpinningAnUnattachedSegmentDestroysIt) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsm_segment* seg = Create(64);
  const dsm_handle h = dsm_segment_handle(seg);
  const std::string name = SingleNewName(before);
  PinSegment(seg);
  dsm_detach(seg);
  ASSERT_TRUE(ShmNameExists(name));
  UnpinSegment(h);
  EXPECT_FALSE(ShmNameExists(name));
  auto err = CatchError([&] { Attach(h); });
  EXPECT_TRUE(err.has_value()) << "an unpinned, unattached segment is gone";
}

// Pinning twice is an ERROR (one pin per segment); the first pin stands.
TEST_F(DsmAttachTest, PinningTwiceIsAnError) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsm_segment* seg = Create(64);
  const dsm_handle h = dsm_segment_handle(seg);
  PinSegment(seg);
  auto err = CatchError([&] { dsm_pin_segment(seg); });
  EXPECT_TRUE(err.has_value());
  dsm_detach(seg);
  UnpinSegment(h);
  EXPECT_EQ(SegmentNamesOf(self_), before) << "one unpin and one detach: gone";
}

// Unpinning a segment that is not pinned is an ERROR, attached or not
// (nonexistent); it does not drop anyone's reference.
TEST_F(DsmAttachTest, UnpinningWhatIsNotPinnedIsAnError) {
  dsm_segment* seg = Create(64);
  const dsm_handle h = dsm_segment_handle(seg);
  EXPECT_TRUE(CatchError([&] { dsm_unpin_segment(h); }).has_value());
  EXPECT_EQ(dsm_find_mapping(h), seg);
  FillPattern(dsm_segment_address(seg), 64, 5);
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 64, 5));
  dsm_detach(seg);
  EXPECT_TRUE(CatchError([&] { dsm_unpin_segment(h); }).has_value()) << "a destroyed segment cannot be unpinned";
}

}  // namespace
}  // namespace grove::test
