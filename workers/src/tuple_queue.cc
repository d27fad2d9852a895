// Tuple queues over shm_mq (see tuple_queue.h).
#include "grove/workers/tuple_queue.h"

#include "grove/base/error.h"

namespace grove {

namespace {

// Detaching can only fail for a handle that is not this process's to detach
// (inherited through fork: the parent detaches it) or already detached —
// neither leaves anything to undo, and a destructor must not throw.
void DetachQuietly(shm_mq_handle* mqh) noexcept {
  try {
    shm_mq_detach(mqh);
  } catch (const Error&) {
  }
}

void RequireHandle(const shm_mq_handle* mqh, const char* what) {
  if (mqh == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s needs an attached shared memory queue handle", what));
}

}  // namespace

shm_mq* CreateTupleQueue(void* address, std::size_t size) { return shm_mq_create(address, size); }

// --- sender --------------------------------------------------------------------------------------

TupleQueueSender::TupleQueueSender(shm_mq_handle* mqh) : mqh_(mqh) { RequireHandle(mqh, "TupleQueueSender"); }

TupleQueueSender::~TupleQueueSender() { Close(); }

bool TupleQueueSender::Send(const void* record, std::size_t len) {
  if (mqh_ == nullptr)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("tuple queue sender used after Close"));
  // force_flush off: rows go out a quarter of the queue at a time (tqueue.c).
  const shm_mq_result res = shm_mq_send(mqh_, len, record, /*nowait=*/false, /*force_flush=*/false);
  return res == SHM_MQ_SUCCESS;  // blocking: SUCCESS or DETACHED only
}

shm_mq_result TupleQueueSender::TrySend(const void* record, std::size_t len) {
  if (mqh_ == nullptr)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("tuple queue sender used after Close"));
  return shm_mq_send(mqh_, len, record, /*nowait=*/true, /*force_flush=*/false);
}

void TupleQueueSender::Close() noexcept {
  if (mqh_ == nullptr) return;
  DetachQuietly(mqh_);  // publishes the last batch, then marks the end of the stream
  mqh_ = nullptr;
}

// --- reader --------------------------------------------------------------------------------------

TupleQueueReader::TupleQueueReader(shm_mq_handle* mqh) : mqh_(mqh) { RequireHandle(mqh, "TupleQueueReader"); }

TupleQueueReader::~TupleQueueReader() { Close(); }

TupleQueueReader::Status TupleQueueReader::Next(const void** record, std::size_t* len, bool nowait) {
  if (done_) return kEndOfStream;
  if (mqh_ == nullptr)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("tuple queue reader used after Close"));
  void* data = nullptr;
  std::size_t n = 0;
  switch (shm_mq_receive(mqh_, &n, &data, nowait)) {
    case SHM_MQ_SUCCESS:
      *record = data;
      *len = n;
      return kRecord;
    case SHM_MQ_WOULD_BLOCK:
      return kWouldBlock;
    case SHM_MQ_DETACHED:
      break;
  }
  done_ = true;
  return kEndOfStream;
}

void TupleQueueReader::Close() noexcept {
  if (mqh_ == nullptr) return;
  DetachQuietly(mqh_);
  mqh_ = nullptr;
}

}  // namespace grove
