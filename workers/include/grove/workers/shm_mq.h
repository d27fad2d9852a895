// Shared-memory message queues (PostgreSQL's shm_mq.h, grove's code): one
// sender, one receiver, a ring buffer in shared memory, messages of any
// length from 0 bytes to MaxAllocSize, between two processes or two threads.
//
//   // the creator, in memory both sides can reach (a shm_toc chunk, say):
//   shm_mq* mq = shm_mq_create(address, 65536);
//   // the receiver                          // the sender
//   shm_mq_set_receiver(mq);                 shm_mq_set_sender(mq);
//   shm_mq_handle* h = shm_mq_attach(mq, seg);  shm_mq_handle* h = shm_mq_attach(mq, seg);
//   while (shm_mq_receive(h, &n, &p, false)  shm_mq_send(h, n, p, false);
//          == SHM_MQ_SUCCESS) use(p, n);     shm_mq_detach(h);   // end of stream
//   shm_mq_detach(h);
//
// The shared layout: a header, then the ring. Two 64-bit counters that only
// grow — bytes written (moved only by the sender) and bytes read (only by
// the receiver) — say which ring bytes hold unread data: [read, written)
// modulo the ring size. Each message is an 8-byte length word, the payload,
// and padding to 8 bytes (MAXALIGN), so every message starts aligned. A
// message longer than the ring goes through it in pieces and is reassembled
// in a buffer of the receiver's handle.
//
// Publishing in batches, as PostgreSQL: the sender advances the shared write
// counter (and wakes the receiver) when it ends a message with force_flush,
// when more than a quarter of the ring is unpublished, when it must wait for
// space, and when it detaches; the receiver advances the read counter after
// a quarter of the ring or before it waits. Each side keeps its last view of
// the other's counter and reads the shared one only when that view runs out,
// so the two rarely touch each other's cache lines.
//
// Waiting never spins for long and never hangs: a side that must wait polls
// for a few microseconds (not at all if the other side last ran on its own
// CPU), then sleeps on its futex latch in the header for at most 20 ms at a
// time; each time it wakes it runs CHECK_FOR_INTERRUPTS() (a
// cancel is an ERROR 57014 from the blocked call) and checks the other side:
// * detached (shm_mq_detach, or the DSM segment detached) -> SHM_MQ_DETACHED;
// * a different process that is no longer alive (pid and start time given at
//   shm_mq_set_sender/set_receiver; a zombie counts as dead) -> DETACHED;
// * the handle's peer check (shm_mq_set_peer_check) says it is gone ->
//   DETACHED. This is how threads of one process, which share a pid, and
//   pooled worker processes, whose pid outlives the job, are watched, and
//   how a peer that never attaches is given up on.
// The receiver first drains complete messages already in the ring: a peer
// that sends and then detaches or dies is never cut short. A message that
// was not complete is never returned (no torn messages).
//
// Errors (ereport ERROR): a ring too small or a misaligned address, a second
// sender or receiver, a caller that is neither, a send on a receiver's
// handle or the reverse, any use of a handle after shm_mq_detach or after
// its segment was detached, a handle inherited through fork(), a message
// above MaxAllocSize, a corrupt length word.
//
// Thread safety: the shared queue is lock-free and used by exactly two
// parties. A handle is process-local and used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace grove {

struct dsm_segment;

/// The queue, in shared memory. Opaque.
struct shm_mq;
/// A process-local attachment to one end of a queue. Opaque; allocated in
/// the CurrentMemoryContext of shm_mq_attach, which must outlive its use.
struct shm_mq_handle;

enum shm_mq_result {
  SHM_MQ_SUCCESS,      ///< sent or received a whole message (or the peer attached)
  SHM_MQ_WOULD_BLOCK,  ///< nowait only: call again later with the same arguments
  SHM_MQ_DETACHED,     ///< the other side detached, died or is gone; nothing more will come
};

/// One piece of a message for shm_mq_sendv.
struct shm_mq_iovec {
  const void* data;
  std::size_t len;
};

/// Bytes of the shared header in front of the ring. The two counters sit on
/// separate cache lines (128 bytes apart, beyond the adjacent-line
/// prefetcher), each beside the latch its writer sets.
inline constexpr std::size_t kShmMqHeaderSize = 384;
/// The smallest queue: the header and room for one length word. Any ring
/// size works (long messages go in pieces); throughput wants kilobytes.
inline constexpr std::size_t shm_mq_minimum_size = kShmMqHeaderSize + 8;
/// Alignment required of a queue's address (MAXALIGN).
inline constexpr std::size_t kShmMqAlignment = 8;

/// Makes a queue in `size` bytes at `address` (rounded down to a multiple of
/// 8); the ring gets size - kShmMqHeaderSize bytes. ERROR if `address` is
/// null or not 8-byte aligned, or `size` is below shm_mq_minimum_size.
/// Before either side uses it.
shm_mq* shm_mq_create(void* address, std::size_t size);

/// Records who receives / sends: `pid` 0 means the calling thread (its
/// process id, thread id and process start time); another pid means any
/// thread of that process. Wakes the other side if it waits for this.
/// ERROR if the queue already has one ("a second receiver").
void shm_mq_set_receiver(shm_mq* mq, pid_t pid = 0);
void shm_mq_set_sender(shm_mq* mq, pid_t pid = 0);
/// The pid recorded by shm_mq_set_receiver / _sender, or 0 if none yet.
pid_t shm_mq_get_receiver(shm_mq* mq);
pid_t shm_mq_get_sender(shm_mq* mq);
/// Usable bytes of the ring.
std::size_t shm_mq_get_ring_size(const shm_mq* mq);

/// Called (by the thread using the handle) when a wait wakes, at most every
/// 20 ms; returns false once the peer is gone for good.
/// Must not throw.
using shm_mq_peer_alive_fn = bool (*)(void* arg);

/// Attaches the calling thread to its end of `mq`: the sender's or the
/// receiver's, whichever shm_mq_set_* named it (the calling thread before
/// any thread of its process). ERROR if it is neither, or ambiguous (both
/// ends named for this thread), or that end already has a handle.
/// If `seg` is given (the segment holding `mq`), detaching the segment
/// detaches the queue; otherwise the memory must stay mapped until
/// shm_mq_detach. Resetting or deleting the handle's memory context also
/// detaches it. `peer_alive` as shm_mq_set_peer_check.
shm_mq_handle* shm_mq_attach(shm_mq* mq, dsm_segment* seg, shm_mq_peer_alive_fn peer_alive = nullptr,
                             void* arg = nullptr);

/// Installs (or with nullptr removes) the peer check of this handle.
void shm_mq_set_peer_check(shm_mq_handle* mqh, shm_mq_peer_alive_fn peer_alive, void* arg);

/// Sends one message of `nbytes` (at most MaxAllocSize). Blocks while the
/// ring is full, unless `nowait`: then SHM_MQ_WOULD_BLOCK, and the caller
/// must call again with the same message until SUCCESS or DETACHED (the part
/// already in the ring is not sent twice). The message is published when
/// the call returns with `force_flush` (the default); without it, after a
/// quarter of the ring, at a later flushing send or wait, or at detach.
/// DETACHED once the receiver detached or is gone (what it had not read is
/// lost). A cancel while blocked is an ERROR; the handle stays consistent
/// (resend the same message, or detach).
shm_mq_result shm_mq_send(shm_mq_handle* mqh, std::size_t nbytes, const void* data, bool nowait,
                          bool force_flush = true);
/// The same for a message made of `iovcnt` pieces, sent as one.
shm_mq_result shm_mq_sendv(shm_mq_handle* mqh, const shm_mq_iovec* iov, int iovcnt, bool nowait,
                           bool force_flush = true);

/// Receives the next message: *nbytesp its length, *datap its bytes — in the
/// ring itself when the message lies there in one piece, else in the
/// handle's buffer. Valid until the next receive or shm_mq_detach on this
/// handle. Blocks until a whole message is there, unless `nowait` (then
/// SHM_MQ_WOULD_BLOCK; call again, the part read is kept). DETACHED when the
/// sender detached or is gone and no complete message is left.
shm_mq_result shm_mq_receive(shm_mq_handle* mqh, std::size_t* nbytesp, void** datap, bool nowait);

/// Waits until the other side has been named (shm_mq_set_sender/receiver):
/// SUCCESS, or DETACHED if the queue is detached or the peer check says the
/// peer is gone. Without a peer check, a peer that never comes is waited for
/// until a cancel.
shm_mq_result shm_mq_wait_for_attach(shm_mq_handle* mqh);

/// Detaches: a sender first publishes what it wrote; then the queue is
/// marked detached for good and the other side woken. Frees the handle's
/// buffer; the handle itself (a few dozen bytes) stays in its memory context,
/// marked, so that any later use is an ERROR rather than a use after free.
/// Never blocks. ERROR if the handle was already detached this way.
void shm_mq_detach(shm_mq_handle* mqh);

/// The queue a handle is attached to (ERROR once detached, as every use).
shm_mq* shm_mq_get_queue(shm_mq_handle* mqh);

}  // namespace grove
