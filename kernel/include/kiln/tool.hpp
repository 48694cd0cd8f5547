// kiln/tool.hpp — tools: named operations with JSON in and JSON out.
// Plugins implement Tool; the kernel's ToolRuntimeExecutor is the only caller. Failures are
// returned as ToolError values with a stable code, never thrown across the plugin boundary.
#pragma once

#include <chrono>
#include <stop_token>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "kiln/result.hpp"

namespace kiln {

// Stable error codes. Plugins may use their own codes as well; these are the ones the kernel
// produces and understands.
namespace error_code {
inline constexpr const char* kInvalidInput = "invalid_input";      // input fails the schema
inline constexpr const char* kInvalidRequest = "invalid_request";  // malformed call
inline constexpr const char* kUnknownTool = "unknown_tool";        // no provider has the tool
inline constexpr const char* kProviderUnavailable = "provider_unavailable";
inline constexpr const char* kTimeout = "timeout";
inline constexpr const char* kInternal = "internal";         // the tool threw or broke its contract
inline constexpr const char* kUnavailable = "unavailable";   // transient: try again later
inline constexpr const char* kRateLimited = "rate_limited";  // over a rate limit; retry later
inline constexpr const char* kForbidden = "forbidden";       // policy does not allow this call
inline constexpr const char* kNotFound = "not_found";        // the input names something not there
}  // namespace error_code

struct ToolError {
  std::string code;
  std::string message;
  bool retryable = false;
  boost::json::value details;  // optional, structured
};

struct Artifact {
  std::string name;        // file name, e.g. "summary.wav"
  std::string media_type;  // e.g. "audio/wav"
  std::string data;        // bytes
};

struct ToolResult {
  boost::json::value output;
  std::vector<Artifact> artifacts;
};

using ToolOutcome = Result<ToolResult, ToolError>;

inline Unexpected<ToolError> tool_error(std::string code, std::string message,
                                        bool retryable = false) {
  return Unexpected<ToolError>{ToolError{std::move(code), std::move(message), retryable, {}}};
}

// Everything a tool learns about the call besides its input.
struct ToolContext {
  std::string tool;
  std::string tenant;
  std::string request_id;
  std::chrono::steady_clock::time_point deadline;
  std::stop_token stop;  // requested when the caller stops waiting (timeout)
  // Who approved this call, when a person did (a mission step held for approval, or one that
  // failed with approval: on_failure and was approved); empty otherwise.
  std::string approved_by = {};
};

class Tool {
 public:
  virtual ~Tool() = default;
  // Called with input already validated against the declared input schema.
  // May be called from several threads at once.
  virtual ToolOutcome invoke(const boost::json::value& input, const ToolContext& ctx) = 0;
};

}  // namespace kiln
