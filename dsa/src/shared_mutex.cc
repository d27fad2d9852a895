// Robust process-shared mutexes (see shared_mutex.h).
#include "grove/dsa/shared_mutex.h"

#include <cerrno>
#include <cstring>

#include "grove/base/error.h"

namespace grove {

namespace {

[[noreturn]] void Fail(const char* what, int rc) {
  ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not lock %s: %s", what, std::strerror(rc)));
  __builtin_unreachable();
}

[[noreturn]] void Inconsistent(const char* what) {
  ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED),
          errmsg("lock on %s was held by a process that died; %s may be inconsistent", what, what),
          errhint("Recreate the shared structure, or repair it and call SharedMutexRecover."));
  __builtin_unreachable();
}

// After pthread_mutex_lock/trylock returned `rc` (0 or EOWNERDEAD: the lock
// is held). A dead holder poisons the data for everyone, once and for all;
// the mutex itself is made usable again so later lockers get the ERROR
// instead of ENOTRECOVERABLE.
void AfterAcquire(SharedMutex* m, int rc, const char* what) {
  if (rc == EOWNERDEAD) {
    m->poisoned.store(1, std::memory_order_release);
    pthread_mutex_consistent(&m->mutex);
  }
  if (m->poisoned.load(std::memory_order_acquire) != 0) {
    pthread_mutex_unlock(&m->mutex);
    Inconsistent(what);
  }
}

}  // namespace

void SharedMutexInit(SharedMutex* m) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  const int rc = pthread_mutex_init(&m->mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0)
    ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not initialize a shared mutex: %s", std::strerror(rc)));
  m->poisoned.store(0, std::memory_order_release);
}

void SharedMutexLock(SharedMutex* m, const char* what) {
  const int rc = pthread_mutex_lock(&m->mutex);
  if (rc != 0 && rc != EOWNERDEAD) Fail(what, rc);
  AfterAcquire(m, rc, what);
}

bool SharedMutexTryLock(SharedMutex* m, const char* what) {
  const int rc = pthread_mutex_trylock(&m->mutex);
  if (rc == EBUSY) return false;
  if (rc != 0 && rc != EOWNERDEAD) Fail(what, rc);
  AfterAcquire(m, rc, what);
  return true;
}

void SharedMutexUnlock(SharedMutex* m) { pthread_mutex_unlock(&m->mutex); }

void SharedMutexRecover(SharedMutex* m) { m->poisoned.store(0, std::memory_order_release); }

bool SharedMutexIsPoisoned(const SharedMutex* m) { return m->poisoned.load(std::memory_order_acquire) != 0; }

}  // namespace grove
