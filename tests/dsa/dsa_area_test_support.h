// Helpers for the dsa_*_test.cc suites, the dynamic shared area's tests, on
// top of dsa_test_support.h (which they all use as well): sizes, the area's
// invariant check as an expectation, dsa_pointer's layout, and a fixture for
// cases that work on one area.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dsa_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {

// --- sizes -----------------------------------------------------------------------------------------

inline constexpr std::size_t kKiB = 1024;
inline constexpr std::size_t kMiB = kKiB * kKiB;

// --- invariants --------------------------------------------------------------------------------------

/// The area's invariants hold (dsa_testing::Check); if not, the failure says
/// which one is broken. A macro so that the failure names the caller's line.
#define EXPECT_AREA_CONSISTENT(area)                        \
  do {                                                      \
    std::string why_;                                       \
    EXPECT_TRUE(dsa_testing::Check((area), &why_)) << why_; \
  } while (0)

// --- dsa_pointer's layout ----------------------------------------------------------------------------

/// dsa.h: the segment index in the high 24 bits, the byte offset in the low
/// 40. The tests use it to aim at a segment, or to make pointers the area
/// never handed out.
inline constexpr int kOffsetBits = 40;

inline dsa_pointer MakePointer(std::uint64_t segment, std::uint64_t offset) {
  return (segment << kOffsetBits) | offset;
}
inline std::uint64_t SegmentOf(dsa_pointer dp) { return dp >> kOffsetBits; }

// --- fixture -----------------------------------------------------------------------------------------

/// A DsmTest whose cases work on one area, area_. CreateArea() makes it with
/// dsa_create() and records its total size then (initial_), which a trim of
/// the emptied area must give back; a case may also set area_ itself. An
/// area still attached at the end (after a failure, mostly) is detached
/// before DsmTest's check for leftovers, so that the check is about the
/// failure only; a case that detaches area_ itself sets it to nullptr.
class DsaAreaTest : public DsmTest {
 protected:
  void TearDown() override {
    if (area_ != nullptr) dsa_detach(area_);
    DsmTest::TearDown();
  }
  void CreateArea() {
    area_ = dsa_create();
    initial_ = dsa_get_total_size(area_);
  }
  dsa_area* area_ = nullptr;
  std::size_t initial_ = 0;
};

}  // namespace grove::test
