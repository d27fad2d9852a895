// W1–W5 of BENCH.md as Google Benchmark functions. Each workload is one
// function template over an allocator policy (allocators.h), so grove and
// the peers run the same instructions around their alloc/free calls and the
// ratios compare allocators, not loops.
#include "workloads.h"

#include <benchmark/benchmark.h>

#include <array>
#include <cstdlib>
#include <exception>

#include "allocators.h"
#include "grove/base/error.h"
#include "grove/contexts/testing.h"

namespace grove::bench {

// --- GroveAllocator ----------------------------------------------------------

GroveAllocator::GroveAllocator(GroveContextKind kind, std::size_t slab_chunk_size) {
  MemoryContextInit();
  switch (kind) {
    case GroveContextKind::kAllocSet:
      context_ = AllocSetContextCreate(TopMemoryContext, "bench aset", ALLOCSET_DEFAULT_SIZES);
      break;
    case GroveContextKind::kGeneration:
      context_ = GenerationContextCreate(TopMemoryContext, "bench generation", ALLOCSET_DEFAULT_SIZES);
      break;
    case GroveContextKind::kSlab:
      context_ = SlabContextCreate(TopMemoryContext, "bench slab", SLAB_DEFAULT_BLOCK_SIZE, slab_chunk_size);
      break;
    case GroveContextKind::kBump:
      context_ = BumpContextCreate(TopMemoryContext, "bench bump", ALLOCSET_DEFAULT_SIZES);
      break;
  }
  previous_ = MemoryContextSwitchTo(context_);
}

void GroveAllocator::Finish() {
  MemoryContext context = context_;
  context_ = nullptr;
  MemoryContextSwitchTo(previous_);
  MemoryContextDelete(context);
}

GroveAllocator::~GroveAllocator() {
  if (context_ == nullptr) return;
  MemoryContextSwitchTo(previous_);
  try {
    MemoryContextDelete(context_);
  } catch (...) {
  }
}

namespace {

// Inputs are built once, at registration, before any timed region.
struct Inputs {
  std::vector<uint32_t> batch_sizes = W2Sizes();
  std::vector<uint32_t> batch_perm = W2Perm();
  std::vector<uint32_t> fifo_ring = W4Ring();
  std::vector<uint32_t> slab_ring = W5Ring();
};

const Inputs& GetInputs() {
  static const Inputs inputs;
  return inputs;
}

// glibc raises its mmap threshold to the size of the first mmapped chunk
// freed above it (up to 32 MiB on 64-bit), and its trim threshold to twice
// that. Left alone, whichever benchmark first frees a large block decides
// whether later ones get fresh pages from mmap/brk (and fault them in) every
// round: pmr's release() in W3 measured 30x slower or faster depending on
// --benchmark_filter. One malloc/free of a chunk just under the cap puts
// glibc in that end state before any benchmark runs, whatever runs first.
bool SettleMallocThresholds() {
#ifdef __GLIBC__
  constexpr std::size_t kGlibcMmapThresholdMax = std::size_t{32} << 20;  // DEFAULT_MMAP_THRESHOLD_MAX
  void* block = std::malloc(kGlibcMmapThresholdMax - (std::size_t{64} << 10));
  benchmark::DoNotOptimize(block);
  std::free(block);
  return true;
#else
  return false;
#endif
}

// The one byte BENCH.md has every chunk written at offset 0; DoNotOptimize
// makes the chunk escape, so the compiler can neither drop the store nor
// pair up and elide a malloc/free.
inline void Touch(void* chunk, char value) {
  static_cast<char*>(chunk)[0] = value;
  benchmark::DoNotOptimize(chunk);
}

// W1 pair64: alloc(64), write, free. One item = one pair.
template <class A>
void W1Pair64(benchmark::State& state, A& allocator) {
  char value = 0;
  for (auto _ : state) {
    void* chunk = allocator.Alloc(64);
    Touch(chunk, ++value);
    allocator.Free(chunk, 64);
  }
  state.SetItemsProcessed(state.iterations());
}

// W2 batch512: allocate all sizes in order, free in perm order. One round
// per iteration; one item = one alloc+free.
template <class A>
void W2Batch512(benchmark::State& state, A& allocator) {
  const Inputs& in = GetInputs();
  const uint32_t* sizes = in.batch_sizes.data();
  const uint32_t* perm = in.batch_perm.data();
  std::vector<void*> ptrs(kBatchCount);
  void** slots = ptrs.data();
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatchCount; ++i) {
      void* chunk = allocator.Alloc(sizes[i]);
      Touch(chunk, static_cast<char>(i));
      slots[i] = chunk;
    }
    for (std::size_t i = 0; i < kBatchCount; ++i) {
      const uint32_t k = perm[i];
      allocator.Free(slots[k], sizes[k]);
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatchCount));
}

// W3 arena512: allocate all sizes in order, then release everything: the
// policy's bulk release if it has one, else a free per chunk in allocation
// order. One item = one alloc (release included).
template <class A>
void W3Arena512(benchmark::State& state, A& allocator) {
  const Inputs& in = GetInputs();
  const uint32_t* sizes = in.batch_sizes.data();
  std::vector<void*> ptrs(kBatchCount);
  void** slots = ptrs.data();
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatchCount; ++i) {
      void* chunk = allocator.Alloc(sizes[i]);
      Touch(chunk, static_cast<char>(i));
      slots[i] = chunk;
    }
    if constexpr (A::kBulkRelease) {
      allocator.ReleaseAll();
    } else {
      for (std::size_t i = 0; i < kBatchCount; ++i) allocator.Free(slots[i], sizes[i]);
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatchCount));
}

// W4 fifo: 1,000 live chunks, step t frees live[t % 1000] and allocates
// ring[(1000 + t) % 4096] in its place. The pre-fill and the final frees are
// outside the timed loop. One item = one step.
template <class A>
void W4Fifo(benchmark::State& state, A& allocator) {
  const uint32_t* ring = GetInputs().fifo_ring.data();
  std::array<void*, kFifoLive> live{};
  std::array<uint32_t, kFifoLive> live_size{};
  for (std::size_t k = 0; k < kFifoLive; ++k) {
    live[k] = allocator.Alloc(ring[k]);
    Touch(live[k], static_cast<char>(k));
    live_size[k] = ring[k];
  }
  // Counters instead of t % 1000 and (1000 + t) % 4096: same sequence.
  std::size_t k = 0;
  std::size_t r = kFifoLive;
  for (auto _ : state) {
    allocator.Free(live[k], live_size[k]);
    const uint32_t size = ring[r];
    void* chunk = allocator.Alloc(size);
    Touch(chunk, static_cast<char>(r));
    live[k] = chunk;
    live_size[k] = size;
    if (++k == kFifoLive) k = 0;
    r = (r + 1) & (kFifoRingSize - 1);
  }
  for (std::size_t i = 0; i < kFifoLive; ++i) allocator.Free(live[i], live_size[i]);
  state.SetItemsProcessed(state.iterations());
}
static_assert((kFifoRingSize & (kFifoRingSize - 1)) == 0);

// W5 slab96: toggle slot ring[t % 65536] between empty and a 96-byte chunk.
// Slots start empty at the start of each run and carry across iterations.
// One item = one step.
template <class A>
void W5Slab96(benchmark::State& state, A& allocator) {
  const uint32_t* ring = GetInputs().slab_ring.data();
  std::vector<void*> slot_storage(kSlabSlots, nullptr);
  void** slots = slot_storage.data();
  std::size_t t = 0;
  for (auto _ : state) {
    const uint32_t s = ring[t];
    if (slots[s] != nullptr) {
      allocator.Free(slots[s], 96);
      slots[s] = nullptr;
    } else {
      void* chunk = allocator.Alloc(96);
      Touch(chunk, static_cast<char>(t));
      slots[s] = chunk;
    }
    t = (t + 1) & (kSlabRingSize - 1);
  }
  for (std::size_t s = 0; s < kSlabSlots; ++s) {
    if (slots[s] != nullptr) allocator.Free(slots[s], 96);
  }
  state.SetItemsProcessed(state.iterations());
}
static_assert((kSlabRingSize & (kSlabRingSize - 1)) == 0);

// Runs one benchmark run: makes the policy (outside the timed loop), runs
// the workload, finishes the policy. A grove ERROR becomes a skipped run
// with the formatted report, not a crash of the whole suite.
template <class Make, class Body>
void RunGuarded(benchmark::State& state, const Make& make, const Body& body) {
  try {
    auto allocator = make();
    body(state, allocator);
    allocator.Finish();
  } catch (const grove::Error& e) {
    state.SkipWithError(e.Format().c_str());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Registers `name` as `body` run against the policy `make` returns (by
// value: guaranteed elision, the grove policy is not movable).
template <class Body, class Make>
void Register(const char* name, const Body& body, const Make& make, benchmark::TimeUnit unit) {
  benchmark::RegisterBenchmark(name, [body, make](benchmark::State& state) { RunGuarded(state, make, body); })
      ->Unit(unit);
}

// Workload bodies as generic lambdas, so one Register() serves all.
constexpr auto kW1 = [](benchmark::State& state, auto& allocator) { W1Pair64(state, allocator); };
constexpr auto kW2 = [](benchmark::State& state, auto& allocator) { W2Batch512(state, allocator); };
constexpr auto kW3 = [](benchmark::State& state, auto& allocator) { W3Arena512(state, allocator); };
constexpr auto kW4 = [](benchmark::State& state, auto& allocator) { W4Fifo(state, allocator); };
constexpr auto kW5 = [](benchmark::State& state, auto& allocator) { W5Slab96(state, allocator); };

void RegisterAll() {
  (void)GetInputs();
  const bool settled = SettleMallocThresholds();
  const auto aset = [] { return GroveAllocator(GroveContextKind::kAllocSet); };
  const auto generation = [] { return GroveAllocator(GroveContextKind::kGeneration); };
  const auto bump = [] { return GroveAllocator(GroveContextKind::kBump); };
  const auto slab64 = [] { return GroveAllocator(GroveContextKind::kSlab, 64); };
  const auto slab96 = [] { return GroveAllocator(GroveContextKind::kSlab, 96); };
  const auto malloc_ = [] { return MallocAllocator{}; };
  const auto tbb = [] { return TbbAllocator{}; };
  const auto pmr_pool = [] { return PmrPoolAllocator{}; };
  const auto pmr_mono = [] { return PmrMonotonicAllocator{}; };
  // A W2/W3 iteration is a 10,000-chunk round: show it in microseconds.
  constexpr auto ns = benchmark::kNanosecond;
  constexpr auto us = benchmark::kMicrosecond;

  // Grouped by workload, so each grove figure is measured close in time to
  // the peers it is divided by.
  Register("W1_pair64/aset", kW1, aset, ns);
  Register("W1_pair64/generation", kW1, generation, ns);
  Register("W1_pair64/slab", kW1, slab64, ns);
  Register("W1_pair64/malloc", kW1, malloc_, ns);
  Register("W1_pair64/tbb", kW1, tbb, ns);
  Register("W1_pair64/pmr_pool", kW1, pmr_pool, ns);

  Register("W2_batch512/aset", kW2, aset, us);
  Register("W2_batch512/generation", kW2, generation, us);
  Register("W2_batch512/malloc", kW2, malloc_, us);
  Register("W2_batch512/tbb", kW2, tbb, us);
  Register("W2_batch512/pmr_pool", kW2, pmr_pool, us);

  Register("W3_arena512/aset", kW3, aset, us);
  Register("W3_arena512/generation", kW3, generation, us);
  Register("W3_arena512/bump", kW3, bump, us);
  Register("W3_arena512/malloc", kW3, malloc_, us);
  Register("W3_arena512/tbb", kW3, tbb, us);
  Register("W3_arena512/pmr_pool", kW3, pmr_pool, us);
  Register("W3_arena512/pmr_mono", kW3, pmr_mono, us);

  Register("W4_fifo/aset", kW4, aset, ns);
  Register("W4_fifo/generation", kW4, generation, ns);
  Register("W4_fifo/malloc", kW4, malloc_, ns);
  Register("W4_fifo/tbb", kW4, tbb, ns);
  Register("W4_fifo/pmr_pool", kW4, pmr_pool, ns);

  Register("W5_slab96/aset", kW5, aset, ns);
  Register("W5_slab96/slab", kW5, slab96, ns);
  Register("W5_slab96/malloc", kW5, malloc_, ns);
  Register("W5_slab96/tbb", kW5, tbb, ns);
  Register("W5_slab96/pmr_pool", kW5, pmr_pool, ns);

  benchmark::AddCustomContext("grove_memory_checking", GroveMemoryCheckingBuild() ? "on" : "off");
  if (settled) benchmark::AddCustomContext("glibc_malloc_thresholds", "settled at 32 MiB before the run");
}

}  // namespace

void RegisterMemoryBenchmarks() {
  // Registering twice would run every benchmark twice.
  static const bool registered = (RegisterAll(), true);
  (void)registered;
}

bool GroveMemoryCheckingBuild() { return mcxt::MemoryCheckingEnabled(); }

}  // namespace grove::bench
