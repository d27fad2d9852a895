// How far an area grows: dsa_set_size_limit caps the bytes of all segments
// (growth beyond it is an ERROR "out of memory", or InvalidDsaPointer with
// DSA_ALLOC_NO_OOM); so do a full /dev/shm and the table of
// DSA_MAX_SEGMENTS segments; dsa_get_total_size follows growth and trims;
// dsa_trim brings an emptied area back to its initial size.
#include <sys/statvfs.h>

#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

class DsaLimitTest : public DsaAreaTest {
 protected:
  void FreeAll() {
    for (dsa_pointer dp : dps_) dsa_free(area_, dp);
    dps_.clear();
  }
  std::vector<dsa_pointer> dps_;
};

void ExpectOutOfMemory(const std::optional<Error>& err) {
  ASSERT_TRUE(err.has_value()) << "expected an ERROR \"out of memory\"";
  EXPECT_TRUE(Contains(err->message(), "out of memory")) << err->Format();
  EXPECT_EQ(err->sqlstate(), ERRCODE_OUT_OF_MEMORY) << err->sqlstate().c_str();
}

// The default limit does not get in the way; statistics report the limit
// set; the total is the initial segment's size.
TEST_F(DsaLimitTest, LimitIsReported) {
  CreateArea();
  EXPECT_EQ(initial_, DSA_DEFAULT_INIT_SEGMENT_SIZE);
  EXPECT_GE(dsa_get_stats(area_).size_limit, std::size_t{1} << 40) << "the default limit should be unlimited";
  dsa_set_size_limit(area_, 5 * kMiB);
  EXPECT_EQ(dsa_get_stats(area_).size_limit, 5 * kMiB);
  EXPECT_EQ(dsa_get_stats(area_).total_size, initial_);
}

// Limit = the initial size: the first segment fills up (large objects,
// then small ones), then every allocation that needs a new segment is
// "out of memory" — an ERROR, or InvalidDsaPointer with NO_OOM — and the
// area does not grow. Raising the limit lets it grow again, never past the
// new limit.
TEST_F(DsaLimitTest, GrowthStopsAtTheLimit) {
  CreateArea();
  dsa_set_size_limit(area_, initial_);
  // Large objects until the first segment has no room for one.
  for (int i = 0;; ++i) {
    ASSERT_LT(i, 1000);
    const dsa_pointer dp = dsa_allocate_extended(area_, 64 * kKiB, DSA_ALLOC_NO_OOM);
    if (!DsaPointerIsValid(dp)) break;
    FillPattern(dsa_get_address(area_, dp), 64 * kKiB, static_cast<unsigned>(i));
    dps_.push_back(dp);
  }
  EXPECT_GT(dps_.size(), 0u) << "the first segment must hold some 64 KiB objects";
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  ExpectOutOfMemory(CatchError([&] { dsa_allocate(area_, 64 * kKiB); }));
  ExpectOutOfMemory(CatchError([&] { dsa_allocate0(area_, 2 * kMiB); }));
  // Small objects: whatever room is left, then out of memory too.
  std::size_t small = 0;
  for (;; ++small) {
    ASSERT_LT(small, 200000u);
    const dsa_pointer dp = dsa_allocate_extended(area_, 200, DSA_ALLOC_NO_OOM);
    if (!DsaPointerIsValid(dp)) break;
    dps_.push_back(dp);
  }
  ExpectOutOfMemory(CatchError([&] { dsa_allocate(area_, 200); }));
  EXPECT_EQ(dsa_get_total_size(area_), initial_) << "the limit was the initial size: no growth";
  EXPECT_AREA_CONSISTENT(area_);

  // Raised: growth again, within the new limit.
  const std::size_t limit = initial_ + 6 * kMiB;
  dsa_set_size_limit(area_, limit);
  const dsa_pointer big = dsa_allocate(area_, 2 * kMiB);
  FillPattern(dsa_get_address(area_, big), 2 * kMiB, 99);
  dps_.push_back(big);
  EXPECT_GT(dsa_get_total_size(area_), initial_);
  for (int i = 0; i < 100; ++i) {
    const dsa_pointer dp = dsa_allocate_extended(area_, 300 * kKiB, DSA_ALLOC_NO_OOM);
    ASSERT_LE(dsa_get_total_size(area_), limit) << "the area grew past its limit";
    if (!DsaPointerIsValid(dp)) break;
    dps_.push_back(dp);
  }
  EXPECT_TRUE(HasPattern(dsa_get_address(area_, big), 2 * kMiB, 99));
  for (unsigned i = 0; i < 3; ++i) EXPECT_TRUE(HasPattern(dsa_get_address(area_, dps_[i]), 64 * kKiB, i));
  FreeAll();
  EXPECT_AREA_CONSISTENT(area_);
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
}

// A single request larger than the limit allows: out of memory, both ways,
// with nothing grown; below the limit the same size works.
TEST_F(DsaLimitTest, RequestLargerThanTheLimit) {
  CreateArea();
  dsa_set_size_limit(area_, 4 * kMiB);
  ExpectOutOfMemory(CatchError([&] { dsa_allocate(area_, 8 * kMiB); }));
  EXPECT_EQ(dsa_allocate_extended(area_, 8 * kMiB, DSA_ALLOC_NO_OOM), InvalidDsaPointer);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  dsa_set_size_limit(area_, 16 * kMiB);
  const dsa_pointer dp = dsa_allocate(area_, 8 * kMiB);
  FillPattern(dsa_get_address(area_, dp), 8 * kMiB, 1);
  EXPECT_TRUE(HasPattern(dsa_get_address(area_, dp), 8 * kMiB, 1));
  EXPECT_LE(dsa_get_total_size(area_), 16 * kMiB);
  dsa_free(area_, dp);
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
}

// Under a limit, a random mix with NO_OOM never takes the area past it;
// the first refusal leaves the area consistent and every object intact.
TEST_F(DsaLimitTest, TotalNeverExceedsTheLimit) {
  CreateArea();
  const std::size_t limit = 7 * kMiB;
  dsa_set_size_limit(area_, limit);
  unsigned refusals = 0;
  struct Obj {
    dsa_pointer dp;
    std::size_t size;
    unsigned seed;
  };
  std::vector<Obj> live;
  for (unsigned i = 0; i < 3000 && refusals < 50; ++i) {
    const std::size_t size = i % 5 == 0 ? 100 * kKiB + (i * 4099) % (400 * kKiB) : 16 + (i * 131) % 4000;
    const dsa_pointer dp = dsa_allocate_extended(area_, size, DSA_ALLOC_NO_OOM);
    ASSERT_LE(dsa_get_total_size(area_), limit) << "after allocation " << i;
    if (!DsaPointerIsValid(dp)) {
      ++refusals;
      continue;
    }
    FillPattern(dsa_get_address(area_, dp), size, i);
    live.push_back({dp, size, i});
  }
  EXPECT_GT(refusals, 0u) << "the mix was meant to reach the limit";
  EXPECT_AREA_CONSISTENT(area_);
  for (const Obj& o : live) {
    EXPECT_TRUE(HasPattern(dsa_get_address(area_, o.dp), o.size, o.seed)) << o.seed;
    dsa_free(area_, o.dp);
  }
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
}

// A /dev/shm too small for the segment a request needs: "out of memory"
// (not a SIGBUS, not the DSM layer's message alone), InvalidDsaPointer with
// NO_OOM; nothing is left of the failed segment. The request is twice
// /dev/shm's size: tmpfs refuses it at once without using memory.
TEST_F(DsaLimitTest, FullDevShmIsOutOfMemory) {
  struct statvfs vfs;
  ASSERT_EQ(statvfs("/dev/shm", &vfs), 0);
  if (vfs.f_blocks == 0) GTEST_SKIP() << "/dev/shm reports no size";
  const std::size_t too_big = static_cast<std::size_t>(vfs.f_blocks) * vfs.f_frsize * 2;
  if (too_big >= DSA_MAX_SEGMENT_SIZE / 2) GTEST_SKIP() << "/dev/shm is too large for this test";
  CreateArea();
  const std::vector<std::string> before = SegmentNamesOf(self_);
  ExpectOutOfMemory(CatchError([&] { dsa_allocate_extended(area_, too_big, DSA_ALLOC_HUGE); }));
  EXPECT_EQ(dsa_allocate_extended(area_, too_big, DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM), InvalidDsaPointer);
  EXPECT_EQ(SegmentNamesOf(self_), before) << "the failed segment must leave no name";
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  EXPECT_EQ(dsa_get_stats(area_).segments, 1u);
  const dsa_pointer dp = dsa_allocate(area_, 3 * kMiB);
  dsa_free(area_, dp);
  EXPECT_AREA_CONSISTENT(area_);
}

// The segment table is full: with segments of 128 KiB or so at most and
// objects of a little more than half that, every object needs a segment of
// its own; after about DSA_MAX_SEGMENTS of them, the next is "out of
// memory" (InvalidDsaPointer with NO_OOM). Freeing one gives its slot back
// (the segment is destroyed) and an allocation succeeds again. Costs
// DSA_MAX_SEGMENTS small segments (~128 MiB of /dev/shm).
TEST_F(DsaLimitTest, SegmentTableFull) {
  const std::size_t seg_size = std::max<std::size_t>(128 * kKiB, (dsa_minimum_size() + 65535) / 65536 * 65536);
  if (seg_size > 512 * kKiB) GTEST_SKIP() << "dsa_minimum_size() is too large for a cheap segment-table test";
  area_ = dsa_create_ext(0, seg_size, seg_size);
  initial_ = dsa_get_total_size(area_);
  const std::size_t object = seg_size / 2 + 4096;
  std::optional<Error> err;
  for (std::size_t i = 0; i < DSA_MAX_SEGMENTS + 10; ++i) {
    err = CatchError([&] { dps_.push_back(dsa_allocate(area_, object)); });
    if (err) break;
    std::memset(dsa_get_address(area_, dps_.back()), static_cast<int>(i & 0xff), 64);
  }
  ExpectOutOfMemory(err);
  const DsaStats stats = dsa_get_stats(area_);
  EXPECT_LE(stats.segments, DSA_MAX_SEGMENTS);
  EXPECT_GE(stats.segments, DSA_MAX_SEGMENTS - 2) << "the table should be (nearly) full before refusing";
  EXPECT_GE(dps_.size(), DSA_MAX_SEGMENTS - 3);
  EXPECT_EQ(dsa_allocate_extended(area_, object, DSA_ALLOC_NO_OOM), InvalidDsaPointer);
  for (std::size_t i = 0; i < dps_.size(); ++i)
    ASSERT_EQ(*static_cast<unsigned char*>(dsa_get_address(area_, dps_[i])), i & 0xff) << i;
  // One slot back.
  dsa_free(area_, dps_[dps_.size() / 2]);
  dps_.erase(dps_.begin() + static_cast<std::ptrdiff_t>(dps_.size() / 2));
  dsa_trim(area_);
  const dsa_pointer again = dsa_allocate(area_, object);
  dps_.push_back(again);
  EXPECT_AREA_CONSISTENT(area_);
  FreeAll();
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  EXPECT_EQ(dsa_get_stats(area_).segments, 1u);
}

// dsa_get_total_size follows growth exactly as the statistics do, and a
// trim after everything is freed brings it back to the initial size, from
// small objects (superblocks in several segments) as from large ones.
TEST_F(DsaLimitTest, TrimReturnsToTheInitialSize) {
  CreateArea();
  for (std::size_t size : {std::size_t{256}, std::size_t{3000}, std::size_t{100 * kKiB}}) {
    SCOPED_TRACE(size);
    while (dsa_get_total_size(area_) < initial_ + 6 * kMiB) dps_.push_back(dsa_allocate(area_, size));
    EXPECT_EQ(dsa_get_stats(area_).total_size, dsa_get_total_size(area_));
    EXPECT_GE(dsa_get_stats(area_).segments, 3u);
    FreeAll();
    dsa_trim(area_);
    EXPECT_EQ(dsa_get_total_size(area_), initial_);
    EXPECT_EQ(dsa_get_stats(area_).segments, 1u);
    EXPECT_EQ(dsa_testing::CachedObjects(area_), 0u);
    for (const DsaSizeClassStats& c : dsa_get_stats(area_).classes)
      EXPECT_EQ(c.allocated, 0u) << "class of " << c.object_size << " bytes";
    EXPECT_EQ(dsa_get_stats(area_).large_objects, 0u);
    EXPECT_AREA_CONSISTENT(area_);
  }
}

// A trim with nothing to give back changes nothing; with live objects it
// keeps them.
TEST_F(DsaLimitTest, TrimKeepsLiveObjects) {
  CreateArea();
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  for (unsigned i = 0; i < 2000; ++i) {
    dps_.push_back(dsa_allocate(area_, 1 + (i * 61) % 6000));
    FillPattern(dsa_get_address(area_, dps_.back()), 1 + (i * 61) % 6000, i);
  }
  for (unsigned i = 0; i < 2000; i += 2) dsa_free(area_, dps_[i]);
  dsa_trim(area_);
  for (unsigned i = 1; i < 2000; i += 2)
    ASSERT_TRUE(HasPattern(dsa_get_address(area_, dps_[i]), 1 + (i * 61) % 6000, i)) << i;
  for (unsigned i = 1; i < 2000; i += 2) dsa_free(area_, dps_[i]);
  dps_.clear();
  EXPECT_AREA_CONSISTENT(area_);
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
}

}  // namespace
}  // namespace grove::test
