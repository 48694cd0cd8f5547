// Strategy nodes that break the tool_strategy contract or parity on purpose, so the gate
// machinery is shown to refuse them (a gate that cannot fail would prove nothing).
#include <atomic>

#include "kiln/kiln.hpp"

namespace {
using namespace kiln;

// Routes to the LAST registered provider: passes the contract, fails parity.
class LastProvider final : public nodes::ToolStrategy {
 public:
  explicit LastProvider(nodes::ToolStrategySettings s) : fallback_(std::move(s)) {}
  Result<nodes::RouteDecision, ToolError> route(const nodes::RouteRequest& r) const override {
    if (r.tool.empty() || r.providers.empty()) return fallback_.route(r);
    auto d = fallback_.route(r);
    if (d.ok() && d.value().reason == "first registered provider")
      d.value().providers = {r.providers.back()};
    return d;
  }

 private:
  nodes::StaticToolStrategy fallback_;
};

// Alternates providers on each call: not deterministic, fails the contract.
class Flipper final : public nodes::ToolStrategy {
 public:
  Result<nodes::RouteDecision, ToolError> route(const nodes::RouteRequest& r) const override {
    if (r.tool.empty()) return tool_error(error_code::kInvalidRequest, "empty");
    if (r.providers.empty()) return tool_error(error_code::kUnknownTool, "none");
    auto n = counter_++;
    return nodes::RouteDecision{{r.providers[n % r.providers.size()]}, {}, "flip"};
  }

 private:
  mutable std::atomic<unsigned> counter_{0};
};

Manifest manifest() {
  Manifest m;
  m.name = "bad_strategies";
  m.version = "1.0.0";
  m.description = "strategies that fail their gate on purpose";
  m.license = "Apache-2.0";
  m.nodes.push_back(NodeDecl::make<nodes::ToolStrategy>(
      "last", "routes to the last provider", [](const NodeContext& ctx) {
        return std::make_shared<LastProvider>(
            nodes::ToolStrategySettings::from_json(ctx.kind_config));
      }));
  m.nodes.push_back(NodeDecl::make<nodes::ToolStrategy>(
      "flipper", "alternates providers",
      [](const NodeContext&) { return std::make_shared<Flipper>(); }));
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
