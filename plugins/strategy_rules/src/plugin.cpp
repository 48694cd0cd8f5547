// The strategy_rules plugin: manifest and export.
#include "kiln/kiln.hpp"
#include "rules_strategy.hpp"

namespace kiln::plugins::strategy_rules {
namespace {

Manifest manifest() {
  Manifest m;
  m.name = "strategy_rules";
  m.version = "0.1.0";
  m.description =
      "tool_strategy/rules: rule-based routing by tool, tenant and input, with "
      "fallback chains";
  m.license = "Apache-2.0";
  m.nodes.push_back(NodeDecl::make<nodes::ToolStrategy>(
      "rules",
      "routes by tool name, tenant and input predicates; fallback chains on retryable errors",
      [](const NodeContext& ctx) {
        const boost::json::value* rules = ctx.plugin_config.if_contains("rules");
        return std::make_shared<RulesToolStrategy>(
            nodes::ToolStrategySettings::from_json(ctx.kind_config),
            parse_rules(rules ? *rules : boost::json::value()));
      }));
  m.config_keys.push_back({"rules", "array", boost::json::array{},
                           "routing rules, first match wins: {name, match: {tool, tenant, "
                           "input: [{pointer, equals|in|exists}]}, providers, timeout_ms, "
                           "max_attempts}"});
  return m;
}

}  // namespace
}  // namespace kiln::plugins::strategy_rules

KILN_PLUGIN(kiln::plugins::strategy_rules::manifest)
