// A parallel operator written on grove's runtime: a histogram of N values
// (v(i) = i * 2654435761 mod 2^32, bucketed by their top 4 bits) computed by
// the leader and K workers, each claiming blocks of the input like a
// parallel sequential scan, each sending its partial histogram back through
// a tuple queue, the leader adding them up (a partial and a final
// aggregate, as PostgreSQL splits them).
//
// What it shows, in order:
// 1. an entry point registered by name (every process of this binary knows
//    it: forked workers, pool processes and threads alike);
// 2. the shared state sized with the context's estimator and placed under
//    TOC keys of our own (from PARALLEL_KEY_FIRST_USER);
// 3. one tuple queue per worker, receiver set by the leader, sender by the
//    worker;
// 4. parallel block claiming over the input;
// 5. errors: a worker's ERROR arrives in the leader as an ERROR with
//    "parallel worker N" in its context (try --fail).
//
//   parallel_histogram [--rows N] [--workers K] [--mode process|pool|thread] [--fail]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "grove/base/error.h"
#include "grove/contexts/memutils.h"
#include "grove/workers/block_claim.h"
#include "grove/workers/parallel.h"
#include "grove/workers/tuple_queue.h"

using namespace grove;

namespace {

constexpr std::uint64_t kKeyShared = PARALLEL_KEY_FIRST_USER;      // the operator's state
constexpr std::uint64_t kKeyQueues = PARALLEL_KEY_FIRST_USER + 1;  // one tuple queue per worker
constexpr int kBuckets = 16;
constexpr std::uint64_t kBlockRows = 4096;

struct Shared {
  std::uint64_t rows;
  bool fail;  // make worker 0 raise an ERROR, to show how errors travel
  ParallelBlockClaim claim;
};

struct Histogram {
  std::uint64_t bucket[kBuckets];
};

std::uint32_t Value(std::uint64_t i) { return static_cast<std::uint32_t>(i * 2654435761u); }

// The partial aggregate: whatever blocks this participant claims.
Histogram Partial(Shared* shared) {
  Histogram h{};
  BlockClaimCursor cursor;
  BlockClaimCursorInit(&shared->claim, &cursor);
  std::uint64_t first, count;
  while (ParallelBlockClaimNextRange(&shared->claim, &cursor, &first, &count)) {
    const std::uint64_t end = std::min(shared->rows, (first + count) * kBlockRows);
    for (std::uint64_t i = first * kBlockRows; i < end; ++i) ++h.bucket[Value(i) >> 28];
  }
  return h;
}

// 1. The worker's entry.
void HistogramWorker(dsm_segment*, shm_toc* toc) {
  auto* shared = static_cast<Shared*>(shm_toc_lookup(toc, kKeyShared, false));
  auto* queues = static_cast<char*>(shm_toc_lookup(toc, kKeyQueues, false));
  shm_mq* mq = reinterpret_cast<shm_mq*>(queues + ParallelWorkerNumber() * kTupleQueueSize);
  shm_mq_set_sender(mq);
  TupleQueueSender out(shm_mq_attach(mq, nullptr));
  if (shared->fail && ParallelWorkerNumber() == 0)
    ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED), errmsg("worker 0 refuses its blocks"));
  const Histogram h = Partial(shared);
  out.Send(&h, sizeof h);  // closing the sender (destructor) ends the stream
}

int Run(std::uint64_t rows, int workers, ParallelLaunchMode mode, bool fail) {
  ParallelContext* pcxt = CreateParallelContext("histogram", workers, mode);
  std::vector<TupleQueueReader*> readers;
  try {
    // 2. Size what we put in the segment, then create it and fill the TOC.
    shm_toc_estimate_chunk(&pcxt->estimator, sizeof(Shared));
    shm_toc_estimate_chunk(&pcxt->estimator, kTupleQueueSize * static_cast<std::size_t>(workers));
    shm_toc_estimate_keys(&pcxt->estimator, 2);
    InitializeParallelDSM(pcxt);
    auto* shared = static_cast<Shared*>(shm_toc_allocate(pcxt->toc, sizeof(Shared)));
    shared->rows = rows;
    shared->fail = fail;
    ParallelBlockClaimInit(&shared->claim, (rows + kBlockRows - 1) / kBlockRows);
    shm_toc_insert(pcxt->toc, kKeyShared, shared);
    // 3. A queue per worker; the leader receives.
    auto* queues = static_cast<char*>(shm_toc_allocate(pcxt->toc, kTupleQueueSize * static_cast<std::size_t>(workers)));
    shm_toc_insert(pcxt->toc, kKeyQueues, queues);
    for (int i = 0; i < workers; ++i) {
      shm_mq* mq = CreateTupleQueue(queues + i * kTupleQueueSize);
      shm_mq_set_receiver(mq);
      readers.push_back(new TupleQueueReader(shm_mq_attach(mq, pcxt->seg)));
    }
    LaunchParallelWorkers(pcxt);  // may launch fewer than asked: that is fine

    // 4. The leader takes part, then collects the workers' partials.
    Histogram total = Partial(shared);
    for (int i = 0; i < pcxt->nworkers_launched; ++i) {
      const void* record;
      std::size_t len;
      if (readers[i]->Next(&record, &len, false) == TupleQueueReader::kRecord && len == sizeof(Histogram)) {
        Histogram h;
        std::memcpy(&h, record, sizeof h);
        for (int b = 0; b < kBuckets; ++b) total.bucket[b] += h.bucket[b];
      }
    }
    // 5. Re-raises a worker's ERROR here, if one failed.
    WaitForParallelWorkersToFinish(pcxt);

    std::uint64_t sum = 0;
    for (int b = 0; b < kBuckets; ++b) {
      std::printf("bucket %2d: %llu\n", b, static_cast<unsigned long long>(total.bucket[b]));
      sum += total.bucket[b];
    }
    std::printf("%d workers (%s) + the leader: %llu rows counted of %llu\n", pcxt->nworkers_launched,
                ParallelLaunchModeName(mode), static_cast<unsigned long long>(sum),
                static_cast<unsigned long long>(rows));
    for (TupleQueueReader* r : readers) delete r;
    DestroyParallelContext(pcxt);
    return sum == rows ? 0 : 1;
  } catch (...) {
    for (TupleQueueReader* r : readers) delete r;
    DestroyParallelContext(pcxt);  // stops and waits for the workers, frees the segment
    throw;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t rows = 1000000;
  int workers = 2;
  ParallelLaunchMode mode = ParallelLaunchMode::kProcess;
  bool fail = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--rows" && i + 1 < argc) {
      rows = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--workers" && i + 1 < argc) {
      workers = std::atoi(argv[++i]);
    } else if (arg == "--mode" && i + 1 < argc && ParseParallelLaunchMode(argv[i + 1], &mode)) {
      ++i;
    } else if (arg == "--fail") {
      fail = true;
    } else {
      std::fprintf(stderr, "usage: %s [--rows N] [--workers K] [--mode process|pool|thread] [--fail]\n", argv[0]);
      return 2;
    }
  }
  MemoryContextInit();
  RegisterParallelEntry("histogram", &HistogramWorker);  // 1. before any worker starts
  try {
    const int rc = Run(rows, workers, mode, fail);
    ShutdownParallelWorkerPool();
    return rc;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.Format().c_str());
    ShutdownParallelWorkerPool();
    return 1;
  }
}
