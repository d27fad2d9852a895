// Shared latches on a futex word, and peer liveness from /proc (see latch.h).
#include "grove/workers/latch.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace grove {

namespace {

// The futex syscall on the latch word. std::atomic<uint32_t> is a plain
// 32-bit integer in memory (static_assert in latch.h), which is what the
// kernel compares and sleeps on.
long Futex(SharedLatch* latch, int op, std::uint32_t value, const timespec* timeout) noexcept {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&latch->state), op, value, timeout, nullptr, 0);
}

inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

// Reads /proc/<pid>/stat into buf (NUL-terminated); false if it cannot.
// open/read rather than stdio: no allocation, and it runs on wait paths.
bool ReadProcStat(pid_t pid, char* buf, std::size_t size, int* err) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return false;
  }
  ssize_t n;
  while ((n = read(fd, buf, size - 1)) < 0 && errno == EINTR) {
  }
  *err = n < 0 ? errno : 0;
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return true;
}

// The fields after the command name, which is in parentheses and may itself
// hold spaces and parentheses: everything after the last ')'.
const char* AfterCommand(const char* stat) noexcept {
  const char* p = std::strrchr(stat, ')');
  return p == nullptr ? nullptr : p + 1;
}

}  // namespace

void SharedLatchInit(SharedLatch* latch) noexcept { latch->state.store(kLatchUnset, std::memory_order_relaxed); }

void SetSharedLatch(SharedLatch* latch) noexcept {
  // Store-load ordering: the caller's stores (a counter it publishes) must
  // be visible before we read the latch. Without the fence a setter could
  // read "already set", skip, and have its stores still in its store buffer
  // while the waiter consumes that old set, looks, sees nothing new and
  // sleeps until its timeout.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Already set: the waiter has not consumed it yet and will look after it
  // does. Skipping the exchange keeps the line shared while the peer polls it.
  if (latch->state.load(std::memory_order_relaxed) == kLatchSet) return;
  if (latch->state.exchange(kLatchSet, std::memory_order_seq_cst) == kLatchSleeping)
    Futex(latch, FUTEX_WAKE, INT_MAX, nullptr);  // one waiter; INT_MAX costs nothing more
}

bool WaitSharedLatch(SharedLatch* latch, int spins, long timeout_us) noexcept {
  for (int i = 0; i < spins; ++i) {
    if (latch->state.load(std::memory_order_relaxed) == kLatchSet) break;
    CpuRelax();
  }
  std::uint32_t seen = kLatchUnset;
  // Announce the sleep. If a set comes first the exchange fails and we do
  // not sleep; if it comes after, the setter sees kLatchSleeping and wakes
  // us, or FUTEX_WAIT finds the word changed and returns at once.
  if (latch->state.compare_exchange_strong(seen, kLatchSleeping, std::memory_order_seq_cst) ||
      seen == kLatchSleeping) {
    timespec ts;
    ts.tv_sec = timeout_us / 1000000;
    ts.tv_nsec = (timeout_us % 1000000) * 1000;
    // EINTR (a signal: maybe a cancel), EAGAIN (already set), ETIMEDOUT:
    // all mean "look again", which the caller does.
    Futex(latch, FUTEX_WAIT, kLatchSleeping, &ts);
  }
  const bool was_set = latch->state.exchange(kLatchUnset, std::memory_order_seq_cst) == kLatchSet;
  // Pairs with the setter's fence: what the caller loads next is at least as
  // new as what the setter stored before setting.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return was_set;
}

std::uint64_t ProcessStartTime(pid_t pid) noexcept {
  char buf[1024];
  int err;
  if (!ReadProcStat(pid, buf, sizeof buf, &err)) return 0;
  const char* p = AfterCommand(buf);
  if (p == nullptr) return 0;
  char state = 0;
  unsigned long long start = 0;
  // state is field 3; starttime is field 22, 19 fields after it.
  if (std::sscanf(p, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &state,
                  &start) != 2)
    return 0;
  return start;
}

bool ProcessIsAlive(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  char buf[1024];
  int err;
  if (!ReadProcStat(pid, buf, sizeof buf, &err)) return err != ENOENT && err != ESRCH;  // gone between the two
  const char* p = AfterCommand(buf);
  if (p == nullptr) return true;
  char state = 0;
  unsigned long long start = 0;
  const int fields = std::sscanf(
      p, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &state, &start);
  if (fields >= 1 && (state == 'Z' || state == 'X')) return false;  // exited, not reaped yet
  if (fields == 2 && start_time != 0 && start != start_time) return false;  // the pid was reused
  return true;
}

pid_t CurrentThreadId() noexcept { return static_cast<pid_t>(syscall(SYS_gettid)); }

}  // namespace grove
