// Helpers for the parallel-context suites (parallel_*_test.cc), on top of
// dsa_test_support.h (DsmTest, pipes, children): running a case once per
// launch mode, putting a test's shared state into a context's segment,
// waiting for a condition with a bound, and looking at this process's
// children and memory.
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "dsa_test_support.h"
#include "grove/workers/parallel.h"

namespace grove::test {

// --- launch modes ------------------------------------------------------------------------------------

/// A DsmTest run once per launch mode: GetParam() is the mode its contexts
/// use.
class ParallelModeTest : public DsmTest, public ::testing::WithParamInterface<ParallelLaunchMode> {
 protected:
  void ReleaseKeptSegments() override { ReleaseRecycledParallelSegments(); }

  /// This process's segment names once the segments kept for reuse by
  /// destroyed contexts are removed: what a leaked context would still hold.
  std::vector<std::string> NamesWithoutRecycled() {
    ReleaseRecycledParallelSegments();
    return SegmentNamesOf(self_);
  }
};

/// Every launch mode, for INSTANTIATE_TEST_SUITE_P.
inline auto AllLaunchModes() {
  return ::testing::Values(ParallelLaunchMode::kProcess, ParallelLaunchMode::kPool, ParallelLaunchMode::kThread);
}

/// Names a parameterized case after its launch mode ("process", "pool",
/// "thread"): the name generator of every INSTANTIATE_TEST_SUITE_P here.
inline std::string LaunchModeName(const ::testing::TestParamInfo<ParallelLaunchMode>& info) {
  return std::string(ParallelLaunchModeName(info.param));
}

// --- shared state ------------------------------------------------------------------------------------

/// The TOC key a test's shared state is inserted under.
inline constexpr std::uint64_t kKeyState = PARALLEL_KEY_FIRST_USER;

/// How many workers a test's per-worker arrays in shared state have room for.
inline constexpr int kMaxWorkers = 8;

/// For a context just created (CreateParallelContext): estimates room for
/// one State, initializes the segment (InitializeParallelDSM), and puts a
/// value-initialized State in it under `key`, where entries find it with
/// shm_toc_lookup. Returns it; launching is the caller's.
template <typename State>
State* InitializeParallelDSMWithState(ParallelContext* pcxt, std::uint64_t key) {
  shm_toc_estimate_chunk(&pcxt->estimator, sizeof(State));
  shm_toc_estimate_keys(&pcxt->estimator, 1);
  InitializeParallelDSM(pcxt);
  auto* state = new (shm_toc_allocate(pcxt->toc, sizeof(State))) State{};
  shm_toc_insert(pcxt->toc, key, state);
  return state;
}

// --- waiting -----------------------------------------------------------------------------------------

/// Polls `pred` every millisecond until it holds (true) or `limit` has
/// passed (false), so that a condition that never comes fails a test
/// instead of hanging it.
template <typename Pred>
bool WaitUntil(Pred pred, std::chrono::seconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// --- this process --------------------------------------------------------------------------------------

/// A child process, as /proc/<pid>/stat shows it.
struct ChildProcess {
  pid_t pid;
  char state;  // as /proc/<pid>/stat: 'Z' for a zombie
};

/// The processes whose parent is `parent`, from /proc: the workers and pool
/// processes a test leaves, zombies included.
inline std::vector<ChildProcess> ChildrenOf(pid_t parent) {
  std::vector<ChildProcess> out;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return out;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string path = std::string("/proc/") + e->d_name + "/stat";
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) continue;  // gone meanwhile
    char buf[1024];
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    const char* close_paren = std::strrchr(buf, ')');  // the command may contain anything
    if (close_paren == nullptr) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2) continue;
    if (ppid == parent) out.push_back({static_cast<pid_t>(std::atoi(e->d_name)), state});
  }
  closedir(dir);
  return out;
}

/// How many processes have `parent` as their parent.
inline std::size_t ChildCount(pid_t parent) { return ChildrenOf(parent).size(); }

/// Bytes handed out from TopMemoryContext itself (its blocks less their free
/// space): what a leak there adds to, however small.
inline std::size_t TopMemoryContextUsed() {
  const MemoryContextCounters c = MemoryContextGetCounters(TopMemoryContext);
  return c.totalspace - c.freespace;
}

}  // namespace grove::test
