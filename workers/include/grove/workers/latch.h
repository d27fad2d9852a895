// Shared latches and peer liveness: what a process (or thread) needs to
// sleep until another one tells it something changed, and to notice that
// the other one is gone instead of sleeping for ever.
//
// A SharedLatch is one 32-bit word that lives in shared memory (a DSM
// segment, a shm_mq header) and works between processes and between threads
// alike: sleeping is a futex wait on the word (FUTEX_WAIT, not the _PRIVATE
// variant, whose key is per address space), waking a FUTEX_WAKE. It carries
// no data: the setter changes some shared state, then calls SetSharedLatch;
// the waiter waits until a predicate on that state holds.
//
//   // setter                           // waiter (the only one of this latch)
//   state.store(..., release);          while (!ready())
//   SetSharedLatch(&latch);               if (!WaitSharedLatch(&latch, ready, spins, timeout)) {
//                                           CHECK_FOR_INTERRUPTS(); check_peer();
//                                         }
//
// The protocol (Dekker's, with a futex): a waiter that is about to sleep
// first announces it (state kLatchSleeping), then looks at its predicate
// once more, and sleeps only if it still fails; a setter first publishes,
// then looks at the word, and wakes the waiter only if it announced a
// sleep. Full fences on both sides guarantee that at least one of them sees
// the other's store: either the waiter sees the change and does not sleep,
// or the setter sees the announcement and wakes it. In the common case —
// nobody asleep — setting is a fence and a load of a word nobody writes: no
// cache line moves, no system call.
//
// Waits are bounded (a timeout): a waiter wakes at least that often to look
// for a cancel and for a dead peer, which cannot set anything.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <type_traits>

namespace grove {

/// In shared memory; plain data, no destructor. One waiter at a time, any
/// number of setters.
struct SharedLatch {
  /// kLatchAwake, or kLatchSleeping (the waiter is in, or about to enter,
  /// FUTEX_WAIT: a setter must wake it).
  std::atomic<std::uint32_t> state;
};
static_assert(sizeof(SharedLatch) == 4 && std::atomic<std::uint32_t>::is_always_lock_free,
              "a futex word is exactly one lock-free 32-bit integer");

inline constexpr std::uint32_t kLatchAwake = 0;
inline constexpr std::uint32_t kLatchSleeping = 1;

/// Before the latch's memory is shared (no concurrent use).
void SharedLatchInit(SharedLatch* latch) noexcept;

/// Wakes the latch's waiter if it sleeps or is about to. Call after the
/// stores its predicate looks at (a fence orders them before the word is
/// read). Never fails, never allocates; safe in a detach callback.
void SetSharedLatch(SharedLatch* latch) noexcept;

/// The sleeping half of WaitSharedLatch: announce, re-check `ready`, sleep
/// on the futex for at most `timeout_us`, withdraw. Returns whether
/// `ready` held at the re-check.
bool SharedLatchSleep(SharedLatch* latch, bool (*ready)(void*), void* arg, long timeout_us) noexcept;

void CpuRelaxForLatch() noexcept;

/// Waits until `ready()` holds, or `timeout_us` microseconds pass, or a
/// signal interrupts the sleep. First polls `ready` up to `spins` times (a
/// peer on another CPU often answers within microseconds, cheaper than a
/// sleep and a wake-up; polling only reads). Returns whether `ready` was
/// seen to hold; false means "timed out or woken early": the caller checks
/// for cancels and its peer, and calls again. `ready` must only read
/// (acquire) shared state, and must not throw.
template <typename Ready>
bool WaitSharedLatch(SharedLatch* latch, Ready&& ready, int spins, long timeout_us) noexcept {
  for (int i = 0; i < spins; ++i) {
    if (ready()) return true;
    CpuRelaxForLatch();
  }
  using R = std::remove_reference_t<Ready>;
  auto call = [](void* arg) -> bool { return (*static_cast<R*>(arg))(); };
  void* arg = const_cast<void*>(static_cast<const void*>(std::addressof(ready)));
  if (SharedLatchSleep(latch, call, arg, timeout_us)) return true;
  return ready();
}

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
