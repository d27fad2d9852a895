// What workers report below ERROR, in each launch mode: every NOTICE and
// WARNING reaches the leader's message sink once, with its level, detail,
// hint and the worker's own context lines, plus "parallel worker N" for the
// worker that raised it, in the order the worker raised them — also when
// they are far more than the 16 KiB error queue holds at once, when one
// message alone is bigger than the queue, and when an ERROR follows them.
// The leader's minimum message level is the workers' too.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "parallel_test_support.h"
#include "grove/workers/parallel.h"

namespace grove::test {
namespace {

constexpr int kWorkers = 3;
constexpr int kManyMessages = 300;         // about 60 KB per worker through a 16 KiB queue
constexpr std::size_t kBigDetail = 40000;  // one message bigger than the queue

void AddPhaseContext(void*) { errcontext_msg("in phase %s", "scan"); }

void NoticeAndWarningEntry(dsm_segment*, shm_toc*) {
  const int n = ParallelWorkerNumber();
  ErrorContextCallback callback{error_context_stack, &AddPhaseContext, nullptr};
  error_context_stack = &callback;
  ereport(NOTICE, errmsg("notice from worker %d", n), errdetail("detail %d", n));
  ereport(WARNING, errmsg("warning from worker %d", n), errhint("hint %d", n));
  error_context_stack = callback.previous;
  ereport(DEBUG1, errmsg("debug from worker %d", n));  // below the minimum level: dropped
}

void ManyEntry(dsm_segment*, shm_toc*) {
  const int n = ParallelWorkerNumber();
  const std::string padding(180, static_cast<char>('a' + n));
  for (int k = 0; k < kManyMessages; ++k)
    ereport(WARNING, errmsg("worker %d message %d", n, k), errdetail("%s", padding.c_str()));
}

void BigEntry(dsm_segment*, shm_toc*) {
  const int n = ParallelWorkerNumber();
  std::string detail(kBigDetail, '\0');
  for (std::size_t i = 0; i < detail.size(); ++i) detail[i] = static_cast<char>('A' + (i * 7 + n) % 26);
  ereport(WARNING, errmsg("big from worker %d", n), errdetail("%s", detail.c_str()));
  ereport(NOTICE, errmsg("after big from worker %d", n));
}

void DebugEntry(dsm_segment*, shm_toc*) { ereport(DEBUG1, errmsg("debug from worker %d", ParallelWorkerNumber())); }

void NoticeThenErrorEntry(dsm_segment*, shm_toc*) {
  ereport(NOTICE, errmsg("before the error"));
  ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED), errmsg("the error"));
}

const bool registered = [] {
  RegisterParallelEntry("messages.notice_warning", &NoticeAndWarningEntry);
  RegisterParallelEntry("messages.many", &ManyEntry);
  RegisterParallelEntry("messages.big", &BigEntry);
  RegisterParallelEntry("messages.notice_error", &NoticeThenErrorEntry);
  RegisterParallelEntry("messages.debug", &DebugEntry);
  return true;
}();

std::string BigDetailOf(int n) {
  std::string detail(kBigDetail, '\0');
  for (std::size_t i = 0; i < detail.size(); ++i) detail[i] = static_cast<char>('A' + (i * 7 + n) % 26);
  return detail;
}

/// The worker number in a report's last context line, or −1.
int WorkerOf(const ErrorData& d) {
  if (d.context.empty()) return -1;
  int n = -1;
  if (std::sscanf(d.context.back().c_str(), "parallel worker %d", &n) != 1) return -1;
  if (d.context.back() != "parallel worker " + std::to_string(n)) return -1;
  return n;
}

class ParallelMessagesTest : public ParallelModeTest {
 protected:
  /// Runs `entry` with kWorkers workers; returns what the wait raised, if anything.
  std::optional<Error> Run(const char* entry) {
    ParallelContext* pcxt = CreateParallelContext(entry, kWorkers, GetParam());
    InitializeParallelDSM(pcxt);
    LaunchParallelWorkers(pcxt);
    EXPECT_EQ(pcxt->nworkers_launched, kWorkers);
    std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
    DestroyParallelContext(pcxt);
    return e;
  }
};

TEST_P(ParallelMessagesTest, NoticesAndWarningsReachTheLeaderWithTheWorkerNumber) {
  MessageCapture capture;
  const std::optional<Error> e = Run("messages.notice_warning");
  EXPECT_FALSE(e.has_value()) << e->Format();
  std::map<int, std::vector<ErrorData>> by_worker;
  for (const ErrorData& d : capture.reports) {
    const int n = WorkerOf(d);
    ASSERT_GE(n, 0) << "a report without \"parallel worker N\" as its last context line: " << d.Format();
    ASSERT_LT(n, kWorkers) << d.Format();
    by_worker[n].push_back(d);
  }
  ASSERT_EQ(by_worker.size(), static_cast<std::size_t>(kWorkers)) << capture.All();
  for (const auto& [n, reports] : by_worker) {
    const std::string num = std::to_string(n);
    ASSERT_EQ(reports.size(), 2u) << "worker " << n << ":\n" << capture.All();
    // In the order raised, each whole.
    EXPECT_EQ(reports[0].elevel, NOTICE);
    EXPECT_EQ(reports[0].message, "notice from worker " + num);
    EXPECT_EQ(reports[0].detail, "detail " + num);
    EXPECT_EQ(reports[1].elevel, WARNING);
    EXPECT_EQ(reports[1].message, "warning from worker " + num);
    EXPECT_EQ(reports[1].hint, "hint " + num);
    const std::vector<std::string> context{"in phase scan", "parallel worker " + num};
    EXPECT_EQ(reports[0].context, context);
    EXPECT_EQ(reports[1].context, context);
  }
  EXPECT_EQ(capture.CountContaining("debug from worker"), 0u);
}

TEST_P(ParallelMessagesTest, ManyMoreMessagesThanTheQueueHoldsAllArriveInOrder) {
  MessageCapture capture;
  const std::optional<Error> e = Run("messages.many");
  EXPECT_FALSE(e.has_value()) << e->Format();
  int next[kWorkers] = {};
  for (const ErrorData& d : capture.reports) {
    const int n = WorkerOf(d);
    ASSERT_GE(n, 0) << d.Format();
    ASSERT_LT(n, kWorkers);
    ASSERT_EQ(d.message, "worker " + std::to_string(n) + " message " + std::to_string(next[n])) << "lost or reordered";
    ASSERT_EQ(d.detail, std::string(180, static_cast<char>('a' + n)));
    ++next[n];
  }
  for (int n = 0; n < kWorkers; ++n) EXPECT_EQ(next[n], kManyMessages) << "worker " << n;
}

TEST_P(ParallelMessagesTest, MessageBiggerThanTheQueueArrivesWhole) {
  MessageCapture capture;
  const std::optional<Error> e = Run("messages.big");
  EXPECT_FALSE(e.has_value()) << e->Format();
  int seen_big[kWorkers] = {};
  int seen_after[kWorkers] = {};
  for (const ErrorData& d : capture.reports) {
    const int n = WorkerOf(d);
    ASSERT_GE(n, 0);
    ASSERT_LT(n, kWorkers);
    if (d.message == "big from worker " + std::to_string(n)) {
      EXPECT_EQ(seen_after[n], 0) << "reordered";
      EXPECT_TRUE(d.detail == BigDetailOf(n))
          << "worker " << n << ": detail of " << d.detail.size() << " bytes differs";
      ++seen_big[n];
    } else if (d.message == "after big from worker " + std::to_string(n)) {
      ++seen_after[n];
    } else {
      ADD_FAILURE() << "unexpected report " << d.Format();
    }
  }
  for (int n = 0; n < kWorkers; ++n) {
    EXPECT_EQ(seen_big[n], 1) << "worker " << n;
    EXPECT_EQ(seen_after[n], 1) << "worker " << n;
  }
}

TEST_P(ParallelMessagesTest, NoticeBeforeAnErrorIsForwardedFirst) {
  MessageCapture capture;
  ParallelContext* pcxt = CreateParallelContext("messages.notice_error", 1, GetParam());
  InitializeParallelDSM(pcxt);
  LaunchParallelWorkers(pcxt);
  std::size_t notices_when_raised = 0;
  try {
    WaitForParallelWorkersToFinish(pcxt);
    ADD_FAILURE() << "the worker's ERROR was not re-raised";
  } catch (const Error& err) {
    notices_when_raised = capture.CountContaining("before the error");
    EXPECT_EQ(err.message(), "the error");
    EXPECT_EQ(err.sqlstate(), ERRCODE_DATA_CORRUPTED);
    ASSERT_FALSE(err.data().context.empty());
    EXPECT_EQ(err.data().context.back(), "parallel worker 0");
  }
  DestroyParallelContext(pcxt);
  EXPECT_EQ(notices_when_raised, 1u) << capture.All();
  EXPECT_EQ(capture.reports.size(), 1u) << capture.All();
}

TEST_P(ParallelMessagesTest, ReportsGoToTheSinkOfTheLeadersThread) {
  // A leader on another thread: its own sink gets its workers' reports,
  // the main thread's gets none.
  MessageCapture main_thread;
  std::size_t leader_reports = 0;
  std::thread leader([&] {
    MessageCapture capture;
    const std::optional<Error> e = Run("messages.notice_warning");
    EXPECT_FALSE(e.has_value()) << e->Format();
    for (const ErrorData& d : capture.reports)
      if (WorkerOf(d) >= 0) ++leader_reports;
  });
  leader.join();
  EXPECT_EQ(leader_reports, static_cast<std::size_t>(2 * kWorkers));
  EXPECT_TRUE(main_thread.reports.empty()) << main_thread.All();
}

using ParallelMessageLevelTest = ParallelMessagesTest;

TEST_P(ParallelMessageLevelTest, LeadersMinimumLevelAppliesToItsWorkers) {
  {
    // Workers already warm (a pool's processes) before the level changes.
    MessageCapture quiet;
    EXPECT_FALSE(Run("messages.notice_warning").has_value());
  }
  const int saved = SetMinMessageLevel(DEBUG1);
  MessageCapture capture;
  const std::optional<Error> e = Run("messages.debug");
  SetMinMessageLevel(saved);
  EXPECT_FALSE(e.has_value());
  EXPECT_EQ(capture.CountContaining("debug from worker"), static_cast<std::size_t>(kWorkers)) << capture.All();
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelMessageLevelTest,
                         ::testing::Values(ParallelLaunchMode::kProcess, ParallelLaunchMode::kThread), LaunchModeName);
// A pool process was forked with the leader's minimum message level of that
// time; each job carries the leader's current one, so that pool workers
// report what process and thread workers report.
INSTANTIATE_TEST_SUITE_P(Pool, ParallelMessageLevelTest, ::testing::Values(ParallelLaunchMode::kPool),
                         LaunchModeName);

INSTANTIATE_TEST_SUITE_P(Modes, ParallelMessagesTest, AllLaunchModes(), LaunchModeName);

}  // namespace
}  // namespace grove::test
