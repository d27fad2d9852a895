// Shared-memory message queues (see shm_mq.h for the contract and the
// layout; PostgreSQL's storage/ipc/shm_mq.c for the original design).
//
// Who writes what, and why no lock is needed:
// * bytes_written is stored only by the sender, bytes_read only by the
//   receiver; both only grow. Ring bytes in [bytes_read, bytes_written) are
//   the receiver's to read; the rest are the sender's to write. The sender
//   fills bytes, then publishes them with a release store of bytes_written;
//   the receiver loads it with acquire, reads, then gives the bytes back with
//   a release store of bytes_read, which the sender loads with acquire
//   before it overwrites them.
// * Both published counters are multiples of 8: a message ends with padding
//   to 8 bytes, and a sender that publishes in the middle of a message
//   publishes only the whole 8-byte words it has written. So every length
//   word is read at an aligned position and never wraps around the ring end.
// * The sender writes at write_pos, its private byte-exact position; the
//   receiver consumes at read_pos, its private position. Both are published
//   lazily (see shm_mq.h) and each side caches its last view of the other's
//   counter (read_seen, written_seen), reading the shared one only when the
//   view says there is not enough.
// * detached only goes 0 -> 1, set by either side (or on behalf of a side
//   that is gone). A sender publishes before it sets it, so a receiver that
//   sees it and then reloads bytes_written sees all the sender ever wrote.
#include "grove/workers/shm_mq.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <new>

#include "grove/base/assert.h"
#include "grove/base/datum.h"
#include "grove/base/error.h"
#include "grove/base/interrupts.h"
#include "grove/contexts/memutils.h"
#include "grove/contexts/palloc.h"
#include "grove/dsa/dsm.h"
#include "grove/workers/latch.h"

namespace grove {

namespace {

constexpr std::uint64_t kQueueMagic = 0x67726f76654d5121;  // "groveMQ!"
constexpr std::uint32_t kHandleMagic = 0x4d514831;          // a live handle
constexpr std::uint32_t kHandleDetachedMagic = 0x4d514830;  // after shm_mq_detach

constexpr std::uint64_t kAlign = 8;  // MAXALIGN; the length word's size too
constexpr std::uint64_t AlignUp(std::uint64_t v) { return (v + kAlign - 1) & ~(kAlign - 1); }
constexpr std::uint64_t AlignDown(std::uint64_t v) { return v & ~(kAlign - 1); }

// A waiting side polls the other side's counter this many times (~7 µs of
// pause instructions) before it sleeps: a peer running on another CPU
// usually answers within microseconds, and a futex sleep plus wake-up costs
// more. Not when the peer was last seen on our own CPU: it cannot answer
// while we poll, and polling would only burn the time it needs.
constexpr int kWaitSpins = 256;
// A sleeping side wakes at least this often to run CHECK_FOR_INTERRUPTS and
// look at its peer, which cannot wake it if it is dead.
constexpr long kWaitTimeoutUs = 20 * 1000;
// The peer's liveness (a /proc read, or the caller's callback) is checked at
// most this often: on a wait path, never per message.
constexpr std::int64_t kPeerCheckIntervalNs = 20 * 1000 * 1000;

// pid of a side while shm_mq_set_* is filling in the rest of it.
constexpr std::int32_t kPidClaiming = -1;

constexpr std::uint32_t kSenderAttached = 1;
constexpr std::uint32_t kReceiverAttached = 2;

// Which process (and thread) is a side of the queue.
struct Peer {
  std::atomic<std::int32_t> pid;  // 0 = not named yet; kPidClaiming; else the pid
  std::int32_t tid;               // 0 = any thread of pid
  std::uint64_t start_time;       // of pid, to tell a reused pid (0 = unknown)
};

}  // namespace

// Three groups 128 bytes apart: what neither side writes in the steady
// state, what the sender writes, what the receiver writes. The address is
// only 8-byte aligned (as PostgreSQL's), so the groups are placed by offset,
// not alignas: fields 128 bytes apart never share a cache line or a pair of
// adjacent lines, wherever the queue starts.
struct shm_mq {
  std::atomic<std::uint64_t> magic;     // kQueueMagic once initialized (stored last)
  std::uint64_t ring_size;              // multiple of 8, fixed at creation
  std::atomic<std::uint32_t> detached;  // 0 -> 1, never back
  std::atomic<std::uint32_t> attached;  // kSenderAttached | kReceiverAttached: handles made
  Peer receiver;
  Peer sender;
  char pad0[128 - 56];

  std::atomic<std::uint64_t> bytes_written;  // stored by the sender only
  SharedLatch receiver_latch;                // set by the sender, slept on by the receiver
  std::atomic<std::int32_t> sender_cpu;      // where the sender last published (a hint)
  char pad1[128 - 16];

  std::atomic<std::uint64_t> bytes_read;  // stored by the receiver only
  SharedLatch sender_latch;               // set by the receiver, slept on by the sender
  std::atomic<std::int32_t> receiver_cpu;  // where the receiver last published (a hint)
  char pad2[128 - 16];

  char ring[];  // ring_size bytes
};
static_assert(sizeof(Peer) == 16 && offsetof(shm_mq, pad0) == 56, "identity group as laid out");
static_assert(offsetof(shm_mq, bytes_written) == 128, "the sender's group starts 128 bytes in");
static_assert(offsetof(shm_mq, bytes_read) == 256, "the receiver's group starts 256 bytes in");
static_assert(offsetof(shm_mq, ring) == kShmMqHeaderSize && sizeof(shm_mq) == kShmMqHeaderSize,
              "kShmMqHeaderSize in shm_mq.h is the header's size");
static_assert(kShmMqHeaderSize % kAlign == 0, "the ring starts MAXALIGNed");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::int32_t>::is_always_lock_free,
              "counters are shared between processes: they must be lock-free");

namespace {

enum class Role : std::uint8_t { kSender, kReceiver };

}  // namespace

struct shm_mq_handle {
  std::uint32_t magic;  // kHandleMagic, or kHandleDetachedMagic after shm_mq_detach
  Role role;
  bool segment_gone;  // seg was detached: mq is unmapped, only shm_mq_detach is allowed
  bool peer_known;    // peer_pid/peer_start_time read from the header
  std::uint32_t fork_generation;
  shm_mq* mq;  // nullptr once detached
  char* ring;
  std::uint64_t ring_size;
  std::uint64_t quarter;  // the batch: a quarter of the ring, a multiple of 8 (at least 8)
  dsm_segment* seg;       // may be nullptr
  MemoryContext context;  // where this handle and its buffer live
  MemoryContextCallback reset_cb;

  shm_mq_peer_alive_fn peer_alive;
  void* peer_arg;
  pid_t peer_pid;
  std::uint64_t peer_start_time;
  std::int64_t next_peer_check_ns;

  // Sender. write_pos - published_written bytes are written, unpublished.
  std::uint64_t write_pos;
  std::uint64_t published_written;
  std::uint64_t read_seen;  // last bytes_read loaded
  bool msg_active;          // a message is partly in the ring (nowait, or an ERROR while blocked)
  std::size_t msg_nbytes;   // its payload size
  std::size_t msg_sent;     // bytes of it in the ring: length word, then payload

  // Receiver. read_pos - published_read bytes are consumed, not yet given back.
  std::uint64_t read_pos;
  std::uint64_t published_read;
  std::uint64_t written_seen;  // last bytes_written loaded
  bool have_length;            // the current message's length word was read
  std::size_t expected;        // its payload size
  std::size_t received;        // payload bytes copied to buffer so far
  char* buffer;                // reassembly of messages not contiguous in the ring
  std::size_t buflen;
};

namespace {

// --- fork -------------------------------------------------------------------------------------

// A handle is process-local state (positions, buffer, a dsm_segment of this
// process). A forked child inherits a copy that the parent goes on using: a
// generation counter bumped in every child makes the copy unusable there.
std::atomic<std::uint32_t> g_fork_generation{0};
pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;
void BumpForkGeneration() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
void InstallForkHandler() { pthread_atfork(nullptr, nullptr, &BumpForkGeneration); }

// --- checks -----------------------------------------------------------------------------------

const char* RoleName(Role r) { return r == Role::kSender ? "sender" : "receiver"; }

void CheckQueue(const shm_mq* mq, const char* caller) {
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
void CheckHandle(const shm_mq_handle* mqh, const char* caller, const Role* role = nullptr) {
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

[[noreturn]] void ReportCorrupt(const char* what, std::uint64_t a, std::uint64_t b) {
  ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED), errmsg("shared memory queue is corrupt: %s", what),
          errdetail("Counters %llu and %llu.", static_cast<unsigned long long>(a), static_cast<unsigned long long>(b)));
}

// --- the peer ---------------------------------------------------------------------------------

std::int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);  // vDSO, no syscall; ms resolution is plenty here
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

Peer& PeerSide(shm_mq* mq, Role me) { return me == Role::kSender ? mq->receiver : mq->sender; }
SharedLatch* MyLatch(shm_mq* mq, Role me) { return me == Role::kSender ? &mq->sender_latch : &mq->receiver_latch; }
SharedLatch* PeerLatch(shm_mq* mq, Role me) {
  return me == Role::kSender ? &mq->receiver_latch : &mq->sender_latch;
}

// Whether the other side has been named; caches its identity in the handle.
bool PeerNamed(shm_mq_handle* mqh) {
  if (mqh->peer_known) return true;
  Peer& p = PeerSide(mqh->mq, mqh->role);
  const std::int32_t pid = p.pid.load(std::memory_order_acquire);  // tid/start_time were stored before
  if (pid <= 0) return false;
  mqh->peer_pid = pid;
  mqh->peer_start_time = p.start_time;
  mqh->peer_known = true;
  return true;
}

// Whether the other side is gone for good: a dead process, or the caller's
// check says so. Rate-limited (a /proc read is microseconds), except that the
// first call checks at once. A peer in this very process (a thread) is
// judged by the callback alone.
bool PeerGone(shm_mq_handle* mqh) {
  const std::int64_t now = MonotonicNs();
  if (now < mqh->next_peer_check_ns) return false;
  mqh->next_peer_check_ns = now + kPeerCheckIntervalNs;
  if (PeerNamed(mqh) && mqh->peer_pid != getpid() && !ProcessIsAlive(mqh->peer_pid, mqh->peer_start_time))
    return true;
  return mqh->peer_alive != nullptr && !mqh->peer_alive(mqh->peer_arg);
}

bool IsDetached(const shm_mq* mq) { return mq->detached.load(std::memory_order_acquire) != 0; }

// Whether the other side did anything we wait for since we last looked: it
// published (compared with our cached view, which the caller refreshed
// before deciding to wait), detached, or named itself. Only reads.
bool PeerMoved(const shm_mq_handle* mqh) {
  const shm_mq* mq = mqh->mq;
  const bool progress = mqh->role == Role::kReceiver
                            ? mq->bytes_written.load(std::memory_order_acquire) != mqh->written_seen
                            : mq->bytes_read.load(std::memory_order_acquire) != mqh->read_seen;
  if (progress || IsDetached(mq)) return true;
  const Peer& p = mqh->role == Role::kSender ? mq->receiver : mq->sender;
  return !mqh->peer_known && p.pid.load(std::memory_order_acquire) > 0;
}

// Waits until the peer moves (or the timeout), then acts on a pending
// cancel. The handle's state is consistent whenever this is called.
void WaitForPeer(shm_mq_handle* mqh) {
  PeerNamed(mqh);  // else a peer named since the last look would count as "moved" again and again
  const std::int32_t peer_cpu =
      (mqh->role == Role::kSender ? mqh->mq->receiver_cpu : mqh->mq->sender_cpu).load(std::memory_order_relaxed);
  const int spins = peer_cpu >= 0 && peer_cpu == sched_getcpu() ? 0 : kWaitSpins;
  WaitSharedLatch(MyLatch(mqh->mq, mqh->role), [mqh] { return PeerMoved(mqh); }, spins, kWaitTimeoutUs);
  CHECK_FOR_INTERRUPTS();
}

// Marks the queue detached (for a peer that is gone, or for ourselves) and
// wakes the other side. Never fails.
void MarkDetached(shm_mq* mq, Role me) noexcept {
  mq->detached.store(1, std::memory_order_release);
  SetSharedLatch(PeerLatch(mq, me));
}

// --- the sender's side ------------------------------------------------------------------------

// Makes [published_written, upto) visible to the receiver and wakes it.
// `upto` is a multiple of 8.
void PublishWritten(shm_mq_handle* mqh, std::uint64_t upto) noexcept {
  Assert(upto % kAlign == 0 && upto <= mqh->write_pos);
  if (upto <= mqh->published_written) return;
  mqh->mq->bytes_written.store(upto, std::memory_order_release);
  mqh->mq->sender_cpu.store(sched_getcpu(), std::memory_order_relaxed);
  mqh->published_written = upto;
  SetSharedLatch(&mqh->mq->receiver_latch);
}

// The receiver's progress, checked: it can never be ahead of what was
// written, nor more than a ring behind.
void RefreshReadSeen(shm_mq_handle* mqh) {
  const std::uint64_t read = mqh->mq->bytes_read.load(std::memory_order_acquire);
  if (read > mqh->published_written || read < mqh->read_seen) ReportCorrupt("bytes read out of range", read, mqh->write_pos);
  mqh->read_seen = read;
}

// Copies n bytes into the ring at write_pos, waiting for room as needed.
// *progress (the handle's msg_sent) grows with every byte copied, so that a
// WOULD_BLOCK, DETACHED or ERROR leaves the handle knowing where to resume.
shm_mq_result SendBytes(shm_mq_handle* mqh, const char* data, std::size_t n, bool nowait, std::size_t* progress) {
  const std::uint64_t ring_size = mqh->ring_size;
  std::size_t done = 0;
  while (done < n) {
    std::uint64_t room = ring_size - (mqh->write_pos - mqh->read_seen);
    if (room < n - done) {
      RefreshReadSeen(mqh);
      room = ring_size - (mqh->write_pos - mqh->read_seen);
    }
    if (room == 0) {
      // Full (and write_pos is then a multiple of 8, as bytes_read and the
      // ring size are). Whatever is unpublished must go out, or the receiver
      // could wait for it while we wait for room.
      PublishWritten(mqh, mqh->write_pos);
      if (IsDetached(mqh->mq)) return SHM_MQ_DETACHED;
      if (PeerGone(mqh)) {
        MarkDetached(mqh->mq, mqh->role);
        return SHM_MQ_DETACHED;
      }
      if (nowait) return SHM_MQ_WOULD_BLOCK;
      WaitForPeer(mqh);
      continue;
    }
    // At most a quarter at a time, then publish (whole words only): the
    // receiver copies one quarter while we write the next.
    const std::uint64_t offset = mqh->write_pos % ring_size;
    const std::size_t k =
        static_cast<std::size_t>(std::min<std::uint64_t>({n - done, ring_size - offset, room, mqh->quarter}));
    std::memcpy(mqh->ring + offset, data + done, k);
    mqh->write_pos += k;
    done += k;
    *progress += k;
    if (mqh->write_pos - mqh->published_written >= mqh->quarter) PublishWritten(mqh, AlignDown(mqh->write_pos));
  }
  return SHM_MQ_SUCCESS;
}

// --- the receiver's side ----------------------------------------------------------------------

// Gives [published_read, read_pos) back to the sender and wakes it.
void PublishRead(shm_mq_handle* mqh) noexcept {
  if (mqh->read_pos == mqh->published_read) return;
  mqh->mq->bytes_read.store(mqh->read_pos, std::memory_order_release);
  mqh->mq->receiver_cpu.store(sched_getcpu(), std::memory_order_relaxed);
  mqh->published_read = mqh->read_pos;
  SetSharedLatch(&mqh->mq->sender_latch);
}

void RefreshWrittenSeen(shm_mq_handle* mqh) {
  const std::uint64_t written = mqh->mq->bytes_written.load(std::memory_order_acquire);
  if (written < mqh->written_seen || written - mqh->read_pos > mqh->ring_size || written % kAlign != 0)
    ReportCorrupt("bytes written out of range", written, mqh->read_pos);
  mqh->written_seen = written;
}

// Enough to go on: `needed` bytes are readable, or the readable bytes reach
// the end of the ring (a caller that wants more must copy what is there).
bool EnoughToRead(const shm_mq_handle* mqh, std::uint64_t needed) {
  const std::uint64_t avail = mqh->written_seen - mqh->read_pos;
  return avail >= needed || (avail > 0 && mqh->read_pos % mqh->ring_size + avail >= mqh->ring_size);
}

shm_mq_result WaitToRead(shm_mq_handle* mqh, std::uint64_t needed, bool nowait) {
  for (;;) {
    if (EnoughToRead(mqh, needed)) return SHM_MQ_SUCCESS;
    RefreshWrittenSeen(mqh);
    if (EnoughToRead(mqh, needed)) return SHM_MQ_SUCCESS;
    // Give back everything consumed before waiting: the sender may be
    // waiting for exactly that room.
    PublishRead(mqh);
    if (IsDetached(mqh->mq) || PeerGone(mqh)) {
      MarkDetached(mqh->mq, mqh->role);
      // The sender published all it wrote before detaching (or dying); what
      // came after our last look still counts.
      RefreshWrittenSeen(mqh);
      return EnoughToRead(mqh, needed) ? SHM_MQ_SUCCESS : SHM_MQ_DETACHED;
    }
    if (nowait) return SHM_MQ_WOULD_BLOCK;
    WaitForPeer(mqh);
  }
}

// A buffer of at least `size` bytes (its old contents do not matter).
void EnsureBuffer(shm_mq_handle* mqh, std::size_t size) {
  if (mqh->buflen >= size) return;
  std::size_t newlen = 8192;  // PostgreSQL's MQH_INITIAL_BUFSIZE
  while (newlen < size) newlen *= 2;
  newlen = std::min(newlen, MaxAllocSize);  // still >= size: size <= MaxAllocSize was checked
  char* fresh = static_cast<char*>(MemoryContextAlloc(mqh->context, newlen));
  if (mqh->buffer != nullptr) pfree(mqh->buffer);
  mqh->buffer = fresh;
  mqh->buflen = newlen;
}

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
  mqh->read_pos = mqh->published_read = mqh->read_seen = mq->bytes_read.load(std::memory_order_acquire);
  mqh->written_seen = mqh->write_pos;
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

shm_mq_result shm_mq_send(shm_mq_handle* mqh, std::size_t nbytes, const void* data, bool nowait, bool force_flush) {
  const shm_mq_iovec iov{data, nbytes};
  return shm_mq_sendv(mqh, &iov, 1, nowait, force_flush);
}

shm_mq_result shm_mq_sendv(shm_mq_handle* mqh, const shm_mq_iovec* iov, int iovcnt, bool nowait, bool force_flush) {
  static constexpr Role kSender = Role::kSender;
  CheckHandle(mqh, "shm_mq_send", &kSender);
  if (iovcnt < 0 || (iovcnt > 0 && iov == nullptr))
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("shm_mq_sendv: invalid iovec array"));
  std::size_t total = 0;
  for (int i = 0; i < iovcnt; ++i) {
    if (iov[i].len > 0 && iov[i].data == nullptr)
      ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("shm_mq_send: piece %d has no data", i));
    if (iov[i].len > MaxAllocSize - total)
      ereport(ERROR, errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
              errmsg("cannot send a message of more than %zu bytes via shared memory queue", MaxAllocSize));
    total += iov[i].len;
  }
  // Detached is for good: a message cut short by it is abandoned (as
  // PostgreSQL's), and every later send just says so.
  if (IsDetached(mqh->mq)) {
    mqh->msg_active = false;
    return SHM_MQ_DETACHED;
  }
  if (mqh->msg_active && total != mqh->msg_nbytes)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("shm_mq_send: a message of %zu bytes is partly sent; it must be completed before another (%zu bytes)",
                   mqh->msg_nbytes, total));
  if (!mqh->msg_active) {
    mqh->msg_active = true;
    mqh->msg_nbytes = total;
    mqh->msg_sent = 0;
  }
  shm_mq_result res;
  if (mqh->msg_sent < kAlign) {
    const std::uint64_t length_word = total;
    res = SendBytes(mqh, reinterpret_cast<const char*>(&length_word) + mqh->msg_sent, kAlign - mqh->msg_sent, nowait,
                    &mqh->msg_sent);
    if (res != SHM_MQ_SUCCESS) return res;
  }
  std::size_t skip = mqh->msg_sent - kAlign;  // payload bytes already in the ring
  for (int i = 0; i < iovcnt; ++i) {
    if (skip >= iov[i].len) {
      skip -= iov[i].len;
      continue;
    }
    res = SendBytes(mqh, static_cast<const char*>(iov[i].data) + skip, iov[i].len - skip, nowait, &mqh->msg_sent);
    skip = 0;
    if (res != SHM_MQ_SUCCESS) return res;
  }
  // Whole: pad to 8 (room for the padding is certain: the limit, bytes read
  // plus the ring size, is a multiple of 8).
  mqh->write_pos = AlignUp(mqh->write_pos);
  mqh->msg_active = false;
  if (force_flush || mqh->write_pos - mqh->published_written >= mqh->quarter) PublishWritten(mqh, mqh->write_pos);
  return SHM_MQ_SUCCESS;
}

shm_mq_result shm_mq_receive(shm_mq_handle* mqh, std::size_t* nbytesp, void** datap, bool nowait) {
  static constexpr Role kReceiver = Role::kReceiver;
  CheckHandle(mqh, "shm_mq_receive", &kReceiver);
  if (nbytesp == nullptr || datap == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("shm_mq_receive: null output argument"));
  // The previous message may still be read in the ring until now; from here
  // its bytes can go back to the sender (in batches).
  if (mqh->read_pos - mqh->published_read >= mqh->quarter) PublishRead(mqh);

  const std::uint64_t ring_size = mqh->ring_size;
  shm_mq_result res;
  if (!mqh->have_length) {
    res = WaitToRead(mqh, kAlign, nowait);  // an aligned length word never wraps: 8 bytes in one piece
    if (res != SHM_MQ_SUCCESS) return res;
    std::uint64_t length_word;
    std::memcpy(&length_word, mqh->ring + mqh->read_pos % ring_size, sizeof length_word);
    if (length_word > MaxAllocSize)
      ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED),
              errmsg("invalid message size %llu in shared memory queue", static_cast<unsigned long long>(length_word)));
    mqh->read_pos += kAlign;
    mqh->have_length = true;
    mqh->expected = static_cast<std::size_t>(length_word);
    mqh->received = 0;
  }

  if (mqh->received == 0) {
    if (mqh->read_pos % ring_size + mqh->expected <= ring_size) {
      // The message can lie in one piece: wait for all of it, then no copy
      // at all. (One that cannot — it wraps, or is longer than the ring — is
      // copied from its first published bytes on, so that we copy while the
      // sender writes the rest.)
      res = WaitToRead(mqh, mqh->expected, nowait);
      if (res != SHM_MQ_SUCCESS) return res;
      // Enough to read means all of it here: the bytes up to the ring's end
      // include the whole message.
      Assert(mqh->written_seen - mqh->read_pos >= mqh->expected);
      *datap = mqh->ring + mqh->read_pos % ring_size;
      *nbytesp = mqh->expected;
      mqh->read_pos += AlignUp(mqh->expected);  // published at a later call: the caller reads it until then
      mqh->have_length = false;
      return SHM_MQ_SUCCESS;
    }
    EnsureBuffer(mqh, mqh->expected);
  }

  // Reassemble: copy what is there, give it back, wait for more.
  for (;;) {
    res = WaitToRead(mqh, 1, nowait);
    if (res != SHM_MQ_SUCCESS) return res;
    const std::uint64_t offset = mqh->read_pos % ring_size;
    // A quarter at most (a multiple of 8, as all the contiguous bytes
    // are), given back at once: the sender fills it while we copy the next.
    const std::uint64_t contiguous = std::min({mqh->written_seen - mqh->read_pos, ring_size - offset, mqh->quarter});
    const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(contiguous, mqh->expected - mqh->received));
    std::memcpy(mqh->buffer + mqh->received, mqh->ring + offset, k);
    mqh->received += k;
    // Mid-message, k is all the contiguous bytes: a multiple of 8. At the
    // end, the padding goes too.
    mqh->read_pos += mqh->received == mqh->expected ? AlignUp(k) : k;
    if (mqh->received == mqh->expected) {
      mqh->have_length = false;
      *datap = mqh->buffer;
      *nbytesp = mqh->expected;
      return SHM_MQ_SUCCESS;
    }
    if (mqh->read_pos - mqh->published_read >= mqh->quarter) PublishRead(mqh);
  }
}

shm_mq_result shm_mq_wait_for_attach(shm_mq_handle* mqh) {
  CheckHandle(mqh, "shm_mq_wait_for_attach");
  for (;;) {
    if (PeerNamed(mqh)) return SHM_MQ_SUCCESS;
    if (IsDetached(mqh->mq)) return SHM_MQ_DETACHED;
    if (PeerGone(mqh)) {
      // Named at the last moment? Then it did attach (and is gone since):
      // the next send or receive says DETACHED.
      if (PeerNamed(mqh)) return SHM_MQ_SUCCESS;
      MarkDetached(mqh->mq, mqh->role);
      return SHM_MQ_DETACHED;
    }
    WaitForPeer(mqh);
  }
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
