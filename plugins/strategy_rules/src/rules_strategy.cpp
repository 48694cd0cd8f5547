#include "rules_strategy.hpp"

#include <algorithm>
#include <stdexcept>

namespace kiln::plugins::strategy_rules {
namespace json = boost::json;

namespace {

const std::string kBase = "plugin_config.strategy_rules.rules";

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::invalid_argument(where + ": " + what);
}

std::string get_string(const json::object& o, const char* key, const std::string& where,
                       const std::string& fallback, bool required) {
  auto* v = o.if_contains(key);
  if (!v) {
    if (required) bad(where + "." + key, "required string is missing");
    return fallback;
  }
  if (!v->is_string()) bad(where + "." + key, "expected a string, got " + json::serialize(*v));
  return std::string(v->as_string());
}

}  // namespace

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative '*' matching with backtracking to the last star; '?' matches one character.
  std::size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

std::vector<Rule> parse_rules(const json::value& rules) {
  std::vector<Rule> out;
  if (rules.is_null()) return out;
  if (!rules.is_array()) bad(kBase, "expected a list of rules");
  std::size_t i = 0;
  for (const auto& v : rules.as_array()) {
    const std::string where = kBase + "[" + std::to_string(i++) + "]";
    if (!v.is_object()) bad(where, "expected a map with name, match, providers");
    const auto& o = v.as_object();
    static const std::vector<std::string> kKeys{"name", "match", "providers", "timeout_ms",
                                                "max_attempts"};
    for (const auto& kv : o)
      if (std::find(kKeys.begin(), kKeys.end(), kv.key()) == kKeys.end())
        bad(where + "." + std::string(kv.key()),
            "unknown key (a rule has name, match, providers, timeout_ms, max_attempts)");
    Rule r;
    r.name = get_string(o, "name", where, "", true);
    for (const auto& prev : out)
      if (prev.name == r.name) bad(where + ".name", "duplicate rule name '" + r.name + "'");
    if (auto* m = o.if_contains("match")) {
      if (!m->is_object()) bad(where + ".match", "expected a map with tool, tenant, input");
      const auto& mo = m->as_object();
      for (const auto& kv : mo)
        if (kv.key() != "tool" && kv.key() != "tenant" && kv.key() != "input")
          bad(where + ".match." + std::string(kv.key()),
              "unknown key (match has tool, tenant, input)");
      r.tool_glob = get_string(mo, "tool", where + ".match", "*", false);
      r.tenant_glob = get_string(mo, "tenant", where + ".match", "*", false);
      if (auto* in = mo.if_contains("input")) {
        if (!in->is_array()) bad(where + ".match.input", "expected a list of predicates");
        std::size_t j = 0;
        for (const auto& pv : in->as_array()) {
          const std::string pw = where + ".match.input[" + std::to_string(j++) + "]";
          if (!pv.is_object()) bad(pw, "expected {pointer, equals|in|exists}");
          const auto& po = pv.as_object();
          Predicate p;
          p.pointer = get_string(po, "pointer", pw, "", true);
          if (!p.pointer.empty() && p.pointer[0] != '/')
            bad(pw + ".pointer", "a JSON Pointer starts with '/', e.g. /voice");
          int ops = 0;
          if (auto* e = po.if_contains("equals")) {
            p.op = Predicate::Op::kEquals;
            p.operand = *e;
            ++ops;
          }
          if (auto* e = po.if_contains("in")) {
            if (!e->is_array()) bad(pw + ".in", "expected a list of values");
            p.op = Predicate::Op::kIn;
            p.operand = *e;
            ++ops;
          }
          if (auto* e = po.if_contains("exists")) {
            if (!e->is_bool()) bad(pw + ".exists", "expected true or false");
            p.op = Predicate::Op::kExists;
            p.operand = *e;
            ++ops;
          }
          if (ops != 1) bad(pw, "needs exactly one of equals, in, exists");
          r.input.push_back(std::move(p));
        }
      }
    }
    auto* prov = o.if_contains("providers");
    if (!prov || !prov->is_array() || prov->as_array().empty())
      bad(where + ".providers", "expected a non-empty list of provider names (or \"*\")");
    for (const auto& p : prov->as_array()) {
      if (!p.is_string()) bad(where + ".providers", "expected provider names as strings");
      r.providers.emplace_back(p.as_string());
    }
    if (auto* t = o.if_contains("timeout_ms")) {
      if (!t->is_int64() || t->as_int64() < 1)
        bad(where + ".timeout_ms", "expected an integer >= 1");
      r.timeout_ms = t->as_int64();
    }
    if (auto* a = o.if_contains("max_attempts")) {
      if (!a->is_int64() || a->as_int64() < 1 || a->as_int64() > 100)
        bad(where + ".max_attempts", "expected an integer from 1 to 100");
      r.max_attempts = static_cast<int>(a->as_int64());
    }
    out.push_back(std::move(r));
  }
  return out;
}

RulesToolStrategy::RulesToolStrategy(nodes::ToolStrategySettings settings, std::vector<Rule> rules)
    : fallback_(settings), default_policy_(settings.policy), rules_(std::move(rules)) {}

bool RulesToolStrategy::matches(const Rule& rule, const nodes::RouteRequest& r) const {
  if (!glob_match(rule.tool_glob, r.tool) || !glob_match(rule.tenant_glob, r.tenant)) return false;
  for (const auto& p : rule.input) {
    std::error_code ec;
    const json::value* v = r.input.find_pointer(p.pointer, ec);
    switch (p.op) {
      case Predicate::Op::kExists:
        if ((v != nullptr) != p.operand.as_bool()) return false;
        break;
      case Predicate::Op::kEquals:
        if (!v || *v != p.operand) return false;
        break;
      case Predicate::Op::kIn: {
        if (!v) return false;
        const auto& options = p.operand.as_array();
        if (std::find(options.begin(), options.end(), *v) == options.end()) return false;
        break;
      }
    }
  }
  return true;
}

Result<nodes::RouteDecision, ToolError> RulesToolStrategy::route(
    const nodes::RouteRequest& r) const {
  if (r.tool.empty() || r.providers.empty()) return fallback_.route(r);  // same errors as static
  for (const auto& rule : rules_) {
    if (!matches(rule, r)) continue;
    nodes::RouteDecision d;
    auto add = [&](const std::string& p) {
      if (std::find(d.providers.begin(), d.providers.end(), p) == d.providers.end())
        d.providers.push_back(p);
    };
    for (const auto& p : rule.providers) {
      if (p == "*") {
        for (const auto& any : r.providers) add(any);
      } else if (std::find(r.providers.begin(), r.providers.end(), p) != r.providers.end()) {
        add(p);
      }
    }
    if (d.providers.empty()) {
      std::string have;
      for (const auto& p : r.providers) have += (have.empty() ? "" : ", ") + p;
      return tool_error(error_code::kProviderUnavailable,
                        "rule '" + rule.name + "' routes tool '" + std::string(r.tool) +
                            "' to providers none of which provide it (providers: " + have + ")");
    }
    d.policy = default_policy_;
    if (rule.timeout_ms) d.policy.timeout = std::chrono::milliseconds(*rule.timeout_ms);
    if (rule.max_attempts) d.policy.max_attempts = *rule.max_attempts;
    d.reason = "rule " + rule.name;
    return d;
  }
  return fallback_.route(r);
}

}  // namespace kiln::plugins::strategy_rules
