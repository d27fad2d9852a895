// Shared latches on a futex word, and peer liveness from /proc (see latch.h).
#include "grove/workers/latch.h"

#include <atomic>

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

void CpuRelaxForLatch() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

void SharedLatchInit(SharedLatch* latch) noexcept { latch->state.store(kLatchAwake, std::memory_order_relaxed); }

void SetSharedLatch(SharedLatch* latch) noexcept {
  // Store-load ordering: the caller's stores (a counter it publishes) must
  // be visible before we read the word, or a waiter could check its
  // predicate (seeing the old value) after our read missed its announcement.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (latch->state.load(std::memory_order_relaxed) != kLatchSleeping) return;
  // Withdraw the announcement for the waiter: if it has not entered
  // FUTEX_WAIT yet, the kernel sees the word changed and does not sleep.
  if (latch->state.exchange(kLatchAwake, std::memory_order_seq_cst) == kLatchSleeping)
    Futex(latch, FUTEX_WAKE, INT_MAX, nullptr);  // one waiter; INT_MAX costs nothing more
}

bool SharedLatchSleep(SharedLatch* latch, bool (*ready)(void*), void* arg, long timeout_us) noexcept {
  latch->state.store(kLatchSleeping, std::memory_order_relaxed);
  // Pairs with the setter's fence: our announcement is visible before we
  // look at the predicate, so a change we miss is made by a setter that
  // sees the announcement.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool was_ready = ready(arg);
  if (!was_ready) {
    timespec ts;
    ts.tv_sec = timeout_us / 1000000;
    ts.tv_nsec = (timeout_us % 1000000) * 1000;
    // EINTR (a signal: maybe a cancel), EAGAIN (a setter already withdrew
    // the announcement), ETIMEDOUT: all mean "look again".
    Futex(latch, FUTEX_WAIT, kLatchSleeping, &ts);
  }
  latch->state.store(kLatchAwake, std::memory_order_relaxed);
  return was_ready;
}

namespace {

// This process's own start time, read once per process: every queue a
// worker attaches records it, and reading /proc costs several microseconds.
std::atomic<pid_t> own_start_pid{0};
std::atomic<std::uint64_t> own_start_time{0};

std::uint64_t ReadStartTime(pid_t pid) noexcept;

}  // namespace

std::uint64_t ProcessStartTime(pid_t pid) noexcept {
  if (pid == getpid()) {
    if (own_start_pid.load(std::memory_order_acquire) == pid) return own_start_time.load(std::memory_order_relaxed);
    const std::uint64_t start = ReadStartTime(pid);
    if (start != 0) {
      own_start_time.store(start, std::memory_order_relaxed);
      own_start_pid.store(pid, std::memory_order_release);  // a forked child's pid differs: it reads its own
    }
    return start;
  }
  return ReadStartTime(pid);
}

namespace {

std::uint64_t ReadStartTime(pid_t pid) noexcept {
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

}  // namespace

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
