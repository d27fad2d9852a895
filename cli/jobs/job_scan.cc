// The scan job: a parallel generate-then-aggregate over an int64 array in a
// dynamic shared area (see jobs.h). Every participant — the workers and
// the leader — claims blocks twice: first to fill them, then (once the
// whole array is filled) to aggregate them. Workers send their partial
// aggregates through tuple queues; the leader combines them.
#include <chrono>
#include <cstring>
#include <sched.h>
#include <thread>

#include "grove/base/error.h"
#include "grove/base/interrupts.h"
#include "grove/dsa/dsa.h"
#include "grove/workers/block_claim.h"
#include "grove/workers/tuple_queue.h"
#include "jobs.h"

namespace grove::jobs {

namespace {

constexpr std::uint64_t kKeyShared = PARALLEL_KEY_FIRST_USER;
constexpr std::uint64_t kKeyArea = PARALLEL_KEY_FIRST_USER + 1;
constexpr std::uint64_t kKeyQueues = PARALLEL_KEY_FIRST_USER + 2;
constexpr std::size_t kAreaBytes = 256 * 1024;  // the in-place first segment; the array gets its own

struct ScanShared {
  std::uint64_t rows;
  std::uint64_t modulus;
  std::uint64_t threshold;
  std::uint64_t rows_per_block;
  dsa_pointer values;
  ParallelBlockClaim generate;
  ParallelBlockClaim scan;
  std::atomic<std::uint64_t> rows_generated;
  std::atomic<std::uint64_t> rows_scanned;
};

/// What a worker sends back: one record.
struct ScanPartial {
  std::uint64_t count;
  std::uint64_t sum_low;
  std::uint64_t sum_high;
  std::int64_t min;
  std::int64_t max;
  std::uint64_t rows_generated;
  std::uint64_t rows_scanned;
  double scan_seconds;
  std::int32_t worker;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Waits for the whole array; `check` (the leader's worker check, or the
// worker's stop check) runs between polls.
template <typename Check>
void WaitUntilGenerated(ScanShared* s, Check check) {
  while (s->rows_generated.load(std::memory_order_acquire) < s->rows) {
    CHECK_FOR_INTERRUPTS();
    check();
    sched_yield();
  }
}

void Generate(ScanShared* s, std::int64_t* values, std::uint64_t* rows_done) {
  BlockClaimCursor cursor;
  BlockClaimCursorInit(&s->generate, &cursor);
  std::uint64_t first, count;
  while (ParallelBlockClaimNextRange(&s->generate, &cursor, &first, &count)) {
    const std::uint64_t begin = first * s->rows_per_block;
    const std::uint64_t end = std::min(s->rows, (first + count) * s->rows_per_block);
    for (std::uint64_t i = begin; i < end; ++i) values[i] = static_cast<std::int64_t>(i + 1);
    *rows_done += end - begin;
    s->rows_generated.fetch_add(end - begin, std::memory_order_release);
  }
}

ScanPartial Scan(ScanShared* s, const std::int64_t* values, const std::function<void()>& between_chunks) {
  ScanPartial p{};
  p.min = INT64_MAX;
  p.max = INT64_MIN;
  unsigned __int128 sum = 0;
  const auto t0 = std::chrono::steady_clock::now();
  BlockClaimCursor cursor;
  BlockClaimCursorInit(&s->scan, &cursor);
  std::uint64_t first, count;
  const std::uint64_t modulus = s->modulus, threshold = s->threshold;
  while (ParallelBlockClaimNextRange(&s->scan, &cursor, &first, &count)) {
    const std::uint64_t begin = first * s->rows_per_block;
    const std::uint64_t end = std::min(s->rows, (first + count) * s->rows_per_block);
    std::uint64_t c = 0;
    std::int64_t mn = p.min, mx = p.max;
    for (std::uint64_t i = begin; i < end; ++i) {
      const std::int64_t v = values[i];
      if (static_cast<std::uint64_t>(v) % modulus < threshold) {
        ++c;
        sum += static_cast<std::uint64_t>(v);
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
      }
    }
    p.count += c;
    p.min = mn;
    p.max = mx;
    p.rows_scanned += end - begin;
    s->rows_scanned.fetch_add(end - begin, std::memory_order_relaxed);
    if (between_chunks) between_chunks();
  }
  p.sum_low = static_cast<std::uint64_t>(sum);
  p.sum_high = static_cast<std::uint64_t>(sum >> 64);
  p.scan_seconds = Seconds(t0);
  return p;
}

void ScanWorkerMain(dsm_segment*, shm_toc* toc) {
  auto* s = static_cast<ScanShared*>(shm_toc_lookup(toc, kKeyShared, false));
  void* place = shm_toc_lookup(toc, kKeyArea, false);
  auto* queues = static_cast<char*>(shm_toc_lookup(toc, kKeyQueues, false));
  shm_mq* mq = reinterpret_cast<shm_mq*>(queues + static_cast<std::size_t>(ParallelWorkerNumber()) * kTupleQueueSize);
  shm_mq_set_sender(mq);
  TupleQueueSender sender(shm_mq_attach(mq, nullptr));
  // The reference is dropped explicitly (not tied to a segment), so that the
  // same code serves threads, which share the leader's segment attachment.
  dsa_area* area = dsa_attach_in_place(place, nullptr);
  ScanPartial p{};
  try {
    auto* values = static_cast<std::int64_t*>(dsa_get_address(area, s->values));
    std::uint64_t generated = 0;
    Generate(s, values, &generated);
    WaitUntilGenerated(s, [] {
      if (ParallelWorkerShouldStop()) ereport(ERROR, errmsg("the leader stopped the scan"));
    });
    p = Scan(s, values, [] {
      if (ParallelWorkerShouldStop()) ereport(ERROR, errmsg("the leader stopped the scan"));
    });
    p.rows_generated = generated;
    p.worker = ParallelWorkerNumber();
  } catch (...) {
    dsa_detach(area);
    dsa_release_in_place(place);
    throw;
  }
  // The partial first: unmapping a large array takes milliseconds, which
  // the leader need not wait for.
  sender.Send(&p, sizeof p);
  sender.Close();
  dsa_detach(area);
  dsa_release_in_place(place);
}

}  // namespace

void RegisterScanEntry() { RegisterParallelEntry("grove.job.scan", &ScanWorkerMain); }

std::string FormatU128(unsigned __int128 v) {
  if (v == 0) return "0";
  std::string out;
  while (v > 0) {
    out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return out;
}

ScanAggregate ExpectedScan(std::uint64_t rows, std::uint64_t modulus, std::uint64_t threshold) {
  ScanAggregate a;
  for (std::uint64_t r = 0; r < std::min(threshold, modulus); ++r) {
    // Values i in [1, rows] with i % modulus == r: first, first + m, …
    const std::uint64_t first = r == 0 ? modulus : r;
    if (first > rows) continue;
    const std::uint64_t n = (rows - first) / modulus + 1;
    const std::uint64_t last = first + (n - 1) * modulus;
    a.count += n;
    a.sum += static_cast<unsigned __int128>(n) * (first + last) / 2;
    a.min = std::min<std::int64_t>(a.min, static_cast<std::int64_t>(first));
    a.max = std::max<std::int64_t>(a.max, static_cast<std::int64_t>(last));
  }
  return a;
}

ScanResult RunScan(const ScanOptions& o) {
  if (o.rows == 0 || o.modulus == 0 || o.rows_per_block == 0)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("the scan needs at least one row, a nonzero modulus and a nonzero block size"));
  if (o.workers == 0 && !o.leader_participates)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("the scan needs at least one participant"));
  ScanResult result;
  const auto t_start = std::chrono::steady_clock::now();
  ParallelContext* pcxt = CreateParallelContext("grove.job.scan", o.workers, o.mode);
  dsa_area* area = nullptr;
  void* place = nullptr;  // the area's control and first segment, in the context's segment
  ScanShared* s = nullptr;
  std::vector<TupleQueueReader*> readers;
  try {
    shm_toc_estimate_chunk(&pcxt->estimator, sizeof(ScanShared));
    shm_toc_estimate_chunk(&pcxt->estimator, kAreaBytes);
    shm_toc_estimate_chunk(&pcxt->estimator, kTupleQueueSize * static_cast<std::size_t>(o.workers));
    shm_toc_estimate_keys(&pcxt->estimator, 3);
    InitializeParallelDSM(pcxt);
    s = static_cast<ScanShared*>(shm_toc_allocate(pcxt->toc, sizeof(ScanShared)));
    new (s) ScanShared{};
    s->rows = o.rows;
    s->modulus = o.modulus;
    s->threshold = o.threshold;
    s->rows_per_block = o.rows_per_block;
    const std::uint64_t nblocks = (o.rows + o.rows_per_block - 1) / o.rows_per_block;
    ParallelBlockClaimInit(&s->generate, nblocks);
    ParallelBlockClaimInit(&s->scan, nblocks);
    place = shm_toc_allocate(pcxt->toc, kAreaBytes);
    area = dsa_create_in_place(place, kAreaBytes, 0, nullptr);
    dsa_pin_mapping(area);
    s->values = dsa_allocate_extended(area, o.rows * sizeof(std::int64_t), DSA_ALLOC_HUGE);
    auto* values = static_cast<std::int64_t*>(dsa_get_address(area, s->values));
    shm_toc_insert(pcxt->toc, kKeyShared, s);
    shm_toc_insert(pcxt->toc, kKeyArea, place);
    auto* queues = static_cast<char*>(shm_toc_allocate(pcxt->toc, kTupleQueueSize * static_cast<std::size_t>(o.workers)));
    shm_toc_insert(pcxt->toc, kKeyQueues, queues);
    for (int i = 0; i < o.workers; ++i) {
      shm_mq* mq = CreateTupleQueue(queues + static_cast<std::size_t>(i) * kTupleQueueSize);
      shm_mq_set_receiver(mq);
      readers.push_back(new TupleQueueReader(shm_mq_attach(mq, pcxt->seg)));
    }

    const auto t_launch = std::chrono::steady_clock::now();
    LaunchParallelWorkers(pcxt);
    WaitForParallelWorkersToAttach(pcxt);
    result.launch_seconds = Seconds(t_launch);
    result.workers_launched = pcxt->nworkers_launched;
    // Workers that were not launched never send: their queues are dropped.
    for (int i = pcxt->nworkers_launched; i < o.workers; ++i) {
      delete readers[i];
      readers[i] = nullptr;
    }
    if (pcxt->nworkers_launched == 0 && !o.leader_participates)
      ereport(ERROR, errcode(ERRCODE_INSUFFICIENT_RESOURCES), errmsg("no parallel worker could be launched"));

    ScanParticipant leader{-1, 0, 0, 0};
    ScanPartial mine{};
    mine.min = INT64_MAX;
    mine.max = INT64_MIN;
    if (o.leader_participates) Generate(s, values, &leader.rows_generated);
    WaitUntilGenerated(s, [&] { CheckParallelWorkers(pcxt); });
    result.generate_seconds = Seconds(t_launch) - result.launch_seconds;
    const auto t_scan = std::chrono::steady_clock::now();
    if (o.leader_participates) {
      auto last_report = std::chrono::steady_clock::now();
      mine = Scan(s, values, [&] {
        if (o.progress && Seconds(last_report) > 0.25) {
          o.progress(s->rows_scanned.load(std::memory_order_relaxed), o.rows);
          last_report = std::chrono::steady_clock::now();
        }
      });
      leader.rows_scanned = mine.rows_scanned;
      leader.scan_seconds = mine.scan_seconds;
      result.participants.push_back(leader);
    }
    unsigned __int128 sum = (static_cast<unsigned __int128>(mine.sum_high) << 64) | mine.sum_low;
    result.got.count = mine.count;
    result.got.min = mine.min;
    result.got.max = mine.max;
    for (int i = 0; i < pcxt->nworkers_launched; ++i) {
      const void* record;
      std::size_t len;
      // Polled, with the workers checked in between: a worker that died
      // or failed before it named itself the queue's sender is noticed (a
      // blocking read could not tell it from one that is late).
      TupleQueueReader::Status st;
      while ((st = readers[i]->Next(&record, &len, true)) == TupleQueueReader::kWouldBlock) {
        CHECK_FOR_INTERRUPTS();
        CheckParallelWorkers(pcxt);
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
      if (st == TupleQueueReader::kEndOfStream || len != sizeof(ScanPartial)) {
        WaitForParallelWorkersToFinish(pcxt);  // raises the worker's own error, if it sent one
        ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR), errmsg("parallel worker %d sent no partial aggregate", i));
      }
      ScanPartial p;
      std::memcpy(&p, record, sizeof p);
      result.got.count += p.count;
      sum += (static_cast<unsigned __int128>(p.sum_high) << 64) | p.sum_low;
      result.got.min = std::min(result.got.min, p.min);
      result.got.max = std::max(result.got.max, p.max);
      result.participants.push_back({p.worker, p.rows_generated, p.rows_scanned, p.scan_seconds});
    }
    result.got.sum = sum;
    result.scan_seconds = Seconds(t_scan);  // every partial aggregate is in
    WaitForParallelWorkersToFinish(pcxt);
  } catch (...) {
    for (TupleQueueReader* r : readers) delete r;
    if (area != nullptr) {
      // Workers still attached keep the area alive until they stop; the
      // array's segment goes with the last reference (or this process).
      dsa_detach(area);
      dsa_release_in_place(place);
    }
    DestroyParallelContext(pcxt);
    throw;
  }
  for (TupleQueueReader* r : readers) delete r;
  dsa_free(area, s->values);
  dsa_detach(area);
  dsa_release_in_place(place);  // the last reference: the array's segment goes
  DestroyParallelContext(pcxt);
  result.total_seconds = Seconds(t_start);
  result.expected = ExpectedScan(o.rows, o.modulus, o.threshold);
  result.correct = result.got.count == result.expected.count && result.got.sum == result.expected.sum &&
                   (result.got.count == 0 ||
                    (result.got.min == result.expected.min && result.got.max == result.expected.max));
  return result;
}

}  // namespace grove::jobs
