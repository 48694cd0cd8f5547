// kiln/nodes/tool_strategy.hpp — the `tool_strategy` node kind.
// For each tool call it decides which provider serves it (a chain: the first is primary, the
// rest are fallbacks tried on retryable errors) and with which execution policy.
// The default node `static` lives here, header-only, so plugin authors can run parity against it.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "kiln/result.hpp"
#include "kiln/tool.hpp"

namespace kiln::nodes {

struct ExecutionPolicy {
  std::chrono::milliseconds timeout{30000};
  int max_attempts = 1;  // attempts per provider for retryable errors (retries: mission runtime)
  bool operator==(const ExecutionPolicy&) const = default;
};

struct RouteRequest {
  std::string_view tool;
  std::string_view tenant;
  const boost::json::value& input;
  // Providers that registered this tool, in registration order. Empty if none did.
  const std::vector<std::string>& providers;
};

struct RouteDecision {
  std::vector<std::string> providers;  // never empty on success
  ExecutionPolicy policy;
  std::string reason;  // human-readable: which rule or map entry decided
  bool operator==(const RouteDecision& o) const {
    return providers == o.providers && policy == o.policy;  // reason is informational
  }
};

class ToolStrategy {
 public:
  static constexpr const char* kKind = "tool_strategy";
  static constexpr const char* kDefaultNode = "static";
  static constexpr unsigned kContractVersion = 1;

  virtual ~ToolStrategy() = default;
  // Must be deterministic and safe to call from several threads at once.
  virtual Result<RouteDecision, ToolError> route(const RouteRequest& request) const = 0;
};

// Kind-wide settings (`tool_strategy:` in config), shared by every node of the kind.
struct ToolStrategySettings {
  std::vector<std::pair<std::string, std::string>> providers;  // tool -> provider
  ExecutionPolicy policy;

  static ToolStrategySettings from_json(const boost::json::object& kind_config) {
    ToolStrategySettings s;
    if (auto* p = kind_config.if_contains("providers"); p && p->is_object()) {
      for (const auto& kv : p->as_object()) {
        if (kv.value().is_string())
          s.providers.emplace_back(std::string(kv.key()), std::string(kv.value().as_string()));
      }
    }
    if (auto* t = kind_config.if_contains("timeout_ms"); t && t->is_int64())
      s.policy.timeout = std::chrono::milliseconds(t->as_int64());
    if (auto* a = kind_config.if_contains("max_attempts"); a && a->is_int64())
      s.policy.max_attempts = static_cast<int>(a->as_int64());
    return s;
  }
};

// Default node: the tool -> provider map from config, else the first registered provider.
class StaticToolStrategy final : public ToolStrategy {
 public:
  explicit StaticToolStrategy(ToolStrategySettings settings) : settings_(std::move(settings)) {}

  Result<RouteDecision, ToolError> route(const RouteRequest& r) const override {
    if (r.tool.empty()) return tool_error(error_code::kInvalidRequest, "tool name is empty");
    if (r.providers.empty())
      return tool_error(
          error_code::kUnknownTool,
          "no loaded plugin provides tool '" + std::string(r.tool) +
              "'; GET /v1/tools or `kiln tool list` shows the tools that are available");
    for (const auto& [tool, provider] : settings_.providers) {
      if (tool != r.tool) continue;
      if (std::find(r.providers.begin(), r.providers.end(), provider) == r.providers.end()) {
        std::string have;
        for (const auto& p : r.providers) have += (have.empty() ? "" : ", ") + p;
        return tool_error(error_code::kProviderUnavailable,
                          "tool_strategy.providers maps '" + tool + "' to provider '" + provider +
                              "', which does not provide it (providers: " + have +
                              "); fix the map or load that plugin");
      }
      return RouteDecision{{provider}, settings_.policy, "tool_strategy.providers." + tool};
    }
    return RouteDecision{{r.providers.front()}, settings_.policy, "first registered provider"};
  }

  const ToolStrategySettings& settings() const { return settings_; }

 private:
  ToolStrategySettings settings_;
};

}  // namespace kiln::nodes
