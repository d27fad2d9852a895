// Hooks for tests and fault injection. Not for production code paths.
#pragma once

#include <cstddef>

namespace grove::mcxt {

/// Observes (and may refuse) every block a context obtains from or returns
/// to the system, on the calling thread. `on_acquire` returning false makes
/// that block request fail as if malloc had returned nullptr.
struct BlockHooks {
  bool (*on_acquire)(std::size_t bytes, void* arg) = nullptr;
  void (*on_release)(std::size_t bytes, void* arg) = nullptr;
  void* arg = nullptr;
};

/// Installs hooks for the calling thread; returns the previous ones. The
/// hooks must stay installed until every block acquired under them is released
/// if they count bytes.
BlockHooks SetBlockHooks(const BlockHooks& hooks) noexcept;
BlockHooks CurrentBlockHooks() noexcept;

/// Whether this build has memory checking (sentinels, exact bogus-pointer
/// detection, bump pfree detection).
constexpr bool MemoryCheckingEnabled() {
#ifdef GROVE_MEMORY_CHECKING
  return true;
#else
  return false;
#endif
}

/// Whether out-of-memory errors print MemoryContextStats(TopMemoryContext)
/// to stderr first, as PostgreSQL does (default true). Returns the old value.
bool SetDumpStatsOnOutOfMemory(bool on) noexcept;

}  // namespace grove::mcxt
