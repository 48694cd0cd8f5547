// tool_strategy/rules: routes by tool name, tenant and input predicates, with fallback chains.
// With no rule matching a call it routes exactly as tool_strategy/static (the parity suite
// holds it to that).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "kiln/nodes/tool_strategy.hpp"

namespace kiln::plugins::strategy_rules {

struct Predicate {
  std::string pointer;  // JSON Pointer into the call's input, e.g. "/voice"
  enum class Op { kEquals, kIn, kExists } op = Op::kEquals;
  boost::json::value operand;  // kEquals: the value; kIn: an array; kExists: a bool
};

struct Rule {
  std::string name;
  std::string tool_glob = "*";
  std::string tenant_glob = "*";
  std::vector<Predicate> input;
  std::vector<std::string> providers;  // "*" = every other registered provider, in order
  std::optional<std::int64_t> timeout_ms;
  std::optional<int> max_attempts;
};

// Parses and validates `rules`; throws std::invalid_argument naming the exact key path, e.g.
// "plugin_config.strategy_rules.rules[1].match.tool: expected a string".
std::vector<Rule> parse_rules(const boost::json::value& rules);

bool glob_match(std::string_view pattern, std::string_view text);

class RulesToolStrategy final : public nodes::ToolStrategy {
 public:
  RulesToolStrategy(nodes::ToolStrategySettings settings, std::vector<Rule> rules);

  Result<nodes::RouteDecision, ToolError> route(const nodes::RouteRequest& r) const override;

 private:
  bool matches(const Rule& rule, const nodes::RouteRequest& r) const;

  nodes::StaticToolStrategy fallback_;  // the behaviour when no rule matches
  nodes::ExecutionPolicy default_policy_;
  std::vector<Rule> rules_;
};

}  // namespace kiln::plugins::strategy_rules
