#include "missions/policy.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "common/embedded.hpp"
#include "common/strings.hpp"
#include "common/yaml.hpp"

namespace kiln::missions {
using common::did_you_mean;
using common::mark_of;

namespace {

bool listed(const std::vector<NameRef>& list, std::string_view name) {
  return std::any_of(list.begin(), list.end(),
                     [&](const NameRef& r) { return r.name == "*" || r.name == name; });
}

int strictness(Approval a) {
  return a == Approval::kRequired ? 2 : a == Approval::kOnFailure ? 1 : 0;
}

}  // namespace

bool TenantPolicy::allows(std::string_view t) const {
  return listed(missions, t) && !listed(deny, t);
}

bool TenantPolicy::reviews(std::string_view t) const {
  return listed(review, t);
}

const TenantPolicy* Policy::tenant(std::string_view name) const {
  auto it = tenants.find(std::string(name));
  if (it != tenants.end()) return &it->second;
  it = tenants.find("*");
  return it == tenants.end() ? nullptr : &it->second;
}

Approval Policy::step_approval(const StepTemplate& step, bool actuates) const {
  Approval a = step.approval;
  if (auto it = approvals.find(step.tool); it != approvals.end())
    if (strictness(it->second.approval) > strictness(a)) a = it->second.approval;
  if (actuates && actuation_requires_approval) a = Approval::kRequired;
  return a;
}

bool Policy::isolated(std::string_view plugin,
                      const std::vector<std::string>& runtime_isolated) const {
  if (std::find(runtime_isolated.begin(), runtime_isolated.end(), plugin) != runtime_isolated.end())
    return true;
  auto it = isolation_plugins.find(std::string(plugin));
  if (it != isolation_plugins.end()) return it->second.name == "isolated";
  return isolation_default == "isolated";
}

PolicySource policy_source(const std::string& path) {
  if (path.empty())
    return {"config/policy.yaml (embedded)",
            std::string(common::embedded_file("config/policy.yaml"))};
  std::ifstream in(path);
  if (!in)
    throw TemplateError({"policy.file: cannot read '" + path +
                         "'; fix the path or unset policy.file to use the embedded policy"});
  std::stringstream ss;
  ss << in.rdbuf();
  return {path, ss.str()};
}

namespace {

class PolicyParser {
 public:
  explicit PolicyParser(std::string file) : file_(std::move(file)) {}
  std::vector<std::string> problems;

  // False (said) when `n` is no mapping: its keys are not read then (yaml-cpp throws on a
  // scalar's subscript).
  bool keys(const YAML::Node& n, const std::vector<std::string>& allowed, const std::string& ctx) {
    if (!n.IsMap()) {
      problems.push_back(mark_of(file_, n.Mark()) + ": " + (ctx.empty() ? "the policy" : ctx) +
                         " must be a mapping");
      return false;
    }
    for (const auto& kv : n) {
      const std::string k = kv.first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
        problems.push_back(mark_of(file_, kv.first.Mark()) + ": unknown key '" + ctx +
                           (ctx.empty() ? "" : ".") + k + "'" + did_you_mean(k, allowed) +
                           " (allowed: " + common::join(allowed) + ")");
    }
    return true;
  }

  template <class T>
  std::optional<T> scalar(const YAML::Node& n, const std::string& what) {
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      problems.push_back(mark_of(file_, n.Mark()) + ": " + what);
      return std::nullopt;
    }
  }

  // `malformed`, when given, is set if the list or an entry of it is no name (said already).
  std::vector<NameRef> names(const YAML::Node& n, const std::string& ctx,
                             bool* malformed = nullptr) {
    std::vector<NameRef> out;
    if (!n || n.IsNull()) return out;
    if (!n.IsSequence()) {
      problems.push_back(mark_of(file_, n.Mark()) + ": " + ctx + " must be a list of names");
      if (malformed) *malformed = true;
      return out;
    }
    for (const auto& x : n) {
      if (x.IsScalar()) {
        out.push_back({x.Scalar(), mark_of(file_, x.Mark())});
        continue;
      }
      problems.push_back(mark_of(file_, x.Mark()) + ": " + ctx +
                         " must be a list of names; this entry is a " +
                         (x.IsMap()        ? "mapping"
                          : x.IsSequence() ? "list"
                                           : "null"));
      if (malformed) *malformed = true;
    }
    return out;
  }

  std::optional<RateLimit> rate(const YAML::Node& n, const std::string& ctx) {
    if (!keys(n, {"per_second", "burst"}, ctx)) return std::nullopt;
    RateLimit r;
    r.where = mark_of(file_, n.Mark());
    auto ps = scalar<double>(n["per_second"], ctx + ".per_second must be a number > 0");
    // Without a burst, a second's worth of calls, and at least one: {per_second: 0.5} is a call
    // every 2 s (it was refused for a burst of 0.5 the file does not name).
    auto burst = n["burst"]       ? scalar<double>(n["burst"], ctx + ".burst must be a number >= 1")
                 : ps.has_value() ? std::optional<double>(std::max(1.0, *ps))
                                  : std::nullopt;
    if (!ps || !burst) return std::nullopt;
    r.per_second = *ps;
    r.burst = *burst;
    if (r.per_second <= 0 || r.burst < 1) {
      auto shown = [](double d) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", d);
        return std::string(buf);
      };
      problems.push_back(r.where + ": " + ctx + " needs per_second > 0 and burst >= 1 (got " +
                         shown(r.per_second) + ", " + shown(r.burst) + ")");
      return std::nullopt;
    }
    return r;
  }

  Policy parse(const YAML::Node& root) {
    Policy p;
    p.source = file_;
    if (!keys(root, {"version", "actuation", "isolation", "tenants", "approvals"}, "")) return p;
    if (auto v = root["version"]) {
      auto n = scalar<int>(v, "version must be 1");
      if (n && *n != 1)
        problems.push_back(mark_of(file_, v.Mark()) + ": policy version " + std::to_string(*n) +
                           " is not supported by this kiln (it reads version 1)");
    }
    if (auto a = root["actuation"];
        a && keys(a, {"allowed", "require_approval", "distinct_approver"}, "actuation")) {
      p.actuation_where = mark_of(file_, a.Mark());
      if (a["allowed"])
        p.actuation_allowed =
            scalar<bool>(a["allowed"], "actuation.allowed must be true or false").value_or(false);
      if (a["require_approval"])
        p.actuation_requires_approval =
            scalar<bool>(a["require_approval"], "actuation.require_approval must be true or false")
                .value_or(true);
      if (a["distinct_approver"])
        p.actuation_distinct_approver =
            scalar<bool>(a["distinct_approver"],
                         "actuation.distinct_approver must be true or false")
                .value_or(true);
    }
    if (auto iso = root["isolation"]; iso && keys(iso, {"default", "plugins"}, "isolation")) {
      auto mode_ok = [&](const YAML::Node& n, const std::string& what) {
        const std::string v = n.Scalar();
        if (v == "in_process" || v == "isolated") return true;
        problems.push_back(mark_of(file_, n.Mark()) + ": " + what + " '" + v +
                           "' is not one of in_process, isolated");
        return false;
      };
      if (iso["default"] && mode_ok(iso["default"], "isolation.default"))
        p.isolation_default = iso["default"].Scalar();
      if (auto plugins = iso["plugins"]) {
        if (!plugins.IsMap()) {
          problems.push_back(mark_of(file_, plugins.Mark()) +
                             ": isolation.plugins maps plugin names to in_process | isolated");
        } else {
          for (const auto& kv : plugins)
            if (mode_ok(kv.second, "isolation.plugins." + kv.first.Scalar()))
              p.isolation_plugins[kv.first.Scalar()] = {kv.second.Scalar(),
                                                        mark_of(file_, kv.first.Mark())};
        }
      }
    }
    if (auto tenants = root["tenants"]) {
      if (!tenants.IsMap()) {
        problems.push_back(mark_of(file_, tenants.Mark()) +
                           ": tenants maps tenant names (or \"*\") to their rules");
      } else {
        for (const auto& kv : tenants) p.tenants[kv.first.Scalar()] = tenant(kv);
      }
    }
    if (auto approvals = root["approvals"]; approvals && keys(approvals, {"tools"}, "approvals")) {
      if (auto tools = approvals["tools"]) {
        if (!tools.IsMap()) {
          problems.push_back(mark_of(file_, tools.Mark()) +
                             ": approvals.tools maps tool names to required | on_failure | never");
        } else {
          for (const auto& kv : tools) {
            auto a = parse_approval(kv.second.Scalar());
            if (!a) {
              problems.push_back(mark_of(file_, kv.second.Mark()) + ": approvals.tools." +
                                 kv.first.Scalar() + " '" + kv.second.Scalar() +
                                 "' is not one of required, on_failure, never");
              continue;
            }
            p.approvals[kv.first.Scalar()] = {kv.first.Scalar(), mark_of(file_, kv.first.Mark()),
                                              *a};
          }
        }
      }
    }
    return p;
  }

 private:
  TenantPolicy tenant(const std::pair<YAML::Node, YAML::Node>& kv) {
    TenantPolicy t;
    t.name = kv.first.Scalar();
    t.where = mark_of(file_, kv.first.Mark());
    const std::string ctx = "tenants." + t.name;
    const YAML::Node& n = kv.second;
    if (!keys(n, {"missions", "deny", "review", "max_active", "retry_after_ms", "rate_limits"},
              ctx))
      return t;
    t.missions = names(n["missions"], ctx + ".missions", &t.missions_malformed);
    t.deny = names(n["deny"], ctx + ".deny");
    t.review = names(n["review"], ctx + ".review");
    // (A value that is no integer is said once, not again as out of range.)
    std::optional<std::int64_t> max_active, retry_after;
    if (n["max_active"])
      max_active = scalar<std::int64_t>(n["max_active"], ctx + ".max_active must be an integer");
    if (n["retry_after_ms"])
      retry_after =
          scalar<std::int64_t>(n["retry_after_ms"], ctx + ".retry_after_ms must be an integer");
    t.max_active = max_active.value_or(0);
    t.retry_after_ms = retry_after.value_or(5000);
    // 0 once meant no limit, silently — the opposite of what it says to someone pausing a tenant.
    if (max_active && *max_active < 1)
      problems.push_back(mark_of(file_, n["max_active"].Mark()) + ": " + ctx +
                         ".max_active must be 1 or more (got " + std::to_string(*max_active) +
                         "); leave it out for no limit, or take the tenant's templates out of "
                         "'missions' to stop it starting any");
    if (retry_after && (*retry_after < 0 || *retry_after > 86400000))
      problems.push_back(mark_of(file_, n["retry_after_ms"].Mark()) + ": " + ctx +
                         ".retry_after_ms must be 0-86400000 (a day), got " +
                         std::to_string(t.retry_after_ms));
    if (auto rl = n["rate_limits"];
        rl && keys(rl, {"tool_calls", "per_tool"}, ctx + ".rate_limits")) {
      if (rl["tool_calls"]) t.tool_calls = rate(rl["tool_calls"], ctx + ".rate_limits.tool_calls");
      if (auto per = rl["per_tool"]) {
        if (!per.IsMap()) {
          problems.push_back(mark_of(file_, per.Mark()) + ": " + ctx +
                             ".rate_limits.per_tool maps tool names to {per_second, burst}");
        } else {
          for (const auto& tk : per)
            if (auto r = rate(tk.second, ctx + ".rate_limits.per_tool." + tk.first.Scalar())) {
              r->where = mark_of(file_, tk.first.Mark());
              t.per_tool[tk.first.Scalar()] = *r;
            }
        }
      }
    }
    return t;
  }

  std::string file_;
};

}  // namespace

Policy parse_policy(const PolicySource& src, std::vector<std::string>* problems) {
  YAML::Node root;
  try {
    root = YAML::Load(src.text);
  } catch (const YAML::Exception& e) {
    throw TemplateError({mark_of(src.name, e.mark) + ": not valid YAML: " + e.msg});
  }
  if (root.IsNull()) throw TemplateError({src.name + ": the policy file is empty"});
  PolicyParser parser(src.name);
  Policy p;
  p.source = src.name;
  try {
    p = parser.parse(root);
  } catch (const YAML::Exception& e) {  // a shape the parser did not foresee: said, not a crash
    parser.problems.push_back(mark_of(src.name, e.mark) + ": " + e.msg +
                              " (a value of another shape than the policy format's: missions.md)");
  }
  if (problems)
    problems->insert(problems->end(), parser.problems.begin(), parser.problems.end());
  else if (!parser.problems.empty())
    throw TemplateError(std::move(parser.problems));
  return p;
}

PolicyCheck check_policy(const Policy& p, const PolicyWorld& w) {
  PolicyCheck c;
  auto known = [](const std::vector<std::string>& names, const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  auto check_templates = [&](const std::vector<NameRef>& refs, const std::string& ctx) {
    for (const auto& r : refs)
      if (r.name != "*" && !known(w.templates, r.name))
        c.errors.push_back(r.where + ": " + ctx + " names unknown mission template '" + r.name +
                           "'" + did_you_mean(r.name, w.templates) +
                           " (templates: " + common::join(w.templates) + ")");
  };
  if (p.tenants.empty())
    c.warnings.push_back(p.source +
                         ": no tenants are listed, so every mission is blocked (UNKNOWN_TENANT)");
  for (const auto& [name, t] : p.tenants) {
    const std::string ctx = "tenants." + name;
    check_templates(t.missions, ctx + ".missions");
    check_templates(t.deny, ctx + ".deny");
    check_templates(t.review, ctx + ".review");
    for (const auto& d : t.deny)
      for (const auto& m : t.missions)
        if (d.name == m.name)
          c.errors.push_back(d.where + ": contradiction: " + ctx + " both allows and denies '" +
                             d.name + "' (allowed at " + m.where + ")");
    for (const auto& r : t.review) {
      if (r.name == "*") continue;
      if (!t.allows(r.name))
        c.errors.push_back(r.where + ": contradiction: " + ctx + ".review lists '" + r.name +
                           "', which the tenant may not start (not in missions, or denied)");
    }
    if (t.missions.empty() && !t.missions_malformed)  // (a malformed list is an error already)
      c.warnings.push_back(t.where + ": " + ctx + " may start no missions (missions is empty)");
    for (const auto& [tool, r] : t.per_tool) {
      if (!known(w.tools, tool))
        c.errors.push_back(r.where + ": " + ctx + ".rate_limits.per_tool names unknown tool '" +
                           tool + "'" + did_you_mean(tool, w.tools));
      if (t.tool_calls && r.per_second > t.tool_calls->per_second)
        c.warnings.push_back(r.where + ": " + ctx + ".rate_limits.per_tool." + tool +
                             " allows more calls per second than the tenant's tool_calls limit, "
                             "which caps it anyway");
    }
    if (w.template_set && !p.actuation_allowed) {
      for (const auto& [tname, tmpl] : w.template_set->all()) {
        if (!t.allows(tname)) continue;
        for (const auto& s : tmpl.steps)
          if (known(w.actuation_tools, s.tool))
            c.warnings.push_back(t.where + ": " + ctx + " may start '" + tname + "', whose step '" +
                                 s.id + "' actuates (" + s.tool +
                                 ") while actuation.allowed is false: those missions are blocked");
      }
    }
  }
  for (const auto& [tool, rule] : p.approvals) {
    if (!known(w.tools, tool)) {
      c.errors.push_back(rule.where + ": approvals.tools names unknown tool '" + tool + "'" +
                         did_you_mean(tool, w.tools));
      continue;
    }
    if (known(w.actuation_tools, tool) && p.actuation_requires_approval &&
        rule.approval != Approval::kRequired)
      c.errors.push_back(rule.where + ": contradiction: approvals.tools." + tool + " is '" +
                         std::string(to_string(rule.approval)) +
                         "', but the tool actuates and actuation.require_approval is true (" +
                         p.actuation_where + "); set it to required or remove the rule");
  }
  if (p.actuation_allowed && !p.actuation_requires_approval)
    c.warnings.push_back(p.actuation_where +
                         ": actuation is allowed without approval; every command still lands in "
                         "the ledger, but no person confirms it");
  for (const auto& [plugin, mode] : p.isolation_plugins) {
    if (!known(w.plugins, plugin)) {
      c.errors.push_back(mode.where + ": isolation.plugins names unknown plugin '" + plugin + "'" +
                         did_you_mean(plugin, w.plugins));
      continue;
    }
    if (mode.name == "in_process" && known(w.runtime_isolated_plugins, plugin))
      c.errors.push_back(mode.where + ": contradiction: the policy pins plugin '" + plugin +
                         "' in_process, but runtime.isolated_plugins isolates it; remove one");
  }
  return c;
}

}  // namespace kiln::missions
