// Policy-as-code: config/policy.yaml (embedded) or the file named by `policy.file`.
// Which mission templates each tenant may start, which need review, approval rules per tool,
// isolation defaults per plugin, rate limits, and whether actuation is allowed at all.
// `kiln policy validate` checks a policy against the loaded tools, plugins and templates;
// the governor and the executor enforce it. Format: docs/architecture/missions.md.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "missions/templates.hpp"

namespace kiln::missions {

// A token bucket: `per_second` tokens refill continuously up to `burst`.
struct RateLimit {
  double per_second = 0;
  double burst = 0;
  std::string where;
};

struct NameRef {
  std::string name;
  std::string where;  // file:line:column
};

struct TenantPolicy {
  std::string name;
  std::string where;
  std::vector<NameRef> missions;    // templates the tenant may start; "*" = all
  bool missions_malformed = false;  // `missions:` or an entry of it is no name (an error itself)
  std::vector<NameRef> deny;        // never, even when `missions` allows
  std::vector<NameRef> review;      // start QUARANTINED, held for an approver
  std::int64_t max_active = 0;      // > 0: more active missions → RETRY_LATER
  std::int64_t retry_after_ms = 5000;
  std::optional<RateLimit> tool_calls;        // all tool calls of the tenant
  std::map<std::string, RateLimit> per_tool;  // tool name → limit, per tenant

  bool allows(std::string_view template_name) const;
  bool reviews(std::string_view template_name) const;
};

struct ToolRule {
  std::string tool;
  std::string where;
  Approval approval = Approval::kNever;
};

struct Policy {
  std::string source;
  int version = 1;
  bool actuation_allowed = false;
  bool actuation_requires_approval = true;
  // An actuating step is approved by someone other than who started the mission (four eyes).
  bool actuation_distinct_approver = true;
  std::string actuation_where;
  std::string isolation_default = "in_process";      // in_process | isolated
  std::map<std::string, NameRef> isolation_plugins;  // plugin → in_process | isolated (name)
  std::map<std::string, TenantPolicy> tenants;       // "*" applies to tenants not listed
  std::map<std::string, ToolRule> approvals;         // tool → rule

  const TenantPolicy* tenant(std::string_view name) const;
  // The approval a step gets: the stricter of the template's and the policy's rules; actuation
  // tools always need approval when actuation.require_approval is set.
  Approval step_approval(const StepTemplate& step, bool actuates) const;
  // Is this plugin's code run in a kiln node-host child?
  bool isolated(std::string_view plugin, const std::vector<std::string>& runtime_isolated) const;
};

// The embedded config/policy.yaml, or the file at `path` when not empty.
struct PolicySource {
  std::string name;
  std::string text;
};
PolicySource policy_source(const std::string& path);

// Structure only (keys, types); throws TemplateError listing every problem with its position.
// With `problems` given, a file that parses as YAML is returned as far as it is right and its
// problems go there (so that check_policy can say the rest in the same run).
Policy parse_policy(const PolicySource& src, std::vector<std::string>* problems = nullptr);

struct PolicyWorld {
  std::vector<std::string> templates;
  std::vector<std::string> tools;
  std::vector<std::string> actuation_tools;
  std::vector<std::string> plugins;
  std::vector<std::string> runtime_isolated_plugins;  // runtime.isolated_plugins
  const TemplateSet* template_set = nullptr;
};

struct PolicyCheck {
  std::vector<std::string> errors;    // unknown names, contradictions: the policy is unusable
  std::vector<std::string> warnings;  // legal but probably not what was meant
};
// Checks names against what is loaded and looks for contradictory settings.
PolicyCheck check_policy(const Policy& p, const PolicyWorld& world);

}  // namespace kiln::missions
