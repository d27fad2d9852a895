// Assert() and the branch hints (base/include/grove/base/assert.h).
// Assertions are for bugs: a failed Assert aborts (checking builds only), so
// it is tested as a death test.
#include "grove/base/assert.h"

#include <gtest/gtest.h>

namespace grove {
namespace {

// A true assertion does nothing; in checking builds the condition is
// evaluated exactly once, in other builds not at all.
TEST(AssertTest, TrueConditionIsANoOp) {
  int evaluated = 0;
  Assert(++evaluated == 1);
  EXPECT_EQ(evaluated, GROVE_ASSERT_CHECKING_ENABLED ? 1 : 0);
}

// GROVE_ASSERT_CHECKING_ENABLED follows the build's checking setting.
TEST(AssertTest, CheckingFlagMatchesBuild) {
#ifdef GROVE_USE_ASSERT_CHECKING
  EXPECT_EQ(GROVE_ASSERT_CHECKING_ENABLED, 1);
#else
  EXPECT_EQ(GROVE_ASSERT_CHECKING_ENABLED, 0);
#endif
}

// The branch hints keep the truth value of their argument.
TEST(AssertTest, BranchHintsKeepValue) {
  int nonzero = 5;
  EXPECT_TRUE(GROVE_LIKELY(nonzero));
  EXPECT_FALSE(GROVE_UNLIKELY(nonzero == 4));
}

// A failed Assert prints "TRAP: failed Assert(...)" with the condition and
// aborts (checking builds).
TEST(AssertDeathTest, FailedAssertAborts) {
  if (!GROVE_ASSERT_CHECKING_ENABLED) GTEST_SKIP() << "Assert() is compiled out in this build";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  volatile int one = 1;
  (void)one;  // unused when Assert() is compiled out
  EXPECT_DEATH(Assert(one == 2), "TRAP: failed Assert\\(\"one == 2\"\\)");
}

// AssertionFailed names the file and line it was given.
TEST(AssertDeathTest, AssertionFailedNamesLocation) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(AssertionFailed("x > 0", "some_file.cc", 123), "some_file.cc.*123");
}

}  // namespace
}  // namespace grove
