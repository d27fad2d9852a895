// SQLSTATE-style error codes (five characters), as PostgreSQL's errcodes.txt.
// Only the codes grove raises are listed; add new ones here, in class order.
#pragma once

#include <cstring>

namespace grove {

/// A five-character SQLSTATE code. Trivially copyable so that it can be
/// stored in shared memory and sent through error queues.
struct SqlState {
  char code[6];
  constexpr bool operator==(const SqlState& o) const noexcept {
    for (int i = 0; i < 5; ++i)
      if (code[i] != o.code[i]) return false;
    return true;
  }
  const char* c_str() const noexcept { return code; }
};

// Class 00 / 01 — success and warnings
inline constexpr SqlState ERRCODE_SUCCESSFUL_COMPLETION{"00000"};
inline constexpr SqlState ERRCODE_WARNING{"01000"};
// Class 0A — feature not supported
inline constexpr SqlState ERRCODE_FEATURE_NOT_SUPPORTED{"0A000"};
// Class 22 — data exception
inline constexpr SqlState ERRCODE_INVALID_PARAMETER_VALUE{"22023"};
inline constexpr SqlState ERRCODE_INVALID_TEXT_REPRESENTATION{"22P02"};
// Class 42 — syntax error or access rule violation
inline constexpr SqlState ERRCODE_SYNTAX_ERROR{"42601"};
inline constexpr SqlState ERRCODE_DUPLICATE_OBJECT{"42710"};
inline constexpr SqlState ERRCODE_UNDEFINED_FUNCTION{"42883"};
// Class 53 — insufficient resources
inline constexpr SqlState ERRCODE_INSUFFICIENT_RESOURCES{"53000"};
inline constexpr SqlState ERRCODE_DISK_FULL{"53100"};
inline constexpr SqlState ERRCODE_OUT_OF_MEMORY{"53200"};
// Class 54 — program limit exceeded
inline constexpr SqlState ERRCODE_PROGRAM_LIMIT_EXCEEDED{"54000"};
// Class 55 — object not in prerequisite state
inline constexpr SqlState ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE{"55000"};
// Class 57 — operator intervention
inline constexpr SqlState ERRCODE_QUERY_CANCELED{"57014"};
// Class XX — internal error
inline constexpr SqlState ERRCODE_INTERNAL_ERROR{"XX000"};
inline constexpr SqlState ERRCODE_DATA_CORRUPTED{"XX001"};

}  // namespace grove
