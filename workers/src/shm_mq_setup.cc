// Shared-memory message queues: creating a queue, naming its sides,
// attaching and detaching handles, and the callbacks that detach a queue
// when its segment or its handle's memory context goes (see shm_mq.h; the
// data path is in shm_mq.cc).
#include "shm_mq_internal.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "grove/base/datum.h"
#include "grove/base/error.h"
#include "grove/dsa/dsm.h"

namespace grove {

using namespace shm_mq_internal;

std::atomic<std::uint32_t> shm_mq_internal::g_fork_generation{0};

// --- checks -----------------------------------------------------------------------------------

void shm_mq_internal::CheckQueue(const shm_mq* mq, const char* caller) {
  if (mq == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s: shared memory queue is null", caller));
  if (reinterpret_cast<std::uintptr_t>(mq) % kShmMqAlignment != 0)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("%s: shared memory queue address %p is not %zu-byte aligned", caller,
                   static_cast<const void*>(mq), kShmMqAlignment));
  if (mq->magic.load(std::memory_order_acquire) != kQueueMagic || mq->ring_size < kAlign || mq->ring_size % kAlign != 0)
    ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED),
            errmsg("%s: %p is not a shared memory queue", caller, static_cast<const void*>(mq)),
            errhint("Create it with shm_mq_create first."));
}

// The handle is live, of this process, attached to a mapped queue, and (if
// `role` is given) has that role. Everything an entry point needs first.
void shm_mq_internal::CheckHandle(const shm_mq_handle* mqh, const char* caller, const Role* role) {
  if (mqh == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("%s: shared memory queue handle is null", caller));
  if (mqh->magic == kHandleDetachedMagic)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("%s: shared memory queue handle used after shm_mq_detach", caller));
  if (mqh->magic != kHandleMagic)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("%s: %p is not a shared memory queue handle", caller, static_cast<const void*>(mqh)));
  if (mqh->fork_generation != g_fork_generation.load(std::memory_order_relaxed))
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("%s: shared memory queue handle was inherited through fork()", caller),
            errhint("A child process attaches the queue itself."));
  if (mqh->segment_gone)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("%s: the dynamic shared memory segment of this shared memory queue was detached", caller),
            errhint("Only shm_mq_detach may still be called on the handle."));
  if (role != nullptr && mqh->role != *role)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("%s: this handle is the queue's %s, not its %s", caller, RoleName(mqh->role), RoleName(*role)));
}

namespace {

// --- fork -------------------------------------------------------------------------------------

// A handle is process-local state (positions, buffer, a dsm_segment of this
// process). A forked child inherits a copy that the parent goes on using: a
// generation counter bumped in every child makes the copy unusable there.
pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;
void BumpForkGeneration() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
void InstallForkHandler() { pthread_atfork(nullptr, nullptr, &BumpForkGeneration); }

// --- detaching --------------------------------------------------------------------------------

void OnSegmentDetach(dsm_segment* seg, Datum arg);
void OnContextReset(void* arg);

// The shared half of a detach: publish (a sender), mark, wake. Never fails.
void DetachShared(shm_mq_handle* mqh) noexcept {
  if (mqh->role == Role::kSender) PublishWritten(mqh, AlignDown(mqh->write_pos));
  MarkDetached(mqh->mq, mqh->role);
}

// The segment is going away (its detach callbacks run while it is still
// mapped): detach the queue, and remember that it cannot be touched again.
void OnSegmentDetach(dsm_segment*, Datum arg) {
  auto* mqh = DatumGetPointer<shm_mq_handle>(arg);
  if (mqh->magic != kHandleMagic || mqh->segment_gone) return;
  DetachShared(mqh);
  mqh->segment_gone = true;
  mqh->mq = nullptr;
  mqh->ring = nullptr;
  // The context is alive (its reset would have cancelled this callback), and
  // must not run its callback on an unmapped queue.
  MemoryContextUnregisterResetCallback(mqh->context, &mqh->reset_cb);
}

// The handle's memory is about to be freed: detach the queue if that has not
// happened. The buffer goes with the context.
void OnContextReset(void* arg) {
  auto* mqh = static_cast<shm_mq_handle*>(arg);
  if (mqh->magic != kHandleMagic || mqh->segment_gone) return;
  if (mqh->fork_generation == g_fork_generation.load(std::memory_order_relaxed)) {
    DetachShared(mqh);
    if (mqh->seg != nullptr) cancel_on_dsm_detach(mqh->seg, &OnSegmentDetach, PointerGetDatum(mqh));
  }
  mqh->magic = 0;
}

// The process-local role: which named side is the calling thread?
Role ResolveRole(shm_mq* mq) {
  const pid_t me = getpid();
  const pid_t tid = CurrentThreadId();
  auto load = [](const Peer& p, pid_t* tid_out) {
    const std::int32_t pid = p.pid.load(std::memory_order_acquire);
    *tid_out = pid > 0 ? p.tid : 0;
    return pid;
  };
  pid_t s_tid, r_tid;
  const pid_t s_pid = load(mq->sender, &s_tid);
  const pid_t r_pid = load(mq->receiver, &r_tid);
  const bool s_exact = s_pid == me && s_tid == tid, r_exact = r_pid == me && r_tid == tid;
  const bool s_any = s_pid == me && s_tid == 0, r_any = r_pid == me && r_tid == 0;
  if (s_exact != r_exact) return s_exact ? Role::kSender : Role::kReceiver;
  if (!s_exact && s_any != r_any) return s_any ? Role::kSender : Role::kReceiver;
  if (s_exact || s_any)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("shm_mq_attach: the calling thread is both the sender and the receiver of this shared memory queue"),
            errhint("Name the two sides from the two threads that use them."));
  ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
          errmsg("shm_mq_attach: process %d is neither the sender nor the receiver of this shared memory queue",
                 static_cast<int>(me)),
          errdetail("Sender %d, receiver %d.", static_cast<int>(std::max(s_pid, 0)), static_cast<int>(std::max(r_pid, 0))),
          errhint("Call shm_mq_set_sender or shm_mq_set_receiver first."));
}

void SetSide(shm_mq* mq, Peer* side, SharedLatch* other_latch, pid_t pid, const char* caller, const char* what) {
  CheckQueue(mq, caller);
  if (pid < 0)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s: invalid process id %d", caller, static_cast<int>(pid)));
  pid_t tid = 0;
  if (pid == 0) {
    pid = getpid();
    tid = CurrentThreadId();
  }
  const std::uint64_t start_time = ProcessStartTime(pid);  // 0 if already gone: then seen as dead
  std::int32_t expected = 0;
  if (!side->pid.compare_exchange_strong(expected, kPidClaiming, std::memory_order_acq_rel))
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("%s: shared memory queue already has a %s", caller, what),
            errdetail("The %s is process %d.", what, static_cast<int>(std::max(expected, 0))));
  side->tid = tid;
  side->start_time = start_time;
  side->pid.store(pid, std::memory_order_release);  // publishes tid and start_time with it
  SetSharedLatch(other_latch);                      // the other side may wait for us
}

pid_t GetSide(shm_mq* mq, const Peer& side, const char* caller) {
  CheckQueue(mq, caller);
  const std::int32_t pid = side.pid.load(std::memory_order_acquire);
  return pid > 0 ? pid : 0;
}

}  // namespace

// --- the API ----------------------------------------------------------------------------------

shm_mq* shm_mq_create(void* address, std::size_t size) {
  if (address == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("shm_mq_create: address is null"));
  if (reinterpret_cast<std::uintptr_t>(address) % kShmMqAlignment != 0)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("shm_mq_create: address %p is not %zu-byte aligned", address, kShmMqAlignment));
  size = AlignDown(size);  // odd trailing bytes are not used, as PostgreSQL
  if (size < shm_mq_minimum_size)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("shm_mq_create: a shared memory queue of %zu bytes is too small", size),
            errdetail("The minimum is %zu bytes (a %zu-byte header and 8 bytes of ring).", shm_mq_minimum_size,
                      kShmMqHeaderSize));
  std::memset(address, 0, kShmMqHeaderSize);
  auto* mq = new (address) shm_mq;  // trivially constructible; the fields are set below
  mq->ring_size = size - kShmMqHeaderSize;
  mq->detached.store(0, std::memory_order_relaxed);
  mq->attached.store(0, std::memory_order_relaxed);
  for (Peer* p : {&mq->receiver, &mq->sender}) {
    p->pid.store(0, std::memory_order_relaxed);
    p->tid = 0;
    p->start_time = 0;
  }
  mq->bytes_written.store(0, std::memory_order_relaxed);
  mq->bytes_read.store(0, std::memory_order_relaxed);
  mq->sender_cpu.store(-1, std::memory_order_relaxed);
  mq->receiver_cpu.store(-1, std::memory_order_relaxed);
  SharedLatchInit(&mq->receiver_latch);
  SharedLatchInit(&mq->sender_latch);
  // The magic last, with release: a queue with the magic is initialized.
  mq->magic.store(kQueueMagic, std::memory_order_release);
  return mq;
}

void shm_mq_set_receiver(shm_mq* mq, pid_t pid) {
  SetSide(mq, &mq->receiver, &mq->sender_latch, pid, "shm_mq_set_receiver", "receiver");
}

void shm_mq_set_sender(shm_mq* mq, pid_t pid) {
  SetSide(mq, &mq->sender, &mq->receiver_latch, pid, "shm_mq_set_sender", "sender");
}

pid_t shm_mq_get_receiver(shm_mq* mq) { return GetSide(mq, mq->receiver, "shm_mq_get_receiver"); }
pid_t shm_mq_get_sender(shm_mq* mq) { return GetSide(mq, mq->sender, "shm_mq_get_sender"); }

std::size_t shm_mq_get_ring_size(const shm_mq* mq) {
  CheckQueue(mq, "shm_mq_get_ring_size");
  return mq->ring_size;
}

shm_mq_handle* shm_mq_attach(shm_mq* mq, dsm_segment* seg, shm_mq_peer_alive_fn peer_alive, void* arg) {
  CheckQueue(mq, "shm_mq_attach");
  if (seg != nullptr) {
    const auto* base = static_cast<const char*>(dsm_segment_address(seg));
    const auto* at = reinterpret_cast<const char*>(mq);
    const std::size_t len = dsm_segment_map_length(seg);
    if (at < base || static_cast<std::size_t>(at - base) > len ||
        len - static_cast<std::size_t>(at - base) < kShmMqHeaderSize + mq->ring_size)
      ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
              errmsg("shm_mq_attach: the shared memory queue does not lie inside the given segment"));
  }
  pthread_once(&g_fork_once, &InstallForkHandler);
  const Role role = ResolveRole(mq);

  auto* mqh = static_cast<shm_mq_handle*>(palloc0(sizeof(shm_mq_handle)));
  const std::uint32_t bit = role == Role::kSender ? kSenderAttached : kReceiverAttached;
  if ((mq->attached.fetch_or(bit, std::memory_order_acq_rel) & bit) != 0) {
    pfree(mqh);
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("shm_mq_attach: shared memory queue already has an attached %s", RoleName(role)));
  }
  mqh->role = role;
  mqh->fork_generation = g_fork_generation.load(std::memory_order_relaxed);
  mqh->mq = mq;
  mqh->ring = mq->ring;
  mqh->ring_size = mq->ring_size;
  mqh->quarter = std::max(AlignDown(mq->ring_size / 4), kAlign);
  mqh->seg = seg;
  mqh->context = GetMemoryChunkContext(mqh);
  mqh->peer_alive = peer_alive;
  mqh->peer_arg = arg;
  // Positions start from the shared counters (0 for a fresh queue).
  mqh->write_pos = mqh->published_written = mq->bytes_written.load(std::memory_order_acquire);
  mqh->write_off = mqh->write_pos % mq->ring_size;
  mqh->read_pos = mqh->published_read = mqh->read_seen = mq->bytes_read.load(std::memory_order_acquire);
  mqh->written_seen = mqh->write_pos;
  mqh->read_off = mqh->read_pos % mq->ring_size;
  if (seg != nullptr) {
    try {
      on_dsm_detach(seg, &OnSegmentDetach, PointerGetDatum(mqh));
    } catch (...) {
      mq->attached.fetch_and(~bit, std::memory_order_acq_rel);
      pfree(mqh);
      throw;
    }
  }
  mqh->reset_cb.func = &OnContextReset;
  mqh->reset_cb.arg = mqh;
  MemoryContextRegisterResetCallback(mqh->context, &mqh->reset_cb);
  mqh->magic = kHandleMagic;
  return mqh;
}

void shm_mq_set_peer_check(shm_mq_handle* mqh, shm_mq_peer_alive_fn peer_alive, void* arg) {
  CheckHandle(mqh, "shm_mq_set_peer_check");
  mqh->peer_alive = peer_alive;
  mqh->peer_arg = arg;
  mqh->next_peer_check_ns = 0;  // a new check applies at the next wait
}

void shm_mq_detach(shm_mq_handle* mqh) {
  if (mqh == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("shm_mq_detach: shared memory queue handle is null"));
  if (mqh->magic == kHandleDetachedMagic)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("shm_mq_detach: shared memory queue handle is already detached"));
  if (mqh->magic != kHandleMagic)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("shm_mq_detach: %p is not a shared memory queue handle", static_cast<void*>(mqh)));
  if (mqh->fork_generation != g_fork_generation.load(std::memory_order_relaxed))
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("shm_mq_detach: shared memory queue handle was inherited through fork()"));
  if (!mqh->segment_gone) {
    DetachShared(mqh);
    if (mqh->seg != nullptr) cancel_on_dsm_detach(mqh->seg, &OnSegmentDetach, PointerGetDatum(mqh));
    MemoryContextUnregisterResetCallback(mqh->context, &mqh->reset_cb);
  }
  if (mqh->buffer != nullptr) pfree(mqh->buffer);
  mqh->buffer = nullptr;
  mqh->buflen = 0;
  mqh->mq = nullptr;
  mqh->ring = nullptr;
  mqh->magic = kHandleDetachedMagic;
}

shm_mq* shm_mq_get_queue(shm_mq_handle* mqh) {
  CheckHandle(mqh, "shm_mq_get_queue");
  return mqh->mq;
}

}  // namespace grove
