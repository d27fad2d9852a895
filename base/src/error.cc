// ereport()/elog() implementation: the per-thread report stack, formatting
// into error memory, sinks, and the end-of-report actions by level.
#include "grove/base/error.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <mutex>

#include "grove/base/assert.h"

namespace grove {

thread_local constinit ErrorContextCallback* error_context_stack = nullptr;

namespace {

// In-flight report: text lives in error memory until errfinish copies it.
struct PendingReport {
  int elevel;
  SqlState sqlstate;
  const char* message;
  const char* detail;
  const char* hint;
  const char* context[8];  // lines added by errcontext_msg; more are dropped
  int ncontext;
  int cursorpos;
  const char* filename;
  int lineno;
  const char* funcname;
};

// As PostgreSQL's ERRORDATA_STACK_SIZE: a report raised while another one is
// being built nests; deeper nesting means the machinery itself is recursing.
constexpr int kReportStackSize = 5;
thread_local PendingReport report_stack[kReportStackSize];
thread_local int report_depth = 0;

// Default error memory: a per-thread bump arena, reset when no report is in
// flight. Replaced by ErrorContext once the memory-context layer starts.
constexpr std::size_t kFallbackArenaSize = 16 * 1024;
thread_local char fallback_arena[kFallbackArenaSize];
thread_local std::size_t fallback_used = 0;

void* FallbackAlloc(std::size_t size) noexcept {
  size = (size + 7) & ~std::size_t{7};
  if (size > kFallbackArenaSize - fallback_used) return nullptr;
  void* p = fallback_arena + fallback_used;
  fallback_used += size;
  return p;
}
void FallbackReset() noexcept { fallback_used = 0; }

// Hooks are per thread: ErrorContext is a per-thread context.
thread_local ErrorMemoryHooks error_memory{&FallbackAlloc, &FallbackReset};

// When error memory is exhausted, text goes to the static per-thread arena
// instead, truncated to kTruncatedLength if it does not fit whole: a report
// is never lost, and reporting never fails.
constexpr std::size_t kTruncatedLength = 256;

const char* FormatV(const char* fmt, va_list args) noexcept {
  va_list copy;
  va_copy(copy, args);
  int needed = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (needed < 0) return "(message could not be formatted)";
  std::size_t cap = static_cast<std::size_t>(needed) + 1;
  auto* buf = static_cast<char*>(error_memory.alloc(cap));
  if (buf == nullptr) buf = static_cast<char*>(FallbackAlloc(cap));
  if (buf == nullptr && cap > kTruncatedLength) {
    cap = kTruncatedLength;
    buf = static_cast<char*>(FallbackAlloc(cap));
  }
  if (buf == nullptr) return "(message lost: no memory left to format it)";
  std::vsnprintf(buf, cap, fmt, args);
  return buf;
}

PendingReport& Top() noexcept {
  Assert(report_depth > 0);
  return report_stack[report_depth - 1];
}

std::atomic<int> min_message_level{NOTICE};

std::mutex default_sink_mutex;
MessageSink& DefaultSinkStorage() {
  static MessageSink sink;  // empty: write to stderr
  return sink;
}
// The thread's sink. A report can be raised late in thread exit (by code
// that frees memory from a pthread key destructor), after this object is
// destroyed; `thread_sink_usable` — trivially destructible, so valid for the
// thread's whole life — says whether it may be touched.
thread_local bool thread_sink_usable = false;
struct ThreadSinkSlot {
  MessageSink sink;
  ThreadSinkSlot() { thread_sink_usable = true; }
  ~ThreadSinkSlot() { thread_sink_usable = false; }
};
thread_local ThreadSinkSlot thread_sink;

void WriteToStderr(const ErrorData& data) {
  std::string text = data.Format();
  text.push_back('\n');
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

void Deliver(const ErrorData& data) {
  if (thread_sink_usable && thread_sink.sink) {
    thread_sink.sink(data);
    return;
  }
  MessageSink sink;
  {
    std::lock_guard<std::mutex> lock(default_sink_mutex);
    sink = DefaultSinkStorage();
  }
  if (sink)
    sink(data);
  else
    WriteToStderr(data);
}

// Copies the in-flight report into an owning ErrorData. Copying needs the
// C++ heap; if even that fails the fields that could not be copied stay
// empty and the message falls back to a short literal that fits in the
// string's inline buffer, so a report is never lost to its own allocation.
ErrorData Materialize(const PendingReport& r) noexcept {
  ErrorData d;
  d.elevel = r.elevel;
  d.sqlstate = r.sqlstate;
  d.cursorpos = r.cursorpos;
  d.filename = r.filename;
  d.lineno = r.lineno;
  d.funcname = r.funcname;
  try {
    d.message = r.message ? r.message : "";
    if (r.detail) d.detail = r.detail;
    if (r.hint) d.hint = r.hint;
    for (int i = 0; i < r.ncontext; ++i) d.context.emplace_back(r.context[i]);
  } catch (...) {
    if (d.message.empty()) d.message = "out of memory";
  }
  return d;
}

}  // namespace

const char* ErrorLevelName(int elevel) noexcept {
  switch (elevel) {
    case DEBUG5: case DEBUG4: case DEBUG3: case DEBUG2: case DEBUG1: return "DEBUG";
    case LOG: return "LOG";
    case INFO: return "INFO";
    case NOTICE: return "NOTICE";
    case WARNING: return "WARNING";
    case ERROR: return "ERROR";
    case FATAL: return "FATAL";
    case PANIC: return "PANIC";
    default: return "???";
  }
}

std::string ErrorData::Format() const {
  std::string out = ErrorLevelName(elevel);
  out += ":  ";
  out += message;
  if (!detail.empty()) out += "\nDETAIL:  " + detail;
  if (!hint.empty()) out += "\nHINT:  " + hint;
  for (const auto& line : context) out += "\nCONTEXT:  " + line;
  return out;
}

bool errstart(int elevel, const char* filename, int lineno, const char* funcname) {
  // ERROR and above are always processed: they change control flow.
  if (elevel < ERROR && elevel < min_message_level.load(std::memory_order_relaxed)) return false;
  if (report_depth >= kReportStackSize) {
    // Recursion inside the reporting machinery: nothing sane is left to do.
    report_depth = 0;
    std::fprintf(stderr, "PANIC:  error report stack overflow (recursive error reporting)\n");
    std::abort();
  }
  PendingReport& r = report_stack[report_depth++];
  r = PendingReport{};
  r.elevel = elevel;
  r.sqlstate = elevel >= ERROR ? ERRCODE_INTERNAL_ERROR : (elevel == WARNING ? ERRCODE_WARNING : ERRCODE_SUCCESSFUL_COMPLETION);
  r.filename = filename;
  r.lineno = lineno;
  r.funcname = funcname;
  return true;
}

int errcode(SqlState sqlstate) {
  Top().sqlstate = sqlstate;
  return 0;
}

#define GROVE_FORMAT_FIELD(field)          \
  va_list args;                            \
  va_start(args, fmt);                     \
  Top().field = FormatV(fmt, args);        \
  va_end(args);                            \
  return 0

int errmsg(const char* fmt, ...) { GROVE_FORMAT_FIELD(message); }
int errdetail(const char* fmt, ...) { GROVE_FORMAT_FIELD(detail); }
int errhint(const char* fmt, ...) { GROVE_FORMAT_FIELD(hint); }
#undef GROVE_FORMAT_FIELD

int errcontext_msg(const char* fmt, ...) {
  PendingReport& r = Top();
  if (r.ncontext >= static_cast<int>(sizeof r.context / sizeof r.context[0])) return 0;
  va_list args;
  va_start(args, fmt);
  r.context[r.ncontext++] = FormatV(fmt, args);
  va_end(args);
  return 0;
}

int errposition(int cursorpos) {
  Top().cursorpos = cursorpos;
  return 0;
}

namespace {
// Pops the innermost report; when none is left in flight, the error memory
// its text used is given back.
void PopReport() noexcept {
  --report_depth;
  if (report_depth == 0) {
    error_memory.reset();
    FallbackReset();
  }
}
}  // namespace

void errabandon() noexcept {
  if (report_depth > 0) PopReport();
}

void errfinish() {
  // Context callbacks add their lines to this report (innermost first). They
  // run with the stack unhooked, so that a report they raise themselves does
  // not call them again; if one throws, that error replaces this report,
  // which is dropped, and the stack is restored either way.
  ErrorContextCallback* callbacks = error_context_stack;
  error_context_stack = nullptr;
  try {
    for (ErrorContextCallback* cb = callbacks; cb != nullptr; cb = cb->previous) cb->callback(cb->arg);
  } catch (...) {
    error_context_stack = callbacks;
    PopReport();
    throw;
  }
  error_context_stack = callbacks;

  ErrorData data = Materialize(Top());
  PopReport();

  if (data.elevel >= ERROR && data.elevel < FATAL) throw Error(std::move(data));
  Deliver(data);
  if (data.elevel == FATAL) std::exit(1);
  if (data.elevel >= PANIC) std::abort();
}

void EmitErrorReport(const ErrorData& data) { Deliver(data); }

MessageSink SetThreadMessageSink(MessageSink sink) {
  MessageSink old = std::move(thread_sink.sink);
  thread_sink.sink = std::move(sink);
  return old;
}

MessageSink SetDefaultMessageSink(MessageSink sink) {
  std::lock_guard<std::mutex> lock(default_sink_mutex);
  MessageSink old = std::move(DefaultSinkStorage());
  DefaultSinkStorage() = std::move(sink);
  return old;
}

int SetMinMessageLevel(int elevel) noexcept { return min_message_level.exchange(elevel); }
int MinMessageLevel() noexcept { return min_message_level.load(std::memory_order_relaxed); }

void SetErrorMemoryHooks(const ErrorMemoryHooks& hooks) noexcept {
  if (hooks.alloc == nullptr || hooks.reset == nullptr) {
    error_memory = ErrorMemoryHooks{&FallbackAlloc, &FallbackReset};
  } else {
    error_memory = hooks;
  }
}

void AssertionFailed(const char* condition, const char* file, int line) noexcept {
  std::fprintf(stderr, "TRAP: failed Assert(\"%s\"), File: \"%s\", Line: %d\n", condition, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace grove
