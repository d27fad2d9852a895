// Error reporting: ereport()/elog(), grove::Error, message sinks.
//
// The contract, as PostgreSQL's elog.h:
//   ereport(ERROR, errcode(...), errmsg("...", ...), errdetail(...), errhint(...));
// * ERROR throws grove::Error carrying the SQLSTATE, message, detail, hint,
//   context lines and (for SQL) a cursor position. The statement ends;
//   whoever catches it runs abort processing.
// * FATAL reports and exits the process with status 1; PANIC reports and
//   aborts.
// * DEBUG…WARNING go to the current message sink when at least the minimum
//   level (SetMinMessageLevel) and return.
//
// Message text is formatted into "error memory", which the memory-context
// layer points at ErrorContext (a context with reserved space), so that an
// out-of-memory error can always be formatted. Until then a static per-thread
// arena is used. base/ itself depends on nothing but the standard library.
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "grove/base/elevel.h"
#include "grove/base/errcodes.h"

namespace grove {

/// One report, owning its text. What sinks receive and what Error carries.
struct ErrorData {
  int elevel = ERROR;
  SqlState sqlstate = ERRCODE_INTERNAL_ERROR;
  std::string message;
  std::string detail;
  std::string hint;
  std::vector<std::string> context;  ///< innermost first, one line each
  int cursorpos = 0;                 ///< 1-based position in a SQL string; 0 = none
  const char* filename = nullptr;    ///< where it was raised (static storage)
  int lineno = 0;
  const char* funcname = nullptr;

  /// "ERROR:  message\nDETAIL:  ...\nHINT:  ...\nCONTEXT:  ..." as psql prints it.
  std::string Format() const;
};

/// The exception thrown by ereport(ERROR, ...).
class Error : public std::exception {
 public:
  explicit Error(ErrorData data) noexcept : data_(std::move(data)) {}
  const char* what() const noexcept override { return data_.message.c_str(); }

  const ErrorData& data() const noexcept { return data_; }
  SqlState sqlstate() const noexcept { return data_.sqlstate; }
  const std::string& message() const noexcept { return data_.message; }
  const std::string& detail() const noexcept { return data_.detail; }
  const std::string& hint() const noexcept { return data_.hint; }
  int cursorpos() const noexcept { return data_.cursorpos; }
  std::string Format() const { return data_.Format(); }

  /// Appends a context line (outermost last), e.g. when a caller re-raises.
  void AddContext(std::string line) { data_.context.push_back(std::move(line)); }

 private:
  ErrorData data_;
};

// ---------------------------------------------------------------------------
// ereport machinery. errstart() opens a report on a small per-thread stack
// (reports may nest, e.g. a WARNING raised while formatting an ERROR);
// the err*() helpers fill the innermost one; errfinish() emits it.

/// Returns false when the level is below the reporting minimum (nothing to do).
bool errstart(int elevel, const char* filename, int lineno, const char* funcname);
/// Emits the report opened by errstart(): sink, throw, exit or abort by level.
void errfinish();
/// Drops the report opened by errstart() without emitting it: used when an
/// ereport argument throws before errfinish() is reached.
void errabandon() noexcept;

/// Held by the ereport macro between errstart() and errfinish(), so that an
/// exception thrown while the arguments are evaluated (a psprintf that runs
/// out of memory, say) cannot leave the report on the stack.
class ReportScope {
 public:
  ReportScope() = default;
  ReportScope(const ReportScope&) = delete;
  ReportScope& operator=(const ReportScope&) = delete;
  ~ReportScope() {
    if (!finished_) errabandon();
  }
  void Finish() {
    finished_ = true;  // errfinish pops the report itself, also when it throws
    errfinish();
  }

 private:
  bool finished_ = false;
};

int errcode(SqlState sqlstate);
int errmsg(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int errdetail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int errhint(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int errcontext_msg(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int errposition(int cursorpos);

/// Error context callbacks, as PostgreSQL's error_context_stack: each report
/// calls them innermost first; they add lines with errcontext_msg().
struct ErrorContextCallback {
  ErrorContextCallback* previous;
  void (*callback)(void* arg);
  void* arg;
};
extern thread_local constinit ErrorContextCallback* error_context_stack;

}  // namespace grove

/// ereport(level, errcode(...), errmsg(...), ...). The argument list is a
/// comma expression, evaluated only when the level will be reported.
#define ereport(elevel, ...)                                                              \
  do {                                                                                    \
    const int grove_elevel_ = (elevel);                                                   \
    if (::grove::errstart(grove_elevel_, __FILE__, __LINE__, __func__)) {                 \
      ::grove::ReportScope grove_report_scope_;                                           \
      (void)(__VA_ARGS__);                                                                \
      grove_report_scope_.Finish();                                                       \
    }                                                                                     \
    if (__builtin_constant_p(grove_elevel_) && grove_elevel_ >= ::grove::ERROR)           \
      __builtin_unreachable();                                                            \
  } while (0)

/// elog(level, "format", ...): an internal message without a specific SQLSTATE.
#define elog(elevel, ...) ereport(elevel, ::grove::errmsg(__VA_ARGS__))

namespace grove {

// ---------------------------------------------------------------------------
// Where reports go.

/// Receives every report below ERROR that passes the minimum level. A sink
/// must not throw. ERROR reports are thrown, not sent to the sink; FATAL and
/// PANIC are sent to the sink before the process ends.
using MessageSink = std::function<void(const ErrorData&)>;

/// Installs a sink for the calling thread (a worker forwards to its leader);
/// an empty function restores the process default. Returns the previous one.
MessageSink SetThreadMessageSink(MessageSink sink);
/// Replaces the process-wide default sink (stderr, psql format). Returns the old one.
MessageSink SetDefaultMessageSink(MessageSink sink);

/// Sends a report to the calling thread's sink whatever its level (an ERROR
/// that was caught, as PostgreSQL's EmitErrorReport in its error block).
void EmitErrorReport(const ErrorData& data);

/// Reports below this level are dropped (default NOTICE). Process-wide.
int SetMinMessageLevel(int elevel) noexcept;
int MinMessageLevel() noexcept;

/// RAII: routes the calling thread's reports to `sink` for its lifetime.
class ScopedMessageSink {
 public:
  explicit ScopedMessageSink(MessageSink sink) : previous_(SetThreadMessageSink(std::move(sink))) {}
  ~ScopedMessageSink() { SetThreadMessageSink(std::move(previous_)); }
  ScopedMessageSink(const ScopedMessageSink&) = delete;
  ScopedMessageSink& operator=(const ScopedMessageSink&) = delete;

 private:
  MessageSink previous_;
};

// ---------------------------------------------------------------------------
// Error memory: where in-flight report text is formatted. The memory-context
// layer installs ErrorContext here. `alloc` may return nullptr (the text is
// then truncated into a static buffer); `reset` is called when no report is
// in flight any more. Both must not throw.
struct ErrorMemoryHooks {
  void* (*alloc)(std::size_t size) noexcept;
  void (*reset)() noexcept;
};
void SetErrorMemoryHooks(const ErrorMemoryHooks& hooks) noexcept;

}  // namespace grove
