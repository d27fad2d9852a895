// Assertions for bugs (never for bad input: that is an ERROR).
// Active in checking builds (GROVE_USE_ASSERT_CHECKING, on in Debug).
#pragma once

namespace grove {
/// Prints "TRAP: failed Assert(...)" with the location and aborts.
[[noreturn]] void AssertionFailed(const char* condition, const char* file, int line) noexcept;
}  // namespace grove

#ifdef GROVE_USE_ASSERT_CHECKING
#define Assert(condition)                                                     \
  do {                                                                        \
    if (__builtin_expect(!(condition), 0))                                    \
      ::grove::AssertionFailed(#condition, __FILE__, __LINE__);               \
  } while (0)
#define GROVE_ASSERT_CHECKING_ENABLED 1
#else
#define Assert(condition) ((void)true)
#define GROVE_ASSERT_CHECKING_ENABLED 0
#endif

#define GROVE_LIKELY(x) __builtin_expect(!!(x), 1)
#define GROVE_UNLIKELY(x) __builtin_expect(!!(x), 0)
