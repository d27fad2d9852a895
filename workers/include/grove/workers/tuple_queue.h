// Tuple queues: a stream of rows — variable-length records — from one
// worker to the leader over a shm_mq, as PostgreSQL's tqueue.c feeds Gather.
// One queue per worker, kTupleQueueSize bytes each by default; the worker
// sends, the leader reads (blocking, or without blocking round robin over
// the workers' queues); the stream ends when the worker detaches, normally
// or because it died.
//
//   // leader, once per worker, in the parallel DSM:
//   shm_mq* mq = CreateTupleQueue(shm_toc_allocate(toc, kTupleQueueSize));
//   shm_mq_set_receiver(mq);
//   TupleQueueReader reader(shm_mq_attach(mq, seg));
//   const void* row; std::size_t len;
//   while (reader.Next(&row, &len, /*nowait=*/false) == TupleQueueReader::kRecord) use(row, len);
//
//   // worker:
//   shm_mq_set_sender(mq);
//   TupleQueueSender sender(shm_mq_attach(mq, seg));
//   for (...) if (!sender.Send(row, len)) break;   // false: the leader stopped reading
//   sender.Close();                                 // end of stream (the destructor does it too)
//
// Records are published in batches (a quarter of the queue, as PostgreSQL's
// tqueue sends without force_flush): few wake-ups at full speed, at the cost
// of latency for a trickle — rows sent are visible to the reader once a
// quarter of the queue is full, the queue fills, or the sender closes.
//
// Lifetimes: each object owns its shm_mq_handle and detaches it in Close()
// or its destructor. The handle's memory context (the one current at
// shm_mq_attach) must outlive the object.
#pragma once

#include <cstddef>

#include "grove/workers/shm_mq.h"

namespace grove {

/// Bytes of shared memory per worker's tuple queue (PostgreSQL's
/// PARALLEL_TUPLE_QUEUE_SIZE): enough for hundreds of typical rows in flight.
inline constexpr std::size_t kTupleQueueSize = 64 * 1024;

/// shm_mq_create(address, size): a tuple queue at `address` (8-byte aligned).
shm_mq* CreateTupleQueue(void* address, std::size_t size = kTupleQueueSize);

/// The worker's end: sends records.
class TupleQueueSender {
 public:
  /// Takes ownership of the sender's handle (attached by the calling thread).
  explicit TupleQueueSender(shm_mq_handle* mqh);
  ~TupleQueueSender();
  TupleQueueSender(const TupleQueueSender&) = delete;
  TupleQueueSender& operator=(const TupleQueueSender&) = delete;

  /// Sends one record of `len` bytes (0 … MaxAllocSize), blocking while the
  /// queue is full. True when sent; false when the reader has detached or is
  /// gone (nothing more can be delivered: stop producing). ERROR after Close.
  bool Send(const void* record, std::size_t len);
  /// The same without blocking: SHM_MQ_WOULD_BLOCK means call again with the
  /// same record (part of it may be in the queue already).
  shm_mq_result TrySend(const void* record, std::size_t len);
  /// Ends the stream: publishes what is unpublished and detaches. Idempotent.
  void Close() noexcept;
  bool closed() const noexcept { return mqh_ == nullptr; }

 private:
  shm_mq_handle* mqh_;
};

/// The leader's end: reads records until the end of the stream.
class TupleQueueReader {
 public:
  enum Status {
    kRecord,       ///< *record / *len hold the next record
    kWouldBlock,   ///< nowait only: nothing complete yet
    kEndOfStream,  ///< the sender detached (or is gone) and every record was read
  };

  /// Takes ownership of the receiver's handle (attached by the calling thread).
  explicit TupleQueueReader(shm_mq_handle* mqh);
  ~TupleQueueReader();
  TupleQueueReader(const TupleQueueReader&) = delete;
  TupleQueueReader& operator=(const TupleQueueReader&) = delete;

  /// The next record; its bytes stay valid until the next call or Close.
  /// After kEndOfStream every call returns kEndOfStream. A cancel while
  /// blocked is an ERROR (57014); the reader stays usable.
  Status Next(const void** record, std::size_t* len, bool nowait);
  /// Whether kEndOfStream was returned.
  bool done() const noexcept { return done_; }
  /// Detaches (the sender's next send returns false). Idempotent.
  void Close() noexcept;

 private:
  shm_mq_handle* mqh_;
  bool done_ = false;
};

}  // namespace grove
