// Every size from 1 byte to 16 KiB, a stride of sizes up to 1 MiB, and
// every size-class boundary: each object gets a pattern over all its bytes
// that is verified before it is freed, many objects are live at once, and
// the address ranges of live objects never overlap. Then a seeded random
// mix of allocations and frees against a model, with the area's invariants
// checked (dsa_testing::Check) along the way.
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

// A pattern of 64-bit words that depends on the seed and the offset (fast
// enough for hundreds of megabytes in a Debug build), bytes for the tail.
std::uint64_t Word(std::uint64_t seed, std::size_t i) {
  return (seed * 0x9E3779B97F4A7C15ull) ^ (i * 0xD6E8FEB86659FD93ull) ^ 0x5555555555555555ull;
}
void Fill(void* p, std::size_t n, std::uint64_t seed) {
  auto* b = static_cast<unsigned char*>(p);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t w = Word(seed, i);
    std::memcpy(b + i, &w, 8);
  }
  for (; i < n; ++i) b[i] = static_cast<unsigned char>(Word(seed, i) >> 8);
}
bool Verify(const void* p, std::size_t n, std::uint64_t seed) {
  const auto* b = static_cast<const unsigned char*>(p);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, b + i, 8);
    if (w != Word(seed, i)) return false;
  }
  for (; i < n; ++i)
    if (b[i] != static_cast<unsigned char>(Word(seed, i) >> 8)) return false;
  return true;
}

struct Live {
  dsa_pointer dp;
  std::size_t size;
  std::uint64_t seed;
};

class DsaSizesTest : public DsaAreaTest {
 protected:
  void SetUp() override {
    DsaAreaTest::SetUp();
    CreateArea();
  }

  /// Allocates `size` bytes, checks alignment and that the range overlaps
  /// no live object's, fills it, and records it.
  void Allocate(std::size_t size) {
    const dsa_pointer dp = dsa_allocate(area_, size);
    ASSERT_TRUE(DsaPointerIsValid(dp)) << size;
    auto* p = static_cast<char*>(dsa_get_address(area_, dp));
    ASSERT_NE(p, nullptr) << size;
    const auto start = reinterpret_cast<std::uintptr_t>(p);
    ASSERT_EQ(start % 8, 0u) << size << " bytes: misaligned";
    auto next = ranges_.lower_bound(start);
    if (next != ranges_.end()) {
      ASSERT_GE(next->first, start + size) << size << " bytes at " << std::hex << dp << " overlaps a live object";
    }
    if (next != ranges_.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->first + prev->second, start) << size << " bytes at " << std::hex << dp
                                                   << " overlaps a live object";
    }
    ranges_[start] = size;
    const std::uint64_t seed = ++serial_;
    Fill(p, size, seed);
    live_.push_back({dp, size, seed});
  }
  /// Verifies and frees the live object at `i` (swap-remove).
  void Free(std::size_t i) {
    const Live o = live_[i];
    void* p = dsa_get_address(area_, o.dp);
    ASSERT_TRUE(Verify(p, o.size, o.seed)) << o.size << " bytes at " << std::hex << o.dp
                                           << ": contents changed while it was live";
    ranges_.erase(reinterpret_cast<std::uintptr_t>(p));
    dsa_free(area_, o.dp);
    live_[i] = live_.back();
    live_.pop_back();
  }
  void FreeAll() {
    while (!live_.empty() && !HasFatalFailure()) Free(live_.size() - 1);
  }
  void ExpectBackToInitial() {
    EXPECT_AREA_CONSISTENT(area_);
    dsa_trim(area_);
    EXPECT_EQ(dsa_get_total_size(area_), initial_) << "everything freed and trimmed: the initial size again";
    EXPECT_EQ(dsa_get_stats(area_).large_objects, 0u);
    EXPECT_AREA_CONSISTENT(area_);
  }

  std::vector<Live> live_;
  std::map<std::uintptr_t, std::size_t> ranges_;  // live objects: address -> size
  std::uint64_t serial_ = 0;
};

// The size classes as dsa.h describes them: 36 classes, 8…64 by 8, strictly
// increasing multiples of 8 up to 8 KiB; every size maps to the smallest
// class that holds it; above 8 KiB, none.
TEST_F(DsaSizesTest, SizeClassTable) {
  const int n = dsa_testing::SizeClassCount();
  EXPECT_EQ(n, 36);
  ASSERT_GT(n, 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(dsa_testing::SizeClassObjectSize(i), 8u * (i + 1)) << i;
  EXPECT_EQ(dsa_testing::SizeClassObjectSize(n - 1), 8192u);
  std::size_t prev = 0;
  for (int i = 0; i < n; ++i) {
    const std::size_t s = dsa_testing::SizeClassObjectSize(i);
    EXPECT_GT(s, prev) << i;
    EXPECT_EQ(s % 8, 0u) << i;
    EXPECT_EQ(dsa_testing::SizeClassOf(s), i) << s;
    EXPECT_EQ(dsa_testing::SizeClassOf(prev + 1), i) << prev + 1;
    EXPECT_EQ(dsa_testing::SizeClassOf(s - 1), i) << s - 1;
    prev = s;
  }
  EXPECT_EQ(dsa_testing::SizeClassOf(1), 0);
  EXPECT_EQ(dsa_testing::SizeClassOf(8193), -1);
  EXPECT_EQ(dsa_testing::SizeClassOf(1 * kMiB), -1);
}

// Every size from 1 byte to 16 KiB, in batches of 512 consecutive sizes,
// two objects of each size live at once per batch (about 16 MiB at the
// end), all verified and freed; the area checked after each batch.
TEST_F(DsaSizesTest, EverySizeUpTo16KiB) {
  for (std::size_t lo = 1; lo <= 16 * kKiB; lo += 512) {
    for (std::size_t size = lo; size < lo + 512 && size <= 16 * kKiB; ++size) {
      Allocate(size);
      ASSERT_FALSE(HasFatalFailure());
      Allocate(size);
      ASSERT_FALSE(HasFatalFailure());
    }
    FreeAll();
    ASSERT_FALSE(HasFatalFailure());
    std::string why;
    ASSERT_TRUE(dsa_testing::Check(area_, &why)) << "after sizes " << lo << "…" << lo + 511 << ": " << why;
  }
  ExpectBackToInitial();
}

// Sizes from 16 KiB to 1 MiB by a prime stride, and around every multiple
// of 16 KiB (one page less, exactly, one byte either side), about 250 MiB
// of objects in batches of ~32 MiB live at once.
TEST_F(DsaSizesTest, StrideUpTo1MiB) {
  std::vector<std::size_t> sizes;
  for (std::size_t s = 16 * kKiB; s <= kMiB; s += 4093) sizes.push_back(s);
  for (std::size_t m = 16 * kKiB; m <= kMiB; m += 16 * kKiB)
    for (std::size_t s : {m - 4096, m - 1, m, m + 1}) sizes.push_back(s);
  std::size_t batch_bytes = 0;
  for (std::size_t size : sizes) {
    Allocate(size);
    ASSERT_FALSE(HasFatalFailure());
    batch_bytes += size;
    if (batch_bytes > 32 * kMiB) {
      FreeAll();
      ASSERT_FALSE(HasFatalFailure());
      EXPECT_AREA_CONSISTENT(area_);
      batch_bytes = 0;
    }
  }
  FreeAll();
  ASSERT_FALSE(HasFatalFailure());
  ExpectBackToInitial();
}

// At every class boundary (object size − 1, exactly, + 1) enough objects to
// fill at least three superblocks of the class (64 KiB each), capped at
// 2000 per size, all live at once; freed in a shuffled order.
TEST_F(DsaSizesTest, SizeClassBoundaries) {
  std::mt19937_64 rng(11);
  for (int c = 0; c < dsa_testing::SizeClassCount(); ++c) {
    const std::size_t s = dsa_testing::SizeClassObjectSize(c);
    for (std::size_t size : {s - 1, s, s + 1}) {
      if (size == 0) continue;
      const std::size_t count = std::min<std::size_t>(2000, std::max<std::size_t>(3, 3 * 64 * kKiB / s + 1));
      for (std::size_t k = 0; k < count; ++k) {
        Allocate(size);
        ASSERT_FALSE(HasFatalFailure());
      }
    }
    std::shuffle(live_.begin(), live_.end(), rng);
    FreeAll();
    ASSERT_FALSE(HasFatalFailure());
    std::string why;
    ASSERT_TRUE(dsa_testing::Check(area_, &why)) << "after class " << c << " (" << s << " bytes): " << why;
  }
  ExpectBackToInitial();
}

// A seeded random mix against a model: 60,000 operations, allocations a
// little more likely than frees until ~3000 objects are live, then the
// reverse; sizes mostly small, some up to 8 KiB, a few large (up to 256
// KiB). Every free verifies the object's contents; dsa_testing::Check every
// 2000 operations; at the end everything is verified and freed, and a trim
// gives the initial size back.
TEST_F(DsaSizesTest, RandomAgainstAModel) {
  std::mt19937_64 rng(20240601);
  auto random_size = [&]() -> std::size_t {
    const unsigned kind = rng() % 100;
    if (kind < 70) return 1 + rng() % 512;
    if (kind < 95) return 1 + rng() % (8 * kKiB);
    return 8 * kKiB + 1 + rng() % (248 * kKiB);
  };
  constexpr int kOps = 60000;
  for (int op = 0; op < kOps; ++op) {
    const bool grow_phase = (op / 10000) % 2 == 0;
    const unsigned alloc_percent = grow_phase ? 60 : 40;
    if (live_.empty() || rng() % 100 < alloc_percent) {
      Allocate(random_size());
    } else {
      Free(rng() % live_.size());
    }
    ASSERT_FALSE(HasFatalFailure()) << "operation " << op;
    if (op % 2000 == 1999) {
      std::string why;
      ASSERT_TRUE(dsa_testing::Check(area_, &why)) << "after operation " << op << ": " << why;
    }
    if (op % 5000 == 4999) {
      for (const Live& o : live_)
        ASSERT_TRUE(Verify(dsa_get_address(area_, o.dp), o.size, o.seed)) << "operation " << op;
    }
  }
  FreeAll();
  ASSERT_FALSE(HasFatalFailure());
  ExpectBackToInitial();
}

// The same mix, with a trim every 1000 operations: trimming while objects
// are live gives back only what is empty and never disturbs a live object.
TEST_F(DsaSizesTest, RandomWithTrims) {
  std::mt19937_64 rng(7);
  for (int op = 0; op < 20000; ++op) {
    if (live_.empty() || rng() % 100 < 52) {
      const unsigned kind = rng() % 10;
      Allocate(kind < 8 ? 1 + rng() % 2048 : 16 * kKiB + rng() % (512 * kKiB));
    } else {
      Free(rng() % live_.size());
    }
    ASSERT_FALSE(HasFatalFailure()) << "operation " << op;
    if (op % 1000 == 999) {
      dsa_trim(area_);
      EXPECT_EQ(dsa_testing::CachedObjects(area_), 0u) << "a trim gives back this attachment's cache";
      for (const Live& o : live_)
        ASSERT_TRUE(Verify(dsa_get_address(area_, o.dp), o.size, o.seed)) << "after the trim at " << op;
      std::string why;
      ASSERT_TRUE(dsa_testing::Check(area_, &why)) << "after the trim at " << op << ": " << why;
    }
  }
  FreeAll();
  ASSERT_FALSE(HasFatalFailure());
  ExpectBackToInitial();
}

}  // namespace
}  // namespace grove::test
