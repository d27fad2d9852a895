// Segments created on another process's behalf (dsm_create_owned_by, what a
// worker growing its leader's DSA does), segments removed whatever their
// reference count (dsm_detach_and_remove), and a process's own cleanup for
// an _exit (dsm_process_exit).
#include <csignal>
#include <string>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

using DsmOwnedByTest = DsmTest;

TEST_F(DsmOwnedByTest, InvalidOwnerIsAnError) {
  const auto e = CatchError([] { dsm_create_owned_by(0, 4096); });
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message().find("invalid owner process"), std::string::npos) << e->message();
}

// A pid with no grove registry — a child that has exited and been reaped —
// cannot own a segment: ERROR, and nothing is created.
TEST_F(DsmOwnedByTest, OwnerThatIsNotRunningIsAnError) {
  InitializeDsm();
  const pid_t gone = RunChild([] { return 0; });
  ExpectChildSucceeded(gone);
  const std::vector<std::string> before = GroveNamesOf(gone);
  const auto e = CatchError([&] { dsm_create_owned_by(gone, 4096); });
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message().find("not running"), std::string::npos) << e->message();
  EXPECT_EQ(GroveNamesOf(gone), before);
}

// A child creates a segment owned by this process, pins it and exits (with
// _exit: no cleanup of its own). The segment carries this process's pid, so
// the child's exit leaves it; this process attaches it, reads what the child
// wrote, unpins and detaches it, and it is gone.
TEST_F(DsmOwnedByTest, SegmentOutlivesTheProcessThatCreatedIt) {
  InitializeDsm();  // this process has a registry to be recorded in
  const pid_t owner = self_;
  Pipe handles;
  const pid_t child = RunChild([&] {
    handles.CloseRead();
    dsm_segment* seg = dsm_create_owned_by(owner, 65536);
    FillPattern(dsm_segment_address(seg), 65536, 11);
    dsm_pin_segment(seg);
    CHILD_REQUIRE(handles.Send(dsm_segment_handle(seg)));
    dsm_detach(seg);  // the pin keeps it
    return 0;
  });
  handles.CloseWrite();
  dsm_handle h = DSM_HANDLE_INVALID;
  ASSERT_TRUE(handles.Receive(&h));
  ExpectChildSucceeded(child);
  EXPECT_EQ(static_cast<pid_t>(h >> 32), owner) << "named after its owner";
  EXPECT_TRUE(GroveNamesOf(child).empty()) << Join(GroveNamesOf(child));
  TrackPin(h);
  dsm_segment* seg = Attach(h);
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 65536, 11));
  UnpinSegment(h);
  dsm_detach(seg);
  EXPECT_TRUE(CatchError([&] { Attach(h); }).has_value()) << "the last reference is gone";
}

// A child attached and killed never drops its reference: dsm_detach leaves
// the segment (its count never reaches zero), dsm_detach_and_remove does not.
TEST_F(DsmOwnedByTest, DetachAndRemoveIgnoresReferencesOfTheDead) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsm_segment* seg = Create(4096);
  const dsm_handle h = dsm_segment_handle(seg);
  const std::string name = SingleNewName(before);
  Pipe attached;
  const pid_t child = RunChild([&] {
    attached.CloseRead();
    dsm_attach(h);
    CHILD_REQUIRE(attached.Send(1));
    raise(SIGKILL);
    return 0;
  });
  attached.CloseWrite();
  int ok = 0;
  ASSERT_TRUE(attached.Receive(&ok));
  Reap(child);
  ASSERT_TRUE(ShmNameExists(name));
  dsm_detach_and_remove(seg);
  EXPECT_FALSE(ShmNameExists(name));
  EXPECT_EQ(dsm_find_mapping(h), nullptr);
}

// A process that ends with _exit runs no atexit handler: dsm_process_exit
// removes its segments and registry itself.
TEST_F(DsmOwnedByTest, ProcessExitRemovesOwnSegmentsAndRegistry) {
  Pipe created;
  const pid_t child = RunChild([&] {
    created.CloseRead();
    dsm_segment* seg = dsm_create(4096);
    dsm_pin_segment(seg);  // even a pinned one
    CHILD_REQUIRE(!GroveNamesOf(getpid()).empty());
    CHILD_REQUIRE(created.Send(1));
    dsm_process_exit();
    return 0;  // RunChild ends with _exit
  });
  created.CloseWrite();
  int ok = 0;
  ASSERT_TRUE(created.Receive(&ok));
  WaitZombie(child);  // the pid cannot be reused while we look
  EXPECT_TRUE(GroveNamesOf(child).empty()) << Join(GroveNamesOf(child));
  ExpectChildSucceeded(child);
}

}  // namespace
}  // namespace grove::test
