// Internal to shm_mq.cc and shm_mq_setup.cc: the shared layout of a queue,
// the process-local handle, and the helpers both files use. See shm_mq.cc
// for who writes what.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "grove/contexts/palloc.h"
#include "grove/workers/latch.h"
#include "grove/workers/shm_mq.h"

namespace grove {

namespace shm_mq_internal {

inline constexpr std::uint64_t kQueueMagic = 0x67726f76654d5121;  // "groveMQ!"
inline constexpr std::uint32_t kHandleMagic = 0x4d514831;          // a live handle
inline constexpr std::uint32_t kHandleDetachedMagic = 0x4d514830;  // after shm_mq_detach

inline constexpr std::uint64_t kAlign = 8;  // MAXALIGN; the length word's size too
constexpr std::uint64_t AlignUp(std::uint64_t v) { return (v + kAlign - 1) & ~(kAlign - 1); }
constexpr std::uint64_t AlignDown(std::uint64_t v) { return v & ~(kAlign - 1); }

// A waiting side polls the other side's counter this many times (~7 µs of
// pause instructions) before it sleeps: a peer running on another CPU
// usually answers within microseconds, and a futex sleep plus wake-up costs
// more. Not when the peer was last seen on our own CPU: it cannot answer
// while we poll, and polling would only burn the time it needs.
inline constexpr int kWaitSpins = 256;
// A sleeping side wakes at least this often to run CHECK_FOR_INTERRUPTS and
// look at its peer, which cannot wake it if it is dead.
inline constexpr long kWaitTimeoutUs = 20 * 1000;
// The peer's liveness (a /proc read, or the caller's callback) is checked at
// most this often: on a wait path, never per message.
inline constexpr std::int64_t kPeerCheckIntervalNs = 20 * 1000 * 1000;

// pid of a side while shm_mq_set_* is filling in the rest of it.
inline constexpr std::int32_t kPidClaiming = -1;

inline constexpr std::uint32_t kSenderAttached = 1;
inline constexpr std::uint32_t kReceiverAttached = 2;

// Which process (and thread) is a side of the queue.
struct Peer {
  std::atomic<std::int32_t> pid;  // 0 = not named yet; kPidClaiming; else the pid
  std::int32_t tid;               // 0 = any thread of pid
  std::uint64_t start_time;       // of pid, to tell a reused pid (0 = unknown)
};

enum class Role : std::uint8_t { kSender, kReceiver };

}  // namespace shm_mq_internal

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
  shm_mq_internal::Peer receiver;
  shm_mq_internal::Peer sender;
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
static_assert(sizeof(shm_mq_internal::Peer) == 16 && offsetof(shm_mq, pad0) == 56, "identity group as laid out");
static_assert(offsetof(shm_mq, bytes_written) == 128, "the sender's group starts 128 bytes in");
static_assert(offsetof(shm_mq, bytes_read) == 256, "the receiver's group starts 256 bytes in");
static_assert(offsetof(shm_mq, ring) == kShmMqHeaderSize && sizeof(shm_mq) == kShmMqHeaderSize,
              "kShmMqHeaderSize in shm_mq.h is the header's size");
static_assert(kShmMqHeaderSize % shm_mq_internal::kAlign == 0, "the ring starts MAXALIGNed");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::int32_t>::is_always_lock_free,
              "counters are shared between processes: they must be lock-free");

struct shm_mq_handle {
  std::uint32_t magic;  // kHandleMagic, or kHandleDetachedMagic after shm_mq_detach
  shm_mq_internal::Role role;
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
  bool wake_pending;  // published without waking the peer; wake before waiting or returning

  // Sender. write_pos - published_written bytes are written, unpublished.
  std::uint64_t write_pos;
  std::uint64_t write_off;  // write_pos % ring_size, kept as we go (no division per message)
  std::uint64_t published_written;
  std::uint64_t read_seen;  // last bytes_read loaded
  bool msg_active;          // a message is partly in the ring (nowait, or an ERROR while blocked)
  std::size_t msg_nbytes;   // its payload size
  std::size_t msg_sent;     // bytes of it in the ring: length word, then payload

  // Receiver. read_pos - published_read bytes are consumed, not yet given back.
  std::uint64_t read_pos;
  std::uint64_t read_off;  // read_pos % ring_size
  std::uint64_t published_read;
  std::uint64_t written_seen;  // last bytes_written loaded
  bool have_length;            // the current message's length word was read
  std::size_t expected;        // its payload size
  std::size_t received;        // payload bytes copied to buffer so far
  char* buffer;                // reassembly of messages not contiguous in the ring
  std::size_t buflen;
};

namespace shm_mq_internal {

inline const char* RoleName(Role r) { return r == Role::kSender ? "sender" : "receiver"; }
inline bool IsDetached(const shm_mq* mq) { return mq->detached.load(std::memory_order_acquire) != 0; }
inline SharedLatch* MyLatch(shm_mq* mq, Role me) { return me == Role::kSender ? &mq->sender_latch : &mq->receiver_latch; }
inline SharedLatch* PeerLatch(shm_mq* mq, Role me) {
  return me == Role::kSender ? &mq->receiver_latch : &mq->sender_latch;
}

/// Bumped in every forked child (shm_mq_setup.cc): a handle attached under
/// another generation was inherited and must not be used.
extern std::atomic<std::uint32_t> g_fork_generation;

/// ERROR unless `mq` is an initialized queue at an aligned address.
void CheckQueue(const shm_mq* mq, const char* caller);
/// ERROR unless the handle is live, of this process, attached to a mapped
/// queue, and (if `role` is given) has that role. Every entry point's first step.
void CheckHandle(const shm_mq_handle* mqh, const char* caller, const Role* role = nullptr);
/// Makes [published_written, upto) visible to the receiver and wakes it —
/// or, with `defer_wake`, leaves the wake-up pending (see WakePeerLater).
void PublishWritten(shm_mq_handle* mqh, std::uint64_t upto, bool defer_wake = false) noexcept;
/// Marks the queue detached and wakes the other side. Never fails.
void MarkDetached(shm_mq* mq, Role me) noexcept;

}  // namespace shm_mq_internal
}  // namespace grove
