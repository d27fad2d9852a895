// The dsa-stress job: workers share one dynamic shared area and allocate,
// write, verify and free at random for a while, handing objects to each
// other through a shared exchange table (so that objects are freed by
// processes other than their allocator). Then everything is freed and
// dsa_trim must bring the area back to its initial size.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "grove/base/error.h"
#include "grove/base/interrupts.h"
#include "grove/dsa/dsa.h"
#include "jobs.h"

namespace grove::jobs {

namespace {

constexpr std::uint64_t kKeyStress = PARALLEL_KEY_FIRST_USER;
constexpr int kExchangeSlots = 256;
constexpr std::size_t kLiveTarget = 2000;

struct StressShared {
  dsa_handle area;
  double seconds;
  std::uint64_t max_size;
  std::atomic<dsa_pointer> exchange[kExchangeSlots];
  std::atomic<std::uint64_t> operations;
  std::atomic<std::uint64_t> verified_bytes;
  std::atomic<std::uint64_t> peak_size;
  std::atomic<std::uint32_t> failed;
  char failure[256];
};

// Every object: its size in the first 8 bytes, then bytes derived from its
// pointer — any process can verify any object.
std::uint8_t PatternByte(dsa_pointer dp, std::size_t i) {
  return static_cast<std::uint8_t>((dp >> 3) * 31 + i * 7 + (i >> 8));
}

void Fill(dsa_area* area, dsa_pointer dp, std::uint64_t size) {
  auto* p = static_cast<std::uint8_t*>(dsa_get_address(area, dp));
  std::memcpy(p, &size, sizeof size);
  for (std::size_t i = sizeof size; i < size; ++i) p[i] = PatternByte(dp, i);
}

// Verifies and frees; false (and the reason in the shared state) on damage.
bool CheckAndFree(dsa_area* area, StressShared* s, dsa_pointer dp) {
  auto* p = static_cast<const std::uint8_t*>(dsa_get_address(area, dp));
  std::uint64_t size;
  std::memcpy(&size, p, sizeof size);
  bool ok = size >= sizeof size && size <= s->max_size * 4;
  for (std::size_t i = sizeof size; ok && i < size; ++i) ok = p[i] == PatternByte(dp, i);
  if (!ok) {
    if (s->failed.exchange(1) == 0)
      std::snprintf(s->failure, sizeof s->failure, "object %llx damaged (size word %llu)",
                    static_cast<unsigned long long>(dp), static_cast<unsigned long long>(size));
    return false;
  }
  s->verified_bytes.fetch_add(size, std::memory_order_relaxed);
  dsa_free(area, dp);
  return true;
}

void StressWorkerMain(dsm_segment*, shm_toc* toc) {
  auto* s = static_cast<StressShared*>(shm_toc_lookup(toc, kKeyStress, false));
  dsa_area* area = dsa_attach(s->area);
  dsa_pin_mapping(area);
  std::vector<dsa_pointer> live;
  std::uint64_t x = 0x9e3779b97f4a7c15ull * static_cast<std::uint64_t>(ParallelWorkerNumber() + 1);
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  std::uint64_t ops = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(s->seconds);
  try {
    while (s->failed.load(std::memory_order_relaxed) == 0 && !ParallelWorkerShouldStop()) {
      if ((ops & 1023) == 0) {
        CHECK_FOR_INTERRUPTS();
        if (std::chrono::steady_clock::now() >= end) break;
        s->peak_size.store(std::max<std::uint64_t>(s->peak_size.load(), dsa_get_total_size(area)));
      }
      const std::uint64_t r = next();
      if (live.size() < kLiveTarget && (live.empty() || r % 3 != 0)) {
        // Mostly small, sometimes large (beyond a size class: whole pages).
        const std::uint64_t size = r % 64 == 0 ? s->max_size + r % (3 * s->max_size) : 8 + r % s->max_size;
        const dsa_pointer dp = dsa_allocate(area, size);
        Fill(area, dp, size);
        live.push_back(dp);
      } else {
        const std::size_t k = r % live.size();
        dsa_pointer dp = live[k];
        live[k] = live.back();
        live.pop_back();
        if (r % 5 == 0) dp = s->exchange[(r >> 8) % kExchangeSlots].exchange(dp);  // hand it over, take another's
        if (dp != InvalidDsaPointer && !CheckAndFree(area, s, dp)) break;
      }
      ++ops;
    }
    for (dsa_pointer dp : live) CheckAndFree(area, s, dp);
  } catch (...) {
    s->operations.fetch_add(ops);
    dsa_detach(area);
    throw;
  }
  s->operations.fetch_add(ops);
  dsa_detach(area);
}

}  // namespace

void RegisterDsaStressEntry() { RegisterParallelEntry("grove.job.dsa_stress", &StressWorkerMain); }

DsaStressResult RunDsaStress(const DsaStressOptions& o) {
  if (o.seconds <= 0 || o.max_size < 16)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("dsa-stress needs a positive duration and a maximum size of at least 16 bytes"));
  DsaStressResult result;
  dsa_area* area = dsa_create();
  dsa_pin_mapping(area);
  result.initial_size = dsa_get_total_size(area);
  ParallelContext* pcxt = CreateParallelContext("grove.job.dsa_stress", o.workers, o.mode);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    shm_toc_estimate_chunk(&pcxt->estimator, sizeof(StressShared));
    shm_toc_estimate_keys(&pcxt->estimator, 1);
    InitializeParallelDSM(pcxt);
    auto* s = static_cast<StressShared*>(shm_toc_allocate(pcxt->toc, sizeof(StressShared)));
    new (s) StressShared{};
    s->area = dsa_get_handle(area);
    s->seconds = o.seconds;
    s->max_size = o.max_size;
    shm_toc_insert(pcxt->toc, kKeyStress, s);
    LaunchParallelWorkers(pcxt);
    result.workers_launched = pcxt->nworkers_launched;
    WaitForParallelWorkersToFinish(pcxt);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // What is left in the exchange table belongs to nobody: free it here.
    for (auto& slot : s->exchange)
      if (const dsa_pointer dp = slot.exchange(InvalidDsaPointer); dp != InvalidDsaPointer) CheckAndFree(area, s, dp);
    result.operations = s->operations.load();
    result.verified_bytes = s->verified_bytes.load();
    result.peak_size = std::max<std::uint64_t>(s->peak_size.load(), result.initial_size);
    if (s->failed.load()) result.failure = s->failure;
  } catch (...) {
    DestroyParallelContext(pcxt);
    dsa_detach(area);
    throw;
  }
  DestroyParallelContext(pcxt);
  dsa_trim(area);
  result.final_size = dsa_get_total_size(area);
  dsa_detach(area);
  if (result.failure.empty() && result.final_size != result.initial_size)
    result.failure = "the area did not return to its initial size after dsa_trim";
  result.ok = result.failure.empty();
  return result;
}

void RegisterJobEntries() {
  RegisterScanEntry();
  RegisterNoopEntry();
  RegisterDsaStressEntry();
}

}  // namespace grove::jobs
