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
#include "shm_mq_internal.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "grove/base/assert.h"
#include "grove/base/error.h"
#include "grove/base/interrupts.h"
#include "grove/contexts/memutils.h"

namespace grove {

using namespace shm_mq_internal;

// --- shared with shm_mq_setup.cc ---------------------------------------------------------------

// Marks the queue detached (for a peer that is gone, or for ourselves) and
// wakes the other side. Never fails.
void shm_mq_internal::MarkDetached(shm_mq* mq, Role me) noexcept {
  mq->detached.store(1, std::memory_order_release);
  SetSharedLatch(PeerLatch(mq, me));
}

// Wakes the other side if it sleeps (nothing, if it does not).
void WakePeer(shm_mq_handle* mqh) noexcept {
  mqh->wake_pending = false;
  SetSharedLatch(PeerLatch(mqh->mq, mqh->role));
}

// Makes [published_written, upto) visible to the receiver and wakes it.
// `upto` is a multiple of 8.
void shm_mq_internal::PublishWritten(shm_mq_handle* mqh, std::uint64_t upto, bool defer_wake) noexcept {
  Assert(upto % kAlign == 0 && upto <= mqh->write_pos);
  if (upto > mqh->published_written) {
    mqh->mq->bytes_written.store(upto, std::memory_order_release);
    mqh->mq->sender_cpu.store(sched_getcpu(), std::memory_order_relaxed);
    mqh->published_written = upto;
    mqh->wake_pending = true;
  }
  if (!defer_wake && mqh->wake_pending) WakePeer(mqh);
}

namespace {

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

// Whether the other side last published from the CPU we run on. Then it
// cannot run while we do: polling for it is wasted, and waking it in the
// middle of a long message only lets it preempt us to copy a quarter of the
// ring (a context switch each way per quarter, instead of per ring).
bool PeerOnMyCpu(const shm_mq_handle* mqh) {
  const std::int32_t peer_cpu =
      (mqh->role == Role::kSender ? mqh->mq->receiver_cpu : mqh->mq->sender_cpu).load(std::memory_order_relaxed);
  return peer_cpu >= 0 && peer_cpu == sched_getcpu();
}

// Waits until the peer moves (or the timeout), then acts on a pending
// cancel. The handle's state is consistent whenever this is called, and
// no wake-up is pending (the peer may be waiting for what we published).
void WaitForPeer(shm_mq_handle* mqh) {
  Assert(!mqh->wake_pending);
  PeerNamed(mqh);  // else a peer named since the last look would count as "moved" again and again
  const int spins = PeerOnMyCpu(mqh) ? 0 : kWaitSpins;
  WaitSharedLatch(MyLatch(mqh->mq, mqh->role), [mqh] { return PeerMoved(mqh); }, spins, kWaitTimeoutUs);
  CHECK_FOR_INTERRUPTS();
}

// --- the sender's side ------------------------------------------------------------------------

// The receiver's progress, checked: it can never be ahead of what was
// written, nor more than a ring behind.
void RefreshReadSeen(shm_mq_handle* mqh) {
  const std::uint64_t read = mqh->mq->bytes_read.load(std::memory_order_acquire);
  if (read > mqh->published_written || read < mqh->read_seen) ReportCorrupt("bytes read out of range", read, mqh->write_pos);
  mqh->read_seen = read;
}

// Moves the write position by n bytes, none past the ring's end.
void AdvanceWrite(shm_mq_handle* mqh, std::uint64_t n) {
  Assert(mqh->write_off + n <= mqh->ring_size);
  mqh->write_pos += n;
  mqh->write_off += n;
  if (mqh->write_off == mqh->ring_size) mqh->write_off = 0;
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
    const std::uint64_t offset = mqh->write_off;
    const std::size_t k =
        static_cast<std::size_t>(std::min<std::uint64_t>({n - done, ring_size - offset, room, mqh->quarter}));
    std::memcpy(mqh->ring + offset, data + done, k);
    AdvanceWrite(mqh, k);
    done += k;
    *progress += k;
    if (mqh->write_pos - mqh->published_written >= mqh->quarter)
      PublishWritten(mqh, AlignDown(mqh->write_pos), /*defer_wake=*/PeerOnMyCpu(mqh));
  }
  return SHM_MQ_SUCCESS;
}

// --- the receiver's side ----------------------------------------------------------------------

// Gives [published_read, read_pos) back to the sender and wakes it (or
// leaves the wake-up pending, as PublishWritten).
void PublishRead(shm_mq_handle* mqh, bool defer_wake = false) noexcept {
  if (mqh->read_pos != mqh->published_read) {
    mqh->mq->bytes_read.store(mqh->read_pos, std::memory_order_release);
    mqh->mq->receiver_cpu.store(sched_getcpu(), std::memory_order_relaxed);
    mqh->published_read = mqh->read_pos;
    mqh->wake_pending = true;
  }
  if (!defer_wake && mqh->wake_pending) WakePeer(mqh);
}

void RefreshWrittenSeen(shm_mq_handle* mqh) {
  const std::uint64_t written = mqh->mq->bytes_written.load(std::memory_order_acquire);
  if (written < mqh->written_seen || written - mqh->read_pos > mqh->ring_size || written % kAlign != 0)
    ReportCorrupt("bytes written out of range", written, mqh->read_pos);
  mqh->written_seen = written;
}

// Moves the read position by n bytes, none past the ring's end.
void AdvanceRead(shm_mq_handle* mqh, std::uint64_t n) {
  Assert(mqh->read_off + n <= mqh->ring_size);
  mqh->read_pos += n;
  mqh->read_off += n;
  if (mqh->read_off == mqh->ring_size) mqh->read_off = 0;
}

// Enough to go on: `needed` bytes are readable, or the readable bytes reach
// the end of the ring (a caller that wants more must copy what is there).
bool EnoughToRead(const shm_mq_handle* mqh, std::uint64_t needed) {
  const std::uint64_t avail = mqh->written_seen - mqh->read_pos;
  return avail >= needed || (avail > 0 && mqh->read_off + avail >= mqh->ring_size);
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

}  // namespace

// --- the API ----------------------------------------------------------------------------------

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
  AdvanceWrite(mqh, AlignUp(mqh->write_pos) - mqh->write_pos);
  mqh->msg_active = false;
  if (force_flush || mqh->write_pos - mqh->published_written >= mqh->quarter) PublishWritten(mqh, mqh->write_pos);
  if (mqh->wake_pending) WakePeer(mqh);  // never leave a published part unannounced
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
    std::memcpy(&length_word, mqh->ring + mqh->read_off, sizeof length_word);
    if (length_word > MaxAllocSize)
      ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED),
              errmsg("invalid message size %llu in shared memory queue", static_cast<unsigned long long>(length_word)));
    AdvanceRead(mqh, kAlign);
    mqh->have_length = true;
    mqh->expected = static_cast<std::size_t>(length_word);
    mqh->received = 0;
  }

  if (mqh->received == 0) {
    if (mqh->read_off + mqh->expected <= ring_size) {
      // The message can lie in one piece: wait for all of it, then no copy
      // at all. (One that cannot — it wraps, or is longer than the ring — is
      // copied from its first published bytes on, so that we copy while the
      // sender writes the rest.)
      res = WaitToRead(mqh, mqh->expected, nowait);
      if (res != SHM_MQ_SUCCESS) return res;
      // Enough to read means all of it here: the bytes up to the ring's end
      // include the whole message.
      Assert(mqh->written_seen - mqh->read_pos >= mqh->expected);
      *datap = mqh->ring + mqh->read_off;
      *nbytesp = mqh->expected;
      AdvanceRead(mqh, AlignUp(mqh->expected));  // published at a later call: the caller reads it until then
      mqh->have_length = false;
      return SHM_MQ_SUCCESS;
    }
    EnsureBuffer(mqh, mqh->expected);
  }

  // Reassemble: copy what is there, give it back, wait for more.
  for (;;) {
    res = WaitToRead(mqh, 1, nowait);
    if (res != SHM_MQ_SUCCESS) return res;
    const std::uint64_t offset = mqh->read_off;
    // A quarter at most (a multiple of 8, as all the contiguous bytes
    // are), given back at once: the sender fills it while we copy the next.
    const std::uint64_t contiguous = std::min({mqh->written_seen - mqh->read_pos, ring_size - offset, mqh->quarter});
    const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(contiguous, mqh->expected - mqh->received));
    std::memcpy(mqh->buffer + mqh->received, mqh->ring + offset, k);
    mqh->received += k;
    // Mid-message, k is all the contiguous bytes: a multiple of 8. At the
    // end, the padding goes too.
    AdvanceRead(mqh, mqh->received == mqh->expected ? AlignUp(k) : k);
    if (mqh->received == mqh->expected) {
      mqh->have_length = false;
      *datap = mqh->buffer;
      *nbytesp = mqh->expected;
      if (mqh->wake_pending) WakePeer(mqh);  // the sender may sleep on a full ring
      return SHM_MQ_SUCCESS;
    }
    if (mqh->read_pos - mqh->published_read >= mqh->quarter) PublishRead(mqh, /*defer_wake=*/PeerOnMyCpu(mqh));
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

}  // namespace grove
