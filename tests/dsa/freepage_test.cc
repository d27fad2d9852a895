// The free-page manager against a model (a bitmap of free pages): best fit,
// merging, counts and the largest run, over many random operations; and its
// errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "grove/base/error.h"
#include "grove/dsa/freepage.h"

namespace grove {
namespace {

class FreePageTest : public ::testing::Test {
 protected:
  FreePageManager* Make(std::size_t npages) {
    storage_ = std::make_unique<std::uint64_t[]>(FreePageManagerSize(npages) / 8 + 1);
    return FreePageManagerInitialize(storage_.get(), npages);
  }
  static void ExpectValid(const FreePageManager* fpm) {
    const char* why = nullptr;
    EXPECT_TRUE(FreePageManagerCheck(fpm, &why)) << why;
  }
  std::unique_ptr<std::uint64_t[]> storage_;
};

// A new manager has every page in use; freeing them all makes one run.
TEST_F(FreePageTest, StartsFullAndMergesIntoOneRun) {
  FreePageManager* fpm = Make(1000);
  EXPECT_EQ(FreePageManagerFreePages(fpm), 0u);
  EXPECT_EQ(FreePageManagerLargestRun(fpm), 0u);
  std::size_t first = 0;
  EXPECT_FALSE(FreePageManagerGet(fpm, 1, &first));
  // Free in an order that merges left, right, and on both sides.
  FreePageManagerPut(fpm, 0, 100);
  FreePageManagerPut(fpm, 200, 100);
  FreePageManagerPut(fpm, 100, 100);  // joins both neighbours
  FreePageManagerPut(fpm, 300, 700);
  ExpectValid(fpm);
  EXPECT_EQ(FreePageManagerFreePages(fpm), 1000u);
  EXPECT_EQ(FreePageManagerLargestRun(fpm), 1000u);
}

// Get takes the smallest run that fits, and splits it from its start.
TEST_F(FreePageTest, BestFit) {
  FreePageManager* fpm = Make(1000);
  FreePageManagerPut(fpm, 10, 50);  // runs of 50, 5 and 300, apart
  FreePageManagerPut(fpm, 100, 5);
  FreePageManagerPut(fpm, 500, 300);
  std::size_t first = 0;
  ASSERT_TRUE(FreePageManagerGet(fpm, 4, &first));
  EXPECT_EQ(first, 100u) << "the 5-page run is the best fit for 4";
  ASSERT_TRUE(FreePageManagerGet(fpm, 40, &first));
  EXPECT_EQ(first, 10u);
  ASSERT_TRUE(FreePageManagerGet(fpm, 200, &first));
  EXPECT_EQ(first, 500u);
  EXPECT_FALSE(FreePageManagerGet(fpm, 101, &first)) << "100 pages is the longest run left";
  ExpectValid(fpm);
  EXPECT_EQ(FreePageManagerLargestRun(fpm), 100u);
}

// Bad ranges are errors that change nothing.
TEST_F(FreePageTest, BadPutsAreErrors) {
  FreePageManager* fpm = Make(100);
  FreePageManagerPut(fpm, 10, 10);
  EXPECT_THROW(FreePageManagerPut(fpm, 95, 10), Error) << "past the end";
  EXPECT_THROW(FreePageManagerPut(fpm, 100, 1), Error) << "first page out of range";
  EXPECT_THROW(FreePageManagerPut(fpm, 10, 1), Error) << "already free (a run's first page)";
  EXPECT_THROW(FreePageManagerPut(fpm, 5, 6), Error) << "ends on a free page (the run 10..19 starts there)";
  ExpectValid(fpm);
  EXPECT_EQ(FreePageManagerFreePages(fpm), 10u);
  EXPECT_THROW(Make(0), Error);
}

// 200,000 random gets and puts against a bitmap model: no page is handed out
// twice, counts and the largest run always match, the structure stays valid.
TEST_F(FreePageTest, RandomOperationsMatchModel) {
  constexpr std::size_t kPages = 20000;
  FreePageManager* fpm = Make(kPages);
  std::vector<bool> free(kPages, true);
  struct Run {
    std::size_t first, n;
  };
  std::vector<Run> held;
  FreePageManagerPut(fpm, 0, kPages);
  std::mt19937_64 rng(7);
  auto model_largest = [&] {
    std::size_t best = 0, cur = 0;
    for (bool f : free) {
      cur = f ? cur + 1 : 0;
      best = std::max(best, cur);
    }
    return best;
  };
  for (int op = 0; op < 200000; ++op) {
    const bool get = held.empty() || (rng() % 100) < 52;
    if (get) {
      const std::size_t n = rng() % 8 == 0 ? 1 + rng() % 400 : 1 + rng() % 16;
      std::size_t first = 0;
      if (!FreePageManagerGet(fpm, n, &first)) {
        ASSERT_LT(model_largest(), n) << "a run long enough existed";
        continue;
      }
      for (std::size_t p = first; p < first + n; ++p) {
        ASSERT_TRUE(free[p]) << "page " << p << " handed out twice";
        free[p] = false;
      }
      held.push_back({first, n});
    } else {
      const std::size_t i = rng() % held.size();
      const Run r = held[i];
      held[i] = held.back();
      held.pop_back();
      FreePageManagerPut(fpm, r.first, r.n);
      for (std::size_t p = r.first; p < r.first + r.n; ++p) free[p] = true;
    }
    if (op % 5000 == 0) {
      ExpectValid(fpm);
      ASSERT_EQ(FreePageManagerFreePages(fpm), static_cast<std::size_t>(std::count(free.begin(), free.end(), true)));
      ASSERT_EQ(FreePageManagerLargestRun(fpm), model_largest());
    }
  }
  for (const Run& r : held) FreePageManagerPut(fpm, r.first, r.n);
  ExpectValid(fpm);
  EXPECT_EQ(FreePageManagerLargestRun(fpm), kPages) << "everything merged back into one run";
}

}  // namespace
}  // namespace grove
