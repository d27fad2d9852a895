// Areas created in place: the control data and first segment live in memory
// the caller provides (private memory here, or a DSM segment set up by the
// caller), later segments are DSM segments the area creates.
// * Without a dsm_segment, each dsa_create_in_place / dsa_attach_in_place
//   holds a reference that only dsa_release_in_place drops; the last one
//   destroys the segments the area grew. dsa_detach alone does not.
// * With a dsm_segment, detaching that segment drops the reference.
// * dsa_minimum_size() is exactly the smallest place accepted.
// * An in-place area has no handle: dsa_get_handle is an ERROR.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

/// Private, page-aligned memory for an area's place.
struct Place {
  explicit Place(std::size_t n) : size(n), p(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096)) {}
  ~Place() { std::free(p); }
  std::size_t size;
  void* p;
};

using DsaInPlaceTest = DsmTest;

// A place of exactly dsa_minimum_size() bytes is accepted and the area
// allocates (growing into DSM segments as needed); one byte less is an
// ERROR, and nothing is created.
TEST_F(DsaInPlaceTest, MinimumSizeIsExact) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t min = dsa_minimum_size();
  ASSERT_GT(min, 0u);
  {
    Place place(min);
    dsa_area* area = dsa_create_in_place(place.p, min, 0, nullptr);
    std::vector<dsa_pointer> dps;
    for (unsigned i = 0; i < 20; ++i) {
      dps.push_back(dsa_allocate(area, 100 * (i + 1)));
      FillPattern(dsa_get_address(area, dps.back()), 100 * (i + 1), i);
    }
    for (unsigned i = 0; i < 20; ++i) {
      EXPECT_TRUE(HasPattern(dsa_get_address(area, dps[i]), 100 * (i + 1), i)) << i;
      dsa_free(area, dps[i]);
    }
    EXPECT_AREA_CONSISTENT(area);
    dsa_detach(area);
    dsa_release_in_place(place.p);
  }
  EXPECT_EQ(SegmentNamesOf(self_), before);
  {
    Place place(min);
    auto err = CatchError([&] { dsa_create_in_place(place.p, min - 1, 0, nullptr); });
    EXPECT_TRUE(err.has_value()) << "a place one byte below dsa_minimum_size() must be an ERROR";
  }
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// A place that is not 8-byte aligned is refused (an ERROR, not a crash or
// misaligned shared structures), and nothing is created.
TEST_F(DsaInPlaceTest, MisalignedPlaceIsAnError) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t size = std::max<std::size_t>(64 * kKiB, dsa_minimum_size());
  Place place(size + 8);
  for (std::size_t shift : {1, 4}) {
    void* p = static_cast<char*>(place.p) + shift;
    EXPECT_TRUE(CatchError([&] { dsa_create_in_place(p, size, 0, nullptr); }).has_value()) << shift;
  }
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// An in-place area has no handle of its own.
TEST_F(DsaInPlaceTest, GetHandleIsAnError) {
  Place place(64 * kKiB > dsa_minimum_size() ? 64 * kKiB : dsa_minimum_size());
  dsa_area* area = dsa_create_in_place(place.p, place.size, 0, nullptr);
  EXPECT_TRUE(CatchError([&] { dsa_get_handle(area); }).has_value());
  const dsa_pointer dp = dsa_allocate(area, 8);  // still usable
  dsa_free(area, dp);
  dsa_detach(area);
  dsa_release_in_place(place.p);
}

// Without a segment: references are counted by create/attach_in_place and
// dropped by dsa_release_in_place only. With every attachment detached but
// a reference left, the segments the area grew (and their contents) stay;
// the last release destroys them.
TEST_F(DsaInPlaceTest, ReleaseInPlaceCountsReferences) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t size = std::max<std::size_t>(256 * kKiB, dsa_minimum_size());
  Place place(size);
  dsa_area* a = dsa_create_in_place(place.p, size, 5, nullptr);  // reference 1
  EXPECT_EQ(dsa_get_stats(a).tranche_id, 5);
  const dsa_pointer small = dsa_allocate(a, 200);
  const dsa_pointer big = dsa_allocate(a, 2 * kMiB);  // does not fit the place: a DSM segment
  FillPattern(dsa_get_address(a, small), 200, 1);
  FillPattern(dsa_get_address(a, big), 2 * kMiB, 2);
  const std::vector<std::string> grown = NewNames(before, SegmentNamesOf(self_));
  EXPECT_GE(grown.size(), 1u) << "a 2 MiB object in a 256 KiB place must grow the area";

  dsa_area* b = dsa_attach_in_place(place.p, nullptr);  // reference 2
  EXPECT_TRUE(HasPattern(dsa_get_address(b, small), 200, 1));
  EXPECT_TRUE(HasPattern(dsa_get_address(b, big), 2 * kMiB, 2));
  dsa_detach(a);
  dsa_detach(b);
  for (const std::string& n : grown) EXPECT_TRUE(ShmNameExists(n)) << n << ": references remain";

  dsa_release_in_place(place.p);  // reference 1 left
  for (const std::string& n : grown) EXPECT_TRUE(ShmNameExists(n)) << n << ": one reference remains";
  dsa_area* c = dsa_attach_in_place(place.p, nullptr);  // reference 2
  EXPECT_TRUE(HasPattern(dsa_get_address(c, small), 200, 1)) << "contents survive with nothing attached";
  EXPECT_TRUE(HasPattern(dsa_get_address(c, big), 2 * kMiB, 2));
  dsa_free(c, small);
  EXPECT_AREA_CONSISTENT(c);
  dsa_detach(c);
  dsa_release_in_place(place.p);  // reference 1
  dsa_release_in_place(place.p);  // none: destroyed, the big object's segment with it
  EXPECT_EQ(SegmentNamesOf(self_), before) << "the last release destroys the segments the area grew";
}

// With a segment: the area lives in a DSM segment set up by the caller; a
// forked child attaches that segment and the area in it, reads the parent's
// objects (one of them in a segment the area grew), allocates one of its
// own, and detaches both; the parent reads the child's object. Detaching the
// parent's segment releases the area: every segment it grew goes.
TEST_F(DsaInPlaceTest, InPlaceInADsmSegmentSharedWithAChild) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t size = std::max<std::size_t>(512 * kKiB, dsa_minimum_size());
  dsm_segment* seg = Create(size);
  const dsm_handle sh = dsm_segment_handle(seg);
  dsa_area* area = dsa_create_in_place(dsm_segment_address(seg), size, 0, seg);
  EXPECT_TRUE(CatchError([&] { dsa_get_handle(area); }).has_value());
  const dsa_pointer small = dsa_allocate(area, 1000);
  const dsa_pointer big = dsa_allocate(area, 3 * kMiB);
  FillPattern(dsa_get_address(area, small), 1000, 3);
  FillPattern(dsa_get_address(area, big), 3 * kMiB, 4);

  Pipe reply;  // child -> parent: its object
  const pid_t child = RunChild([&] {
    reply.CloseRead();
    dsm_segment* s = dsm_attach(sh);
    dsa_area* a = dsa_attach_in_place(dsm_segment_address(s), s);
    CHILD_REQUIRE(HasPattern(dsa_get_address(a, small), 1000, 3));
    CHILD_REQUIRE(HasPattern(dsa_get_address(a, big), 3 * kMiB, 4));
    const dsa_pointer mine = dsa_allocate(a, 7000);
    FillPattern(dsa_get_address(a, mine), 7000, 5);
    std::string why;
    CHILD_REQUIRE(dsa_testing::Check(a, &why));
    dsa_detach(a);
    dsm_detach(s);  // drops the child's reference to the area
    CHILD_REQUIRE(reply.Send(mine));
    return 0;
  });
  reply.CloseWrite();
  dsa_pointer theirs = InvalidDsaPointer;
  EXPECT_TRUE(reply.Receive(&theirs));
  ExpectChildSucceeded(child);
  ASSERT_TRUE(DsaPointerIsValid(theirs));
  EXPECT_TRUE(HasPattern(dsa_get_address(area, theirs), 7000, 5));
  EXPECT_TRUE(HasPattern(dsa_get_address(area, big), 3 * kMiB, 4)) << "the child's detach must not destroy the area";
  dsa_free(area, theirs);
  dsa_free(area, small);
  EXPECT_AREA_CONSISTENT(area);
  dsa_detach(area);
  EXPECT_GE(NewNames(before, SegmentNamesOf(self_)).size(), 2u) << "the segment holds the area: still alive";
  dsm_detach(seg);
  EXPECT_EQ(SegmentNamesOf(self_), before) << "detaching the segment releases the area and what it grew";
  dsm_cleanup_orphans();  // the _exit()ed child's registry, if it made one
}

// The place may be reused after the last release: a new area created in the
// same memory starts empty and works.
TEST_F(DsaInPlaceTest, PlaceIsReusableAfterRelease) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t size = std::max<std::size_t>(128 * kKiB, dsa_minimum_size());
  Place place(size);
  for (unsigned round = 0; round < 3; ++round) {
    dsa_area* area = dsa_create_in_place(place.p, size, 0, nullptr);
    EXPECT_EQ(dsa_get_stats(area).large_objects, 0u) << "round " << round;
    const dsa_pointer dp = dsa_allocate(area, 1 * kMiB);
    FillPattern(dsa_get_address(area, dp), kMiB, round);
    EXPECT_TRUE(HasPattern(dsa_get_address(area, dp), kMiB, round));
    dsa_free(area, dp);
    EXPECT_AREA_CONSISTENT(area);
    dsa_detach(area);
    dsa_release_in_place(place.p);
    EXPECT_EQ(SegmentNamesOf(self_), before) << "round " << round;
  }
}

}  // namespace
}  // namespace grove::test
