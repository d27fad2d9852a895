// Helpers every test suite shares: catching a grove::Error, and capturing
// the reports (WARNINGs and below) a thread raises.
#pragma once

#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "grove/base/error.h"

namespace grove::test {

/// Runs `f`; returns the grove::Error it raised, or nullopt.
template <typename F>
std::optional<Error> CatchError(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

inline bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

/// What a leak warning at commit starts with.
inline constexpr const char* kLeakPrefix = "resource was not closed: ";

/// Collects the calling thread's reports for its lifetime.
class MessageCapture {
 public:
  MessageCapture() : sink_([this](const ErrorData& d) { reports.push_back(d); }) {}
  MessageCapture(const MessageCapture&) = delete;
  MessageCapture& operator=(const MessageCapture&) = delete;

  std::vector<ErrorData> reports;

  std::size_t CountContaining(const std::string& text) const {
    std::size_t n = 0;
    for (const auto& r : reports)
      if (Contains(r.message, text)) ++n;
    return n;
  }
  std::size_t CountLevel(int elevel) const {
    std::size_t n = 0;
    for (const auto& r : reports)
      if (r.elevel == elevel) ++n;
    return n;
  }
  /// The texts of the leak warnings ("resource was not closed: <text>").
  std::vector<std::string> LeakTexts() const {
    std::vector<std::string> out;
    for (const auto& r : reports)
      if (r.elevel == WARNING && r.message.rfind(kLeakPrefix, 0) == 0)
        out.push_back(r.message.substr(std::strlen(kLeakPrefix)));
    return out;
  }
  std::string All() const {
    std::string out;
    for (const auto& r : reports) out += r.Format() + "\n";
    return out;
  }

 private:
  ScopedMessageSink sink_;
};

}  // namespace grove::test
