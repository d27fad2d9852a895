// The statement loop under fire: 10,000 statements run through RunStatement,
// generated from a seeded PRNG, that allocate, create contexts, remember
// resources of several kinds (the tests' own kinds, files through the
// built-in kind with a release installed, adopted C++ objects), open
// subtransactions (released, rolled back, or caught as PL/pgSQL exception
// blocks do) and fail at random points: a palloc of an invalid size, a palloc
// beyond a per-context limit, an ereport(ERROR) at a random call depth, at any
// subtransaction depth. Afterwards TopMemoryContext holds exactly what it
// held after the warm-up, every resource acquired was released exactly once
// (leak warnings exactly for what committed statements left behind), and no
// transaction is open.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "xact_test_support.h"

namespace grove::test {
namespace {

// --- the resources ------------------------------------------------------------------

struct StressCounters {
  std::size_t acquired = 0;
  std::size_t released = 0;
};
// 0: before-locks kind, 1: locks kind, 2: after-locks kind, 3: files.
StressCounters counters[4];

void ReleaseStressBefore(Datum) { ++counters[0].released; }
void ReleaseStressLocks(Datum) { ++counters[1].released; }
void ReleaseStressAfter(Datum) { ++counters[2].released; }
void CloseStressFile(Datum) { ++counters[3].released; }
char* PrintStressFile(Datum fd) { return psprintf("stress file %lu", static_cast<unsigned long>(fd)); }

const ResourceOwnerDesc kStressBefore = {"stress before-locks", RESOURCE_RELEASE_BEFORE_LOCKS, 250,
                                         ReleaseStressBefore, nullptr};
const ResourceOwnerDesc kStressLocks = {"stress locks", RESOURCE_RELEASE_LOCKS, 150, ReleaseStressLocks, nullptr};
const ResourceOwnerDesc kStressAfter = {"stress after-locks", RESOURCE_RELEASE_AFTER_LOCKS, 450, ReleaseStressAfter,
                                        nullptr};
const ResourceOwnerDesc* const kStressKinds[3] = {&kStressBefore, &kStressLocks, &kStressAfter};

struct StressObject {
  StressObject() { ++live; }
  ~StressObject() { --live; }
  StressObject(const StressObject&) = delete;
  StressObject& operator=(const StressObject&) = delete;
  char payload[48] = {};
  static inline long live = 0;
};

// --- the generator ----------------------------------------------------------------------

/// splitmix64: the same sequence on every platform and standard library.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n).
  std::uint32_t Below(std::uint32_t n) { return static_cast<std::uint32_t>(Next() % n); }

 private:
  std::uint64_t state_;
};

constexpr int kMaxSubDepth = 4;

/// What the generator did over the whole run, to check it exercised every path.
struct GeneratorStats {
  std::size_t huge_requests = 0;     ///< palloc of an invalid size
  std::size_t limit_failures = 0;    ///< palloc beyond a per-context limit
  std::size_t raised_errors = 0;     ///< ereport(ERROR) some frames down
  std::size_t releases = 0;          ///< ReleaseCurrentSubTransaction
  std::size_t rollbacks = 0;         ///< RollbackAndReleaseCurrentSubTransaction on the normal path
  std::size_t caught = 0;            ///< errors caught by an exception block
  std::size_t max_nest_level = 0;    ///< deepest GetCurrentTransactionNestLevel seen
  std::size_t max_owner_count = 0;   ///< most resources one owner held at commit
};
GeneratorStats stats;
constexpr std::uint64_t kSeed = 0x5EED2024ull;

/// What one statement did, for the checks.
struct Outcome {
  bool completed = false;            ///< the body returned normally
  std::size_t left_at_commit = 0;    ///< resources the top owner held when the body returned
};

// Raises an ERROR `frames` calls down, allocating on the way.
[[noreturn]] void FailAtDepth(int frames, std::uint64_t statement) {
  if (frames > 0) {
    std::memset(palloc(static_cast<std::size_t>(16 * frames)), 0, static_cast<std::size_t>(16 * frames));
    FailAtDepth(frames - 1, statement);
  }
  ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("statement %llu failed on purpose",
                                                                   static_cast<unsigned long long>(statement)));
  __builtin_unreachable();
}

class StatementGenerator {
 public:
  StatementGenerator(std::uint64_t index, Outcome* out) : rng_(kSeed ^ (index * 0x2545F4914F6CDD1Dull)), index_(index), out_(out) {}

  void Run() {
    Body(0);
    // Every subtransaction this body opened is closed on the normal path;
    // what the top owner holds now is leaked by the commit.
    out_->left_at_commit = ResourceOwnerCount(TopTransactionResourceOwner);
    stats.max_owner_count = std::max(stats.max_owner_count, out_->left_at_commit);
    out_->completed = true;
  }

 private:
  struct Held {
    enum Type { kKind, kFile, kObject } type;
    int kind = 0;
    Datum value = 0;
    OwnedRef<StressObject> object;
  };

  // One level of the statement: a handful of random operations in the
  // current (sub)transaction.
  void Body(int sub_depth) {
    std::vector<Held> held;  // what this level remembered in CurrentResourceOwner and still holds
    const int ops = 1 + static_cast<int>(rng_.Below(10));
    for (int op = 0; op < ops; ++op) {
      const std::uint32_t r = rng_.Below(1000);
      if (r < 220) {
        // A plain allocation, small to large.
        const std::size_t size = rng_.Below(4) == 0 ? 1 + rng_.Below(40000) : 1 + rng_.Below(400);
        std::memset(palloc(size), 0x5A, size);
      } else if (r < 300) {
        // A context below the current one, used and left for the transaction's end.
        MemoryContext child = AllocSetContextCreate(CurrentMemoryContext, "stress child", ALLOCSET_SMALL_SIZES);
        for (std::uint32_t k = rng_.Below(5); k > 0; --k) MemoryContextAlloc(child, 1 + rng_.Below(3000));
        if (rng_.Below(3) == 0) MemoryContextDelete(child);
      } else if (r < 450) {
        // A resource of one of the test kinds.
        const int kind = static_cast<int>(rng_.Below(3));
        ResourceOwnerEnlarge(CurrentResourceOwner);
        const Datum value = next_value_++;
        ++counters[kind].acquired;
        ResourceOwnerRemember(CurrentResourceOwner, value, kStressKinds[kind]);
        held.push_back({Held::kKind, kind, value, {}});
      } else if (r < 510) {
        // A file through the built-in kind.
        ResourceOwnerEnlarge(CurrentResourceOwner);
        const Datum fd = next_value_++;
        ++counters[3].acquired;
        ResourceOwnerRemember(CurrentResourceOwner, fd, &kFileResourceKind);
        held.push_back({Held::kFile, 3, fd, {}});
      } else if (r < 560) {
        // A C++ object.
        OwnedRef<StressObject> ref = ResourceOwnerAdopt(CurrentResourceOwner, std::make_unique<StressObject>());
        ref->payload[0] = 1;
        held.push_back({Held::kObject, 0, 0, ref});
      } else if (r < 660) {
        // Close something this level holds, as its holder would.
        if (held.empty()) continue;
        const std::size_t i = rng_.Below(static_cast<std::uint32_t>(held.size()));
        Held h = held[i];
        held[i] = held.back();
        held.pop_back();
        switch (h.type) {
          case Held::kKind:
            ResourceOwnerForget(CurrentResourceOwner, h.value, kStressKinds[h.kind]);
            ++counters[h.kind].released;
            break;
          case Held::kFile:
            ResourceOwnerForget(CurrentResourceOwner, h.value, &kFileResourceKind);
            CloseStressFile(h.value);
            break;
          case Held::kObject:
            ResourceOwnerDisown(CurrentResourceOwner, h.object).reset();
            break;
        }
      } else if (r < 880) {
        if (sub_depth < kMaxSubDepth) Subtransaction(sub_depth);
      } else if (r < 900) {
        CommandCounterIncrement();
      } else if (r < 915) {
        // An invalid request size: an ERROR before anything is allocated.
        ++stats.huge_requests;
        palloc(MaxAllocSize + 1 + rng_.Below(1000));
      } else if (r < 930) {
        // Beyond a per-context limit, with the limited context current.
        MemoryContext limited = AllocSetContextCreate(CurrentMemoryContext, "stress limited", ALLOCSET_DEFAULT_SIZES);
        MemoryContextSetLimit(limited, 32 * 1024 + rng_.Below(32 * 1024));
        MemoryContextSwitchTo(limited);
        ++stats.limit_failures;
        for (;;) std::memset(palloc(1000 + rng_.Below(9000)), 1, 1000);
      } else if (r < 950) {
        // An ERROR some calls down.
        ++stats.raised_errors;
        FailAtDepth(static_cast<int>(rng_.Below(30)), index_);
      } else if (r < 975) {
        // A burst of resources: the owner spills into its hash table.
        for (std::uint32_t n = 10 + rng_.Below(70); n > 0; --n) {
          const int kind = static_cast<int>(rng_.Below(3));
          ResourceOwnerEnlarge(CurrentResourceOwner);
          const Datum value = next_value_++;
          ++counters[kind].acquired;
          ResourceOwnerRemember(CurrentResourceOwner, value, kStressKinds[kind]);
          held.push_back({Held::kKind, kind, value, {}});
        }
      }
      // else: a no-op step
    }
  }

  // A subtransaction around a nested body: plain (an error propagates with
  // it open) or an exception block (an error is caught, the subtransaction
  // rolled back, and the error swallowed or re-thrown); on the normal path it
  // is released or rolled back at random.
  void Subtransaction(int sub_depth) {
    const bool exception_block = rng_.Below(2) == 0;
    const int level = GetCurrentTransactionNestLevel();
    MemoryContext saved_context = CurrentMemoryContext;
    ResourceOwner saved_owner = CurrentResourceOwner;
    BeginInternalSubTransaction("stress");
    stats.max_nest_level = std::max(stats.max_nest_level, static_cast<std::size_t>(GetCurrentTransactionNestLevel()));
    if (!exception_block) {
      Body(sub_depth + 1);
      EndSubtransaction();
      return;
    }
    const bool rethrow = rng_.Below(4) == 0;
    try {
      Body(sub_depth + 1);
      EndSubtransaction();
    } catch (const Error&) {
      ++stats.caught;
      // Inner plain blocks may still be open: roll back down to ours.
      while (GetCurrentTransactionNestLevel() > level) RollbackAndReleaseCurrentSubTransaction();
      MemoryContextSwitchTo(saved_context);
      CurrentResourceOwner = saved_owner;
      if (rethrow) throw;
    }
  }

  void EndSubtransaction() {
    if (rng_.Below(2) == 0) {
      ++stats.releases;
      ReleaseCurrentSubTransaction();
    } else {
      ++stats.rollbacks;
      RollbackAndReleaseCurrentSubTransaction();
    }
  }

  Rng rng_;
  std::uint64_t index_;
  Outcome* out_;
  Datum next_value_ = 1;
};

// --- the test -------------------------------------------------------------------------

class StatementStressTest : public XactTest {};

TEST_F(StatementStressTest, TenThousandFailingStatementsLeaveNothingBehind) {
  constexpr std::uint64_t kWarmup = 100;
  constexpr std::uint64_t kStatements = 10'000;
  SetResourceKindRelease(&kFileResourceKind, CloseStressFile, PrintStressFile);
  for (auto& c : counters) c = StressCounters{};
  StressObject::live = 0;
  stats = GeneratorStats{};

  // Count reports without keeping them: leak warnings, other WARNINGs, errors.
  std::size_t leak_warnings = 0, other_reports = 0;
  std::string first_other;
  ScopedMessageSink sink([&](const ErrorData& d) {
    if (d.elevel == WARNING && d.message.rfind(kLeakPrefix, 0) == 0) {
      ++leak_warnings;
    } else {
      if (other_reports++ == 0) first_other = d.Format();
    }
  });

  MemoryContext caller = CurrentMemoryContext;
  std::size_t failures = 0, expected_leaks = 0, errors_reported = 0;
  std::size_t baseline = 0;
  std::string mismatch;
  for (std::uint64_t i = 0; i < kWarmup + kStatements && mismatch.empty(); ++i) {
    if (i == kWarmup) {
      WarmUpOwnerMemory(4 * (kMaxSubDepth + 1));
      baseline = MemoryContextMemAllocated(TopMemoryContext, true);
    }
    Outcome out;
    StatementGenerator gen(i, &out);
    int on_error_calls = 0;
    const bool ok = RunStatement([&] { gen.Run(); }, [&](const ErrorData&) { ++on_error_calls; });
    if (ok) expected_leaks += out.left_at_commit;
    failures += ok ? 0 : 1;
    errors_reported += static_cast<std::size_t>(on_error_calls);
    // Per statement: the outcome matches the body, the error was reported
    // once, and the thread is back to its state before the statement.
    if (ok != out.completed)
      mismatch = "statement " + std::to_string(i) + ": RunStatement returned " + (ok ? "true" : "false") +
                 " but the body " + (out.completed ? "completed" : "failed");
    else if (on_error_calls != (ok ? 0 : 1))
      mismatch = "statement " + std::to_string(i) + ": on_error called " + std::to_string(on_error_calls) + " times";
    else if (IsTransactionState() || TopTransactionContext != nullptr || CurTransactionContext != nullptr ||
             TopTransactionResourceOwner != nullptr || CurTransactionResourceOwner != nullptr)
      mismatch = "statement " + std::to_string(i) + ": a transaction is still open";
    else if (CurrentResourceOwner != nullptr || CurrentMemoryContext != caller)
      mismatch = "statement " + std::to_string(i) + ": CurrentResourceOwner/CurrentMemoryContext not restored";
  }
  EXPECT_EQ(mismatch, "");

  // Exactly the starting state.
  const std::size_t after = MemoryContextMemAllocated(TopMemoryContext, true);
  EXPECT_EQ(after, baseline) << "TopMemoryContext holds " << after << " bytes, " << baseline
                             << " after the warm-up";
  if (after != baseline) MemoryContextStats(TopMemoryContext);
  const char* names[4] = {"before-locks kind", "locks kind", "after-locks kind", "files"};
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(counters[k].acquired, counters[k].released) << names[k];
    EXPECT_GT(counters[k].acquired, 1000u) << names[k] << ": the generator should exercise it";
  }
  EXPECT_EQ(StressObject::live, 0) << "adopted C++ objects not destroyed";
  EXPECT_FALSE(IsTransactionState());
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 0);

  // Reports: one leak warning per resource a committed statement left, no
  // other reports (the errors went to on_error).
  EXPECT_EQ(leak_warnings, expected_leaks);
  EXPECT_EQ(other_reports, 0u) << "first: " << first_other;
  EXPECT_EQ(errors_reported, failures);
  // The mix is meaningful: both outcomes are common.
  EXPECT_GT(failures, (kWarmup + kStatements) / 5);
  EXPECT_LT(failures, (kWarmup + kStatements) * 4 / 5);
  // Every path was taken many times.
  EXPECT_GT(stats.huge_requests, 200u);
  EXPECT_GT(stats.limit_failures, 200u);
  EXPECT_GT(stats.raised_errors, 200u);
  EXPECT_GT(stats.releases, 1000u);
  EXPECT_GT(stats.rollbacks, 1000u);
  EXPECT_GT(stats.caught, 200u);
  EXPECT_EQ(stats.max_nest_level, static_cast<std::size_t>(kMaxSubDepth + 1));
  EXPECT_GT(stats.max_owner_count, 32u) << "no committed statement went beyond an owner's small array";
  RecordProperty("failures", static_cast<int>(failures));
  RecordProperty("leak_warnings", static_cast<int>(leak_warnings));
  RecordProperty("huge_requests", static_cast<int>(stats.huge_requests));
  RecordProperty("limit_failures", static_cast<int>(stats.limit_failures));
  RecordProperty("raised_errors", static_cast<int>(stats.raised_errors));
  RecordProperty("sub_releases", static_cast<int>(stats.releases));
  RecordProperty("sub_rollbacks", static_cast<int>(stats.rollbacks));
  RecordProperty("caught", static_cast<int>(stats.caught));
  RecordProperty("max_owner_count", static_cast<int>(stats.max_owner_count));
}

}  // namespace
}  // namespace grove::test
