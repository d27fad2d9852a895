// ereport()/elog(), grove::Error, ErrorData::Format, message levels, sinks,
// error context callbacks and error memory (base/include/grove/base/error.h).
//
// This binary links grove::base only: error memory is the static per-thread
// fallback arena, not ErrorContext.
#include "grove/base/error.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace grove {
namespace {

// Restores the process-wide minimum level when a test ends.
class ScopedMinLevel {
 public:
  explicit ScopedMinLevel(int level) : old_(SetMinMessageLevel(level)) {}
  ~ScopedMinLevel() { SetMinMessageLevel(old_); }

 private:
  int old_;
};

// Collects the reports the calling thread's sink receives.
class Capture {
 public:
  Capture() : sink_([this](const ErrorData& d) { reports.push_back(d); }) {}
  std::vector<ErrorData> reports;

 private:
  ScopedMessageSink sink_;
};

// Restores the default sink when a test ends.
class ScopedDefaultSink {
 public:
  explicit ScopedDefaultSink(MessageSink sink) : old_(SetDefaultMessageSink(std::move(sink))) {}
  ~ScopedDefaultSink() { SetDefaultMessageSink(std::move(old_)); }

 private:
  MessageSink old_;
};

// Pushes an ErrorContextCallback for the lifetime of the object.
class ScopedContextLine {
 public:
  explicit ScopedContextLine(const char* line) : line_(line) {
    cb_.previous = error_context_stack;
    cb_.callback = &ScopedContextLine::Run;
    cb_.arg = this;
    error_context_stack = &cb_;
  }
  ~ScopedContextLine() { error_context_stack = cb_.previous; }
  int calls = 0;

 private:
  static void Run(void* arg) {
    auto* self = static_cast<ScopedContextLine*>(arg);
    ++self->calls;
    errcontext_msg("%s", self->line_);
  }
  const char* line_;
  ErrorContextCallback cb_;
};

// Runs `f`, which must raise ERROR, and returns the error it threw.
template <typename F>
Error ExpectError(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected grove::Error";
  return Error(ErrorData{});
}

// ErrorLevelName gives the word psql prints in front of each level.
TEST(ErrorLevelNameTest, NamesEveryLevel) {
  EXPECT_STREQ(ErrorLevelName(DEBUG5), "DEBUG");
  EXPECT_STREQ(ErrorLevelName(DEBUG1), "DEBUG");
  EXPECT_STREQ(ErrorLevelName(LOG), "LOG");
  EXPECT_STREQ(ErrorLevelName(INFO), "INFO");
  EXPECT_STREQ(ErrorLevelName(NOTICE), "NOTICE");
  EXPECT_STREQ(ErrorLevelName(WARNING), "WARNING");
  EXPECT_STREQ(ErrorLevelName(ERROR), "ERROR");
  EXPECT_STREQ(ErrorLevelName(FATAL), "FATAL");
  EXPECT_STREQ(ErrorLevelName(PANIC), "PANIC");
}

// Levels are ordered as PostgreSQL's elog.h orders them.
TEST(ErrorLevelNameTest, LevelsAreOrdered) {
  EXPECT_LT(DEBUG5, DEBUG1);
  EXPECT_LT(DEBUG1, LOG);
  EXPECT_LT(LOG, INFO);
  EXPECT_LT(INFO, NOTICE);
  EXPECT_LT(NOTICE, WARNING);
  EXPECT_LT(WARNING, ERROR);
  EXPECT_LT(ERROR, FATAL);
  EXPECT_LT(FATAL, PANIC);
}

// SqlState compares by its five characters and prints them.
TEST(SqlStateTest, EqualityAndText) {
  EXPECT_STREQ(ERRCODE_OUT_OF_MEMORY.c_str(), "53200");
  EXPECT_STREQ(ERRCODE_INTERNAL_ERROR.c_str(), "XX000");
  EXPECT_TRUE(ERRCODE_OUT_OF_MEMORY == (SqlState{"53200"}));
  EXPECT_FALSE(ERRCODE_OUT_OF_MEMORY == ERRCODE_DISK_FULL);
}

// ereport(ERROR) throws grove::Error carrying every field that was given.
TEST(EreportTest, ErrorThrowsWithAllFields) {
  Error e = ExpectError([] {
    ereport(ERROR, errcode(ERRCODE_SYNTAX_ERROR), errmsg("syntax error at or near \"%s\"", "FORM"),
            errdetail("detail %d", 42), errhint("hint %s", "here"), errposition(17));
  });
  EXPECT_TRUE(e.sqlstate() == ERRCODE_SYNTAX_ERROR) << e.sqlstate().c_str();
  EXPECT_EQ(e.message(), "syntax error at or near \"FORM\"");
  EXPECT_EQ(e.detail(), "detail 42");
  EXPECT_EQ(e.hint(), "hint here");
  EXPECT_EQ(e.cursorpos(), 17);
  EXPECT_EQ(e.data().elevel, ERROR);
  ASSERT_NE(e.data().filename, nullptr);
  EXPECT_NE(std::strstr(e.data().filename, "error_test.cc"), nullptr);
  EXPECT_GT(e.data().lineno, 0);
  ASSERT_NE(e.data().funcname, nullptr);
  EXPECT_TRUE(e.data().context.empty());
}

// what() is the primary message, so generic handlers print something useful.
TEST(EreportTest, WhatIsTheMessage) {
  Error e = ExpectError([] { ereport(ERROR, errmsg("boom %d", 7)); });
  EXPECT_STREQ(e.what(), "boom 7");
}

// elog(ERROR) is an internal error: SQLSTATE XX000, printf-style message.
TEST(EreportTest, ElogErrorIsInternalError) {
  Error e = ExpectError([] { elog(ERROR, "cache lookup failed for relation %u", 1259u); });
  EXPECT_TRUE(e.sqlstate() == ERRCODE_INTERNAL_ERROR) << e.sqlstate().c_str();
  EXPECT_EQ(e.message(), "cache lookup failed for relation 1259");
  EXPECT_TRUE(e.detail().empty());
  EXPECT_TRUE(e.hint().empty());
  EXPECT_EQ(e.cursorpos(), 0);
}

// A level known only at run time still throws when it is ERROR.
TEST(EreportTest, RuntimeErrorLevelThrows) {
  volatile int level = ERROR;
  EXPECT_THROW(ereport(level, errmsg("runtime level")), Error);
}

// Below ERROR, ereport returns and execution continues.
TEST(EreportTest, WarningReturns) {
  Capture capture;
  bool continued = false;
  ereport(WARNING, errmsg("just a warning"));
  continued = true;
  EXPECT_TRUE(continued);
  ASSERT_EQ(capture.reports.size(), 1u);
  EXPECT_EQ(capture.reports[0].elevel, WARNING);
  EXPECT_EQ(capture.reports[0].message, "just a warning");
}

// The Error owns its text: later reports (which reuse error memory) do not
// change an Error already caught.
TEST(EreportTest, ErrorOwnsItsText) {
  Error first = ExpectError([] { ereport(ERROR, errmsg("first %s", "message"), errdetail("first detail")); });
  for (int i = 0; i < 10; ++i) {
    Error other = ExpectError([i] { ereport(ERROR, errmsg("other %d xxxxxxxxxxxxxxxxxxxxxxxx", i)); });
    (void)other;
  }
  EXPECT_EQ(first.message(), "first message");
  EXPECT_EQ(first.detail(), "first detail");
}

// More consecutive ERRORs than the report stack is deep: each one pops its
// entry, so the stack never overflows (which would abort with PANIC).
TEST(EreportTest, ManyConsecutiveErrorsDoNotExhaustReportStack) {
  for (int i = 0; i < 100; ++i) {
    Error e = ExpectError([i] { ereport(ERROR, errmsg("error %d", i)); });
    EXPECT_EQ(e.message(), "error " + std::to_string(i));
  }
}

// An ERROR raised while handling another one (in a catch block) is an
// ordinary, separate report.
TEST(EreportTest, ErrorRaisedWhileHandlingAnother) {
  try {
    elog(ERROR, "outer");
  } catch (const Error& outer) {
    Error inner = ExpectError([] { elog(ERROR, "inner"); });
    EXPECT_EQ(inner.message(), "inner");
    EXPECT_EQ(outer.message(), "outer");
  }
}

// Format() prints as psql does: level, two spaces, message, then DETAIL,
// HINT and CONTEXT lines in that order.
TEST(ErrorFormatTest, AllFieldsInPsqlOrder) {
  ScopedContextLine outer("outer line");
  ScopedContextLine inner("inner line");
  Error e = ExpectError([] {
    ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED), errmsg("bad page"), errdetail("checksum mismatch"),
            errhint("restore from backup"));
  });
  EXPECT_EQ(e.Format(),
            "ERROR:  bad page\nDETAIL:  checksum mismatch\nHINT:  restore from backup\n"
            "CONTEXT:  inner line\nCONTEXT:  outer line");
  EXPECT_EQ(e.data().Format(), e.Format());
}

// A message alone formats as one line.
TEST(ErrorFormatTest, MessageOnly) {
  Error e = ExpectError([] { elog(ERROR, "boom"); });
  EXPECT_EQ(e.Format(), "ERROR:  boom");
}

// Empty fields are left out rather than printed empty.
TEST(ErrorFormatTest, EmptyFieldsOmitted) {
  Error e = ExpectError([] { ereport(ERROR, errmsg("m"), errhint("h")); });
  EXPECT_EQ(e.Format(), "ERROR:  m\nHINT:  h");
}

// Format() uses the report's own level name.
TEST(ErrorFormatTest, UsesTheLevelName) {
  ErrorData d;
  d.elevel = WARNING;
  d.message = "careful";
  d.detail = "very";
  EXPECT_EQ(d.Format(), "WARNING:  careful\nDETAIL:  very");
  d.elevel = NOTICE;
  d.detail.clear();
  EXPECT_EQ(d.Format(), "NOTICE:  careful");
}

// AddContext appends a line after the existing ones (outermost last).
TEST(ErrorFormatTest, AddContextAppendsOutermostLast) {
  ScopedContextLine inner("inner line");
  Error e = ExpectError([] { elog(ERROR, "m"); });
  e.AddContext("re-raised by caller");
  ASSERT_EQ(e.data().context.size(), 2u);
  EXPECT_EQ(e.data().context[0], "inner line");
  EXPECT_EQ(e.data().context[1], "re-raised by caller");
  EXPECT_EQ(e.Format(), "ERROR:  m\nCONTEXT:  inner line\nCONTEXT:  re-raised by caller");
}

// The process starts with NOTICE as the minimum level.
TEST(MessageLevelTest, DefaultMinimumIsNotice) { EXPECT_EQ(MinMessageLevel(), NOTICE); }

// SetMinMessageLevel returns the previous minimum.
TEST(MessageLevelTest, SetReturnsPrevious) {
  ScopedMinLevel guard(WARNING);
  EXPECT_EQ(MinMessageLevel(), WARNING);
  EXPECT_EQ(SetMinMessageLevel(DEBUG2), WARNING);
  EXPECT_EQ(MinMessageLevel(), DEBUG2);
}

// A report below the minimum is dropped, and its arguments are not even
// evaluated (ereport's argument list is evaluated only when reported).
TEST(MessageLevelTest, BelowMinimumDroppedWithoutEvaluatingArguments) {
  ScopedMinLevel guard(WARNING);
  Capture capture;
  int evaluated = 0;
  ereport(NOTICE, errmsg("notice %d", ++evaluated));
  ereport(LOG, errmsg("log %d", ++evaluated));
  ereport(DEBUG1, errmsg("debug %d", ++evaluated));
  EXPECT_EQ(evaluated, 0);
  EXPECT_TRUE(capture.reports.empty());
}

// A report exactly at the minimum is delivered (the minimum is inclusive).
TEST(MessageLevelTest, AtMinimumDelivered) {
  ScopedMinLevel guard(WARNING);
  Capture capture;
  ereport(WARNING, errmsg("at the minimum"));
  ASSERT_EQ(capture.reports.size(), 1u);
  EXPECT_EQ(capture.reports[0].message, "at the minimum");
}

// Lowering the minimum lets DEBUG and LOG reports through, with their level.
TEST(MessageLevelTest, DebugDeliveredWhenMinimumLowered) {
  ScopedMinLevel guard(DEBUG5);
  Capture capture;
  elog(DEBUG5, "d5");
  elog(DEBUG1, "d1");
  elog(LOG, "log");
  elog(INFO, "info");
  ASSERT_EQ(capture.reports.size(), 4u);
  EXPECT_EQ(capture.reports[0].elevel, DEBUG5);
  EXPECT_EQ(capture.reports[1].elevel, DEBUG1);
  EXPECT_EQ(capture.reports[2].elevel, LOG);
  EXPECT_EQ(capture.reports[3].elevel, INFO);
  EXPECT_EQ(capture.reports[3].Format(), "INFO:  info");
}

// With the default minimum (NOTICE), LOG and DEBUG are dropped and NOTICE,
// INFO... pass.
TEST(MessageLevelTest, DefaultMinimumFilters) {
  Capture capture;
  elog(DEBUG1, "dropped");
  elog(LOG, "dropped too");
  elog(NOTICE, "kept");
  ASSERT_EQ(capture.reports.size(), 1u);
  EXPECT_EQ(capture.reports[0].message, "kept");
}

// ERROR changes control flow, so it is raised whatever the minimum is, and
// its arguments are evaluated.
TEST(MessageLevelTest, ErrorRaisedEvenAboveMinimum) {
  ScopedMinLevel guard(PANIC);
  int evaluated = 0;
  Error e = ExpectError([&] { ereport(ERROR, errmsg("still raised %d", ++evaluated)); });
  EXPECT_EQ(evaluated, 1);
  EXPECT_EQ(e.message(), "still raised 1");
}

// ERROR is thrown, not sent to the sink.
TEST(MessageLevelTest, ErrorNotSentToSink) {
  Capture capture;
  EXPECT_THROW(elog(ERROR, "thrown"), Error);
  EXPECT_TRUE(capture.reports.empty());
}

// Default SQLSTATEs by level: WARNING 01000, NOTICE 00000, ERROR XX000;
// errcode() overrides them.
TEST(MessageLevelTest, DefaultSqlStatesByLevel) {
  Capture capture;
  elog(WARNING, "w");
  elog(NOTICE, "n");
  ereport(WARNING, errcode(ERRCODE_DISK_FULL), errmsg("w2"));
  ASSERT_EQ(capture.reports.size(), 3u);
  EXPECT_TRUE(capture.reports[0].sqlstate == ERRCODE_WARNING) << capture.reports[0].sqlstate.c_str();
  EXPECT_TRUE(capture.reports[1].sqlstate == ERRCODE_SUCCESSFUL_COMPLETION) << capture.reports[1].sqlstate.c_str();
  EXPECT_TRUE(capture.reports[2].sqlstate == ERRCODE_DISK_FULL) << capture.reports[2].sqlstate.c_str();
}

// Context callbacks add their lines innermost first; each runs once per report.
TEST(ErrorContextCallbackTest, LinesInnermostFirst) {
  ScopedContextLine a("while doing A");
  ScopedContextLine b("while doing B inside A");
  Error e = ExpectError([] { elog(ERROR, "failed"); });
  ASSERT_EQ(e.data().context.size(), 2u);
  EXPECT_EQ(e.data().context[0], "while doing B inside A");
  EXPECT_EQ(e.data().context[1], "while doing A");
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);
}

// Context lines are added to reports below ERROR too.
TEST(ErrorContextCallbackTest, AppliesToWarnings) {
  Capture capture;
  ScopedContextLine a("line for warning");
  elog(WARNING, "w");
  ASSERT_EQ(capture.reports.size(), 1u);
  ASSERT_EQ(capture.reports[0].context.size(), 1u);
  EXPECT_EQ(capture.reports[0].Format(), "WARNING:  w\nCONTEXT:  line for warning");
}

// Callbacks are not called for reports that are dropped by level.
TEST(ErrorContextCallbackTest, NotCalledForDroppedReports) {
  ScopedContextLine a("unused");
  elog(DEBUG3, "dropped");
  EXPECT_EQ(a.calls, 0);
}

// The stack of callbacks is unchanged by a report, thrown or not.
TEST(ErrorContextCallbackTest, StackUnchangedByReports) {
  ScopedContextLine a("a");
  ErrorContextCallback* before = error_context_stack;
  EXPECT_THROW(elog(ERROR, "x"), Error);
  EXPECT_EQ(error_context_stack, before);
  Capture capture;
  elog(WARNING, "y");
  EXPECT_EQ(error_context_stack, before);
}

// errcontext_msg can be given directly in ereport's argument list.
TEST(ErrorContextCallbackTest, ErrcontextInArguments) {
  Error e = ExpectError([] { ereport(ERROR, errmsg("m"), errcontext_msg("direct %d", 1)); });
  ASSERT_EQ(e.data().context.size(), 1u);
  EXPECT_EQ(e.data().context[0], "direct 1");
}

// A callback may itself raise a WARNING: it nests as a separate report
// (delivered to the sink) and the outer ERROR still completes.
TEST(ErrorContextCallbackTest, CallbackMayReportNestedWarning) {
  Capture capture;
  ErrorContextCallback cb{error_context_stack,
                          [](void*) {
                            elog(WARNING, "nested warning");
                            errcontext_msg("outer context");
                          },
                          nullptr};
  error_context_stack = &cb;
  Error e = ExpectError([] { elog(ERROR, "outer error"); });
  error_context_stack = cb.previous;
  EXPECT_EQ(e.message(), "outer error");
  ASSERT_EQ(e.data().context.size(), 1u);
  EXPECT_EQ(e.data().context[0], "outer context");
  ASSERT_EQ(capture.reports.size(), 1u);
  EXPECT_EQ(capture.reports[0].message, "nested warning");
  // The report stack is back to empty: more errors work.
  EXPECT_THROW(elog(ERROR, "again"), Error);
}

// Many callbacks (more than a report keeps) neither crash nor corrupt the
// report; the innermost lines are kept.
TEST(ErrorContextCallbackTest, ManyCallbacksDoNotOverflow) {
  std::vector<std::unique_ptr<ScopedContextLine>> lines;
  static const char* const kText[] = {"c0", "c1", "c2",  "c3",  "c4",  "c5",  "c6",
                                      "c7", "c8", "c9", "c10", "c11", "c12", "c13"};
  for (const char* t : kText) lines.push_back(std::make_unique<ScopedContextLine>(t));
  Error e = ExpectError([] { elog(ERROR, "deep"); });
  EXPECT_EQ(e.message(), "deep");
  ASSERT_FALSE(e.data().context.empty());
  EXPECT_LE(e.data().context.size(), 14u);
  EXPECT_EQ(e.data().context[0], "c13");
  while (!lines.empty()) lines.pop_back();  // pop in reverse order of pushing
}

// A thread sink takes the calling thread's reports instead of the default.
TEST(SinkTest, ThreadSinkOverridesDefault) {
  std::vector<std::string> to_default;
  ScopedDefaultSink def([&](const ErrorData& d) { to_default.push_back(d.message); });
  {
    Capture capture;
    elog(WARNING, "to thread sink");
    ASSERT_EQ(capture.reports.size(), 1u);
  }
  EXPECT_TRUE(to_default.empty());
  elog(WARNING, "to default sink");
  ASSERT_EQ(to_default.size(), 1u);
  EXPECT_EQ(to_default[0], "to default sink");
}

// A thread sink is per thread: another thread's reports go to the default.
TEST(SinkTest, OtherThreadUsesDefaultSink) {
  std::mutex mu;
  std::vector<std::string> to_default;
  ScopedDefaultSink def([&](const ErrorData& d) {
    std::lock_guard<std::mutex> lock(mu);
    to_default.push_back(d.message);
  });
  Capture capture;
  std::thread t([] { elog(WARNING, "from other thread"); });
  t.join();
  EXPECT_TRUE(capture.reports.empty());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(to_default.size(), 1u);
  EXPECT_EQ(to_default[0], "from other thread");
}

// A thread may install its own sink without affecting the others.
TEST(SinkTest, SinksOfTwoThreadsAreIndependent) {
  Capture main_capture;
  std::vector<ErrorData> worker_reports;
  std::thread t([&] {
    ScopedMessageSink s([&](const ErrorData& d) { worker_reports.push_back(d); });
    elog(NOTICE, "worker");
  });
  t.join();
  elog(NOTICE, "main");
  ASSERT_EQ(worker_reports.size(), 1u);
  EXPECT_EQ(worker_reports[0].message, "worker");
  ASSERT_EQ(main_capture.reports.size(), 1u);
  EXPECT_EQ(main_capture.reports[0].message, "main");
}

// Nested ScopedMessageSinks: the inner one wins, and its end restores the outer.
TEST(SinkTest, ScopedSinkRestoresPrevious) {
  Capture outer;
  {
    Capture inner;
    elog(WARNING, "inner");
    EXPECT_EQ(inner.reports.size(), 1u);
  }
  elog(WARNING, "outer");
  ASSERT_EQ(outer.reports.size(), 1u);
  EXPECT_EQ(outer.reports[0].message, "outer");
}

// SetThreadMessageSink returns the previous sink; an empty one restores the default.
TEST(SinkTest, EmptyThreadSinkRestoresDefault) {
  int default_calls = 0;
  int thread_calls = 0;
  ScopedDefaultSink def([&](const ErrorData&) { ++default_calls; });
  MessageSink old = SetThreadMessageSink([&](const ErrorData&) { ++thread_calls; });
  EXPECT_FALSE(static_cast<bool>(old));
  elog(WARNING, "a");
  MessageSink mine = SetThreadMessageSink(MessageSink{});
  EXPECT_TRUE(static_cast<bool>(mine));
  elog(WARNING, "b");
  EXPECT_EQ(thread_calls, 1);
  EXPECT_EQ(default_calls, 1);
}

// SetDefaultMessageSink returns the previous default.
TEST(SinkTest, SetDefaultReturnsPrevious) {
  MessageSink first = SetDefaultMessageSink([](const ErrorData&) {});
  MessageSink second = SetDefaultMessageSink(std::move(first));
  EXPECT_TRUE(static_cast<bool>(second));
}

// Without any sink, reports go to stderr in psql format, one per line.
TEST(SinkTest, DefaultSinkWritesPsqlFormatToStderr) {
  testing::internal::CaptureStderr();
  ereport(WARNING, errmsg("to stderr"), errdetail("with detail"));
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out, "WARNING:  to stderr\nDETAIL:  with detail\n");
}

// Messages are formatted in error memory; without the memory-context layer
// that is a 16 KiB per-thread arena, reset after every report, so a series
// of long (but fitting) messages all come out whole.
TEST(ErrorMemoryTest, ArenaIsResetBetweenReports) {
  const std::string text(6000, 'm');
  for (int i = 0; i < 20; ++i) {
    Error e = ExpectError([&] { ereport(ERROR, errmsg("%s", text.c_str()), errdetail("%s", text.c_str())); });
    EXPECT_EQ(e.message(), text);
    EXPECT_EQ(e.detail(), text);
  }
}

// A message that does not fit in error memory is truncated, never lost.
TEST(ErrorMemoryTest, OversizedMessageTruncatedNotLost) {
  const std::string text(40000, 'x');
  Error e = ExpectError([&] { elog(ERROR, "%s", text.c_str()); });
  EXPECT_FALSE(e.message().empty());
  EXPECT_LT(e.message().size(), text.size());
  EXPECT_EQ(text.compare(0, e.message().size(), e.message()), 0) << "truncated text must be a prefix";
}

// Custom error-memory hooks are used for the text and reset after the report;
// hooks of nullptr restore the fallback arena.
TEST(ErrorMemoryTest, CustomHooksUsedAndReset) {
  static int allocs;
  static int resets;
  static char buffer[4096];
  static std::size_t used;
  allocs = resets = 0;
  used = 0;
  SetErrorMemoryHooks(ErrorMemoryHooks{
      [](std::size_t size) noexcept -> void* {
        ++allocs;
        size = (size + 7) & ~std::size_t{7};
        if (size > sizeof buffer - used) return nullptr;
        void* p = buffer + used;
        used += size;
        return p;
      },
      []() noexcept {
        ++resets;
        used = 0;
      }});
  Error e = ExpectError([] { ereport(ERROR, errmsg("hooked %d", 1), errdetail("d")); });
  SetErrorMemoryHooks(ErrorMemoryHooks{nullptr, nullptr});
  EXPECT_EQ(e.message(), "hooked 1");
  EXPECT_EQ(e.detail(), "d");
  EXPECT_GE(allocs, 2);
  EXPECT_EQ(resets, 1);
  // Back on the fallback arena: the hooks are not called any more.
  EXPECT_THROW(elog(ERROR, "fallback"), Error);
  EXPECT_EQ(resets, 1);
}

// Error memory that always fails still yields a (truncated) message.
TEST(ErrorMemoryTest, FailingHooksStillReport) {
  SetErrorMemoryHooks(ErrorMemoryHooks{[](std::size_t) noexcept -> void* { return nullptr; }, []() noexcept {}});
  Error e = ExpectError([] { ereport(ERROR, errmsg("short message"), errdetail("short detail")); });
  SetErrorMemoryHooks(ErrorMemoryHooks{nullptr, nullptr});
  EXPECT_EQ(e.message(), "short message");
  EXPECT_EQ(e.detail(), "short detail");
}

// FATAL is reported (to the sink: stderr by default) and exits with status 1.
TEST(FatalDeathTest, ExitsWithStatusOne) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(ereport(FATAL, errmsg("terminating connection %d", 5)), testing::ExitedWithCode(1),
              "FATAL:  terminating connection 5");
}

// PANIC is reported and aborts the process.
TEST(FatalDeathTest, PanicAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(ereport(PANIC, errmsg("corrupted shared state")), "PANIC:  corrupted shared state");
}

// FATAL goes through the installed thread sink before the process exits.
TEST(FatalDeathTest, FatalGoesThroughThreadSink) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        SetThreadMessageSink([](const ErrorData& d) {
          std::fprintf(stderr, "sink saw level %s: %s\n", ErrorLevelName(d.elevel), d.message.c_str());
        });
        elog(FATAL, "bye");
      },
      testing::ExitedWithCode(1), "sink saw level FATAL: bye");
}

}  // namespace
}  // namespace grove

namespace grove {
namespace {

const char* ThrowWhileFormatting() { throw std::runtime_error("argument failed"); }

// An exception thrown while an ereport's arguments are evaluated drops the
// half-built report: nothing stays on the report stack, so many such events
// neither fill it (which would abort) nor stop error memory being reset.
TEST(ReportStackTest, ThrowingArgumentDropsTheReport) {
  for (int i = 0; i < 100; ++i) {
    EXPECT_THROW(ereport(ERROR, errmsg("value: %s", ThrowWhileFormatting())), std::runtime_error);
    EXPECT_THROW(ereport(WARNING, errmsg("value: %s", ThrowWhileFormatting())), std::runtime_error);
  }
  try {
    ereport(ERROR, errmsg("after"), errdetail("detail"));
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "after");
    EXPECT_EQ(e.detail(), "detail");
  }
}

// A context callback that raises ERROR replaces the report being built; the
// callback stack is restored and later reports are whole.
TEST(ReportStackTest, CallbackRaisingErrorReplacesTheReport) {
  ErrorContextCallback cb{error_context_stack, [](void*) { ereport(ERROR, errmsg("from callback")); }, nullptr};
  error_context_stack = &cb;
  for (int i = 0; i < 100; ++i) {
    try {
      ereport(ERROR, errmsg("original"));
      FAIL() << "no error raised";
    } catch (const Error& e) {
      EXPECT_EQ(e.message(), "from callback");
    }
  }
  EXPECT_EQ(error_context_stack, &cb);
  error_context_stack = cb.previous;
  try {
    ereport(ERROR, errmsg("plain"));
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "plain");
    EXPECT_TRUE(e.data().context.empty());
  }
}

}  // namespace
}  // namespace grove
