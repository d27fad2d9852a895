// Interrupts: a cancel requested (directly, by SIGINT, or from another
// thread) is raised once, at the next CHECK_FOR_INTERRUPTS, as ERROR 57014;
// a thread's own cancel word reaches that thread's checks only.
#include <atomic>
#include <csignal>
#include <cstdint>
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

TEST(InterruptsTest, ThreadCancelIsRaisedOnceInItsThreadOnly) {
  std::atomic<std::uint32_t> stop{0};
  {
    ScopedThreadCancel scope(&stop);
    EXPECT_NO_THROW(CHECK_FOR_INTERRUPTS()) << "the word is still zero";
    stop.store(1);
    bool other_thread_raised = false;
    std::thread t([&] {
      try {
        CHECK_FOR_INTERRUPTS();
      } catch (const Error&) {
        other_thread_raised = true;
      }
    });
    t.join();
    EXPECT_FALSE(other_thread_raised) << "another thread's checks do not read this thread's word";
    try {
      CHECK_FOR_INTERRUPTS();
      FAIL() << "a set word must raise";
    } catch (const Error& e) {
      EXPECT_EQ(e.sqlstate(), ERRCODE_QUERY_CANCELED);
    }
    EXPECT_NO_THROW(CHECK_FOR_INTERRUPTS()) << "raised once per installation";
    EXPECT_FALSE(InterruptPending.load()) << "a thread's cancel is not the process's";
  }
  EXPECT_NO_THROW(CHECK_FOR_INTERRUPTS()) << "uninstalled with its scope";
}

TEST(InterruptsTest, ThreadCancelScopesNestAndRestore) {
  std::atomic<std::uint32_t> outer{0};
  std::atomic<std::uint32_t> inner{1};
  ScopedThreadCancel a(&outer);
  {
    ScopedThreadCancel b(&inner);
    EXPECT_THROW(CHECK_FOR_INTERRUPTS(), Error);
  }
  EXPECT_NO_THROW(CHECK_FOR_INTERRUPTS()) << "the outer word is zero again";
  outer.store(1);
  EXPECT_THROW(CHECK_FOR_INTERRUPTS(), Error);
}

TEST(InterruptsTest, AThreadWithItsOwnCancelLeavesTheProcessCancelToTheOthers) {
  std::atomic<std::uint32_t> stop{0};
  RequestCancel();
  {
    ScopedThreadCancel scope(&stop);
    EXPECT_NO_THROW(CHECK_FOR_INTERRUPTS()) << "the process's cancel is not this thread's";
    EXPECT_TRUE(InterruptPending.load()) << "and it is left pending";
    stop.store(1);
    EXPECT_THROW(CHECK_FOR_INTERRUPTS(), Error);
    EXPECT_TRUE(InterruptPending.load());
  }
  EXPECT_THROW(CHECK_FOR_INTERRUPTS(), Error) << "a thread without its own takes the process's";
  EXPECT_FALSE(InterruptPending.load());
}

TEST(InterruptsTest, HeldInterruptsRaiseNothingAndStayPending) {
  std::atomic<std::uint32_t> stop{1};
  {
    HoldInterrupts hold;
    RequestCancel();
    EXPECT_NO_THROW(CHECK_FOR_INTERRUPTS());
    EXPECT_NO_THROW(ProcessInterrupts());
    {
      ScopedThreadCancel scope(&stop);
      HoldInterrupts nested;
      EXPECT_NO_THROW(CHECK_FOR_INTERRUPTS());
    }
    EXPECT_TRUE(InterruptPending.load()) << "held, not consumed";
  }
  EXPECT_THROW(CHECK_FOR_INTERRUPTS(), Error) << "raised at the first check after the hold";
  ScopedThreadCancel scope(&stop);
  EXPECT_THROW(CHECK_FOR_INTERRUPTS(), Error) << "the thread's own, held before, is still undelivered";
}

}  // namespace
}  // namespace grove
