// Parallel contexts one after another: 100 contexts in a row (create,
// initialize the segment, launch 2 workers, finish, destroy) in each launch
// mode leave nothing behind — no segment in /dev/shm, no child process (no
// zombie, no stray; pool processes stay the pool's, at most
// MaxParallelWorkers), no file descriptor, no thread beyond the arena's, no
// memory in a warm worker (a pool process, an arena thread) nor in the
// leader's TopMemoryContext once the first round has warmed things up.
#include <dirent.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <string>
#include <vector>

#include "parallel_test_support.h"
#include "grove/workers/parallel.h"

namespace grove::test {
namespace {

constexpr std::uint64_t kKeyRound = PARALLEL_KEY_FIRST_USER;
constexpr int kWorkers = 2;
constexpr int kRounds = 100;

/// What each worker of a round reports.
struct RoundState {
  std::atomic<std::uint32_t> runs;
  std::atomic<std::uint32_t> numbers;  // bit per ParallelWorkerNumber seen
  std::atomic<std::int32_t> bad_number;
  std::int32_t tid[kWorkers];         // the worker's thread id (its pid for processes)
  std::uint64_t top_bytes[kWorkers];  // its TopMemoryContext tree, as the entry saw it
};

void RoundEntry(dsm_segment*, shm_toc* toc) {
  auto* s = static_cast<RoundState*>(shm_toc_lookup(toc, kKeyRound, false));
  const int n = ParallelWorkerNumber();
  if (n < 0 || n >= kWorkers) {
    s->bad_number.store(n);
    return;
  }
  s->tid[n] = static_cast<std::int32_t>(syscall(SYS_gettid));
  s->top_bytes[n] = TopMemoryContextUsed();
  s->numbers.fetch_or(1u << n);
  s->runs.fetch_add(1);
}

const bool registered = [] {
  RegisterParallelEntry("repeat.round", &RoundEntry);
  return true;
}();

// --- what the process holds -------------------------------------------------------------------

std::size_t EntriesIn(const char* path) {
  std::size_t n = 0;
  if (DIR* dir = opendir(path)) {
    while (dirent* e = readdir(dir))
      if (e->d_name[0] != '.') ++n;
    closedir(dir);
  }
  return n;
}
std::size_t OpenFileDescriptors() { return EntriesIn("/proc/self/fd") - 1; }  // less opendir's own
std::size_t Threads() { return EntriesIn("/proc/self/task"); }

bool NoChildAtAll() {
  errno = 0;
  return waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

std::string DescribeChildren(const std::vector<ChildProcess>& children) {
  std::string out;
  for (const ChildProcess& c : children) out += " " + std::to_string(c.pid) + "(" + c.state + ")";
  return out.empty() ? " (none)" : out;
}

// --- the rounds ---------------------------------------------------------------------------------

class ParallelRepeatTest : public ParallelModeTest {
 protected:
  /// One context, start to end. Returns "" or what went wrong; records the
  /// warm workers' memory.
  std::string OneContext() {
    ParallelContext* pcxt = CreateParallelContext("repeat.round", kWorkers, GetParam());
    std::string problem;
    try {
      auto* s = InitializeParallelDSMWithState<RoundState>(pcxt, kKeyRound);
      s->bad_number.store(-1);
      LaunchParallelWorkers(pcxt);
      WaitForParallelWorkersToFinish(pcxt);
      if (pcxt->nworkers_launched != kWorkers)
        problem = "launched " + std::to_string(pcxt->nworkers_launched) + " workers of " + std::to_string(kWorkers);
      else if (s->runs.load() != kWorkers || s->numbers.load() != (1u << kWorkers) - 1)
        problem = "runs " + std::to_string(s->runs.load()) + ", worker numbers " + std::to_string(s->numbers.load());
      else if (s->bad_number.load() != -1)
        problem = "a worker saw ParallelWorkerNumber() = " + std::to_string(s->bad_number.load());
      for (int i = 0; i < kWorkers && problem.empty(); ++i) worker_bytes_[s->tid[i]].push_back(s->top_bytes[i]);
    } catch (const Error& e) {
      problem = "ERROR: " + e.Format();
    }
    DestroyParallelContext(pcxt);
    return problem;
  }

  /// A warm worker (a pool process or an arena thread that ran jobs before)
  /// sees the same memory at the start of every job after its first.
  void ExpectWarmWorkersDoNotGrow() {
    int warm = 0;
    for (const auto& [tid, bytes] : worker_bytes_) {
      if (bytes.size() < 3) continue;
      ++warm;
      for (std::size_t k = 2; k < bytes.size(); ++k) {
        if (bytes[k] != bytes[1]) {
          ADD_FAILURE() << "worker " << tid << " (" << ParallelLaunchModeName(GetParam()) << " mode): TopMemoryContext "
                        << bytes[1] << " bytes in use at its second job, " << bytes[k] << " at job " << k + 1;
          break;
        }
      }
    }
    if (GetParam() != ParallelLaunchMode::kProcess) {
      EXPECT_GT(warm, 0) << "no worker ran three jobs: warm workers are not reused";
    }
  }

  std::map<std::int32_t, std::vector<std::uint64_t>> worker_bytes_;
};

TEST_P(ParallelRepeatTest, HundredContextsLeaveNothingBehind) {
  const ParallelLaunchMode mode = GetParam();
  // Only the pool's processes may be children of this process; outside pool
  // mode there are none at all.
  if (mode != ParallelLaunchMode::kPool) ShutdownParallelWorkerPool();
  const std::vector<std::string> names_at_start = NamesWithoutRecycled();
  const std::size_t threads_before = Threads();

  // Warm-up: the pool's processes, the thread arena, the leader's allocator
  // blocks, the segment registry, and the segment that every later context
  // of the process modes reuses (recycled by DestroyParallelContext).
  ASSERT_EQ(OneContext(), "");
  const std::vector<std::string> names_before = SegmentNamesOf(self_);
  const std::size_t created_before = dsm_created_segment_count();
  if (mode == ParallelLaunchMode::kThread) {
    EXPECT_EQ(names_before, names_at_start) << "a thread-mode context's segment is private";
  } else {
    EXPECT_EQ(NewNames(names_at_start, names_before).size(), 1u) << "the first context's segment, kept for reuse";
  }
  const std::size_t fds = OpenFileDescriptors();
  const int pool_size = ParallelWorkerPoolSize();

  for (int round = 1; round <= kRounds; ++round) {
    const std::string problem = OneContext();
    ASSERT_EQ(problem, "") << "round " << round;
    const std::vector<std::string> names = SegmentNamesOf(self_);
    ASSERT_EQ(names, names_before) << "round " << round << ": segments left: " << Join(NewNames(names_before, names));
    ASSERT_EQ(dsm_created_segment_count(), created_before) << "round " << round;
    const std::vector<ChildProcess> children = ChildrenOf(self_);
    for (const ChildProcess& c : children) {
      ASSERT_NE(c.state, 'Z') << "round " << round << ": zombie child " << c.pid;
    }
    switch (mode) {
      case ParallelLaunchMode::kProcess:
      case ParallelLaunchMode::kThread:
        ASSERT_TRUE(NoChildAtAll()) << "round " << round << ": children:" << DescribeChildren(children);
        break;
      case ParallelLaunchMode::kPool:
        ASSERT_EQ(static_cast<int>(children.size()), ParallelWorkerPoolSize())
            << "round " << round << ": children that are not pool processes:" << DescribeChildren(children);
        ASSERT_EQ(ParallelWorkerPoolSize(), pool_size) << "round " << round << ": the pool grew or shrank";
        ASSERT_LE(ParallelWorkerPoolSize(), MaxParallelWorkers());
        break;
    }
  }

  EXPECT_EQ(OpenFileDescriptors(), fds) << "file descriptors leaked over " << kRounds << " contexts";
  if (mode == ParallelLaunchMode::kThread) {
    EXPECT_LE(Threads(), threads_before + static_cast<std::size_t>(MaxParallelWorkers()) + 1)
        << "more threads than the arena's";
  } else {
    EXPECT_EQ(Threads(), threads_before);
  }
  ExpectWarmWorkersDoNotGrow();
  EXPECT_EQ(NamesWithoutRecycled(), names_at_start) << "the kept segment is removed on request";

  if (mode == ParallelLaunchMode::kPool) {
    EXPECT_GE(pool_size, kWorkers);
    ShutdownParallelWorkerPool();
    EXPECT_EQ(ParallelWorkerPoolSize(), 0);
    EXPECT_TRUE(NoChildAtAll()) << "children after the pool's shutdown:" << DescribeChildren(ChildrenOf(self_));
  }
}

// The leader's error-queue handles live in TopMemoryContext and
// shm_mq_detach leaves a handle allocated: DetachErrorQueues must free them,
// or every context leaves nworkers of them behind (about 270 bytes each).
TEST_P(ParallelRepeatTest, HundredContextsGiveTheLeadersMemoryBack) {
  ASSERT_EQ(OneContext(), "");  // warm-up: the allocator's blocks, the registry
  const std::size_t leader_blocks = MemoryContextMemAllocated(TopMemoryContext, true);
  const std::size_t leader_used = TopMemoryContextUsed();
  for (int round = 1; round <= kRounds; ++round) ASSERT_EQ(OneContext(), "") << "round " << round;
  EXPECT_EQ(TopMemoryContextUsed(), leader_used) << "bytes in use in the leader's TopMemoryContext";
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), leader_blocks)
      << "the leader's TopMemoryContext grew over " << kRounds << " contexts";
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelRepeatTest, AllLaunchModes(), LaunchModeName);

}  // namespace
}  // namespace grove::test
