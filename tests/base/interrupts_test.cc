// Interrupts: a cancel requested (directly, by SIGINT, or from another
// thread) is raised once, at the next CHECK_FOR_INTERRUPTS, as ERROR 57014.
#include <csignal>
#include <thread>

#include <gtest/gtest.h>

#include "grove/base/error.h"
#include "grove/base/interrupts.h"

namespace grove {
namespace {

TEST(InterruptsTest, NothingPendingIsNoOp) {
  EXPECT_NO_THROW(CHECK_FOR_INTERRUPTS());
  EXPECT_NO_THROW(ProcessInterrupts());
}

TEST(InterruptsTest, CancelIsRaisedOnceAtTheNextCheck) {
  RequestCancel();
  try {
    CHECK_FOR_INTERRUPTS();
    FAIL() << "a pending cancel must raise";
  } catch (const Error& e) {
    EXPECT_EQ(e.sqlstate(), ERRCODE_QUERY_CANCELED);
    EXPECT_STREQ(e.what(), "canceling statement due to user request");
  }
  EXPECT_NO_THROW(CHECK_FOR_INTERRUPTS()) << "the cancel is consumed by the ERROR";
}

TEST(InterruptsTest, SigintRequestsCancel) {
  struct sigaction old {};
  ASSERT_EQ(sigaction(SIGINT, nullptr, &old), 0);
  ASSERT_TRUE(InstallCancelSignalHandler());
  ASSERT_EQ(raise(SIGINT), 0);
  EXPECT_TRUE(QueryCancelPending.load());
  EXPECT_THROW(CHECK_FOR_INTERRUPTS(), Error);
  sigaction(SIGINT, &old, nullptr);
}

TEST(InterruptsTest, AnotherThreadCanCancel) {
  std::thread t([] { RequestCancel(); });
  t.join();
  EXPECT_THROW(CHECK_FOR_INTERRUPTS(), Error);
}

}  // namespace
}  // namespace grove
