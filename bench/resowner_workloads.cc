// RO_lifo / RO_random as Google Benchmark functions. The loop is one
// function template over a bookkeeping policy, so grove's resource owner and
// the peers run the same instructions around their calls and the ratios
// compare the bookkeeping, not the loops.
#include "resowner_workloads.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <exception>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "grove/base/datum.h"
#include "grove/base/error.h"
#include "grove/contexts/memutils.h"
#include "grove/contexts/testing.h"
#include "grove/resowner/resowner.h"

namespace grove::bench {
namespace {

// --- Inputs --------------------------------------------------------------------

// The resources of one N: pointers to N distinct objects (the same Datums for
// every implementation), and the two forget orders. Built once per N at
// registration, before any timed region.
struct ResownerInput {
  explicit ResownerInput(std::size_t n)
      : objects(n), lifo_order(ResownerLifoOrder(n)), random_order(ResownerRandomOrder(n)) {
    values.reserve(n);
    for (const uint64_t& object : objects) values.push_back(PointerGetDatum(&object));
  }

  std::vector<uint64_t> objects;
  std::vector<Datum> values;  ///< remembered in this order
  std::vector<uint32_t> lifo_order;
  std::vector<uint32_t> random_order;
};

enum class ForgetOrder { kLifo, kRandom };

// --- Bookkeeping policies ----------------------------------------------------
//
// Every policy has the same surface:
//
//   void Reserve();              // before each Remember (ResourceOwnerEnlarge)
//   void Remember(Datum value);
//   void Forget(Datum value);    // value is remembered
//   void Finish();               // end of a run; ERROR/throws if anything is
//                                // still remembered (a bug in the loop)
//
// A policy object lives for one benchmark run, so per-run state (the owner,
// the container) is created and destroyed outside the timed loop and carries
// across its iterations.

// The one resource kind the benchmark remembers. Releasing does nothing: the
// Datums point at plain integers.
void ReleaseBenchResource(Datum) {}

const ResourceOwnerDesc kBenchResourceDesc = {
    .name = "bench resource",
    .release_phase = RESOURCE_RELEASE_AFTER_LOCKS,
    .release_priority = RELEASE_PRIO_FIRST,
    .ReleaseResource = ReleaseBenchResource,
    .DebugPrint = nullptr,
};

/// grove: one root owner (no parent) per run, used with the documented
/// protocol: ResourceOwnerEnlarge before every ResourceOwnerRemember.
class ResownerBookkeeping {
 public:
  ResownerBookkeeping() {
    MemoryContextInit();
    owner_ = ResourceOwnerCreate(nullptr, "bench resowner");
  }
  ResownerBookkeeping(const ResownerBookkeeping&) = delete;
  ResownerBookkeeping& operator=(const ResownerBookkeeping&) = delete;

  ~ResownerBookkeeping() {
    if (owner_ == nullptr) return;
    // Only after an ERROR inside the run: forget whatever is left, then delete.
    try {
      ResourceOwnerReleaseAllOfKind(owner_, &kBenchResourceDesc);
      ResourceOwnerDelete(owner_);
    } catch (...) {
    }
  }

  void Reserve() { ResourceOwnerEnlarge(owner_); }
  void Remember(Datum value) { ResourceOwnerRemember(owner_, value, &kBenchResourceDesc); }
  void Forget(Datum value) { ResourceOwnerForget(owner_, value, &kBenchResourceDesc); }

  void Finish() {
    ResourceOwner owner = owner_;
    owner_ = nullptr;
    ResourceOwnerDelete(owner);
  }

 private:
  ResourceOwner owner_ = nullptr;
};

/// std::unordered_set<Datum> as a user would write it: default-constructed
/// (nothing reserved), insert, erase by value.
class UnorderedSetBookkeeping {
 public:
  void Reserve() {}
  void Remember(Datum value) { set_.insert(value); }
  void Forget(Datum value) { set_.erase(value); }
  void Finish() {
    if (!set_.empty()) throw std::logic_error("unordered_set bookkeeping: resources left at the end of the run");
  }

 private:
  std::unordered_set<Datum> set_;
};

/// std::vector<Datum>: push_back; forget = std::find from the back (reverse
/// iterators: the newest entry is found first, so LIFO forgets pop the back)
/// and erase, which for a random order is O(N) per forget.
class VectorBookkeeping {
 public:
  void Reserve() {}
  void Remember(Datum value) { values_.push_back(value); }
  void Forget(Datum value) {
    const auto it = std::find(values_.rbegin(), values_.rend(), value);
    if (it == values_.rend()) throw std::logic_error("vector bookkeeping: forgetting a value never remembered");
    values_.erase(std::next(it).base());
  }
  void Finish() {
    if (!values_.empty()) throw std::logic_error("vector bookkeeping: resources left at the end of the run");
  }

 private:
  std::vector<Datum> values_;
};

// --- The loop ----------------------------------------------------------------

// Hides a value from the optimizer: it must assume any Datum, so it can
// neither fold the lookups nor pair up a remember with its forget. Not
// benchmark::DoNotOptimize(Datum&): for small trivially copyable lvalues
// Google Benchmark 1.7.1 uses the asm constraint "+m,r", and GCC 12 picked
// the memory alternative without storing the value first, so the owner was
// asked to forget a stale stack slot ("... is not owned by resource owner").
// A register-only operand has no such alternative.
inline Datum Opaque(Datum value) {
  asm volatile("" : "+r"(value));
  return value;
}

// One iteration: Reserve+Remember each value in order, then Forget each in
// the given order. One item = one resource (remembered and forgotten).
template <class B>
void RememberForget(benchmark::State& state, B& book, const ResownerInput& in, ForgetOrder order) {
  const std::size_t n = in.values.size();
  const Datum* values = in.values.data();
  const uint32_t* forget = (order == ForgetOrder::kLifo ? in.lifo_order : in.random_order).data();
  // The bookkeeping escapes (benchmark::DoNotOptimize takes a class object
  // by "+m"), and ClobberMemory ends each iteration: its stores cannot be
  // dropped as dead.
  benchmark::DoNotOptimize(book);
  for (auto _ : state) {
    for (std::size_t i = 0; i < n; ++i) {
      const Datum value = Opaque(values[i]);
      book.Reserve();
      book.Remember(value);
    }
    for (std::size_t i = 0; i < n; ++i) {
      book.Forget(Opaque(values[forget[i]]));
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}

// One benchmark run: makes the policy (outside the timed loop), runs the
// loop, finishes the policy. A grove ERROR becomes a skipped run with the
// formatted report, not a crash of the whole suite.
template <class B>
void RunGuarded(benchmark::State& state, const ResownerInput& in, ForgetOrder order) {
  try {
    B book;
    RememberForget(state, book, in, order);
    book.Finish();
  } catch (const grove::Error& e) {
    state.SkipWithError(e.Format().c_str());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

const ResownerInput& InputFor(std::size_t n) {
  static std::vector<std::unique_ptr<ResownerInput>> inputs;
  for (const auto& input : inputs) {
    if (input->values.size() == n) return *input;
  }
  inputs.push_back(std::make_unique<ResownerInput>(n));
  return *inputs.back();
}

template <class B>
benchmark::internal::Benchmark* Register(ForgetOrder order, const char* implementation, std::size_t n) {
  const std::string name =
      std::string(order == ForgetOrder::kLifo ? "RO_lifo/" : "RO_random/") + implementation;
  const ResownerInput* in = &InputFor(n);
  // One iteration is N remembers + N forgets: show it in a unit that fits.
  const benchmark::TimeUnit unit =
      n <= 16 ? benchmark::kNanosecond : (n <= 1000 ? benchmark::kMicrosecond : benchmark::kMillisecond);
  return benchmark::RegisterBenchmark(name.c_str(),
                                      [in, order](benchmark::State& state) { RunGuarded<B>(state, *in, order); })
      ->ArgName("N")
      ->Arg(static_cast<int64_t>(n))
      ->Unit(unit);
}

void RegisterAll() {
  // Grouped by (order, N), so each resowner figure is measured close in time
  // to the peers it is divided by.
  for (const ForgetOrder order : {ForgetOrder::kLifo, ForgetOrder::kRandom}) {
    for (const std::size_t n : kResownerCounts) {
      Register<ResownerBookkeeping>(order, "resowner", n);
      Register<UnorderedSetBookkeeping>(order, "unordered_set", n);
      Register<VectorBookkeeping>(order, "vector", n);
    }
  }
  benchmark::AddCustomContext("grove_memory_checking", mcxt::MemoryCheckingEnabled() ? "on" : "off");
}

}  // namespace

void RegisterResownerBenchmarks() {
  // Registering twice would run every benchmark twice.
  static const bool registered = (RegisterAll(), true);
  (void)registered;
}

}  // namespace grove::bench
