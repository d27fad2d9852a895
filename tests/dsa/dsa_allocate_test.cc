// dsa_allocate and its variants in one process: objects are distinct,
// aligned and writable; dsa_allocate0 and DSA_ALLOC_ZERO zero even memory
// that held garbage before; requests above DSA_MAX_ALLOC_SIZE need
// DSA_ALLOC_HUGE (an ERROR without it, whatever NO_OOM says); with it, a
// 1 GiB object works; DSA_ALLOC_NO_OOM turns "out of memory" into
// InvalidDsaPointer; dsa_get_address(InvalidDsaPointer) is nullptr.
#include <sys/statvfs.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

class DsaAllocateTest : public DsaAreaTest {
 protected:
  void SetUp() override {
    DsaAreaTest::SetUp();
    CreateArea();
  }
};

// Bytes free in /dev/shm for an unprivileged process.
std::size_t ShmAvailable() {
  struct statvfs vfs;
  if (statvfs("/dev/shm", &vfs) != 0) return 0;
  return static_cast<std::size_t>(vfs.f_bavail) * static_cast<std::size_t>(vfs.f_frsize);
}

TEST_F(DsaAllocateTest, GetAddressOfInvalidPointerIsNull) {
  EXPECT_EQ(dsa_get_address(area_, InvalidDsaPointer), nullptr);
  EXPECT_FALSE(DsaPointerIsValid(InvalidDsaPointer));
}

// Objects of several sizes are valid, 8-byte aligned, distinct and do not
// overlap; what is written into each stays until it is freed.
TEST_F(DsaAllocateTest, ObjectsAreDistinctAlignedAndKeepTheirContents) {
  const std::size_t sizes[] = {1, 7, 8, 9, 63, 64, 65, 500, 1024, 4000, 8192, 8193, 12000, 65536, 300000};
  std::vector<dsa_pointer> dps;
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    const dsa_pointer dp = dsa_allocate(area_, sizes[i]);
    ASSERT_TRUE(DsaPointerIsValid(dp)) << sizes[i];
    void* p = dsa_get_address(area_, dp);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 8, 0u) << sizes[i] << " bytes: not 8-byte aligned";
    FillPattern(p, sizes[i], static_cast<unsigned>(i));
    for (dsa_pointer other : dps) EXPECT_NE(other, dp);
    dps.push_back(dp);
  }
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    EXPECT_TRUE(HasPattern(dsa_get_address(area_, dps[i]), sizes[i], static_cast<unsigned>(i))) << sizes[i];
    dsa_free(area_, dps[i]);
  }
  EXPECT_AREA_CONSISTENT(area_);
}

// dsa_allocate0, dsa_allocate_extended(ZERO) and their NO_OOM variant
// return zeroed memory even when it is memory that held garbage: for each
// size, many objects are filled with 0xA5 and freed, then as many are
// allocated again zeroed (freed objects are reused first, so most are the
// same memory).
TEST_F(DsaAllocateTest, ZeroedAllocationsAreZeroEvenWhenReused) {
  const std::size_t sizes[] = {8, 24, 100, 1000, 2048, 8192, 9000, 20000, 100000};
  for (int variant = 0; variant < 3; ++variant) {
    for (std::size_t size : sizes) {
      const int count = size > 8192 ? 8 : 64;
      std::vector<dsa_pointer> dps;
      std::vector<void*> first_addresses;
      for (int i = 0; i < count; ++i) {
        dps.push_back(dsa_allocate(area_, size));
        std::memset(dsa_get_address(area_, dps.back()), 0xA5, size);
        first_addresses.push_back(dsa_get_address(area_, dps.back()));
      }
      for (dsa_pointer dp : dps) dsa_free(area_, dp);
      dps.clear();
      int reused = 0;
      for (int i = 0; i < count; ++i) {
        dsa_pointer dp = InvalidDsaPointer;
        if (variant == 0) dp = dsa_allocate0(area_, size);
        if (variant == 1) dp = dsa_allocate_extended(area_, size, DSA_ALLOC_ZERO);
        if (variant == 2) dp = dsa_allocate_extended(area_, size, DSA_ALLOC_ZERO | DSA_ALLOC_NO_OOM);
        ASSERT_TRUE(DsaPointerIsValid(dp));
        void* p = dsa_get_address(area_, dp);
        reused += std::find(first_addresses.begin(), first_addresses.end(), p) != first_addresses.end();
        ASSERT_TRUE(IsAllZero(p, size)) << "variant " << variant << ", " << size << " bytes, object " << i;
        std::memset(p, 0xA5, size);
        dps.push_back(dp);
      }
      EXPECT_GT(reused, 0) << size << " bytes: no freed object was reused, the test proves less than it says";
      for (dsa_pointer dp : dps) dsa_free(area_, dp);
    }
  }
  EXPECT_AREA_CONSISTENT(area_);
}

// Without ZERO, allocate_extended with NO_OOM is a plain allocation.
TEST_F(DsaAllocateTest, NoOomAloneAllocatesNormally) {
  const dsa_pointer dp = dsa_allocate_extended(area_, 777, DSA_ALLOC_NO_OOM);
  ASSERT_TRUE(DsaPointerIsValid(dp));
  FillPattern(dsa_get_address(area_, dp), 777, 1);
  EXPECT_TRUE(HasPattern(dsa_get_address(area_, dp), 777, 1));
  dsa_free(area_, dp);
}

// A request above DSA_MAX_ALLOC_SIZE without HUGE is an ERROR — with
// NO_OOM too (a bad size is not running out of memory) — and creates no
// segment; the area works afterwards.
TEST_F(DsaAllocateTest, AboveMaxAllocSizeWithoutHugeIsAnError) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  for (int flags : {0, DSA_ALLOC_NO_OOM, DSA_ALLOC_ZERO}) {
    auto err = CatchError([&] { dsa_allocate_extended(area_, DSA_MAX_ALLOC_SIZE + 1, flags); });
    EXPECT_TRUE(err.has_value()) << "flags " << flags;
  }
  EXPECT_TRUE(CatchError([&] { dsa_allocate(area_, DSA_MAX_ALLOC_SIZE + 1); }).has_value());
  EXPECT_TRUE(CatchError([&] { dsa_allocate0(area_, std::size_t{1} << 40); }).has_value());
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  EXPECT_EQ(SegmentNamesOf(self_), before);
  const dsa_pointer dp = dsa_allocate(area_, 100);
  dsa_free(area_, dp);
  EXPECT_AREA_CONSISTENT(area_);
}

// DSA_MAX_ALLOC_SIZE itself is a valid size without HUGE: under a small
// limit it is "out of memory" (InvalidDsaPointer with NO_OOM), not a bad
// size.
TEST_F(DsaAllocateTest, MaxAllocSizeIsAValidSize) {
  dsa_set_size_limit(area_, 8 * kMiB);
  dsa_pointer dp = 1;
  auto err = CatchError([&] { dp = dsa_allocate_extended(area_, DSA_MAX_ALLOC_SIZE, DSA_ALLOC_NO_OOM); });
  EXPECT_FALSE(err.has_value()) << err->Format();
  EXPECT_EQ(dp, InvalidDsaPointer);
  err = CatchError([&] { dsa_allocate(area_, DSA_MAX_ALLOC_SIZE); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "out of memory")) << err->Format();
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  EXPECT_AREA_CONSISTENT(area_);
}

// With HUGE, DSA_MAX_ALLOC_SIZE + 1 bytes (1 GiB) works with the default
// (unlimited) size: the object is written at its first and last bytes and
// one in every 64 MiB; freeing it and trimming gives the area back its
// initial size. Needs about 1 GiB free in /dev/shm (skipped otherwise).
TEST_F(DsaAllocateTest, HugeAllocationOfOneGiB) {
  const std::size_t need = DSA_MAX_ALLOC_SIZE + 1;
  if (ShmAvailable() < need + need / 2) GTEST_SKIP() << "less than 1.5 GiB free in /dev/shm";
  const dsa_pointer dp = dsa_allocate_extended(area_, need, DSA_ALLOC_HUGE);
  ASSERT_TRUE(DsaPointerIsValid(dp));
  auto* p = static_cast<unsigned char*>(dsa_get_address(area_, dp));
  ASSERT_NE(p, nullptr);
  for (std::size_t off = 0; off < need; off += 64 * kMiB) p[off] = static_cast<unsigned char>(off >> 26);
  p[need - 1] = 0x5A;
  for (std::size_t off = 0; off < need; off += 64 * kMiB) EXPECT_EQ(p[off], static_cast<unsigned char>(off >> 26));
  EXPECT_EQ(p[need - 1], 0x5A);
  EXPECT_GE(dsa_get_total_size(area_), initial_ + need);
  const DsaStats stats = dsa_get_stats(area_);
  EXPECT_EQ(stats.large_objects, 1u);
  EXPECT_GE(stats.large_pages * 4096, need);
  dsa_free(area_, dp);
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  EXPECT_AREA_CONSISTENT(area_);
}

// HUGE under a limit too small for the request: "out of memory" (an ERROR,
// or InvalidDsaPointer with NO_OOM), nothing grown.
TEST_F(DsaAllocateTest, HugeBeyondTheLimitIsOutOfMemory) {
  dsa_set_size_limit(area_, 16 * kMiB);
  dsa_pointer dp = 1;
  EXPECT_FALSE(CatchError([&] {
                 dp = dsa_allocate_extended(area_, DSA_MAX_ALLOC_SIZE + 1, DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM);
               }).has_value());
  EXPECT_EQ(dp, InvalidDsaPointer);
  auto err = CatchError([&] { dsa_allocate_extended(area_, DSA_MAX_ALLOC_SIZE + 1, DSA_ALLOC_HUGE); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "out of memory")) << err->Format();
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  EXPECT_AREA_CONSISTENT(area_);
}

// Absurd sizes with HUGE (beyond what a segment can address, or SIZE_MAX)
// are an ERROR or InvalidDsaPointer with NO_OOM — never a crash or a
// wrapped-around small object — and leave the area as it was.
TEST_F(DsaAllocateTest, AbsurdHugeSizesFailCleanly) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  for (std::size_t size : {DSA_MAX_SEGMENT_SIZE + 1, std::size_t{1} << 62, SIZE_MAX - 4095, SIZE_MAX}) {
    EXPECT_TRUE(CatchError([&] { dsa_allocate_extended(area_, size, DSA_ALLOC_HUGE); }).has_value()) << size;
    dsa_pointer dp = InvalidDsaPointer;
    CatchError([&] { dp = dsa_allocate_extended(area_, size, DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM); });
    EXPECT_EQ(dp, InvalidDsaPointer) << size;
  }
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  EXPECT_EQ(SegmentNamesOf(self_), before);
  EXPECT_AREA_CONSISTENT(area_);
}

// A freed large object's pages are reused: allocating and freeing the same
// large size many times does not grow the area.
TEST_F(DsaAllocateTest, FreedLargeObjectsAreReused) {
  for (int i = 0; i < 200; ++i) {
    const dsa_pointer dp = dsa_allocate(area_, 200 * kKiB);
    FillPattern(dsa_get_address(area_, dp), 200 * kKiB, static_cast<unsigned>(i));
    ASSERT_TRUE(HasPattern(dsa_get_address(area_, dp), 200 * kKiB, static_cast<unsigned>(i)));
    dsa_free(area_, dp);
  }
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  EXPECT_AREA_CONSISTENT(area_);
}

// Objects larger than the default first segment get a segment of their
// own, whatever their size (an odd-sized segment when no standard one is
// large enough); they are contiguous and writable to the last byte.
TEST_F(DsaAllocateTest, ObjectsLargerThanASegment) {
  const std::size_t sizes[] = {DSA_DEFAULT_INIT_SEGMENT_SIZE, DSA_DEFAULT_INIT_SEGMENT_SIZE + 1, 5 * kMiB + 3,
                               24 * kMiB};
  std::vector<dsa_pointer> dps;
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    dps.push_back(dsa_allocate(area_, sizes[i]));
    FillPattern(dsa_get_address(area_, dps.back()), sizes[i], static_cast<unsigned>(i));
  }
  EXPECT_GT(dsa_get_stats(area_).segments, 1u);
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    EXPECT_TRUE(HasPattern(dsa_get_address(area_, dps[i]), sizes[i], static_cast<unsigned>(i))) << sizes[i];
    dsa_free(area_, dps[i]);
  }
  EXPECT_AREA_CONSISTENT(area_);
  dsa_trim(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
  EXPECT_EQ(dsa_get_stats(area_).segments, 1u);
}

}  // namespace
}  // namespace grove::test
