// Segments shared with forked children: a child attaches by handle, sees
// what the parent wrote, and the parent sees what the child wrote; the
// reference count spans processes (the segment lives while any process has
// it attached or pinned, and the last detach anywhere destroys it); a
// segment a child created and pinned is attached, unpinned and destroyed by
// the parent.
//
// Children end with _exit(): a child that created a segment leaves its
// registry ("grove.<child pid>.control") behind, which the documented
// cleanup, dsm_cleanup_orphans(), removes once the child is reaped.
#include <atomic>
#include <string>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

using DsmCrossProcessTest = DsmTest;

constexpr std::size_t kMiB = std::size_t{1} << 20;

// The parent writes a pattern; a child attaches the handle (the parent's
// attachment is not the child's: dsm_find_mapping says nullptr first), reads
// the pattern, writes another, detaches and exits. The parent sees the
// child's writes; the segment is alive while the parent holds it, and gone
// after the parent's detach.
TEST_F(DsmCrossProcessTest, ChildAttachesReadsAndWritesBack) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsm_segment* seg = Create(kMiB);
  const dsm_handle h = dsm_segment_handle(seg);
  const std::string name = SingleNewName(before);
  FillPattern(dsm_segment_address(seg), kMiB, 7);

  const pid_t child = RunChild([h] {
    CHILD_REQUIRE(dsm_find_mapping(h) == nullptr);
    dsm_segment* att = dsm_attach(h);
    CHILD_REQUIRE(att != nullptr);
    CHILD_REQUIRE(dsm_find_mapping(h) == att);
    CHILD_REQUIRE(dsm_segment_handle(att) == h);
    CHILD_REQUIRE(dsm_segment_map_length(att) >= kMiB);
    CHILD_REQUIRE(HasPattern(dsm_segment_address(att), kMiB, 7));
    FillPattern(dsm_segment_address(att), kMiB, 8);
    dsm_detach(att);
    CHILD_REQUIRE(dsm_find_mapping(h) == nullptr);
    return 0;
  });
  ExpectChildSucceeded(child);

  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), kMiB, 8)) << "the parent must see the child's writes";
  EXPECT_TRUE(ShmNameExists(name)) << "the parent still holds the segment: it must survive the child's detach";
  EXPECT_TRUE(GroveNamesOf(child).empty()) << "a child that only attached creates nothing";
  dsm_detach(seg);
  EXPECT_FALSE(ShmNameExists(name)) << "the parent's detach was the last one";
  EXPECT_TRUE(CatchError([&] { Attach(h); }).has_value());
}

// The creator detaches first while a child still has the segment attached:
// the segment survives (name and data) until the child's detach, which
// destroys it.
TEST_F(DsmCrossProcessTest, LastDetachInAnyProcessDestroys) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t base = dsm_created_segment_count();
  dsm_segment* seg = Create(64 * 1024);
  const dsm_handle h = dsm_segment_handle(seg);
  const std::string name = SingleNewName(before);
  FillPattern(dsm_segment_address(seg), 64 * 1024, 9);

  Pipe attached;  // child -> parent: attached
  Pipe detached;  // parent -> child: the parent has detached
  Pipe verdict;   // child -> parent: whether the name existed before/after its detach
  const pid_t child = RunChild([&] {
    attached.CloseRead();
    detached.CloseWrite();
    verdict.CloseRead();
    dsm_segment* att = dsm_attach(h);
    CHILD_REQUIRE(attached.Send('a'));
    char c;
    CHILD_REQUIRE(detached.Receive(&c));
    CHILD_REQUIRE(HasPattern(dsm_segment_address(att), 64 * 1024, 9));
    const char alive = ShmNameExists(name) ? 1 : 0;
    dsm_detach(att);
    const char gone = ShmNameExists(name) ? 0 : 1;
    CHILD_REQUIRE(verdict.Send(alive) && verdict.Send(gone));
    return 0;
  });
  attached.CloseWrite();
  detached.CloseRead();
  verdict.CloseWrite();

  char c = 0;
  ASSERT_TRUE(attached.Receive(&c)) << "the child did not attach";
  dsm_detach(seg);
  EXPECT_TRUE(ShmNameExists(name)) << "the child still holds it: the creator's detach must not destroy it";
  ASSERT_TRUE(detached.Send('d'));
  char alive = 0, gone = 0;
  EXPECT_TRUE(verdict.Receive(&alive) && verdict.Receive(&gone));
  ExpectChildSucceeded(child);
  EXPECT_EQ(alive, 1) << "the segment must be alive while the child holds it";
  EXPECT_EQ(gone, 1) << "the child's detach was the last: it must destroy the segment";
  EXPECT_FALSE(ShmNameExists(name));
  EXPECT_EQ(dsm_created_segment_count(), base) << "destroyed by another process: no longer counted";
}

// A child creates a segment, writes to it, pins it, detaches, and reports
// the handle; it stays alive until the parent has attached (so that nothing
// can mistake the segment for an orphan meanwhile), then _exits. The parent
// reads the child's data, unpins and detaches: the segment is gone. The
// child's registry is then removed by dsm_cleanup_orphans.
TEST_F(DsmCrossProcessTest, SegmentPinnedByAChildIsAttachedAndUnpinnedByTheParent) {
  InitializeDsm();
  Pipe handle_pipe;  // child -> parent
  Pipe go;           // parent -> child: attached, you may exit
  const pid_t child = RunChild([&] {
    handle_pipe.CloseRead();
    go.CloseWrite();
    dsm_segment* seg = dsm_create(8192);
    FillPattern(dsm_segment_address(seg), 8192, 10);
    dsm_pin_segment(seg);
    const dsm_handle h = dsm_segment_handle(seg);
    dsm_detach(seg);
    CHILD_REQUIRE(dsm_find_mapping(h) == nullptr);
    CHILD_REQUIRE(dsm_created_segment_count() == 1);  // pinned: it still exists
    CHILD_REQUIRE(handle_pipe.Send(h));
    char c;
    CHILD_REQUIRE(go.Receive(&c));
    return 0;
  });
  handle_pipe.CloseWrite();
  go.CloseRead();

  dsm_handle h = DSM_HANDLE_INVALID;
  ASSERT_TRUE(handle_pipe.Receive(&h)) << "the child reported no handle";
  ASSERT_NE(h, DSM_HANDLE_INVALID);
  TrackPin(h);
  const std::vector<std::string> child_segments = SegmentNamesOf(child);
  EXPECT_EQ(child_segments.size(), 1u) << Join(child_segments);
  dsm_segment* seg = Attach(h);
  ASSERT_NE(seg, nullptr);
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 8192, 10)) << "the parent must see what the child wrote";
  ASSERT_TRUE(go.Send('x'));
  ExpectChildSucceeded(child);

  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 8192, 10)) << "the mapping outlives the creator";
  UnpinSegment(h);
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 8192, 10)) << "unpinning while attached keeps it";
  dsm_detach(seg);
  EXPECT_TRUE(SegmentNamesOf(child).empty()) << "unpinned and detached: the segment must be gone";
  EXPECT_TRUE(CatchError([&] { Attach(h); }).has_value());
  dsm_cleanup_orphans();  // the _exit()ed child's registry
  EXPECT_TRUE(GroveNamesOf(child).empty()) << Join(GroveNamesOf(child));
}

// A child unpins a segment the parent created and pinned: the pin is one
// per segment, not per process. After the parent's detach the segment is
// gone.
TEST_F(DsmCrossProcessTest, PinTakenByParentIsDroppedByChild) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsm_segment* seg = Create(4096);
  const dsm_handle h = dsm_segment_handle(seg);
  const std::string name = SingleNewName(before);
  PinSegment(seg);
  dsm_detach(seg);
  ASSERT_TRUE(ShmNameExists(name));
  const pid_t child = RunChild([h] {
    dsm_unpin_segment(h);
    return 0;
  });
  ExpectChildSucceeded(child);
  ForgetPin(h);  // the child undid it
  EXPECT_FALSE(ShmNameExists(name)) << "unpinned by the child with nobody attached: destroyed";
}

// Four children attach at once and each increments a shared counter 10,000
// times, then detaches; the parent sees 40,000, and the segment is still
// alive (the parent holds it) until the parent detaches.
TEST_F(DsmCrossProcessTest, ConcurrentChildrenShareOneSegment) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsm_segment* seg = Create(4096);
  const dsm_handle h = dsm_segment_handle(seg);
  const std::string name = SingleNewName(before);
  auto* counter = new (dsm_segment_address(seg)) std::atomic<std::uint64_t>(0);
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

  Pipe start;  // parent -> children: go (closing the write end releases all)
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) {
    children.push_back(RunChild([&] {
      start.CloseWrite();
      dsm_segment* att = dsm_attach(h);
      char c;
      start.Receive(&c);  // EOF when the parent closes its end: everyone starts
      auto* ctr = static_cast<std::atomic<std::uint64_t>*>(dsm_segment_address(att));
      for (int k = 0; k < 10000; ++k) ctr->fetch_add(1, std::memory_order_relaxed);
      dsm_detach(att);
      return 0;
    }));
  }
  start.CloseWrite();
  for (pid_t c : children) ExpectChildSucceeded(c);
  EXPECT_EQ(counter->load(), 40000u);
  EXPECT_TRUE(ShmNameExists(name));
  dsm_detach(seg);
  EXPECT_FALSE(ShmNameExists(name));
}

// In a child, a handle whose segment the parent destroyed is an ERROR
// ("does not exist"), as in the parent.
TEST_F(DsmCrossProcessTest, ChildCannotAttachADestroyedSegment) {
  dsm_segment* seg = Create(64);
  const dsm_handle h = dsm_segment_handle(seg);
  dsm_detach(seg);
  const pid_t child = RunChild([h] {
    auto err = CatchError([&] { dsm_attach(h); });
    CHILD_REQUIRE(err.has_value());
    CHILD_REQUIRE(Contains(err->message(), "does not exist"));
    return 0;
  });
  ExpectChildSucceeded(child);
}

// A child creates a segment and reports the handle; the parent attaches,
// both write to halves of it, each sees the other's half; the child detaches
// (the parent holds it: it survives), the parent detaches last: gone.
TEST_F(DsmCrossProcessTest, ChildCreatedSegmentSharedBothWays) {
  InitializeDsm();
  Pipe handle_pipe;  // child -> parent
  Pipe parent_done;  // parent -> child: attached and written
  Pipe child_done;   // child -> parent: read, written, detached
  const pid_t child = RunChild([&] {
    handle_pipe.CloseRead();
    parent_done.CloseWrite();
    child_done.CloseRead();
    dsm_segment* seg = dsm_create(2 * 4096);
    char* p = static_cast<char*>(dsm_segment_address(seg));
    FillPattern(p, 4096, 11);
    CHILD_REQUIRE(handle_pipe.Send(dsm_segment_handle(seg)));
    char c;
    CHILD_REQUIRE(parent_done.Receive(&c));
    CHILD_REQUIRE(HasPattern(p + 4096, 4096, 12));
    dsm_detach(seg);
    CHILD_REQUIRE(child_done.Send('d'));
    return 0;
  });
  handle_pipe.CloseWrite();
  parent_done.CloseRead();
  child_done.CloseWrite();

  dsm_handle h = DSM_HANDLE_INVALID;
  ASSERT_TRUE(handle_pipe.Receive(&h));
  dsm_segment* seg = Attach(h);
  char* p = static_cast<char*>(dsm_segment_address(seg));
  EXPECT_TRUE(HasPattern(p, 4096, 11));
  FillPattern(p + 4096, 4096, 12);
  ASSERT_TRUE(parent_done.Send('p'));
  char c = 0;
  EXPECT_TRUE(child_done.Receive(&c));
  ExpectChildSucceeded(child);
  EXPECT_TRUE(HasPattern(p, 4096, 11));
  dsm_detach(seg);
  EXPECT_TRUE(SegmentNamesOf(child).empty()) << "the parent's detach was the last";
  dsm_cleanup_orphans();  // the _exit()ed child's registry
  EXPECT_TRUE(GroveNamesOf(child).empty()) << Join(GroveNamesOf(child));
}

}  // namespace
}  // namespace grove::test
