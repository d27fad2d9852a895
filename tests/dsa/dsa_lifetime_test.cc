// Lifetimes of an area in one process: dsa_create and dsa_create_ext make
// one segment and attach it; the handle names the area; dsa_attach in the
// same process gives a second attachment (its own cache, the same
// mappings), and so do threads; the last dsa_detach destroys the area unless
// it is pinned; dsa_unpin undoes the pin once (twice is an ERROR); a handle
// that names no live area is an ERROR to attach.
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

// Detaches, after a failure, the areas a case still holds, and undoes its
// pins, so that the fixture's check for leftovers is about the failure only.
class DsaLifetimeTest : public DsmTest {
 protected:
  void TearDown() override {
    for (dsa_area* a : areas_) {
      if (!HasFailure()) ADD_FAILURE() << "an area was still attached at the end of the test";
      dsa_detach(a);
    }
    areas_.clear();
    for (dsa_handle h : pinned_) {
      if (!HasFailure()) ADD_FAILURE() << "an area was still pinned at the end of the test";
      dsa_area* a = dsa_attach(h);
      dsa_unpin(a);
      dsa_detach(a);
    }
    pinned_.clear();
    DsmTest::TearDown();
  }
  dsa_area* Keep(dsa_area* a) {
    areas_.push_back(a);
    return a;
  }
  void Detach(dsa_area* a) {
    std::erase(areas_, a);
    dsa_detach(a);
  }
  void Pin(dsa_area* a) {
    dsa_pin(a);
    pinned_.push_back(dsa_get_handle(a));
  }
  void Unpin(dsa_area* a) {
    std::erase(pinned_, dsa_get_handle(a));
    dsa_unpin(a);
  }

  std::vector<dsa_area*> areas_;
  std::vector<dsa_handle> pinned_;
};

// dsa_create: one new segment in /dev/shm, a valid handle, the default
// initial size, and an area that allocates; the detach (the only attachment,
// not pinned) destroys it: the name goes, and the handle can no longer be
// attached.
TEST_F(DsaLifetimeTest, CreateMakesOneSegmentAndDetachDestroysIt) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* area = Keep(dsa_create());
  ASSERT_NE(area, nullptr);
  const std::string name = SingleNewName(before);
  const dsa_handle h = dsa_get_handle(area);
  EXPECT_NE(h, DSA_HANDLE_INVALID);
  EXPECT_EQ(dsa_get_total_size(area), DSA_DEFAULT_INIT_SEGMENT_SIZE);
  const dsa_pointer dp = dsa_allocate(area, 100);
  ASSERT_TRUE(DsaPointerIsValid(dp));
  FillPattern(dsa_get_address(area, dp), 100, 1);
  EXPECT_TRUE(HasPattern(dsa_get_address(area, dp), 100, 1));
  dsa_free(area, dp);
  EXPECT_AREA_CONSISTENT(area);
  Detach(area);
  EXPECT_FALSE(ShmNameExists(name)) << "the last detach of an unpinned area destroys it";
  EXPECT_EQ(SegmentNamesOf(self_), before);
  auto err = CatchError([&] { Keep(dsa_attach(h)); });
  EXPECT_TRUE(err.has_value()) << "attaching a destroyed area must be an ERROR";
}

// dsa_create_ext: the first segment has the size asked for; the tranche id
// is kept (statistics show it); segments never exceed the largest size
// asked for while objects are small (here max = init: every segment is the
// same size).
TEST_F(DsaLifetimeTest, CreateExtHonoursSegmentSizes) {
  const std::size_t init = 256 * 1024;
  ASSERT_GE(init, dsa_minimum_size()) << "the test assumes a 256 KiB first segment is allowed";
  dsa_area* area = Keep(dsa_create_ext(77, init, init));
  EXPECT_EQ(dsa_get_total_size(area), init);
  EXPECT_EQ(dsa_get_stats(area).tranche_id, 77);
  // Small objects until the area has at least four segments.
  std::vector<dsa_pointer> dps;
  while (dsa_get_stats(area).segments < 4) {
    ASSERT_LT(dps.size(), 100000u) << "the area does not grow";
    dps.push_back(dsa_allocate(area, 512));
    FillPattern(dsa_get_address(area, dps.back()), 512, static_cast<unsigned>(dps.size()));
  }
  const DsaStats stats = dsa_get_stats(area);
  EXPECT_LE(stats.total_size, stats.segments * init) << "no segment may exceed max_segment_size";
  EXPECT_EQ(stats.total_size, dsa_get_total_size(area));
  for (std::size_t i = 0; i < dps.size(); ++i)
    ASSERT_TRUE(HasPattern(dsa_get_address(area, dps[i]), 512, static_cast<unsigned>(i + 1))) << i;
  for (dsa_pointer dp : dps) dsa_free(area, dp);
  EXPECT_AREA_CONSISTENT(area);
  dsa_trim(area);
  EXPECT_EQ(dsa_get_total_size(area), init);
  Detach(area);
}

// dsa_create_ext with the smallest first segment allowed works; below it,
// or a largest size below the first, is an ERROR that leaves nothing behind.
TEST_F(DsaLifetimeTest, CreateExtRejectsBadSizes) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t min = dsa_minimum_size();
  ASSERT_GT(min, 0u);
  dsa_area* area = Keep(dsa_create_ext(0, min, 4 * kMiB));
  const dsa_pointer dp = dsa_allocate(area, 1000);  // may need a second segment: fine
  FillPattern(dsa_get_address(area, dp), 1000, 2);
  EXPECT_TRUE(HasPattern(dsa_get_address(area, dp), 1000, 2));
  dsa_free(area, dp);
  EXPECT_AREA_CONSISTENT(area);
  Detach(area);
  EXPECT_EQ(SegmentNamesOf(self_), before);

  EXPECT_TRUE(CatchError([&] { Keep(dsa_create_ext(0, min - 1, 4 * kMiB)); }).has_value())
      << "a first segment below dsa_minimum_size() must be an ERROR";
  EXPECT_TRUE(CatchError([&] { Keep(dsa_create_ext(0, 2 * kMiB, kMiB)); }).has_value())
      << "max_segment_size below init_segment_size must be an ERROR";
  EXPECT_EQ(SegmentNamesOf(self_), before) << "a refused creation leaves nothing";
}

// Handles that name no area: the invalid handle, a DSM segment that is not
// an area (zeroed memory), and a destroyed area — each an ERROR.
TEST_F(DsaLifetimeTest, AttachingWhatIsNotALiveAreaIsAnError) {
  EXPECT_TRUE(CatchError([&] { Keep(dsa_attach(DSA_HANDLE_INVALID)); }).has_value());
  dsm_segment* seg = Create(DSA_DEFAULT_INIT_SEGMENT_SIZE);
  EXPECT_TRUE(CatchError([&] { Keep(dsa_attach(dsm_segment_handle(seg))); }).has_value())
      << "a plain DSM segment is not an area";
  dsm_detach(seg);
  dsa_area* area = dsa_create();
  const dsa_handle h = dsa_get_handle(area);
  dsa_detach(area);
  EXPECT_TRUE(CatchError([&] { Keep(dsa_attach(h)); }).has_value());
}

// Two attachments in one process: what one allocates the other reads and
// frees; each has its own cache (an object one frees is not in the other's
// cache); the area survives the creator's detach while the second is
// attached, and goes with the second's.
TEST_F(DsaLifetimeTest, SecondAttachmentInTheSameProcess) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* a = Keep(dsa_create());
  const dsa_handle h = dsa_get_handle(a);
  dsa_area* b = Keep(dsa_attach(h));
  ASSERT_NE(b, nullptr);
  ASSERT_NE(a, b) << "each dsa_attach is an attachment of its own";
  EXPECT_EQ(dsa_get_handle(b), h);
  EXPECT_EQ(dsa_testing::CachedObjects(b), 0u);

  std::vector<dsa_pointer> dps;
  for (unsigned i = 0; i < 50; ++i) {
    dps.push_back(dsa_allocate(a, 48));
    FillPattern(dsa_get_address(a, dps.back()), 48, i);
  }
  EXPECT_EQ(dsa_testing::CachedObjects(b), 0u) << "a's allocations must not touch b's cache";
  for (unsigned i = 0; i < 50; ++i) {
    ASSERT_EQ(dsa_get_address(a, dps[i]), dsa_get_address(b, dps[i])) << "one process, one mapping";
    ASSERT_TRUE(HasPattern(dsa_get_address(b, dps[i]), 48, i));
  }
  const std::size_t cached_a = dsa_testing::CachedObjects(a);
  for (dsa_pointer dp : dps) dsa_free(b, dp);
  EXPECT_EQ(dsa_testing::CachedObjects(a), cached_a) << "b's frees must not touch a's cache";
  EXPECT_AREA_CONSISTENT(b);

  // A large object (pages) allocated through b, read through a.
  const dsa_pointer big = dsa_allocate(b, 3 * kMiB);  // beyond the first segment: a new one
  FillPattern(dsa_get_address(b, big), 3 * kMiB, 3);
  EXPECT_TRUE(HasPattern(dsa_get_address(a, big), 3 * kMiB, 3));

  Detach(a);
  EXPECT_TRUE(HasPattern(dsa_get_address(b, big), 3 * kMiB, 3)) << "the creator's detach must not unmap b's segments";
  EXPECT_FALSE(SegmentNamesOf(self_) == before) << "b is still attached: the area lives";
  dsa_free(b, big);
  EXPECT_AREA_CONSISTENT(b);
  Detach(b);
  EXPECT_EQ(SegmentNamesOf(self_), before) << "the last attachment's detach destroys the area";
}

// Threads of one process each attach the area (the creator's attachment
// stays with the main thread), allocate, write, verify and free objects
// concurrently, and hand some objects to the main thread, which frees them
// after the threads have detached.
TEST_F(DsaLifetimeTest, ThreadsEachAttach) {
  dsa_area* area = Keep(dsa_create());
  const dsa_handle h = dsa_get_handle(area);
  const std::size_t initial = dsa_get_total_size(area);
  constexpr int kThreads = 4;
  std::mutex mu;
  std::vector<std::pair<dsa_pointer, unsigned>> handed;  // (object, seed), 256 bytes each
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      MemoryContextInit();
      dsa_area* mine = dsa_attach(h);
      std::vector<std::pair<dsa_pointer, unsigned>> live;
      for (unsigned i = 0; i < 3000; ++i) {
        const unsigned seed = static_cast<unsigned>(t) * 100000u + i;
        const std::size_t size = 8 + (i * 37) % 2000;
        const dsa_pointer dp = dsa_allocate(mine, i % 10 == 0 ? 256 : size);
        FillPattern(dsa_get_address(mine, dp), i % 10 == 0 ? 256 : size, seed);
        if (i % 10 == 0) {
          std::lock_guard<std::mutex> lock(mu);
          handed.emplace_back(dp, seed);
          continue;
        }
        live.emplace_back(dp, seed);
        if (live.size() > 200) {
          auto [old, old_seed] = live.front();
          live.erase(live.begin());
          const std::size_t old_size = 8 + ((old_seed % 100000u) * 37) % 2000;
          if (!HasPattern(dsa_get_address(mine, old), old_size, old_seed)) ++failures;
          dsa_free(mine, old);
        }
      }
      for (auto [dp, seed] : live) {
        if (!HasPattern(dsa_get_address(mine, dp), 8 + ((seed % 100000u) * 37) % 2000, seed)) ++failures;
        dsa_free(mine, dp);
      }
      dsa_detach(mine);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0) << "an object lost its contents: two objects overlapped";
  EXPECT_EQ(handed.size(), static_cast<std::size_t>(kThreads) * 300);
  for (auto [dp, seed] : handed) {
    ASSERT_TRUE(HasPattern(dsa_get_address(area, dp), 256, seed));
    dsa_free(area, dp);
  }
  EXPECT_AREA_CONSISTENT(area);
  dsa_trim(area);
  EXPECT_EQ(dsa_get_total_size(area), initial);
  Detach(area);
}

// dsa_pin: the area survives with nothing attached (name and contents), is
// attached again by handle, and goes when unpinned and detached. A second
// dsa_unpin is an ERROR, and does not destroy the area under its attachment.
TEST_F(DsaLifetimeTest, PinKeepsTheAreaWithNothingAttached) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* area = Keep(dsa_create());
  const dsa_handle h = dsa_get_handle(area);
  const dsa_pointer dp = dsa_allocate(area, 5000);
  const dsa_pointer big = dsa_allocate(area, 2 * kMiB);  // a second segment
  FillPattern(dsa_get_address(area, dp), 5000, 4);
  FillPattern(dsa_get_address(area, big), 2 * kMiB, 5);
  const std::vector<std::string> names = NewNames(before, SegmentNamesOf(self_));
  EXPECT_GE(names.size(), 2u) << Join(names);
  Pin(area);
  Detach(area);
  for (const std::string& n : names) EXPECT_TRUE(ShmNameExists(n)) << n << ": a pinned area keeps its segments";

  dsa_area* again = Keep(dsa_attach(h));
  EXPECT_TRUE(HasPattern(dsa_get_address(again, dp), 5000, 4));
  EXPECT_TRUE(HasPattern(dsa_get_address(again, big), 2 * kMiB, 5));
  Unpin(again);
  auto err = CatchError([&] { dsa_unpin(again); });
  EXPECT_TRUE(err.has_value()) << "unpinning an area that is not pinned must be an ERROR";
  EXPECT_TRUE(HasPattern(dsa_get_address(again, dp), 5000, 4)) << "the failed unpin must change nothing";
  dsa_free(again, dp);
  dsa_free(again, big);
  EXPECT_AREA_CONSISTENT(again);
  Detach(again);
  EXPECT_EQ(SegmentNamesOf(self_), before) << "unpinned and detached: destroyed";
}

// Unpinning an area that was never pinned is an ERROR too.
TEST_F(DsaLifetimeTest, UnpinWithoutPinIsAnError) {
  dsa_area* area = Keep(dsa_create());
  EXPECT_TRUE(CatchError([&] { dsa_unpin(area); }).has_value());
  const dsa_pointer dp = dsa_allocate(area, 10);
  dsa_free(area, dp);
  EXPECT_AREA_CONSISTENT(area);
  Detach(area);
}

// Outside a transaction dsa_pin_mapping changes nothing visible: the
// attachment already belongs to the process; it still works and detaches.
TEST_F(DsaLifetimeTest, PinMappingOutsideATransaction) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* area = Keep(dsa_create());
  dsa_pin_mapping(area);
  const dsa_pointer dp = dsa_allocate(area, 64);
  dsa_free(area, dp);
  Detach(area);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// Two areas in one process are independent: their pointers are addresses
// in their own segments, their sizes their own, and destroying one leaves
// the other intact.
TEST_F(DsaLifetimeTest, TwoAreasAreIndependent) {
  dsa_area* a = Keep(dsa_create());
  dsa_area* b = Keep(dsa_create());
  EXPECT_NE(dsa_get_handle(a), dsa_get_handle(b));
  const dsa_pointer pa = dsa_allocate(a, 300);
  const dsa_pointer pb = dsa_allocate(b, 300);
  FillPattern(dsa_get_address(a, pa), 300, 6);
  FillPattern(dsa_get_address(b, pb), 300, 7);
  EXPECT_NE(dsa_get_address(a, pa), dsa_get_address(b, pb));
  const dsa_pointer big = dsa_allocate(a, 4 * kMiB);
  EXPECT_GT(dsa_get_total_size(a), dsa_get_total_size(b));
  dsa_free(a, big);
  dsa_free(a, pa);
  Detach(a);
  EXPECT_TRUE(HasPattern(dsa_get_address(b, pb), 300, 7));
  dsa_free(b, pb);
  EXPECT_AREA_CONSISTENT(b);
  Detach(b);
}

}  // namespace
}  // namespace grove::test
