// Shared helpers for the contexts/ tests: context factories for every
// allocator, fill patterns, block-counting hooks, message capture.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "grove/base/error.h"
#include "grove/contexts/memutils.h"
#include "grove/contexts/palloc.h"
#include "grove/contexts/testing.h"
#include "../support/report_capture.h"

#if defined(__SANITIZE_ADDRESS__)
#define GROVE_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GROVE_TEST_ASAN 1
#endif
#endif
#ifdef GROVE_TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace grove::test {

// --- allocators ------------------------------------------------------------------

enum class Kind { kAllocSetDefault, kAllocSetSmall, kAllocSetStartSmall, kGeneration, kSlab, kBump };

inline const char* KindName(Kind k) {
  switch (k) {
    case Kind::kAllocSetDefault: return "AllocSetDefault";
    case Kind::kAllocSetSmall: return "AllocSetSmall";
    case Kind::kAllocSetStartSmall: return "AllocSetStartSmall";
    case Kind::kGeneration: return "Generation";
    case Kind::kSlab: return "Slab";
    case Kind::kBump: return "Bump";
  }
  return "?";
}

/// The type name MemoryContextGetTypeName reports for a kind.
inline const char* KindTypeName(Kind k) {
  switch (k) {
    case Kind::kAllocSetDefault:
    case Kind::kAllocSetSmall:
    case Kind::kAllocSetStartSmall: return "AllocSet";
    case Kind::kGeneration: return "Generation";
    case Kind::kSlab: return "Slab";
    case Kind::kBump: return "Bump";
  }
  return "?";
}

inline bool KindFrees(Kind k) { return k != Kind::kBump; }
inline bool KindReallocs(Kind k) { return k != Kind::kBump && k != Kind::kSlab; }
inline bool KindAnySize(Kind k) { return k != Kind::kSlab; }

inline constexpr std::size_t kDefaultSlabChunk = 64;

/// Creates a context of `kind` (Slab: fixed `slab_chunk` bytes). `name`
/// must have static storage.
inline MemoryContext CreateContext(Kind kind, MemoryContext parent, const char* name,
                                   std::size_t slab_chunk = kDefaultSlabChunk) {
  switch (kind) {
    case Kind::kAllocSetDefault: return AllocSetContextCreate(parent, name, ALLOCSET_DEFAULT_SIZES);
    case Kind::kAllocSetSmall: return AllocSetContextCreate(parent, name, ALLOCSET_SMALL_SIZES);
    case Kind::kAllocSetStartSmall: return AllocSetContextCreate(parent, name, ALLOCSET_START_SMALL_SIZES);
    case Kind::kGeneration: return GenerationContextCreate(parent, name, ALLOCSET_DEFAULT_SIZES);
    case Kind::kSlab: return SlabContextCreate(parent, name, SLAB_DEFAULT_BLOCK_SIZE, slab_chunk);
    case Kind::kBump: return BumpContextCreate(parent, name, ALLOCSET_DEFAULT_SIZES);
  }
  return nullptr;
}

inline const std::vector<Kind>& AllKinds() {
  static const std::vector<Kind> kinds = {Kind::kAllocSetDefault, Kind::kAllocSetSmall, Kind::kAllocSetStartSmall,
                                          Kind::kGeneration,      Kind::kSlab,          Kind::kBump};
  return kinds;
}

/// How gtest prints a Kind parameter (test names in ctest).
inline void PrintTo(Kind k, std::ostream* os) { *os << KindName(k); }

/// For INSTANTIATE_TEST_SUITE_P names.
inline std::string KindParamName(const ::testing::TestParamInfo<Kind>& info) { return KindName(info.param); }

// --- fill patterns ---------------------------------------------------------------

/// The pattern is generated a 64-bit word at a time (cheap in -O0 and
/// sanitizer builds); byte i is byte i % 8 of word i / 8.
inline uint64_t PatternWord(uint64_t seed, std::size_t j) {
  uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ULL + j * 0xD1B54A32D192ED03ULL;
  return x ^ (x >> 29);
}

inline unsigned char PatternByte(uint64_t seed, std::size_t i) {
  return static_cast<unsigned char>(PatternWord(seed, i / 8) >> (8 * (i % 8)));
}

inline void Fill(void* p, std::size_t n, uint64_t seed) {
  auto* b = static_cast<unsigned char*>(p);
  std::size_t j = 0;
  for (; (j + 1) * 8 <= n; ++j) {
    const uint64_t w = PatternWord(seed, j);
    std::memcpy(b + j * 8, &w, 8);
  }
  for (std::size_t i = j * 8; i < n; ++i) b[i] = PatternByte(seed, i);
}

/// Index of the first byte that differs from the pattern, or nullopt.
inline std::optional<std::size_t> FirstMismatch(const void* p, std::size_t n, uint64_t seed) {
  const auto* b = static_cast<const unsigned char*>(p);
  std::size_t j = 0;
  for (; (j + 1) * 8 <= n; ++j) {
    const uint64_t w = PatternWord(seed, j);
    if (std::memcmp(b + j * 8, &w, 8) != 0) break;
  }
  for (std::size_t i = j * 8; i < n; ++i)
    if (b[i] != PatternByte(seed, i)) return i;
  return std::nullopt;
}

inline ::testing::AssertionResult Intact(const void* p, std::size_t n, uint64_t seed) {
  if (auto bad = FirstMismatch(p, n, seed))
    return ::testing::AssertionFailure() << "byte " << *bad << " of " << n << " at " << p << " was changed";
  return ::testing::AssertionSuccess();
}

inline bool AllZero(const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != 0) return false;
  return true;
}

inline bool IsAligned(const void* p, std::size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

// --- errors ------------------------------------------------------------------------

// --- block hooks ---------------------------------------------------------------------

/// Counts the bytes of blocks obtained from and returned to the system on
/// this thread; can refuse new blocks to simulate malloc failure.
struct BlockCounter {
  std::size_t acquired = 0;
  std::size_t released = 0;
  std::size_t acquires = 0;
  std::size_t releases = 0;
  bool refuse = false;
  std::size_t refused = 0;
  std::size_t held() const { return acquired - released; }
};

/// Installs counting hooks for its lifetime (restores the previous ones).
class ScopedBlockHooks {
 public:
  explicit ScopedBlockHooks(BlockCounter* counter) {
    mcxt::BlockHooks hooks;
    hooks.on_acquire = [](std::size_t bytes, void* arg) {
      auto* c = static_cast<BlockCounter*>(arg);
      if (c->refuse) {
        ++c->refused;
        return false;
      }
      c->acquired += bytes;
      ++c->acquires;
      return true;
    };
    hooks.on_release = [](std::size_t bytes, void* arg) {
      auto* c = static_cast<BlockCounter*>(arg);
      c->released += bytes;
      ++c->releases;
    };
    hooks.arg = counter;
    old_ = mcxt::SetBlockHooks(hooks);
  }
  ~ScopedBlockHooks() { mcxt::SetBlockHooks(old_); }
  ScopedBlockHooks(const ScopedBlockHooks&) = delete;
  ScopedBlockHooks& operator=(const ScopedBlockHooks&) = delete;

 private:
  mcxt::BlockHooks old_;
};

/// Hooks that refuse every new block for their lifetime.
class ScopedRefuseBlocks {
 public:
  ScopedRefuseBlocks() {
    mcxt::BlockHooks hooks;
    hooks.on_acquire = [](std::size_t, void* arg) {
      ++*static_cast<std::size_t*>(arg);
      return false;
    };
    hooks.arg = &refused;
    old_ = mcxt::SetBlockHooks(hooks);
  }
  ~ScopedRefuseBlocks() { mcxt::SetBlockHooks(old_); }
  std::size_t refused = 0;

 private:
  mcxt::BlockHooks old_;
};

// --- fixture -------------------------------------------------------------------------

/// Every test starts with the thread's contexts set up, the out-of-memory
/// stats dump off, and CurrentMemoryContext = TopMemoryContext; it ends with
/// CurrentMemoryContext restored.
class ContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MemoryContextInit();
    old_dump_ = mcxt::SetDumpStatsOnOutOfMemory(false);
    old_current_ = CurrentMemoryContext;
  }
  void TearDown() override {
    CurrentMemoryContext = old_current_;
    mcxt::SetDumpStatsOnOutOfMemory(old_dump_);
  }

 private:
  bool old_dump_ = true;
  MemoryContext old_current_ = nullptr;
};

template <typename P>
class ContextTestWithParam : public ContextTest, public ::testing::WithParamInterface<P> {};

/// Deletes a context at scope exit (unless released).
class ContextGuard {
 public:
  explicit ContextGuard(MemoryContext c) : c_(c) {}
  ~ContextGuard() {
    if (c_ != nullptr) MemoryContextDelete(c_);
  }
  MemoryContext get() const { return c_; }
  MemoryContext release() {
    MemoryContext c = c_;
    c_ = nullptr;
    return c;
  }
  ContextGuard(const ContextGuard&) = delete;
  ContextGuard& operator=(const ContextGuard&) = delete;

 private:
  MemoryContext c_;
};

/// Makes the `n` bytes at `p` writable even if an AddressSanitizer build
/// poisons them (tests that deliberately write past a chunk's end).
inline void UnpoisonForTest(void* p, std::size_t n) {
#ifdef GROVE_TEST_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  (void)p;
  (void)n;
#endif
}

}  // namespace grove::test
