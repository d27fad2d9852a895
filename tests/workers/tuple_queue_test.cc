// Tuple queues: records of every size from a worker process to the leader,
// byte for byte, ending with the stream; several workers read round robin
// without blocking; rows published in batches (and at Close); a reader that
// closes stops the worker; a worker killed mid-stream ends the stream; misuse.
#include <signal.h>
#include <sys/mman.h>

#include <cstring>
#include <memory>
#include <vector>

#include "dsa_test_support.h"
#include "grove/workers/tuple_queue.h"

namespace grove::test {
namespace {

class TupleQueueTest : public DsmTest {
 protected:
  void TearDown() override {
    DsmTest::TearDown();  // children first, then their memory
    for (void* p : maps_) munmap(p, kTupleQueueSize);
    maps_.clear();
  }

  /// A tuple queue of the default size in memory forked children share.
  shm_mq* MakeQueue() {
    void* p = mmap(nullptr, kTupleQueueSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      ADD_FAILURE() << "mmap: " << std::strerror(errno);
      return nullptr;
    }
    maps_.push_back(p);
    return CreateTupleQueue(p);
  }

 private:
  std::vector<void*> maps_;
};

std::size_t RecordSize(std::size_t i) { return (i * 53) % 1500; }  // 0 … 1499 bytes

/// Record i of worker w: its bytes are a pattern of seed w * 1000003 + i.
unsigned Seed(unsigned w, std::size_t i) { return w * 1000003u + static_cast<unsigned>(i); }

/// In a child: the sender of `mq`, sending `count` records, then Close.
int SendRecords(shm_mq* mq, unsigned worker, std::size_t count) {
  shm_mq_set_sender(mq);
  TupleQueueSender sender(shm_mq_attach(mq, nullptr));
  std::vector<char> buf(1500);
  for (std::size_t i = 0; i < count; ++i) {
    FillPattern(buf.data(), RecordSize(i), Seed(worker, i));
    CHILD_REQUIRE(sender.Send(buf.data(), RecordSize(i)));
  }
  sender.Close();
  CHILD_REQUIRE(sender.closed());
  return 0;
}

// The default size is PostgreSQL's, 64 KiB a worker.
TEST_F(TupleQueueTest, DefaultSizeIs64KiB) {
  EXPECT_EQ(kTupleQueueSize, 65536u);
  shm_mq* mq = MakeQueue();
  EXPECT_EQ(shm_mq_get_ring_size(mq), kTupleQueueSize - kShmMqHeaderSize);
}

// 100,000 records of 0 to 1499 bytes from a worker process, in order, byte
// for byte; then the end of the stream, and it stays ended.
TEST_F(TupleQueueTest, RecordsFromAWorkerProcessThenEndOfStream) {
  constexpr std::size_t kCount = 100000;
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  TupleQueueReader reader(shm_mq_attach(mq, nullptr));
  const pid_t child = RunChild([&] { return SendRecords(mq, 1, kCount); });
  const void* rec = nullptr;
  std::size_t len = 0;
  std::size_t i = 0;
  for (; reader.Next(&rec, &len, false) == TupleQueueReader::kRecord; ++i) {
    ASSERT_LT(i, kCount);
    ASSERT_EQ(len, RecordSize(i)) << "record " << i;
    ASSERT_TRUE(HasPattern(rec, len, Seed(1, i))) << "record " << i;
  }
  EXPECT_EQ(i, kCount);
  EXPECT_TRUE(reader.done());
  EXPECT_EQ(reader.Next(&rec, &len, true), TupleQueueReader::kEndOfStream);
  ExpectChildSucceeded(child);
}

// Three workers, read as Gather does: without blocking, round robin,
// staying on a queue until it would block; blocking on one only when all
// would. Each worker's records arrive whole and in order.
TEST_F(TupleQueueTest, ThreeWorkersReadRoundRobinWithoutBlocking) {
  constexpr unsigned kWorkers = 3;
  constexpr std::size_t kCount = 20000;
  std::vector<shm_mq*> queues;
  std::vector<std::unique_ptr<TupleQueueReader>> readers;
  for (unsigned w = 0; w < kWorkers; ++w) {
    queues.push_back(MakeQueue());
    shm_mq_set_receiver(queues.back());
    readers.push_back(std::make_unique<TupleQueueReader>(shm_mq_attach(queues.back(), nullptr)));
  }
  std::vector<pid_t> children;
  for (unsigned w = 0; w < kWorkers; ++w) children.push_back(RunChild([&, w] { return SendRecords(queues[w], w, kCount); }));
  std::vector<std::size_t> next(kWorkers, 0);
  unsigned ended = 0, w = 0;
  while (ended < kWorkers) {
    bool any = false;
    for (unsigned k = 0; k < kWorkers; ++k, w = (w + 1) % kWorkers) {
      if (readers[w]->done()) continue;
      const void* rec;
      std::size_t len;
      TupleQueueReader::Status st;
      while ((st = readers[w]->Next(&rec, &len, true)) == TupleQueueReader::kRecord) {
        ASSERT_EQ(len, RecordSize(next[w])) << "worker " << w << " record " << next[w];
        ASSERT_TRUE(HasPattern(rec, len, Seed(w, next[w]))) << "worker " << w << " record " << next[w];
        ++next[w];
        any = true;
      }
      if (st == TupleQueueReader::kEndOfStream) ++ended, any = true;
    }
    if (!any) {  // all would block: wait on the first one still going
      for (unsigned k = 0; k < kWorkers; ++k) {
        if (readers[k]->done()) continue;
        const void* rec;
        std::size_t len;
        const TupleQueueReader::Status st = readers[k]->Next(&rec, &len, false);
        if (st == TupleQueueReader::kEndOfStream) {
          ++ended;
        } else {
          ASSERT_EQ(st, TupleQueueReader::kRecord);
          ASSERT_TRUE(len == RecordSize(next[k]) && HasPattern(rec, len, Seed(k, next[k])));
          ++next[k];
        }
        break;
      }
    }
  }
  for (unsigned k = 0; k < kWorkers; ++k) EXPECT_EQ(next[k], kCount) << "worker " << k;
  for (pid_t c : children) ExpectChildSucceeded(c);
}

// Rows go out in batches: a few small records stay invisible (kWouldBlock)
// until the worker closes, and then all arrive before the end.
TEST_F(TupleQueueTest, BatchedRecordsArriveAtClose) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  TupleQueueReader reader(shm_mq_attach(mq, nullptr));
  Pipe sent, go;
  const pid_t child = RunChild([&] {
    sent.CloseRead();
    go.CloseWrite();
    shm_mq_set_sender(mq);
    TupleQueueSender sender(shm_mq_attach(mq, nullptr));
    for (unsigned i = 0; i < 10; ++i) CHILD_REQUIRE(sender.Send(&i, sizeof i));
    CHILD_REQUIRE(sent.Send('s'));
    char c;
    CHILD_REQUIRE(go.Receive(&c));
    return 0;  // the destructor closes
  });
  sent.CloseWrite();
  go.CloseRead();
  char c;
  ASSERT_TRUE(sent.Receive(&c));
  const void* rec;
  std::size_t len;
  EXPECT_EQ(reader.Next(&rec, &len, true), TupleQueueReader::kWouldBlock) << "40 bytes are below a quarter of the queue";
  ASSERT_TRUE(go.Send('g'));
  for (unsigned i = 0; i < 10; ++i) {
    ASSERT_EQ(reader.Next(&rec, &len, false), TupleQueueReader::kRecord);
    ASSERT_EQ(len, sizeof i);
    unsigned v;
    std::memcpy(&v, rec, sizeof v);
    EXPECT_EQ(v, i);
  }
  EXPECT_EQ(reader.Next(&rec, &len, false), TupleQueueReader::kEndOfStream);
  ExpectChildSucceeded(child);
}

// A leader that stops reading (Close) stops the worker: its next Send
// returns false instead of blocking on a full queue.
TEST_F(TupleQueueTest, ReaderCloseStopsTheWorker) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  TupleQueueReader reader(shm_mq_attach(mq, nullptr));
  const pid_t child = RunChild([&] {
    shm_mq_set_sender(mq);
    TupleQueueSender sender(shm_mq_attach(mq, nullptr));
    std::vector<char> row(1000, 'r');
    for (int i = 0; i < 1000000; ++i)
      if (!sender.Send(row.data(), row.size())) return 0;  // the leader is gone: stop
    return 3;  // a million rows and never told to stop
  });
  const void* rec;
  std::size_t len;
  for (int i = 0; i < 100; ++i) ASSERT_EQ(reader.Next(&rec, &len, false), TupleQueueReader::kRecord);
  reader.Close();
  reader.Close();  // idempotent
  auto err = CatchError([&] { reader.Next(&rec, &len, true); });
  EXPECT_TRUE(err.has_value() && Contains(err->message(), "after Close"));
  ExpectChildSucceeded(child);
}

// A worker killed in mid-stream: the leader gets its records, intact and
// in order, then the end of the stream — not a hang, and not the record it
// was cut short in. (The leader reads nothing while that record fills the
// queue, so that TrySend surely stops part-way.)
TEST_F(TupleQueueTest, WorkerKilledEndsTheStream) {
  constexpr std::size_t kCount = 1000;
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  TupleQueueReader reader(shm_mq_attach(mq, nullptr));
  Pipe cut;
  const pid_t child = RunChild([&] {
    cut.CloseRead();
    shm_mq_set_sender(mq);
    TupleQueueSender sender(shm_mq_attach(mq, nullptr));
    std::vector<char> buf(200000);
    for (std::size_t i = 0; i < kCount; ++i) {
      FillPattern(buf.data(), RecordSize(i), Seed(0, i));
      CHILD_REQUIRE(sender.Send(buf.data(), RecordSize(i)));
    }
    CHILD_REQUIRE(sender.TrySend(buf.data(), buf.size()) == SHM_MQ_WOULD_BLOCK);  // a record cut short
    CHILD_REQUIRE(cut.Send('w'));
    raise(SIGKILL);
    return 2;
  });
  cut.CloseWrite();
  const void* rec;
  std::size_t len;
  for (std::size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(reader.Next(&rec, &len, false), TupleQueueReader::kRecord) << "record " << i;
    ASSERT_TRUE(len == RecordSize(i) && HasPattern(rec, len, Seed(0, i))) << "record " << i;
  }
  char c;
  ASSERT_TRUE(cut.Receive(&c));
  EXPECT_EQ(reader.Next(&rec, &len, false), TupleQueueReader::kEndOfStream) << "the cut-short record is not returned";
  EXPECT_TRUE(reader.done());
  const int status = Reap(child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << DescribeStatus(status);
}

// A sender used after Close, or made from no handle: ERRORs.
TEST_F(TupleQueueTest, MisuseIsAnError) {
  EXPECT_TRUE(CatchError([] { TupleQueueSender s(nullptr); }).has_value());
  EXPECT_TRUE(CatchError([] { TupleQueueReader r(nullptr); }).has_value());
  shm_mq* mq = MakeQueue();
  shm_mq_set_sender(mq);
  TupleQueueSender sender(shm_mq_attach(mq, nullptr));
  EXPECT_TRUE(sender.Send("x", 1)) << "the queue takes it before any reader comes";
  sender.Close();
  auto err = CatchError([&] { sender.Send("y", 1); });
  EXPECT_TRUE(err.has_value() && Contains(err->message(), "after Close"));
}

}  // namespace
}  // namespace grove::test
