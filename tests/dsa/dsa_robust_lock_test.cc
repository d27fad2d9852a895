// A process killed while holding one of the area's locks must not hang the
// others: a child attaches, takes the area lock or a size class's lock
// (dsa_testing::LockArea / LockSizeClass), tells the parent through a pipe,
// and waits; the parent kills it with SIGKILL. The parent's next operation
// that needs that lock is an ERROR saying the area may be inconsistent —
// every time, not only the first — while operations that do not need it go
// on. Leaving a broken area (dsa_detach, dsa_release_in_place) still works.
//
// A killed child never drops its reference to the area (nor to the DSM
// segments it had attached), so an area it was attached to outlives the
// parent's detach; its segments are recorded in the parent's registry and
// go at the parent's exit. The cases that attach by handle remove those
// names themselves once they have checked everything else; the in-place
// cases use anonymous shared memory and leave nothing to remove.
#include <signal.h>
#include <sys/mman.h>

#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

enum class Lock { kArea, kSizeClass };

class DsaRobustLockTest : public DsmTest {
 protected:
  /// Forks a child that attaches (by handle, or in place at `place`), takes
  /// the lock, reports, and waits to be killed; kills it once it reports.
  /// Returns false if the child did not get that far.
  bool KillChildHoldingLock(Lock lock, std::size_t class_size, dsa_handle h, void* place) {
    Pipe ready;  // child -> parent: the lock is held
    Pipe never;  // parent -> child: nothing is ever sent; EOF only if the parent dies
    const pid_t child = RunChild([&] {
      ready.CloseRead();
      never.CloseWrite();
      dsa_area* a = place != nullptr ? dsa_attach_in_place(place, nullptr) : dsa_attach(h);
      if (lock == Lock::kArea)
        dsa_testing::LockArea(a);
      else
        dsa_testing::LockSizeClass(a, class_size);
      CHILD_REQUIRE(ready.Send('L'));
      char c;
      never.Receive(&c);
      return 2;  // not reached: killed while waiting
    });
    ready.CloseWrite();
    never.CloseRead();
    char c = 0;
    const bool locked = ready.Receive(&c);
    EXPECT_TRUE(locked) << "the child did not report holding the lock";
    kill(child, SIGKILL);
    const int status = Reap(child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << DescribeStatus(status);
    return locked;
  }

  /// Removes the names an area a killed child was attached to leaves after
  /// the parent's detach (see the file comment).
  void RemoveSegmentsKeptByTheKilledChild(const std::vector<std::string>& before) {
    UnlinkAll(NewNames(before, SegmentNamesOf(self_)));
  }
};

void ExpectInconsistent(const std::optional<Error>& err, const char* what) {
  ASSERT_TRUE(err.has_value()) << what << ": expected an ERROR (the lock's holder died)";
  EXPECT_TRUE(Contains(err->message(), "may be inconsistent")) << what << ": " << err->Format();
}

// The area lock: a large allocation (whole pages: the area lock) is an
// ERROR, twice; so is a growth (a new segment), with NO_OOM too (a broken
// area is not out of memory). dsa_detach works.
TEST_F(DsaRobustLockTest, AreaLockHolderKilled) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* area = dsa_create();
  const dsa_pointer kept = dsa_allocate(area, 100);
  FillPattern(dsa_get_address(area, kept), 100, 1);
  ASSERT_TRUE(KillChildHoldingLock(Lock::kArea, 0, dsa_get_handle(area), nullptr));

  ExpectInconsistent(CatchError([&] { dsa_allocate(area, 64 * kKiB); }), "a large allocation");
  ExpectInconsistent(CatchError([&] { dsa_allocate(area, 64 * kKiB); }), "a second large allocation");
  ExpectInconsistent(CatchError([&] { dsa_allocate_extended(area, 4 * kMiB, DSA_ALLOC_NO_OOM); }),
                     "a growth with NO_OOM (inconsistency is not out of memory)");
  EXPECT_TRUE(HasPattern(dsa_get_address(area, kept), 100, 1)) << "reading needs no lock";

  EXPECT_FALSE(CatchError([&] { dsa_detach(area); }).has_value()) << "leaving a broken area must work";
  RemoveSegmentsKeptByTheKilledChild(before);
}

// A size class's lock: the first allocation of that class in a fresh
// attachment (an empty cache must be refilled under the class's lock) is
// an ERROR, twice; other classes and large objects go on; dsa_detach works.
TEST_F(DsaRobustLockTest, SizeClassLockHolderKilled) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* area = dsa_create();
  const std::size_t victim = 200;
  const std::size_t other = 24;
  ASSERT_NE(dsa_testing::SizeClassOf(victim), dsa_testing::SizeClassOf(other));
  ASSERT_TRUE(KillChildHoldingLock(Lock::kSizeClass, victim, dsa_get_handle(area), nullptr));

  ExpectInconsistent(CatchError([&] { dsa_allocate(area, victim); }), "an allocation in the class");
  ExpectInconsistent(CatchError([&] { dsa_allocate(area, victim); }), "a second allocation in the class");
  ExpectInconsistent(CatchError([&] { dsa_allocate_extended(area, victim, DSA_ALLOC_NO_OOM); }),
                     "an allocation in the class with NO_OOM");
  dsa_pointer a = InvalidDsaPointer, b = InvalidDsaPointer;
  EXPECT_FALSE(CatchError([&] { a = dsa_allocate(area, other); }).has_value()) << "another class is not affected";
  EXPECT_FALSE(CatchError([&] { b = dsa_allocate(area, 100 * kKiB); }).has_value()) << "large objects are not affected";
  if (DsaPointerIsValid(a)) dsa_free(area, a);
  if (DsaPointerIsValid(b)) dsa_free(area, b);

  EXPECT_FALSE(CatchError([&] { dsa_detach(area); }).has_value()) << "leaving a broken area must work";
  RemoveSegmentsKeptByTheKilledChild(before);
}

// A size class's lock, with objects of that class already allocated: freeing
// one (its span is that class's) reports the inconsistency once the
// attachment must take the lock — at the latest when its cache is drained by
// dsa_trim.
TEST_F(DsaRobustLockTest, SizeClassLockHolderKilledWithObjectsLive) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* area = dsa_create();
  const std::size_t victim = 1000;
  std::vector<dsa_pointer> dps;
  for (int i = 0; i < 500; ++i) dps.push_back(dsa_allocate(area, victim));
  dsa_trim(area);  // this attachment's cache empty: every later operation of the class takes the lock
  ASSERT_TRUE(KillChildHoldingLock(Lock::kSizeClass, victim, dsa_get_handle(area), nullptr));

  std::optional<Error> err;
  for (std::size_t i = 0; i < dps.size() && !err; ++i) err = CatchError([&] { dsa_free(area, dps[i]); });
  if (!err) err = CatchError([&] { dsa_trim(area); });
  ExpectInconsistent(err, "freeing objects of the class, then draining the cache");

  EXPECT_FALSE(CatchError([&] { dsa_detach(area); }).has_value()) << "leaving a broken area must work";
  RemoveSegmentsKeptByTheKilledChild(before);
}

// In place, in anonymous shared memory inherited by the child: the same
// for the area lock; then dsa_detach and dsa_release_in_place work.
TEST_F(DsaRobustLockTest, InPlaceAreaLockHolderKilled) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t size = std::max<std::size_t>(512 * kKiB, dsa_minimum_size());
  void* place = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(place, MAP_FAILED);
  dsa_area* area = dsa_create_in_place(place, size, 0, nullptr);
  ASSERT_TRUE(KillChildHoldingLock(Lock::kArea, 0, DSA_HANDLE_INVALID, place));
  ExpectInconsistent(CatchError([&] { dsa_allocate(area, 40 * kKiB); }), "a large allocation");
  ExpectInconsistent(CatchError([&] { dsa_allocate(area, 40 * kKiB); }), "a second large allocation");
  EXPECT_FALSE(CatchError([&] { dsa_detach(area); }).has_value());
  EXPECT_FALSE(CatchError([&] { dsa_release_in_place(place); }).has_value());
  munmap(place, size);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// In place in a DSM segment given at creation: the area's reference is
// dropped by a detach callback of that segment. With the area lock's holder
// dead, detaching the segment must still work (a detach callback must not
// throw): afterwards this process has the segment no more.
TEST_F(DsaRobustLockTest, InPlaceInADsmSegmentAreaLockHolderKilled) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t size = std::max<std::size_t>(512 * kKiB, dsa_minimum_size());
  dsm_segment* seg = Create(size);
  const dsm_handle sh = dsm_segment_handle(seg);
  dsa_area* area = dsa_create_in_place(dsm_segment_address(seg), size, 0, seg);
  Pipe ready, never;
  const pid_t child = RunChild([&] {
    ready.CloseRead();
    never.CloseWrite();
    dsm_segment* s = dsm_attach(sh);
    dsa_area* a = dsa_attach_in_place(dsm_segment_address(s), s);
    dsa_testing::LockArea(a);
    CHILD_REQUIRE(ready.Send('L'));
    char c;
    never.Receive(&c);
    return 2;
  });
  ready.CloseWrite();
  never.CloseRead();
  char c = 0;
  ASSERT_TRUE(ready.Receive(&c));
  kill(child, SIGKILL);
  Reap(child);
  ExpectInconsistent(CatchError([&] { dsa_allocate(area, 40 * kKiB); }), "a large allocation");
  EXPECT_FALSE(CatchError([&] { dsa_detach(area); }).has_value());
  auto err = CatchError([&] { dsm_detach(seg); });
  EXPECT_FALSE(err.has_value()) << "detaching the segment that holds a broken area must work: " << err->Format();
  EXPECT_EQ(dsm_find_mapping(sh), nullptr) << "the segment must be detached";
  if (dsm_segment* still = dsm_find_mapping(sh)) {  // leave nothing attached for the next cases
    CatchError([&] { dsm_detach(still); });
  }
  RemoveSegmentsKeptByTheKilledChild(before);  // the killed child's DSM reference keeps the segment
}

// In place, a size class's lock.
TEST_F(DsaRobustLockTest, InPlaceSizeClassLockHolderKilled) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t size = std::max<std::size_t>(512 * kKiB, dsa_minimum_size());
  void* place = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(place, MAP_FAILED);
  dsa_area* area = dsa_create_in_place(place, size, 0, nullptr);
  ASSERT_TRUE(KillChildHoldingLock(Lock::kSizeClass, 64, DSA_HANDLE_INVALID, place));
  ExpectInconsistent(CatchError([&] { dsa_allocate(area, 64); }), "an allocation in the class");
  ExpectInconsistent(CatchError([&] { dsa_allocate0(area, 60); }), "another allocation in the class");
  dsa_pointer dp = InvalidDsaPointer;
  EXPECT_FALSE(CatchError([&] { dp = dsa_allocate(area, 3000); }).has_value()) << "another class is not affected";
  if (DsaPointerIsValid(dp)) dsa_free(area, dp);
  EXPECT_FALSE(CatchError([&] { dsa_detach(area); }).has_value());
  EXPECT_FALSE(CatchError([&] { dsa_release_in_place(place); }).has_value());
  munmap(place, size);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// A child killed while attached but holding no lock breaks nothing: the
// parent allocates, frees, grows and trims as before (the objects the dead
// child held are lost to the area, nothing else).
TEST_F(DsaRobustLockTest, ChildKilledHoldingNoLock) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* area = dsa_create();
  const dsa_handle h = dsa_get_handle(area);
  Pipe ready, never;
  const pid_t child = RunChild([&] {
    ready.CloseRead();
    never.CloseWrite();
    dsa_area* a = dsa_attach(h);
    for (int i = 0; i < 100; ++i) dsa_allocate(a, 16 + i * 10);
    CHILD_REQUIRE(ready.Send('r'));
    char c;
    never.Receive(&c);
    return 2;
  });
  ready.CloseWrite();
  never.CloseRead();
  char c = 0;
  ASSERT_TRUE(ready.Receive(&c));
  kill(child, SIGKILL);
  Reap(child);
  std::vector<dsa_pointer> dps;
  for (int i = 0; i < 100; ++i) {
    dps.push_back(dsa_allocate(area, 16 + i * 10));
    FillPattern(dsa_get_address(area, dps.back()), 16 + i * 10, i);
  }
  const dsa_pointer big = dsa_allocate(area, 3 * kMiB);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(HasPattern(dsa_get_address(area, dps[i]), 16 + i * 10, i));
  for (dsa_pointer dp : dps) dsa_free(area, dp);
  dsa_free(area, big);
  std::string why;
  EXPECT_TRUE(dsa_testing::Check(area, &why)) << why;
  dsa_trim(area);
  dsa_detach(area);
  RemoveSegmentsKeptByTheKilledChild(before);
}

}  // namespace
}  // namespace grove::test
