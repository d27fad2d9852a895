// Bad pointers given to dsa_free (and dsa_get_address) are an ERROR, never
// a crash or a corrupted area: the invalid pointer, a pointer inside a small
// or a large object, a pointer to a free page, an offset beyond the
// segment's end, a segment index never used or out of range, a segment
// that was destroyed. After each, the live objects are intact, the area's
// invariants hold (dsa_testing::Check) and it allocates and frees as before.
//
// dsa_pointer's layout (dsa.h): segment index in the high 24 bits, byte
// offset in the low 40.
#include <cstdint>
#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

constexpr dsa_pointer kOffsetMask = (dsa_pointer{1} << kOffsetBits) - 1;

class DsaBadPointerTest : public DsaAreaTest {
 protected:
  void SetUp() override {
    DsaAreaTest::SetUp();
    area_ = dsa_create();
    // Live objects that must survive every bad call untouched.
    small_ = dsa_allocate(area_, 64);
    large_ = dsa_allocate(area_, 40 * kKiB);
    FillPattern(dsa_get_address(area_, small_), 64, 1);
    FillPattern(dsa_get_address(area_, large_), 40 * kKiB, 2);
  }

  /// dsa_free(dp) must be an ERROR, and leave the area working.
  void ExpectFreeRefused(dsa_pointer dp, const char* what) {
    SCOPED_TRACE(what);
    auto err = CatchError([&] { dsa_free(area_, dp); });
    EXPECT_TRUE(err.has_value()) << "dsa_free of " << what << " (" << std::hex << dp << ") must be an ERROR";
    ExpectAreaStillWorks();
  }
  void ExpectAreaStillWorks() {
    std::string why;
    EXPECT_TRUE(dsa_testing::Check(area_, &why)) << why;
    EXPECT_TRUE(HasPattern(dsa_get_address(area_, small_), 64, 1)) << "a live small object changed";
    EXPECT_TRUE(HasPattern(dsa_get_address(area_, large_), 40 * kKiB, 2)) << "a live large object changed";
    const dsa_pointer a = dsa_allocate(area_, 64);
    const dsa_pointer b = dsa_allocate(area_, 40 * kKiB);
    FillPattern(dsa_get_address(area_, a), 64, 3);
    FillPattern(dsa_get_address(area_, b), 40 * kKiB, 4);
    EXPECT_TRUE(HasPattern(dsa_get_address(area_, small_), 64, 1));
    EXPECT_TRUE(HasPattern(dsa_get_address(area_, large_), 40 * kKiB, 2));
    dsa_free(area_, a);
    dsa_free(area_, b);
    EXPECT_TRUE(dsa_testing::Check(area_, &why)) << why;
  }

  dsa_pointer small_ = InvalidDsaPointer;
  dsa_pointer large_ = InvalidDsaPointer;
};

TEST_F(DsaBadPointerTest, FreeOfInvalidPointer) { ExpectFreeRefused(InvalidDsaPointer, "InvalidDsaPointer"); }

// Inside a small object: one byte in, eight bytes in, the last byte.
TEST_F(DsaBadPointerTest, FreeInsideASmallObject) {
  ExpectFreeRefused(small_ + 1, "a small object + 1");
  ExpectFreeRefused(small_ + 8, "a small object + 8");
  ExpectFreeRefused(small_ + 63, "a small object + 63");
}

// Inside a large object: a few bytes in, on its second page, on its last page.
TEST_F(DsaBadPointerTest, FreeInsideALargeObject) {
  ExpectFreeRefused(large_ + 16, "a large object + 16");
  ExpectFreeRefused(large_ + 4096, "a large object's second page");
  ExpectFreeRefused(large_ + 9 * 4096, "a large object's last page");
}

// A page that is free: a large object's pages after its free (an object
// freed twice lands on a free page, which is detected).
TEST_F(DsaBadPointerTest, FreeOnAFreePage) {
  const dsa_pointer dp = dsa_allocate(area_, 100 * kKiB);
  dsa_free(area_, dp);
  ExpectFreeRefused(dp, "a freed large object's first page");
  ExpectFreeRefused(dp + 8 * 4096, "a freed large object's ninth page");
}

// In an area that has allocated nothing, every usable page is free and the
// rest of the segment is its header: pointers into the header, the middle
// page and the last page are all refused, and the area is untouched.
TEST_F(DsaBadPointerTest, FreeInAnAreaThatAllocatedNothing) {
  dsa_area* fresh = dsa_create();
  const std::size_t end = dsa_get_total_size(fresh);
  const DsaStats initial = dsa_get_stats(fresh);
  EXPECT_EQ(initial.free_pages, initial.pages) << "nothing allocated: every page free";
  const dsa_pointer first = dsa_allocate(fresh, 8);  // learns the first segment's index
  dsa_free(fresh, first);
  dsa_trim(fresh);
  const DsaStats before = dsa_get_stats(fresh);
  for (std::uint64_t off : {std::uint64_t{8}, std::uint64_t{64}, std::uint64_t{end / 2}, std::uint64_t{end - 4096},
                            std::uint64_t{end - 8}}) {
    const dsa_pointer dp = MakePointer(SegmentOf(first), off);
    EXPECT_TRUE(CatchError([&] { dsa_free(fresh, dp); }).has_value()) << "offset " << off;
  }
  std::string why;
  EXPECT_TRUE(dsa_testing::Check(fresh, &why)) << why;
  const DsaStats after = dsa_get_stats(fresh);
  EXPECT_EQ(after.free_pages, before.free_pages) << "refused frees must not have changed the free pages";
  EXPECT_EQ(after.largest_free_run, before.largest_free_run);
  const dsa_pointer dp = dsa_allocate(fresh, 200 * kKiB);
  FillPattern(dsa_get_address(fresh, dp), 200 * kKiB, 9);
  EXPECT_TRUE(HasPattern(dsa_get_address(fresh, dp), 200 * kKiB, 9));
  dsa_free(fresh, dp);
  dsa_detach(fresh);
  ExpectAreaStillWorks();
}

// Offsets beyond the end of a segment: just past it, far past it, the
// largest offset. dsa_get_address of such pointers is an ERROR too.
TEST_F(DsaBadPointerTest, OffsetBeyondTheSegment) {
  const std::uint64_t seg = SegmentOf(small_);
  const std::size_t end = dsa_get_total_size(area_);
  for (std::uint64_t off : {std::uint64_t{end}, std::uint64_t{end + 4096}, std::uint64_t{64 * kMiB},
                            std::uint64_t{kOffsetMask & ~std::uint64_t{7}}}) {
    const dsa_pointer dp = MakePointer(seg, off);
    ExpectFreeRefused(dp, "an offset beyond the segment");
    EXPECT_TRUE(CatchError([&] { dsa_get_address(area_, dp); }).has_value())
        << "dsa_get_address of offset " << off << " must be an ERROR";
  }
  ExpectAreaStillWorks();
}

// Segment indexes the area never used: the next one, one in the middle of
// the table, the last slot, one past the table, and the largest index.
TEST_F(DsaBadPointerTest, SegmentIndexNeverUsed) {
  ASSERT_EQ(dsa_get_stats(area_).segments, 1u);
  for (std::uint64_t seg : {std::uint64_t{1}, std::uint64_t{7}, std::uint64_t{DSA_MAX_SEGMENTS - 1},
                            std::uint64_t{DSA_MAX_SEGMENTS}, (std::uint64_t{1} << 24) - 1}) {
    if (seg == SegmentOf(small_)) continue;
    const dsa_pointer dp = MakePointer(seg, 4096);
    ExpectFreeRefused(dp, "a segment index never used");
    EXPECT_TRUE(CatchError([&] { dsa_get_address(area_, dp); }).has_value())
        << "dsa_get_address in segment " << seg << " must be an ERROR";
  }
  ExpectAreaStillWorks();
}

// A segment that existed and was destroyed: a 3 MiB object gets a segment
// of its own, which goes when the object is freed and the area trimmed;
// freeing the object again, or asking for its address, is an ERROR.
TEST_F(DsaBadPointerTest, SegmentDestroyed) {
  const dsa_pointer big = dsa_allocate(area_, 3 * kMiB);
  ASSERT_NE(SegmentOf(big), SegmentOf(small_)) << "3 MiB cannot fit the first 1 MiB segment";
  dsa_free(area_, big);
  dsa_trim(area_);
  ASSERT_EQ(dsa_get_stats(area_).segments, 1u) << "the emptied segment must be gone";
  ExpectFreeRefused(big, "an object of a destroyed segment");
  EXPECT_TRUE(CatchError([&] { dsa_get_address(area_, big); }).has_value());
  ExpectAreaStillWorks();
}

// Many bad frees in a row, of every kind, interleaved with good work: the
// area is still consistent at the end and gives its size back.
TEST_F(DsaBadPointerTest, ManyBadFreesLeaveTheAreaIntact) {
  const std::size_t initial = dsa_get_total_size(area_);
  std::vector<dsa_pointer> good;
  for (int i = 0; i < 300; ++i) {
    good.push_back(dsa_allocate(area_, 16 + (i * 97) % 3000));
    const dsa_pointer bad[] = {InvalidDsaPointer, good.back() + 8, MakePointer(900, 64),
                               MakePointer(SegmentOf(small_), initial + 8 * 4096)};
    for (dsa_pointer dp : bad) EXPECT_TRUE(CatchError([&] { dsa_free(area_, dp); }).has_value()) << i;
  }
  for (dsa_pointer dp : good) dsa_free(area_, dp);
  dsa_free(area_, small_);
  dsa_free(area_, large_);
  small_ = dsa_allocate(area_, 64);
  large_ = dsa_allocate(area_, 40 * kKiB);
  FillPattern(dsa_get_address(area_, small_), 64, 1);
  FillPattern(dsa_get_address(area_, large_), 40 * kKiB, 2);
  ExpectAreaStillWorks();
  dsa_free(area_, small_);
  dsa_free(area_, large_);
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial);
}

}  // namespace
}  // namespace grove::test
