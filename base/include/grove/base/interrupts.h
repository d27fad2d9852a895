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

namespace grove {

/// Set by RequestCancel (async-signal-safe); cleared by ProcessInterrupts.
/// Process-wide: a cancel reaches every thread's next check.
extern std::atomic<bool> InterruptPending;
extern std::atomic<bool> QueryCancelPending;

/// Requests a cancel. Async-signal-safe (lock-free atomics only).
void RequestCancel() noexcept;

/// Raises ERROR "canceling statement due to user request" (SQLSTATE 57014)
/// if a cancel is pending, clearing it.
void ProcessInterrupts();

/// Installs a SIGINT handler that calls RequestCancel (for command-line
/// tools); returns false if one could not be installed.
bool InstallCancelSignalHandler() noexcept;

}  // namespace grove

#define CHECK_FOR_INTERRUPTS()                                                                \
  do {                                                                                        \
    if (__builtin_expect(::grove::InterruptPending.load(std::memory_order_relaxed), 0)) \
      ::grove::ProcessInterrupts();                                                           \
  } while (0)
