// Randomized differential test: long random sequences of palloc / pfree /
// repalloc / palloc_aligned / MemoryContextReset against a model (a
// std::map of live chunks with their size and fill pattern). Contents are
// verified on every free and repalloc, at every reset and at the end; no two
// live chunks may overlap; accounting is checked against BlockHooks.
//
// One test per allocator, 250,000 operations each (1.5 million in all),
// from a fixed seed, so a failure is reproducible: the message names the
// operation number.
#include <map>

#include "allocator_checks.h"

namespace grove::test {
namespace {

constexpr int kOperations = 250000;
constexpr std::size_t kSlabChunk = 100;  // not a multiple of 8 on purpose

// splitmix64: deterministic, seeded.
class Rng {
 public:
  explicit Rng(uint64_t seed) : x_(seed) {}
  uint64_t Next() {
    x_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = x_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [lo, hi].
  std::size_t Between(std::size_t lo, std::size_t hi) { return lo + Next() % (hi - lo + 1); }

 private:
  uint64_t x_;
};

// Word-at-a-time fill and check, so that the test stays fast in -O0 and
// sanitizer builds.
inline uint64_t PatternWord(uint64_t seed, std::size_t j) {
  return (seed + j) * 0x9E3779B97F4A7C15ULL ^ (seed >> 7);
}
void FastFill(void* p, std::size_t n, uint64_t seed) {
  auto* b = static_cast<unsigned char*>(p);
  std::size_t j = 0;
  for (; (j + 1) * 8 <= n; ++j) {
    const uint64_t w = PatternWord(seed, j);
    std::memcpy(b + j * 8, &w, 8);
  }
  const uint64_t w = PatternWord(seed, j);
  std::memcpy(b + j * 8, &w, n - j * 8);
}
/// First mismatching byte offset, or n.
std::size_t FastCheck(const void* p, std::size_t n, uint64_t seed) {
  const auto* b = static_cast<const unsigned char*>(p);
  std::size_t j = 0;
  for (; (j + 1) * 8 <= n; ++j) {
    const uint64_t w = PatternWord(seed, j);
    if (std::memcmp(b + j * 8, &w, 8) != 0) return j * 8;
  }
  const uint64_t w = PatternWord(seed, j);
  if (std::memcmp(b + j * 8, &w, n - j * 8) != 0) return j * 8;
  return n;
}

struct ModelChunk {
  std::size_t size;
  uint64_t seed;
  std::size_t align;  // 8 for ordinary chunks
  std::size_t slot;   // index in DifferentialTest::keys_
};

class DifferentialTest : public ContextTestWithParam<Kind> {
 protected:
  /// Mostly small, sometimes medium, rarely large (across the chunk limit).
  std::size_t RandomSize() {
    if (GetParam() == Kind::kSlab) return kSlabChunk;
    const uint64_t r = rng_.Next() % 1000;
    if (r < 880) return rng_.Between(0, 128);
    if (r < 980) return rng_.Between(129, 4096);
    if (r < 998) return rng_.Between(4097, 40000);
    return rng_.Between(40001, 300000);
  }

  bool Fail(const std::string& what) {
    ADD_FAILURE() << "operation " << op_ << " (" << KindName(GetParam()) << "): " << what;
    return false;
  }

  /// Adds a chunk to the model, checking that it overlaps no live chunk.
  bool Insert(void* p, std::size_t size, uint64_t seed, std::size_t align) {
    const auto key = reinterpret_cast<uintptr_t>(p);
    if (key % align != 0) return Fail("chunk not aligned to " + std::to_string(align));
    auto next = live_.lower_bound(key);
    if (next != live_.end() && next->first == key) return Fail("pointer handed out twice");
    // A zero-size chunk still occupies at least one byte of address space.
    const std::size_t extent = std::max<std::size_t>(size, 1);
    if (next != live_.end() && key + extent > next->first) return Fail("chunk overlaps the next live chunk");
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + std::max<std::size_t>(prev->second.size, 1) > key)
        return Fail("chunk overlaps the previous live chunk");
    }
    live_.emplace(key, ModelChunk{size, seed, align, keys_.size()});
    keys_.push_back(key);
    return true;
  }

  /// Removes a chunk from the model (O(1) via its slot in keys_).
  void Erase(std::map<uintptr_t, ModelChunk>::iterator it) {
    const std::size_t slot = it->second.slot;
    keys_[slot] = keys_.back();
    live_.at(keys_[slot]).slot = slot;
    keys_.pop_back();
    live_.erase(it);
  }

  std::map<uintptr_t, ModelChunk>::iterator RandomLive() {
    return live_.find(keys_[rng_.Next() % keys_.size()]);
  }

  bool Verify(uintptr_t key, const ModelChunk& c) {
    const std::size_t bad = FastCheck(reinterpret_cast<void*>(key), c.size, c.seed);
    if (bad != c.size)
      return Fail("content of a " + std::to_string(c.size) + "-byte chunk changed at byte " + std::to_string(bad));
    return true;
  }

  bool VerifyAll() {
    for (const auto& [key, c] : live_)
      if (!Verify(key, c)) return false;
    return true;
  }

  bool DoAlloc() {
    ++stats_.allocs;
    const std::size_t size = RandomSize();
    if (size > ALLOC_CHUNK_LIMIT) ++stats_.large;
    const uint64_t kind = rng_.Next() % 100;
    std::size_t align = 8;
    void* p;
    if (kind < 3 && KindAnySize(GetParam())) {
      align = std::size_t{16} << rng_.Between(0, 8);  // 16 .. 4096
      ++stats_.aligned;
      p = MemoryContextAllocAligned(ctx_, size, align, 0);
    } else if (kind < 8) {
      p = MemoryContextAllocExtended(ctx_, size, MCXT_ALLOC_ZERO);
      if (!AllZero(p, size)) return Fail("MCXT_ALLOC_ZERO memory not zeroed");
    } else {
      p = MemoryContextAlloc(ctx_, size);
    }
    const uint64_t seed = rng_.Next();
    FastFill(p, size, seed);
    return Insert(p, size, seed, align);
  }

  bool DoFree() {
    if (live_.empty()) return DoAlloc();
    auto it = RandomLive();
    if (!Verify(it->first, it->second)) return false;
    pfree(reinterpret_cast<void*>(it->first));
    Erase(it);
    ++stats_.frees;
    return true;
  }

  bool DoRealloc() {
    if (live_.empty()) return DoAlloc();
    auto it = RandomLive();
    const ModelChunk old = it->second;
    if (!Verify(it->first, old)) return false;
    const std::size_t size = RandomSize();
    void* p = repalloc(reinterpret_cast<void*>(it->first), size);
    ++stats_.reallocs;
    Erase(it);
    const std::size_t kept = std::min(old.size, size);
    const std::size_t bad = FastCheck(p, kept, old.seed);
    if (bad != kept)
      return Fail("repalloc " + std::to_string(old.size) + " -> " + std::to_string(size) + " lost byte " +
                  std::to_string(bad));
    if (GetMemoryChunkContext(p) != ctx_) return Fail("repalloc moved the chunk to another context");
    const uint64_t seed = rng_.Next();
    FastFill(p, size, seed);
    return Insert(p, size, seed, old.align);
  }

  bool DoReset() {
    if (!VerifyAll()) return false;
    MemoryContextReset(ctx_);
    live_.clear();
    keys_.clear();
    ++stats_.resets;
    return true;
  }

  bool CheckAccounting() {
    if (counter_.held() != MemoryContextMemAllocated(root_, true))
      return Fail("hooks saw " + std::to_string(counter_.held()) + " bytes held, MemoryContextMemAllocated says " +
                  std::to_string(MemoryContextMemAllocated(root_, true)));
    return true;
  }

  void Run() {
    const Kind kind = GetParam();
    {
      ScopedBlockHooks hooks(&counter_);
      root_ = AllocSetContextCreate(TopMemoryContext, "differential root", 0, 16 * 1024, 1024 * 1024);
      ctx_ = CreateContext(kind, root_, "differential", kSlabChunk);
      MessageCapture capture;
      bool ok = true;
      for (op_ = 0; op_ < kOperations && ok; ++op_) {
        const uint64_t r = rng_.Next() % 10000;
        if (kind == Kind::kBump) {
          ok = r < 10 ? DoReset() : DoAlloc();
        } else if (r < 3) {
          ok = DoReset();
        } else if (!KindReallocs(kind)) {
          ok = r < 5300 ? DoAlloc() : DoFree();
        } else if (r < 4800) {
          ok = DoAlloc();
        } else if (r < 8300) {
          ok = DoFree();
        } else {
          ok = DoRealloc();
        }
        if (ok && op_ % 10000 == 0) ok = CheckAccounting();
        if (ok && op_ % 50000 == 0) {
          MemoryContextCheck(ctx_);
          if (!capture.reports.empty()) ok = Fail("MemoryContextCheck: " + capture.All());
        }
      }
      if (ok) ok = VerifyAll();
      if (ok) ok = CheckAccounting();
      MemoryContextCheck(ctx_);
      EXPECT_TRUE(capture.reports.empty()) << capture.All();
      if (ok && KindFrees(kind)) {
        for (const auto& [key, c] : live_) pfree(reinterpret_cast<void*>(key));
        live_.clear();
        keys_.clear();
        CheckAccounting();
      }
      MemoryContextDelete(root_);
      EXPECT_TRUE(capture.reports.empty()) << capture.All();
    }
    EXPECT_EQ(counter_.acquired, counter_.released);
    if (HasFailure()) return;  // a run cut short says nothing about coverage
    // The run exercised what it is meant to.
    EXPECT_GT(stats_.allocs, kOperations / 3);
    EXPECT_GT(stats_.resets, 10);
    if (KindFrees(kind)) {
      EXPECT_GT(stats_.frees, kOperations / 4);
    }
    if (KindReallocs(kind)) {
      EXPECT_GT(stats_.reallocs, kOperations / 10);
    }
    if (KindAnySize(kind)) {
      EXPECT_GT(stats_.large, 500);
      EXPECT_GT(stats_.aligned, 1000);
    }
  }

  struct {
    int allocs = 0, frees = 0, reallocs = 0, resets = 0, large = 0, aligned = 0;
  } stats_;

  Rng rng_{0x5eed0000ULL + static_cast<uint64_t>(GetParam())};
  BlockCounter counter_;
  MemoryContext root_ = nullptr;
  MemoryContext ctx_ = nullptr;
  std::map<uintptr_t, ModelChunk> live_;
  std::vector<uintptr_t> keys_;
  int op_ = 0;
};

INSTANTIATE_TEST_SUITE_P(AllKinds, DifferentialTest, ::testing::ValuesIn(AllKinds()), KindParamName);

// 250,000 random operations against the model (see the file comment).
TEST_P(DifferentialTest, RandomOperationsMatchModel) { Run(); }

}  // namespace
}  // namespace grove::test
