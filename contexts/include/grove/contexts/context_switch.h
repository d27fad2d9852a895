// RAII over MemoryContextSwitchTo.
#pragma once

#include "grove/contexts/palloc.h"

namespace grove {

/// Makes a context current for a scope and restores the previous one on exit,
/// also when an ERROR unwinds through the scope.
///
///   {
///     ContextSwitch in(per_tuple);
///     auto* row = static_cast<Row*>(palloc(sizeof(Row)));
///   }  // the previous context is current again
class ContextSwitch {
 public:
  explicit ContextSwitch(MemoryContext context) noexcept : previous_(MemoryContextSwitchTo(context)) {}
  ~ContextSwitch() { MemoryContextSwitchTo(previous_); }
  ContextSwitch(const ContextSwitch&) = delete;
  ContextSwitch& operator=(const ContextSwitch&) = delete;

  MemoryContext previous() const noexcept { return previous_; }

 private:
  MemoryContext previous_;
};

}  // namespace grove
