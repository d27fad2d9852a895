// Interrupts (see interrupts.h).
#include "grove/base/interrupts.h"

#include <csignal>

#include "grove/base/error.h"

namespace grove {

std::atomic<bool> InterruptPending{false};
std::atomic<bool> QueryCancelPending{false};
thread_local ThreadCancel ThisThreadCancel;

static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

void RequestCancel() noexcept {
  QueryCancelPending.store(true, std::memory_order_relaxed);
  InterruptPending.store(true, std::memory_order_release);
}

void ProcessInterrupts() {
  ThreadCancel& tc = ThisThreadCancel;
  if (tc.holdoff > 0) return;
  bool cancel = false;
  if (tc.word != nullptr) {
    // This thread takes its own cancel only; the process's stays pending
    // for the threads without one (a leader).
    if (!tc.delivered && tc.word->load(std::memory_order_acquire) != 0) {
      tc.delivered = true;
      cancel = true;
    }
  } else if (InterruptPending.exchange(false, std::memory_order_acq_rel)) {
    cancel = QueryCancelPending.exchange(false, std::memory_order_acq_rel);
  }
  if (cancel) ereport(ERROR, errcode(ERRCODE_QUERY_CANCELED), errmsg("canceling statement due to user request"));
}

namespace {
extern "C" void HandleSigint(int) { RequestCancel(); }
}  // namespace

bool InstallCancelSignalHandler() noexcept {
  struct sigaction sa {};
  sa.sa_handler = &HandleSigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking wait returns EINTR and checks at once
  return sigaction(SIGINT, &sa, nullptr) == 0;
}

}  // namespace grove
