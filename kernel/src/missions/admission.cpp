#include "missions/admission.hpp"

#include <algorithm>
#include <cmath>

namespace kiln::missions {

bool TokenBucket::ready(Clock::time_point now, std::chrono::milliseconds* wait) {
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  if (elapsed > 0) {
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    last_ = now;
  }
  if (tokens_ >= 1.0) return true;
  if (wait)
    *wait = std::chrono::milliseconds(
        static_cast<std::int64_t>(std::ceil((1.0 - tokens_) / rate_ * 1000.0)));
  return false;
}

bool TokenBucket::full(Clock::time_point now) {
  ready(now, nullptr);
  return tokens_ >= burst_;
}

bool TokenBucket::take(Clock::time_point now, std::chrono::milliseconds* wait) {
  if (!ready(now, wait)) return false;
  tokens_ -= 1.0;
  return true;
}

std::optional<ToolError> Admission::admit(const runtime::ToolCall& call) {
  return admit(call, TokenBucket::Clock::now());
}

std::optional<ToolError> Admission::admit(const runtime::ToolCall& call,
                                          TokenBucket::Clock::time_point now) {
  if (tools_.actuates(call.tool)) {
    if (!policy_.actuation_allowed)
      return ToolError{error_code::kForbidden,
                       "tool '" + call.tool + "' actuates and the policy (" + policy_.source +
                           ") has actuation.allowed: false",
                       false,
                       {}};
    if (policy_.actuation_requires_approval && call.approved_by.empty())
      return ToolError{error_code::kForbidden,
                       "tool '" + call.tool +
                           "' actuates and the policy requires approval: run it as a mission "
                           "step and have an approver approve it (POST /v1/missions/ID:approve, "
                           "`kiln mission approve`)",
                       false,
                       {}};
  }
  const TenantPolicy* tp = policy_.tenant(call.tenant);
  if (!tp || (!tp->tool_calls && tp->per_tool.empty())) return std::nullopt;
  auto limited = [&](const std::string& what, std::chrono::milliseconds wait) {
    return ToolError{error_code::kRateLimited,
                     what + " for tenant '" + call.tenant + "' is exhausted (policy " +
                         policy_.source + "); retry in " + std::to_string(wait.count()) + " ms",
                     true, boost::json::object{{"retry_after_ms", wait.count()}}};
  };
  std::lock_guard lock(mu_);
  // Tenant names come from callers: keep the map bounded by dropping buckets that are full again.
  if (buckets_.size() > 10000)
    for (auto it = buckets_.begin(); it != buckets_.end();)
      it = it->second.full(now) ? buckets_.erase(it) : std::next(it);
  auto bucket = [&](const std::string& key, const RateLimit& r) -> TokenBucket& {
    auto it = buckets_.find(key);
    if (it == buckets_.end())
      it = buckets_.emplace(key, TokenBucket(r.per_second, r.burst, now)).first;
    return it->second;
  };
  std::chrono::milliseconds wait{0};
  // Both buckets must have a token before either gives one: a refused call uses up nothing.
  TokenBucket* tool_bucket = nullptr;
  TokenBucket* tenant_bucket = nullptr;
  if (auto it = tp->per_tool.find(call.tool); it != tp->per_tool.end())
    tool_bucket = &bucket(call.tenant + "\n" + call.tool, it->second);
  if (tp->tool_calls) tenant_bucket = &bucket(call.tenant, *tp->tool_calls);
  if (tool_bucket && !tool_bucket->ready(now, &wait))
    return limited("the rate limit of tool '" + call.tool + "'", wait);
  if (tenant_bucket && !tenant_bucket->ready(now, &wait))
    return limited("the tool-call rate limit", wait);
  if (tool_bucket) tool_bucket->take(now, nullptr);
  if (tenant_bucket) tenant_bucket->take(now, nullptr);
  return std::nullopt;
}

}  // namespace kiln::missions
