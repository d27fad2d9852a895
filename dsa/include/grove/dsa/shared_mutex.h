// A mutex that lives in shared memory and survives the death of its holder
// (a robust, process-shared pthread mutex). The DSA's area and size-class
// locks are of this kind: a process that dies holding one must not hang
// every other process.
//
// When a holder dies, the next process to lock gets an ERROR saying the data
// the lock protects may be inconsistent — and so does every later locker,
// until whoever owns that data repairs it and calls SharedMutexRecover.
// Never blocks forever on a dead process; never hands out a lock over data
// left half-changed without saying so.
#pragma once

#include <atomic>
#include <cstdint>
#include <pthread.h>

namespace grove {

struct SharedMutex {
  pthread_mutex_t mutex;
  std::atomic<std::uint32_t> poisoned;  // a holder died: the data may be inconsistent
};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "the poisoned flag works across processes");

/// Initializes a mutex in memory shared by the processes that will use it.
void SharedMutexInit(SharedMutex* m);
/// Locks. ERROR "lock on <what> was held by a process that died; <what> may
/// be inconsistent" if a holder died (then the lock is not held).
void SharedMutexLock(SharedMutex* m, const char* what);
/// Like SharedMutexLock, but returns false at once if another process holds it.
bool SharedMutexTryLock(SharedMutex* m, const char* what);
void SharedMutexUnlock(SharedMutex* m);
/// The protected data has been repaired: lockers no longer get the ERROR.
void SharedMutexRecover(SharedMutex* m);
bool SharedMutexIsPoisoned(const SharedMutex* m);

/// RAII over SharedMutexLock/Unlock.
class SharedMutexGuard {
 public:
  SharedMutexGuard(SharedMutex* m, const char* what) : m_(m) { SharedMutexLock(m, what); }
  ~SharedMutexGuard() { SharedMutexUnlock(m_); }
  SharedMutexGuard(const SharedMutexGuard&) = delete;
  SharedMutexGuard& operator=(const SharedMutexGuard&) = delete;

 private:
  SharedMutex* m_;
};

}  // namespace grove
