// kiln/testkit/tool_strategy.hpp — contract and parity suites of the `tool_strategy` kind.
// `kiln gate run tool_strategy/NODE` runs exactly these; plugin authors run them in their own
// tests (see kiln/testkit/boost_test.hpp).
#pragma once

#include <algorithm>
#include <exception>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "kiln/nodes/tool_strategy.hpp"
#include "kiln/testkit/report.hpp"

namespace kiln::testkit {

// Builds a strategy node for a given kind config (the `tool_strategy:` section).
using ToolStrategyFactory =
    std::function<std::shared_ptr<nodes::ToolStrategy>(const boost::json::object& kind_config)>;

namespace detail {

inline std::string describe(const Result<nodes::RouteDecision, ToolError>& r) {
  if (!r.ok()) return "error " + r.error().code + ": " + r.error().message;
  std::string s = "providers [";
  for (std::size_t i = 0; i < r.value().providers.size(); ++i)
    s += (i ? ", " : "") + r.value().providers[i];
  s += "], timeout " + std::to_string(r.value().policy.timeout.count()) + " ms, attempts " +
       std::to_string(r.value().policy.max_attempts);
  return s;
}

inline bool same(const Result<nodes::RouteDecision, ToolError>& a,
                 const Result<nodes::RouteDecision, ToolError>& b) {
  if (a.ok() != b.ok()) return false;
  if (a.ok()) return a.value() == b.value();
  return a.error().code == b.error().code && a.error().retryable == b.error().retryable;
}

using testkit::guarded;  // kiln/testkit/report.hpp

}  // namespace detail

// The kind's contract, version nodes::ToolStrategy::kContractVersion.
inline SuiteReport run_tool_strategy_contract(const ToolStrategyFactory& make) {
  using nodes::RouteRequest;
  SuiteReport report;
  report.suite = "contract";
  const boost::json::value empty_input = boost::json::object{};
  const std::vector<std::string> none;
  const std::vector<std::string> three{"alpha", "beta", "gamma"};

  std::shared_ptr<nodes::ToolStrategy> node;
  detail::guarded(report, "constructs with an empty kind config", [&] {
    node = make(boost::json::object{});
    report.add("constructs with an empty kind config", node != nullptr,
               node ? "" : "factory returned null");
  });
  if (!node) return report;

  detail::guarded(report, "empty tool name is invalid_request", [&] {
    auto r = node->route(RouteRequest{"", "t1", empty_input, three});
    report.add("empty tool name is invalid_request",
               !r.ok() && r.error().code == error_code::kInvalidRequest && !r.error().retryable,
               detail::describe(r));
  });
  detail::guarded(report, "tool without providers is unknown_tool", [&] {
    auto r = node->route(RouteRequest{"nobody.has.this", "t1", empty_input, none});
    report.add("tool without providers is unknown_tool",
               !r.ok() && r.error().code == error_code::kUnknownTool && !r.error().retryable,
               detail::describe(r));
  });
  detail::guarded(report, "decision names only available providers", [&] {
    auto r = node->route(RouteRequest{"demo.echo", "t1", empty_input, three});
    bool ok = r.ok() && !r.value().providers.empty();
    if (ok)
      for (const auto& p : r.value().providers)
        ok = ok && std::find(three.begin(), three.end(), p) != three.end();
    report.add("decision names only available providers", ok, detail::describe(r));
  });
  detail::guarded(report, "no provider repeats in a chain", [&] {
    auto r = node->route(RouteRequest{"demo.echo", "t1", empty_input, three});
    bool ok = r.ok();
    if (ok) {
      std::set<std::string> seen(r.value().providers.begin(), r.value().providers.end());
      ok = seen.size() == r.value().providers.size();
    }
    report.add("no provider repeats in a chain", ok, detail::describe(r));
  });
  detail::guarded(report, "policy is usable", [&] {
    auto r = node->route(RouteRequest{"demo.echo", "t1", empty_input, three});
    bool ok = r.ok() && r.value().policy.timeout.count() > 0 && r.value().policy.max_attempts >= 1;
    report.add("policy is usable", ok, detail::describe(r));
  });
  detail::guarded(report, "odd input does not break routing", [&] {
    bool ok = true;
    std::string why;
    for (const boost::json::value& in :
         {boost::json::value(nullptr), boost::json::value(boost::json::array{1, 2}),
          boost::json::value("text"), boost::json::value(42)}) {
      auto r = node->route(RouteRequest{"demo.echo", "t1", in, three});
      if (!r.ok() && r.error().code == error_code::kInternal) {
        ok = false;
        why = detail::describe(r);
      }
    }
    report.add("odd input does not break routing", ok, why);
  });
  detail::guarded(report, "deterministic", [&] {
    auto first = node->route(RouteRequest{"demo.echo", "tenant-a", empty_input, three});
    bool ok = true;
    for (int i = 0; i < 200 && ok; ++i)
      ok = detail::same(first,
                        node->route(RouteRequest{"demo.echo", "tenant-a", empty_input, three}));
    report.add("deterministic", ok, "200 repeats of one request");
  });
  detail::guarded(report, "safe from several threads", [&] {
    const std::vector<std::string> tools{"demo.echo", "demo.other", "x"};
    std::vector<Result<nodes::RouteDecision, ToolError>> expected;
    for (const auto& t : tools)
      expected.push_back(node->route(RouteRequest{t, "tenant-a", empty_input, three}));
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        try {
          for (int i = 0; i < 2000; ++i) {
            std::size_t k = static_cast<std::size_t>(i) % tools.size();
            if (!detail::same(expected[k],
                              node->route(RouteRequest{tools[k], "tenant-a", empty_input, three})))
              ++mismatches;
          }
        } catch (...) {
          ++mismatches;
        }
      });
    }
    for (auto& th : threads) th.join();
    report.add("safe from several threads", mismatches == 0,
               std::to_string(mismatches.load()) + " mismatches in 4 x 2000 calls");
  });
  return report;
}

// One golden case: a kind config, the providers registered per tool, and requests to route.
struct ToolStrategyCase {
  std::string name;
  boost::json::object kind_config;
  std::vector<std::pair<std::string, std::vector<std::string>>> providers;  // tool -> providers
  std::vector<boost::json::object> requests;  // {"tool", "tenant", "input"}
};

// Parses a cases file: a JSON array of {"name", "kind_config", "providers", "requests"}.
// Throws std::invalid_argument naming the case and field on malformed input.
inline std::vector<ToolStrategyCase> parse_tool_strategy_cases(std::string_view json_text,
                                                               const std::string& origin) {
  boost::json::error_code ec;
  auto doc = boost::json::parse(json_text, ec);
  if (ec) throw std::invalid_argument(origin + ": not valid JSON: " + ec.message());
  if (!doc.is_array()) throw std::invalid_argument(origin + ": expected a JSON array of cases");
  std::vector<ToolStrategyCase> out;
  std::size_t i = 0;
  for (const auto& v : doc.as_array()) {
    std::string where = origin + "[" + std::to_string(i++) + "]";
    if (!v.is_object()) throw std::invalid_argument(where + ": a case must be an object");
    const auto& o = v.as_object();
    ToolStrategyCase c;
    auto* name = o.if_contains("name");
    if (!name || !name->is_string()) throw std::invalid_argument(where + ".name: missing string");
    c.name = std::string(name->as_string());
    if (auto* kc = o.if_contains("kind_config")) {
      if (!kc->is_object()) throw std::invalid_argument(where + ".kind_config: expected object");
      c.kind_config = kc->as_object();
    }
    auto* prov = o.if_contains("providers");
    if (!prov || !prov->is_object())
      throw std::invalid_argument(where + ".providers: expected object tool -> [providers]");
    for (const auto& kv : prov->as_object()) {
      std::vector<std::string> list;
      if (!kv.value().is_array())
        throw std::invalid_argument(where + ".providers." + std::string(kv.key()) +
                                    ": expected array");
      for (const auto& p : kv.value().as_array()) list.emplace_back(p.as_string());
      c.providers.emplace_back(std::string(kv.key()), std::move(list));
    }
    auto* reqs = o.if_contains("requests");
    if (!reqs || !reqs->is_array() || reqs->as_array().empty())
      throw std::invalid_argument(where + ".requests: expected a non-empty array");
    for (const auto& r : reqs->as_array()) {
      if (!r.is_object() || !r.as_object().contains("tool"))
        throw std::invalid_argument(where + ".requests: each request needs a \"tool\"");
      c.requests.push_back(r.as_object());
    }
    out.push_back(std::move(c));
  }
  return out;
}

// Routes every request of every case through control and candidate; the kind's comparator is
// exact (same providers, same policy, or the same error code).
inline SuiteReport run_tool_strategy_parity(const ToolStrategyFactory& make_control,
                                            const ToolStrategyFactory& make_candidate,
                                            const std::vector<ToolStrategyCase>& cases,
                                            const std::vector<std::string>& intended = {}) {
  SuiteReport report;
  report.suite = "parity";
  for (const auto& c : cases) {
    detail::guarded(report, c.name, [&] {
      auto control = make_control(c.kind_config);
      auto candidate = make_candidate(c.kind_config);
      std::string diff;
      std::size_t n = 0;
      for (const auto& req : c.requests) {
        std::string tool(req.at("tool").as_string());
        std::string tenant =
            req.contains("tenant") ? std::string(req.at("tenant").as_string()) : "default";
        boost::json::value input =
            req.contains("input") ? req.at("input") : boost::json::value(boost::json::object{});
        static const std::vector<std::string> kNone;
        const std::vector<std::string>* providers = &kNone;
        for (const auto& [t, list] : c.providers)
          if (t == tool) providers = &list;
        auto a = control->route(nodes::RouteRequest{tool, tenant, input, *providers});
        auto b = candidate->route(nodes::RouteRequest{tool, tenant, input, *providers});
        if (!detail::same(a, b)) {
          diff += (diff.empty() ? "" : "; ") + std::string("request ") + std::to_string(n) + " (" +
                  tool + "): control " + detail::describe(a) + " vs candidate " +
                  detail::describe(b);
        }
        ++n;
      }
      CheckResult r{c.name, diff.empty(),
                    diff.empty() ? std::to_string(n) + " requests identical" : diff, false};
      if (!r.passed && std::find(intended.begin(), intended.end(), c.name) != intended.end())
        r.intended = true;
      report.checks.push_back(std::move(r));
    });
  }
  return report;
}

}  // namespace kiln::testkit
