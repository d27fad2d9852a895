// Message severity levels, ordered as PostgreSQL's elog.h orders them.
#pragma once

namespace grove {

/// Severity of a report. Ordering matters: a level is reported when it is at
/// least the configured minimum, and ERROR and above never return.
enum ErrorLevel : int {
  DEBUG5 = 10,
  DEBUG4 = 11,
  DEBUG3 = 12,
  DEBUG2 = 13,
  DEBUG1 = 14,
  LOG = 15,
  INFO = 17,
  NOTICE = 18,
  WARNING = 19,
  ERROR = 21,  ///< throws grove::Error; the statement ends
  FATAL = 22,  ///< reported, then the process exits with status 1
  PANIC = 23,  ///< reported, then the process aborts (core dump)
};

/// "WARNING", "ERROR", ... as printed in front of a message.
const char* ErrorLevelName(int elevel) noexcept;

}  // namespace grove
