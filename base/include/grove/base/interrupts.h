// Interrupts: a request to cancel what a process (or thread) is doing,
// raised asynchronously — by a signal handler (Ctrl-C), by another thread,
// by a leader cancelling its workers — and acted on synchronously at the
// next CHECK_FOR_INTERRUPTS(), as PostgreSQL's.
//
// Blocking waits in grove (shared-memory queues, waits for workers) call
// CHECK_FOR_INTERRUPTS() each time they wake, and wake at least every few
// milliseconds, so a cancel is never stuck behind a wait.
#pragma once

#include <atomic>
#include <cstdint>

namespace grove {

/// Set by RequestCancel (async-signal-safe); cleared by ProcessInterrupts.
/// Process-wide: a cancel reaches every thread's next check.
extern std::atomic<bool> InterruptPending;
extern std::atomic<bool> QueryCancelPending;

/// Requests a cancel. Async-signal-safe (lock-free atomics only).
void RequestCancel() noexcept;

/// A thread's own cancel: while set, this thread's CHECK_FOR_INTERRUPTS()
/// raises the cancel ERROR once the word it points to becomes nonzero (once
/// per time the word is installed: the word stays set, the ERROR is not
/// repeated), and leaves process-wide cancels to the process's other
/// threads. A parallel worker installs its context's stop flag here: a
/// process-wide cancel would reach its leader and the other contexts'
/// workers, and a Ctrl-C meant for the leader must not be taken by a worker
/// thread. The word must outlive the installation.
struct ThreadCancel {
  const std::atomic<std::uint32_t>* word = nullptr;
  bool delivered = false;
  int holdoff = 0;  // HoldInterrupts depth: nothing is raised while > 0
};
extern thread_local ThreadCancel ThisThreadCancel;

/// PostgreSQL's HOLD_INTERRUPTS/RESUME_INTERRUPTS, per thread: while held,
/// CHECK_FOR_INTERRUPTS raises nothing and consumes nothing (a cancel stays
/// pending for the first check after the hold). For code that must not be
/// cut short: sending an error report, cleaning up after one.
class HoldInterrupts {
 public:
  HoldInterrupts() noexcept { ++ThisThreadCancel.holdoff; }
  ~HoldInterrupts() { --ThisThreadCancel.holdoff; }
  HoldInterrupts(const HoldInterrupts&) = delete;
  HoldInterrupts& operator=(const HoldInterrupts&) = delete;
};

/// Installs `word` as this thread's cancel until destroyed (then restores
/// the previous one).
class ScopedThreadCancel {
 public:
  explicit ScopedThreadCancel(const std::atomic<std::uint32_t>* word) noexcept : saved_(ThisThreadCancel) {
    ThisThreadCancel.word = word;
    ThisThreadCancel.delivered = false;
  }
  ~ScopedThreadCancel() {
    ThisThreadCancel.word = saved_.word;
    ThisThreadCancel.delivered = saved_.delivered;
  }
  ScopedThreadCancel(const ScopedThreadCancel&) = delete;
  ScopedThreadCancel& operator=(const ScopedThreadCancel&) = delete;

 private:
  ThreadCancel saved_;
};

/// True if this thread's CHECK_FOR_INTERRUPTS has something to act on.
inline bool InterruptsPendingHere() noexcept {
  if (__builtin_expect(InterruptPending.load(std::memory_order_relaxed), 0)) return true;
  const ThreadCancel& tc = ThisThreadCancel;
  return __builtin_expect(tc.word != nullptr && !tc.delivered && tc.word->load(std::memory_order_relaxed) != 0, 0);
}

/// Raises ERROR "canceling statement due to user request" (SQLSTATE 57014)
/// if a cancel is pending and interrupts are not held: this thread's own
/// (marking it delivered) when it has one installed, else the process's
/// (clearing it).
void ProcessInterrupts();

/// Installs a SIGINT handler that calls RequestCancel (for command-line
/// tools); returns false if one could not be installed.
bool InstallCancelSignalHandler() noexcept;

}  // namespace grove

#define CHECK_FOR_INTERRUPTS()                                 \
  do {                                                         \
    if (::grove::InterruptsPendingHere()) ::grove::ProcessInterrupts(); \
  } while (0)
