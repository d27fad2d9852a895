// An area shared with forked children:
// * growth and attach-on-demand: the parent grows the area past its first
//   segment; a child attaches by handle, reads objects in later segments
//   (mapping them on first use), frees some, allocates more (growing the
//   area further); the parent sees the child's objects, and so does a
//   second child after the first has gone;
// * freed segments are noticed: a segment another process freed, whose slot
//   was then reused by a new segment, is not read through a stale mapping;
// * the size limit holds across processes, whoever sets it;
// * frees cross processes: a child frees the parent's small objects.
//
// Children end with _exit(); the parent calls dsm_cleanup_orphans() after
// reaping them, for the registry a child that created segments leaves.
#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

/// An object the test tracks: where, how big, and the seed of its pattern.
struct Obj {
  dsa_pointer dp;
  std::size_t size;
  unsigned seed;
};

/// Sends a vector of objects through a pipe (count, then each).
bool SendObjects(Pipe& pipe, const std::vector<Obj>& objs) {
  if (!pipe.Send(objs.size())) return false;
  for (const Obj& o : objs)
    if (!pipe.Send(o)) return false;
  return true;
}
bool ReceiveObjects(Pipe& pipe, std::vector<Obj>* objs) {
  std::size_t n = 0;
  if (!pipe.Receive(&n)) return false;
  objs->resize(n);
  for (Obj& o : *objs)
    if (!pipe.Receive(&o)) return false;
  return true;
}

using DsaCrossProcessTest = DsaAreaTest;

// The parent grows the area to at least four segments (large and small
// objects); a child attaches by handle, verifies every object (mapping the
// later segments on first use), frees every other one, and allocates new
// objects until the area has grown by several more segments, then reports
// them and detaches. The parent verifies the child's objects (mapping the
// new segments), and a second child, started after the first has gone
// (and after dsm_cleanup_orphans), verifies them too: segments a child grew
// belong to the area, not to the child. Then everything is freed and a trim
// gives the initial size back.
TEST_F(DsaCrossProcessTest, GrowthAndAttachOnDemand) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  area_ = dsa_create();
  const dsa_handle h = dsa_get_handle(area_);
  const std::size_t initial = dsa_get_total_size(area_);
  std::vector<Obj> parents;
  unsigned seed = 0;
  while (dsa_get_stats(area_).segments < 4) {
    const std::size_t size = seed % 3 == 0 ? 300 * kKiB + seed : 100 + (seed * 37) % 4000;
    const dsa_pointer dp = dsa_allocate(area_, size);
    FillPattern(dsa_get_address(area_, dp), size, seed);
    parents.push_back({dp, size, seed++});
  }
  const std::size_t parent_segments = dsa_get_stats(area_).segments;
  const std::size_t parent_total = dsa_get_total_size(area_);
  bool later_segment = false;
  for (const Obj& o : parents) later_segment |= SegmentOf(o.dp) != SegmentOf(parents.front().dp);
  ASSERT_TRUE(later_segment) << "some objects must lie in later segments";

  Pipe reply;
  const pid_t child = RunChild([&] {
    reply.CloseRead();
    dsa_area* a = dsa_attach(h);
    CHILD_REQUIRE(dsa_get_total_size(a) == parent_total);
    for (const Obj& o : parents) CHILD_REQUIRE(HasPattern(dsa_get_address(a, o.dp), o.size, o.seed));
    for (std::size_t i = 0; i < parents.size(); i += 2) dsa_free(a, parents[i].dp);
    std::vector<Obj> mine;
    unsigned s = 100000;
    while (dsa_get_stats(a).segments < parent_segments + 3) {
      const std::size_t size = s % 2 == 0 ? 500 * kKiB + s : 8 + (s * 53) % 8000;
      const dsa_pointer dp = dsa_allocate(a, size);
      FillPattern(dsa_get_address(a, dp), size, s);
      mine.push_back({dp, size, s++});
    }
    for (const Obj& o : mine) CHILD_REQUIRE(HasPattern(dsa_get_address(a, o.dp), o.size, o.seed));
    std::string why;
    CHILD_REQUIRE(dsa_testing::Check(a, &why));
    dsa_detach(a);
    CHILD_REQUIRE(SendObjects(reply, mine));
    return 0;
  });
  reply.CloseWrite();
  std::vector<Obj> childs;
  EXPECT_TRUE(ReceiveObjects(reply, &childs));
  ExpectChildSucceeded(child);
  dsm_cleanup_orphans();
  ASSERT_FALSE(childs.empty());
  EXPECT_GT(dsa_get_total_size(area_), parent_total) << "the child grew the area";
  for (const Obj& o : childs)
    ASSERT_TRUE(HasPattern(dsa_get_address(area_, o.dp), o.size, o.seed)) << "child's object " << o.seed;
  for (std::size_t i = 1; i < parents.size(); i += 2)
    ASSERT_TRUE(HasPattern(dsa_get_address(area_, parents[i].dp), parents[i].size, parents[i].seed));
  EXPECT_AREA_CONSISTENT(area_);

  // A second child, after the first is gone: the segments the first one
  // created are still there for it.
  const pid_t second = RunChild([&] {
    dsa_area* a = dsa_attach(h);
    for (const Obj& o : childs) CHILD_REQUIRE(HasPattern(dsa_get_address(a, o.dp), o.size, o.seed));
    for (const Obj& o : childs) dsa_free(a, o.dp);
    dsa_detach(a);
    return 0;
  });
  ExpectChildSucceeded(second);
  dsm_cleanup_orphans();
  for (std::size_t i = 1; i < parents.size(); i += 2) dsa_free(area_, parents[i].dp);
  EXPECT_AREA_CONSISTENT(area_);
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial);
  dsa_detach(area_);
  area_ = nullptr;
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// A freed segment is noticed by a process that had it mapped. A child makes
// the area grow with a 3 MiB object (a new segment) and fills it with
// pattern A; the parent maps it and reads A. The child frees it (the
// segment has no page in use: destroyed) and allocates another object of
// the same size (a new segment, in the freed slot when the area reuses
// slots), filled with pattern B. The parent's dsa_get_address of the new
// object must show B — a stale mapping of the old segment would still show
// A. Then a second round with a different size.
TEST_F(DsaCrossProcessTest, FreedSegmentIsNoticedByAnotherProcess) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  area_ = dsa_create();
  const dsa_handle h = dsa_get_handle(area_);
  const std::size_t initial = dsa_get_total_size(area_);
  const std::size_t sizes[] = {3 * kMiB, 3 * kMiB, 5 * kMiB + 4096};  // A, B (same size), C (another)

  Pipe to_parent;  // child -> parent: the current object
  Pipe to_child;   // parent -> child: read it, go on
  const pid_t child = RunChild([&] {
    to_parent.CloseRead();
    to_child.CloseWrite();
    dsa_area* a = dsa_attach(h);
    dsa_pointer prev = InvalidDsaPointer;
    for (unsigned round = 0; round < 3; ++round) {
      if (DsaPointerIsValid(prev)) {
        dsa_free(a, prev);
        dsa_trim(a);  // an emptied segment goes now, if not at the free already
      }
      const dsa_pointer dp = dsa_allocate(a, sizes[round]);
      FillPattern(dsa_get_address(a, dp), sizes[round], 50 + round);
      CHILD_REQUIRE(to_parent.Send(dp));
      char c;
      CHILD_REQUIRE(to_child.Receive(&c));
      prev = dp;
    }
    dsa_free(a, prev);
    dsa_detach(a);
    return 0;
  });
  to_parent.CloseWrite();
  to_child.CloseRead();

  std::vector<dsa_pointer> seen;
  for (unsigned round = 0; round < 3; ++round) {
    dsa_pointer dp = InvalidDsaPointer;
    ASSERT_TRUE(to_parent.Receive(&dp)) << "round " << round;
    seen.push_back(dp);
    ASSERT_NE(SegmentOf(dp), 0u) << "the object must lie in a segment of its own";
    void* p = dsa_get_address(area_, dp);
    EXPECT_TRUE(HasPattern(p, sizes[round], 50 + round))
        << "round " << round << ": the parent reads stale contents (segment slot " << SegmentOf(dp)
        << " was freed and reused; the old mapping was not dropped)";
    ASSERT_TRUE(to_child.Send('c'));
  }
  ExpectChildSucceeded(child);
  dsm_cleanup_orphans();
  EXPECT_EQ(SegmentOf(seen[1]), SegmentOf(seen[0]))
      << "the freed slot was not reused (the area takes the lowest free slot): the case above was not exercised";
  EXPECT_AREA_CONSISTENT(area_);
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial);
  EXPECT_EQ(dsa_get_stats(area_).segments, 1u);
  dsa_detach(area_);
  area_ = nullptr;
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// The same from the parent's side with an allocation instead of a read:
// after the child freed the segment the parent had mapped, the parent's own
// next allocation that needs a new segment works (it does not write into
// the stale mapping), and the child reads what the parent wrote there.
TEST_F(DsaCrossProcessTest, ParentAllocatesAfterTheChildFreedItsSegment) {
  area_ = dsa_create();
  const dsa_handle h = dsa_get_handle(area_);
  Pipe to_parent, to_child;
  const pid_t child = RunChild([&] {
    to_parent.CloseRead();
    to_child.CloseWrite();
    dsa_area* a = dsa_attach(h);
    const dsa_pointer dp = dsa_allocate(a, 4 * kMiB);
    FillPattern(dsa_get_address(a, dp), 4 * kMiB, 60);
    CHILD_REQUIRE(to_parent.Send(dp));
    char c;
    CHILD_REQUIRE(to_child.Receive(&c));  // the parent mapped it
    dsa_free(a, dp);
    dsa_trim(a);
    CHILD_REQUIRE(to_parent.Send(dp));
    dsa_pointer theirs = InvalidDsaPointer;
    CHILD_REQUIRE(to_child.Receive(&theirs));  // the parent's new object
    CHILD_REQUIRE(HasPattern(dsa_get_address(a, theirs), 4 * kMiB, 61));
    dsa_free(a, theirs);
    dsa_detach(a);
    return 0;
  });
  to_parent.CloseWrite();
  to_child.CloseRead();
  dsa_pointer dp = InvalidDsaPointer;
  ASSERT_TRUE(to_parent.Receive(&dp));
  EXPECT_TRUE(HasPattern(dsa_get_address(area_, dp), 4 * kMiB, 60));
  ASSERT_TRUE(to_child.Send('m'));
  ASSERT_TRUE(to_parent.Receive(&dp));  // freed now
  const dsa_pointer mine = dsa_allocate(area_, 4 * kMiB);
  FillPattern(dsa_get_address(area_, mine), 4 * kMiB, 61);
  ASSERT_TRUE(to_child.Send(mine));
  ExpectChildSucceeded(child);
  dsm_cleanup_orphans();
  EXPECT_AREA_CONSISTENT(area_);
}

// The size limit is the area's, not the attachment's: set by the parent, a
// child sees it and cannot grow past it ("out of memory", or
// InvalidDsaPointer with NO_OOM); raised by the child, the parent grows.
TEST_F(DsaCrossProcessTest, SizeLimitAcrossProcesses) {
  area_ = dsa_create();
  const dsa_handle h = dsa_get_handle(area_);
  const std::size_t initial = dsa_get_total_size(area_);
  dsa_set_size_limit(area_, initial + 2 * kMiB);
  const pid_t child = RunChild([&] {
    dsa_area* a = dsa_attach(h);
    CHILD_REQUIRE(dsa_get_stats(a).size_limit == initial + 2 * kMiB);
    auto err = CatchError([&] { dsa_allocate(a, 4 * kMiB); });
    CHILD_REQUIRE(err.has_value());
    CHILD_REQUIRE(Contains(err->message(), "out of memory"));
    CHILD_REQUIRE(dsa_allocate_extended(a, 4 * kMiB, DSA_ALLOC_NO_OOM) == InvalidDsaPointer);
    CHILD_REQUIRE(dsa_get_total_size(a) == initial);
    // Within the limit: fine.
    const dsa_pointer dp = dsa_allocate(a, kMiB);
    CHILD_REQUIRE(dsa_get_total_size(a) <= initial + 2 * kMiB);
    dsa_free(a, dp);
    dsa_set_size_limit(a, initial + 64 * kMiB);
    dsa_detach(a);
    return 0;
  });
  ExpectChildSucceeded(child);
  dsm_cleanup_orphans();
  EXPECT_EQ(dsa_get_stats(area_).size_limit, initial + 64 * kMiB) << "the child's limit is the area's";
  const dsa_pointer dp = dsa_allocate(area_, 16 * kMiB);
  EXPECT_LE(dsa_get_total_size(area_), initial + 64 * kMiB);
  dsa_free(area_, dp);
  dsa_set_size_limit(area_, initial);
  const pid_t second = RunChild([&] {
    dsa_area* a = dsa_attach(h);
    dsa_trim(a);
    CHILD_REQUIRE(dsa_allocate_extended(a, 2 * kMiB, DSA_ALLOC_NO_OOM) == InvalidDsaPointer);
    dsa_detach(a);
    return 0;
  });
  ExpectChildSucceeded(second);
  dsm_cleanup_orphans();
  EXPECT_AREA_CONSISTENT(area_);
}

// A child frees small objects the parent allocated (they go to the child's
// cache, which its detach gives back); the parent's trim then finds
// everything empty and returns to the initial size.
TEST_F(DsaCrossProcessTest, ChildFreesTheParentsObjects) {
  area_ = dsa_create();
  const dsa_handle h = dsa_get_handle(area_);
  const std::size_t initial = dsa_get_total_size(area_);
  std::vector<Obj> objs;
  for (unsigned i = 0; i < 20000; ++i) {
    const std::size_t size = 16 + (i * 29) % 1000;
    const dsa_pointer dp = dsa_allocate(area_, size);
    FillPattern(dsa_get_address(area_, dp), size, i);
    objs.push_back({dp, size, i});
  }
  EXPECT_GT(dsa_get_total_size(area_), initial);
  const pid_t child = RunChild([&] {
    dsa_area* a = dsa_attach(h);
    for (const Obj& o : objs) {
      CHILD_REQUIRE(HasPattern(dsa_get_address(a, o.dp), o.size, o.seed));
      dsa_free(a, o.dp);
    }
    dsa_detach(a);  // gives the child's cache back
    return 0;
  });
  ExpectChildSucceeded(child);
  dsm_cleanup_orphans();
  EXPECT_AREA_CONSISTENT(area_);
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial);
  for (const DsaSizeClassStats& c : dsa_get_stats(area_).classes)
    EXPECT_EQ(c.allocated, 0u) << "class of " << c.object_size << " bytes";
}

// A forked child that uses the parent's dsa_area instead of attaching gets
// an ERROR (the attachment, its cache and its mappings are the parent's),
// and the parent's area is not disturbed: its objects keep their contents
// and its cache still works.
TEST_F(DsaCrossProcessTest, InheritedAttachmentIsAnErrorInTheChild) {
  area_ = dsa_create();
  std::vector<dsa_pointer> dps;
  for (unsigned i = 0; i < 50; ++i) {
    dps.push_back(dsa_allocate(area_, 64));
    FillPattern(dsa_get_address(area_, dps.back()), 64, i);
  }
  dsa_free(area_, dps.back());  // something in the parent's cache
  dps.pop_back();
  dsa_area* inherited = area_;
  const pid_t child = RunChild([&] {
    CHILD_REQUIRE(CatchError([&] { dsa_allocate(inherited, 64); }).has_value());
    CHILD_REQUIRE(CatchError([&] { dsa_free(inherited, dps.front()); }).has_value());
    return 0;
  });
  ExpectChildSucceeded(child);
  for (unsigned i = 0; i < dps.size(); ++i) EXPECT_TRUE(HasPattern(dsa_get_address(area_, dps[i]), 64, i));
  const dsa_pointer again = dsa_allocate(area_, 64);
  for (dsa_pointer dp : dps) EXPECT_NE(dp, again);
  dps.push_back(again);
  for (dsa_pointer dp : dps) dsa_free(area_, dp);
  EXPECT_AREA_CONSISTENT(area_);
}

// A child that created the area: the parent attaches by handle while the
// child lives, reads and allocates; the area lives while the parent holds
// it, after the child's detach.
TEST_F(DsaCrossProcessTest, AreaCreatedByAChild) {
  InitializeDsm();
  Pipe handle_pipe, parent_done, child_done;
  const pid_t child = RunChild([&] {
    handle_pipe.CloseRead();
    parent_done.CloseWrite();
    child_done.CloseRead();
    dsa_area* a = dsa_create();
    const dsa_pointer dp = dsa_allocate(a, 2 * kMiB);
    FillPattern(dsa_get_address(a, dp), 2 * kMiB, 70);
    CHILD_REQUIRE(handle_pipe.Send(dsa_get_handle(a)));
    CHILD_REQUIRE(handle_pipe.Send(dp));
    dsa_pointer theirs = InvalidDsaPointer;
    CHILD_REQUIRE(parent_done.Receive(&theirs));
    CHILD_REQUIRE(HasPattern(dsa_get_address(a, theirs), 1000, 71));
    dsa_free(a, theirs);
    dsa_detach(a);
    CHILD_REQUIRE(child_done.Send('d'));
    char c;
    CHILD_REQUIRE(parent_done.Receive(&c));  // stay alive until the parent is done
    return 0;
  });
  handle_pipe.CloseWrite();
  parent_done.CloseRead();
  child_done.CloseWrite();
  dsa_handle h = DSA_HANDLE_INVALID;
  dsa_pointer dp = InvalidDsaPointer;
  ASSERT_TRUE(handle_pipe.Receive(&h) && handle_pipe.Receive(&dp));
  area_ = dsa_attach(h);
  EXPECT_TRUE(HasPattern(dsa_get_address(area_, dp), 2 * kMiB, 70));
  const dsa_pointer mine = dsa_allocate(area_, 1000);
  FillPattern(dsa_get_address(area_, mine), 1000, 71);
  ASSERT_TRUE(parent_done.Send(mine));
  char c = 0;
  EXPECT_TRUE(child_done.Receive(&c));
  EXPECT_TRUE(HasPattern(dsa_get_address(area_, dp), 2 * kMiB, 70)) << "the parent still holds the area";
  dsa_free(area_, dp);
  EXPECT_AREA_CONSISTENT(area_);
  dsa_detach(area_);
  area_ = nullptr;
  EXPECT_TRUE(SegmentNamesOf(child).empty()) << "the last detach destroyed the child's area: " << Join(SegmentNamesOf(child));
  ASSERT_TRUE(parent_done.Send('x'));
  ExpectChildSucceeded(child);
  dsm_cleanup_orphans();
}

}  // namespace
}  // namespace grove::test
