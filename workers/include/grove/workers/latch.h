// Shared latches and peer liveness: what a process (or thread) needs to
// sleep until another one tells it something changed, and to notice that
// the other one is gone instead of sleeping for ever.
//
// A SharedLatch is one 32-bit word that lives in shared memory (a DSM
// segment, a shm_mq header) and works between processes and between threads
// alike: sleeping is a futex wait on the word (FUTEX_WAIT, not the _PRIVATE
// variant, whose key is per address space), waking a FUTEX_WAKE. As
// PostgreSQL's latches, it carries no data: the setter first changes the
// state the waiter looks at, then sets the latch; the waiter looks at the
// state, and only if nothing it wants is there, waits. A set that comes
// between the waiter's look and its wait is not lost (the wait returns at
// once), so the pattern never sleeps through a change.
//
//   // setter                           // waiter (the only one of this latch)
//   publish(...);                       for (;;) {
//   SetSharedLatch(&peer_latch);          if (ready()) break;
//                                         WaitSharedLatch(&my_latch, spins, timeout);
//                                         CHECK_FOR_INTERRUPTS(); check_peer();
//                                       }
//
// Waits are bounded (a timeout): a waiter wakes at least that often to look
// for a cancel and for a dead peer, which cannot set anything.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace grove {

/// In shared memory; plain data, no destructor. One waiter at a time, any
/// number of setters.
struct SharedLatch {
  /// kLatchUnset, kLatchSet, or kLatchSleeping (unset, and the waiter is in
  /// or about to enter FUTEX_WAIT: a setter must wake it).
  std::atomic<std::uint32_t> state;
};
static_assert(sizeof(SharedLatch) == 4 && std::atomic<std::uint32_t>::is_always_lock_free,
              "a futex word is exactly one lock-free 32-bit integer");

inline constexpr std::uint32_t kLatchUnset = 0;
inline constexpr std::uint32_t kLatchSet = 1;
inline constexpr std::uint32_t kLatchSleeping = 2;

/// Before the latch's memory is shared (no concurrent use).
void SharedLatchInit(SharedLatch* latch) noexcept;

/// Sets the latch and wakes its waiter if it sleeps. Call after the stores
/// the waiter should see: a full fence orders them before the latch is read,
/// so that a setter that finds the latch already set (and does nothing) is
/// certain the waiter will still see its stores when it consumes that set.
/// Never fails, never allocates; safe in a detach callback.
void SetSharedLatch(SharedLatch* latch) noexcept;

/// Waits until the latch is set, or `timeout_us` microseconds pass, or a
/// signal interrupts the sleep; consumes the set (the latch is unset on
/// return). First polls the word up to `spins` times (a peer on another CPU
/// often answers within microseconds, cheaper than a sleep and a wake-up).
/// Returns true if the latch was set, false on timeout or spurious wake-up:
/// either way the caller re-checks what it waits for. The loads the caller
/// makes after the return see every store made before the set it consumed.
bool WaitSharedLatch(SharedLatch* latch, int spins, long timeout_us) noexcept;

// --- Peer liveness -----------------------------------------------------------------------------

/// Linux's start time of a process (clock ticks since boot, field 22 of
/// /proc/<pid>/stat), which tells a pid's current owner from an earlier one;
/// 0 if the process does not exist or /proc cannot be read.
std::uint64_t ProcessStartTime(pid_t pid) noexcept;

/// Whether `pid` is a live process: it exists (kill(pid, 0) is not ESRCH),
/// it is not a zombie waiting to be reaped (state Z or X in
/// /proc/<pid>/stat), and, when `start_time` is nonzero, its start time is
/// still `start_time` (the pid was not reused). Unknowns (no /proc) count as
/// alive: a wait then ends by the other checks, never by a wrong guess.
bool ProcessIsAlive(pid_t pid, std::uint64_t start_time) noexcept;

/// The calling thread's kernel id (gettid), to tell threads of one process apart.
pid_t CurrentThreadId() noexcept;

}  // namespace grove
