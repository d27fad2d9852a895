// dsm_create_private: a segment in the process's own memory, for threads of
// one process. It is zeroed and writable like a shared one, has no handle
// and no name in /dev/shm, runs its detach callbacks, cannot be pinned or
// attached, belongs to CurrentResourceOwner like any attachment, and a
// forked child's inherited descriptor detaches without the parent's
// callbacks.
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

void CountDetach(dsm_segment*, Datum arg) { ++*DatumGetPointer<int>(arg); }

using DsmPrivateTest = DsmTest;

TEST_F(DsmPrivateTest, ZeroedWritableUnnamedAndUnattachable) {
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{40000}, std::size_t{8} << 20}) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::vector<std::string> before = SegmentNamesOf(self_);
    const std::size_t created_before = dsm_created_segment_count();
    dsm_segment* seg = dsm_create_private(size);
    ASSERT_NE(seg, nullptr);
    EXPECT_EQ(dsm_segment_handle(seg), DSM_HANDLE_INVALID);
    EXPECT_GE(dsm_segment_map_length(seg), size);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(dsm_segment_address(seg)) % 4096, 0u) << "page-aligned, as shared";
    EXPECT_TRUE(IsAllZero(dsm_segment_address(seg), dsm_segment_map_length(seg)));
    FillPattern(dsm_segment_address(seg), dsm_segment_map_length(seg), 3);
    EXPECT_TRUE(HasPattern(dsm_segment_address(seg), dsm_segment_map_length(seg), 3));
    EXPECT_EQ(SegmentNamesOf(self_), before) << "a private segment has no name in /dev/shm";
    EXPECT_EQ(dsm_created_segment_count(), created_before) << "nor an entry in the registry";
    EXPECT_EQ(dsm_find_mapping(DSM_HANDLE_INVALID), nullptr);
    dsm_detach(seg);
  }
}

TEST_F(DsmPrivateTest, OversizedIsAnError) {
  const std::optional<Error> e = CatchError([] { dsm_create_private(std::size_t{1} << 50); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sqlstate(), ERRCODE_PROGRAM_LIMIT_EXCEEDED);
}

TEST_F(DsmPrivateTest, CannotBePinnedOrAttached) {
  dsm_segment* seg = dsm_create_private(100);
  std::optional<Error> e = CatchError([&] { dsm_pin_segment(seg); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sqlstate(), ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
  EXPECT_TRUE(Contains(e->message(), "private")) << e->message();
  e = CatchError([&] { dsm_attach(dsm_segment_handle(seg)); });
  ASSERT_TRUE(e.has_value()) << "its handle is the invalid one";
  dsm_detach(seg);  // still usable after both errors
}

TEST_F(DsmPrivateTest, CallbacksRunOnDetachAndAnotherThreadMayRegisterThem) {
  int detaches = 0;
  dsm_segment* seg = dsm_create_private(4096);
  on_dsm_detach(seg, CountDetach, PointerGetDatum(&detaches));
  std::thread([&] { on_dsm_detach(seg, CountDetach, PointerGetDatum(&detaches)); }).join();
  dsm_detach(seg);
  EXPECT_EQ(detaches, 2);
}

TEST_F(DsmPrivateTest, DetachAndRemoveIsADetach) {
  int detaches = 0;
  dsm_segment* seg = dsm_create_private(4096);
  on_dsm_detach(seg, CountDetach, PointerGetDatum(&detaches));
  dsm_detach_and_remove(seg);
  EXPECT_EQ(detaches, 1);
}

TEST_F(DsmPrivateTest, BelongsToTheResourceOwnerWithALeakWarningAtCommit) {
  int detaches = 0;
  StartTransactionCommand();
  dsm_segment* seg = dsm_create_private(4096);
  on_dsm_detach(seg, CountDetach, PointerGetDatum(&detaches));
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_EQ(detaches, 1);
  ASSERT_EQ(capture.CountContaining(kLeakText), 1u) << capture.All();
  for (const ErrorData& r : capture.reports) {
    if (Contains(r.message, kLeakText)) {
      EXPECT_TRUE(Contains(r.message, "private")) << r.message;
    }
  }

  StartTransactionCommand();
  seg = dsm_create_private(4096);
  on_dsm_detach(seg, CountDetach, PointerGetDatum(&detaches));
  dsm_pin_mapping(seg);  // the process's now: the abort leaves it
  MessageCapture quiet;
  AbortCurrentTransaction();
  EXPECT_EQ(detaches, 1);
  dsm_detach(seg);
  EXPECT_EQ(detaches, 2);
  EXPECT_TRUE(quiet.reports.empty()) << quiet.All();
}

TEST_F(DsmPrivateTest, AForkedChildDetachesItsCopyWithoutTheParentsCallbacks) {
  int detaches = 0;
  dsm_segment* seg = dsm_create_private(4096);
  on_dsm_detach(seg, CountDetach, PointerGetDatum(&detaches));
  static_cast<char*>(dsm_segment_address(seg))[0] = 42;
  const pid_t pid = RunChild([&] {
    // The child's copy: readable, and its detach runs nothing of the parent's.
    if (static_cast<char*>(dsm_segment_address(seg))[0] != 42) return 1;
    dsm_detach(seg);
    return detaches == 0 ? 0 : 2;
  });
  ExpectChildSucceeded(pid);
  dsm_detach(seg);
  EXPECT_EQ(detaches, 1);
}

}  // namespace
}  // namespace grove::test
