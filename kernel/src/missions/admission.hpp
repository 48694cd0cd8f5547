// Admission of tool calls by policy, before the executor routes them: per-tenant and per-tool
// token buckets (rate_limited, retryable, with retry_after_ms in the details) and actuation
// (forbidden unless policy allows it, and unless a person approved the call when policy asks).
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "kiln/tool.hpp"
#include "missions/policy.hpp"
#include "missions/service.hpp"
#include "runtime/executor.hpp"

namespace kiln::missions {

// A token bucket; `take` refills by elapsed time, then takes one token if there is one.
class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  TokenBucket(double per_second, double burst, Clock::time_point now)
      : rate_(per_second), burst_(burst), tokens_(burst), last_(now) {}
  // True when a token was taken; otherwise `wait` receives the time until one is available.
  bool take(Clock::time_point now, std::chrono::milliseconds* wait);
  // Refills, then tells whether a token is there (without taking it).
  bool ready(Clock::time_point now, std::chrono::milliseconds* wait);
  // Full again: it remembers nothing a fresh bucket would not.
  bool full(Clock::time_point now);

 private:
  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

class Admission {
 public:
  Admission(const Policy& policy, ToolFacts tools) : policy_(policy), tools_(std::move(tools)) {}
  std::optional<ToolError> admit(const runtime::ToolCall& call);
  // For tests: admission at a given time.
  std::optional<ToolError> admit(const runtime::ToolCall& call, TokenBucket::Clock::time_point now);

 private:
  const Policy& policy_;
  ToolFacts tools_;
  std::mutex mu_;
  std::map<std::string, TokenBucket> buckets_;  // "tenant" and "tenant\ntool"
};

}  // namespace kiln::missions
