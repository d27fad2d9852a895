// Helpers for the dsa/ tests: listing this test's names in /dev/shm, forked
// children that always end with _exit() and are always reaped, pipes to
// talk to them, error and message capture, and a fixture that makes sure a
// test leaves nothing behind — no segment, no child — whether it passes or
// fails.
//
// Rules every dsa test follows:
// * Only names that carry a pid this test created are ever looked at or
//   unlinked: "grove.<this process's pid>.*" and "grove.<a child's pid>.*".
//   Other test processes run in parallel (ctest -j2) and have their own.
// * A child never returns into gtest and never calls exit(): its body runs
//   inside RunChild, which ends with _exit() (the exceptions are the two
//   normal-exit tests of dsm_orphan_test.cc, which call std::exit on
//   purpose — see there). A child
//   uses no gtest assertion: CHILD_REQUIRE prints what failed and makes the
//   child exit non-zero, which the parent checks.
// * A child dies with its parent (PR_SET_PDEATHSIG), so a parent killed by a
//   ctest timeout leaves no process behind either.
// * A child that ends with _exit() skips the atexit handler that removes the
//   names of the segments it created (and its registry, "grove.<pid>.control"):
//   for the library that is a process that died without exiting, and the
//   documented cleanup, dsm_cleanup_orphans(), is what the parent calls after
//   reaping it. The fixture fails the test if any name of a child is left.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "grove/base/error.h"
#include "grove/contexts/memutils.h"
#include "grove/contexts/palloc.h"
#include "grove/contexts/testing.h"
#include "grove/dsa/dsm.h"
#include "grove/dsa/shm_toc.h"
#include "grove/resowner/resowner.h"
#include "grove/runtime/xact.h"
#include "../support/report_capture.h"

namespace grove::test {

// --- errors and messages ------------------------------------------------------------

inline constexpr const char* kLeakText = "resource was not closed";


// --- /dev/shm ----------------------------------------------------------------------------

inline std::string PidPrefix(pid_t pid) { return "grove." + std::to_string(pid) + "."; }
inline std::string ControlNameOf(pid_t pid) { return PidPrefix(pid) + "control"; }

/// Every name in /dev/shm that starts "grove.<pid>." (no leading slash), sorted.
inline std::vector<std::string> GroveNamesOf(pid_t pid) {
  std::vector<std::string> out;
  const std::string prefix = PidPrefix(pid);
  if (DIR* dir = opendir("/dev/shm")) {
    while (dirent* e = readdir(dir))
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) out.emplace_back(e->d_name);
    closedir(dir);
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// The same without the registry ("grove.<pid>.control"): the segments.
inline std::vector<std::string> SegmentNamesOf(pid_t pid) {
  std::vector<std::string> out = GroveNamesOf(pid);
  std::erase(out, ControlNameOf(pid));
  return out;
}

inline bool ShmNameExists(const std::string& name) {
  struct stat st;
  return stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

/// Names in `after` that are not in `before`.
inline std::vector<std::string> NewNames(const std::vector<std::string>& before,
                                         const std::vector<std::string>& after) {
  std::vector<std::string> out;
  for (const std::string& n : after)
    if (std::find(before.begin(), before.end(), n) == before.end()) out.push_back(n);
  return out;
}

inline std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : " ") + n;
  return out.empty() ? "(none)" : out;
}

/// Unlinks each name (they carry pids of this test's processes only).
inline void UnlinkAll(const std::vector<std::string>& names) {
  for (const std::string& n : names) shm_unlink(("/" + n).c_str());
}

/// Last line of defence, at process exit: after the library's own atexit
/// handler (registered later, so run earlier) has removed this process's
/// segments and registry, nothing named after this process may remain. If
/// something does, it is removed and the process exits with status 3, so
/// that ctest reports the case as failed. Registered once, before the first
/// DSM call; does nothing in forked children.
inline pid_t& ExitSweepPid() {
  static pid_t pid = 0;
  return pid;
}
inline void ExitSweep() {
  if (ExitSweepPid() != getpid()) return;
  const std::vector<std::string> left = GroveNamesOf(getpid());
  if (left.empty()) return;
  std::fprintf(stderr, "dsa tests: left in /dev/shm at process exit (removed now): %s\n", Join(left).c_str());
  UnlinkAll(left);
  std::fflush(stderr);
  _exit(3);
}
inline void RegisterExitSweepOnce() {
  if (ExitSweepPid() != 0) return;
  ExitSweepPid() = getpid();
  std::atexit(&ExitSweep);
}

inline bool IsAllZero(const void* p, std::size_t n) {
  static const unsigned char zeros[4096] = {};
  const auto* b = static_cast<const unsigned char*>(p);
  while (n > 0) {
    const std::size_t k = std::min(n, sizeof zeros);
    if (std::memcmp(b, zeros, k) != 0) return false;
    b += k;
    n -= k;
  }
  return true;
}

/// A byte pattern that depends on the offset and a seed.
inline unsigned char PatternByte(std::size_t i, unsigned seed) {
  return static_cast<unsigned char>((i * 131u + seed * 7u + (i >> 12)) & 0xff);
}
inline void FillPattern(void* p, std::size_t n, unsigned seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) b[i] = PatternByte(i, seed);
}
inline bool HasPattern(const void* p, std::size_t n, unsigned seed) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != PatternByte(i, seed)) return false;
  return true;
}

// --- pipes ----------------------------------------------------------------------------------

/// A pipe for fixed-size values. Reads block (no timeouts: a dead peer is an
/// EOF, provided each side closed the end it does not use).
class Pipe {
 public:
  Pipe() {
    if (pipe(fds_) != 0) {
      fds_[0] = fds_[1] = -1;
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
    }
  }
  ~Pipe() {
    CloseRead();
    CloseWrite();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  void CloseRead() {
    if (fds_[0] >= 0) close(fds_[0]);
    fds_[0] = -1;
  }
  void CloseWrite() {
    if (fds_[1] >= 0) close(fds_[1]);
    fds_[1] = -1;
  }
  template <typename T>
  bool Send(const T& value) {
    const char* p = reinterpret_cast<const char*>(&value);
    std::size_t left = sizeof(T);
    while (left > 0) {
      const ssize_t n = write(fds_[1], p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    return true;
  }
  /// False on EOF (the writer is gone) or error.
  template <typename T>
  bool Receive(T* value) {
    char* p = reinterpret_cast<char*>(value);
    std::size_t left = sizeof(T);
    while (left > 0) {
      const ssize_t n = read(fds_[0], p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    return true;
  }

 private:
  int fds_[2];
};

// --- children ----------------------------------------------------------------------------------

/// In a child body: on failure, say what and where on stderr, and make the
/// child exit with status 1.
#define CHILD_REQUIRE(cond)                                                                                    \
  do {                                                                                                         \
    if (!(cond)) {                                                                                             \
      std::fprintf(stderr, "[child %d] %s:%d: requirement failed: %s\n", static_cast<int>(getpid()), __FILE__, \
                   __LINE__, #cond);                                                                           \
      return 1;                                                                                                \
    }                                                                                                          \
  } while (0)

/// Exit statuses of RunChild besides the body's own.
inline constexpr int kChildGroveError = 90;
inline constexpr int kChildOtherException = 91;
inline constexpr int kChildOrphaned = 92;

inline std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    std::string s = "exited with status " + std::to_string(code);
    if (code == kChildGroveError) s += " (a grove::Error escaped the child body; see stderr)";
    if (code == kChildOtherException) s += " (an exception escaped the child body)";
    if (code == 1) s += " (a CHILD_REQUIRE failed; see stderr)";
    return s;
  }
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

inline bool ExitedZero(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

// --- fixture ----------------------------------------------------------------------------------

/// Every test starts outside a transaction with memory contexts set up and
/// ends by checking, and then guaranteeing, that it left nothing behind:
/// * children still running are killed and every child is reaped;
/// * an open transaction is a failure, and is aborted;
/// * segments the test tracked (Track/Create) and still has attached are
///   detached, pins it recorded (PinSegment) and did not undo are undone;
/// * any name "grove.<this pid>.*" that was not there before the test
///   (the process's registry, "grove.<pid>.control", may stay: it belongs to
///   the process and goes at its exit) and any name "grove.<child pid>.*"
///   is a failure, and is unlinked.
class DsmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MemoryContextInit();
    RegisterExitSweepOnce();
    old_dump_ = mcxt::SetDumpStatsOnOutOfMemory(false);
    old_context_ = CurrentMemoryContext;
    old_owner_ = CurrentResourceOwner;
    self_ = getpid();
    names_before_ = GroveNamesOf(self_);
    ASSERT_FALSE(IsTransactionState()) << "a previous test left a transaction open";
  }

  void TearDown() override {
    // 1. Children: none may outlive the test.
    for (pid_t pid : running_) {
      if (!HasFailure()) ADD_FAILURE() << "child " << pid << " was still running at the end of the test";
      kill(pid, SIGKILL);
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    running_.clear();
    // 2. Transactions.
    if (IsTransactionState()) {
      ADD_FAILURE() << "the test left a transaction open";
      AbortCurrentTransaction();
    }
    EXPECT_EQ(CurrentResourceOwner, old_owner_);
    CurrentResourceOwner = old_owner_;
    CurrentMemoryContext = old_context_;
    // 3. What the test still holds (only after a failure, normally).
    for (dsm_handle h : pinned_) {
      if (!HasFailure()) ADD_FAILURE() << "segment " << std::hex << h << " was still pinned at the end of the test";
      try {
        dsm_unpin_segment(h);
      } catch (const Error& e) {
        ADD_FAILURE() << "TearDown could not unpin " << std::hex << h << ": " << e.what();
      }
    }
    pinned_.clear();
    for (dsm_handle h : tracked_) {
      if (dsm_segment* seg = dsm_find_mapping(h)) {
        ADD_FAILURE() << "segment " << std::hex << h << " was still attached at the end of the test";
        dsm_detach(seg);
      }
    }
    tracked_.clear();
    // 4. /dev/shm (after what a layer above keeps for reuse is given back).
    ReleaseKeptSegments();
    std::vector<std::string> mine = NewNames(names_before_, GroveNamesOf(self_));
    std::erase(mine, ControlNameOf(self_));
    if (!mine.empty()) {
      ADD_FAILURE() << "left in /dev/shm by this process (removed now): " << Join(mine);
      UnlinkAll(mine);
    }
    for (pid_t pid : children_) {
      // Every child is reaped by now; a pid that is alive again belongs to
      // someone else, and so do its names.
      if (kill(pid, 0) == 0 || errno != ESRCH) continue;
      const std::vector<std::string> left = GroveNamesOf(pid);
      if (!left.empty()) {
        ADD_FAILURE() << "left in /dev/shm by child " << pid << " (removed now): " << Join(left);
        UnlinkAll(left);
      }
    }
    children_.clear();
    mcxt::SetDumpStatsOnOutOfMemory(old_dump_);
  }

  /// Removes the segments a layer above keeps for reuse (recycled parallel
  /// context segments) before TearDown looks for leftovers.
  virtual void ReleaseKeptSegments() {}

  // --- segments -------------------------------------------------------------------------------

  /// dsm_create, remembered so that TearDown detaches it if the test fails
  /// before it does.
  dsm_segment* Create(std::size_t size, int flags = 0) {
    dsm_segment* seg = dsm_create(size, flags);
    if (seg != nullptr) Track(dsm_segment_handle(seg));
    return seg;
  }
  dsm_segment* Attach(dsm_handle h) {
    dsm_segment* seg = dsm_attach(h);
    Track(h);
    return seg;
  }
  void Track(dsm_handle h) {
    if (std::find(tracked_.begin(), tracked_.end(), h) == tracked_.end()) tracked_.push_back(h);
  }
  void PinSegment(dsm_segment* seg) {
    dsm_pin_segment(seg);
    pinned_.push_back(dsm_segment_handle(seg));
  }
  void UnpinSegment(dsm_handle h) {
    std::erase(pinned_, h);
    dsm_unpin_segment(h);
  }
  /// For a pin the test took in another process: TearDown undoes it if the
  /// test did not.
  void TrackPin(dsm_handle h) { pinned_.push_back(h); }
  /// For a pin undone elsewhere (another process): nothing left to undo.
  void ForgetPin(dsm_handle h) { std::erase(pinned_, h); }

  /// The single name this process gained between `before` and now.
  std::string SingleNewName(const std::vector<std::string>& before) {
    const std::vector<std::string> added = NewNames(before, SegmentNamesOf(self_));
    EXPECT_EQ(added.size(), 1u) << "new names: " << Join(added);
    return added.empty() ? std::string() : added.front();
  }

  /// Makes this process's first DSM call now (creating and destroying a
  /// one-byte segment), so that the automatic cleanup it triggers is over
  /// before the test prepares orphans of its own.
  void InitializeDsm() {
    dsm_segment* seg = Create(1);
    dsm_detach(seg);
  }

  // --- children -------------------------------------------------------------------------------

  /// Forks a child that runs `body` and _exit()s with its result (90 if a
  /// grove::Error escapes, 91 for another exception). The child dies if this
  /// process dies. Stdio is flushed first so that nothing is written twice.
  pid_t RunChild(const std::function<int()>& body) {
    std::fflush(nullptr);
    std::cout.flush();
    std::cerr.flush();
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      return -1;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(kChildOrphaned);
      int code;
      try {
        code = body();
      } catch (const Error& e) {
        std::fprintf(stderr, "[child %d] ERROR: %s\n", static_cast<int>(getpid()), e.Format().c_str());
        code = kChildGroveError;
      } catch (...) {
        std::fprintf(stderr, "[child %d] unexpected exception\n", static_cast<int>(getpid()));
        code = kChildOtherException;
      }
      std::fflush(stderr);
      _exit(code);
    }
    running_.push_back(pid);
    children_.push_back(pid);
    return pid;
  }

  /// Reaps the child; returns its wait status.
  int Reap(pid_t pid) {
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    EXPECT_EQ(r, pid) << "waitpid: " << std::strerror(errno);
    std::erase(running_, pid);
    return status;
  }

  /// Waits until the child has ended but leaves it a zombie, so that its pid
  /// cannot be reused while the test looks at names carrying it. Returns
  /// its wait status. Reap() it afterwards.
  int WaitZombie(pid_t pid) {
    siginfo_t info{};
    int r;
    while ((r = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT)) < 0 && errno == EINTR) {
    }
    EXPECT_EQ(r, 0) << "waitid: " << std::strerror(errno);
    if (info.si_code == CLD_EXITED) return info.si_status << 8;
    return info.si_status & 0x7f;  // killed / dumped: as waitpid's WTERMSIG
  }

  /// Reaps a child that ran RunChild and checks it succeeded.
  void ExpectChildSucceeded(pid_t pid) {
    const int status = Reap(pid);
    EXPECT_TRUE(ExitedZero(status)) << "child " << pid << " " << DescribeStatus(status);
  }

  pid_t self_ = 0;

 private:
  bool old_dump_ = true;
  MemoryContext old_context_ = nullptr;
  ResourceOwner old_owner_ = nullptr;
  std::vector<std::string> names_before_;
  std::vector<dsm_handle> tracked_;
  std::vector<dsm_handle> pinned_;
  std::vector<pid_t> running_;   // forked, not reaped yet
  std::vector<pid_t> children_;  // every child this test forked
};

}  // namespace grove::test
