#include "cli/mission_commands.hpp"

#include <pwd.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>
#include <boost/json.hpp>

#include "cli/files.hpp"
#include "cli/json_print.hpp"
#include "common/json_text.hpp"
#include "common/strings.hpp"
#include "missions/projection.hpp"
#include "missions/worker.hpp"

namespace kiln::cli {
namespace json = boost::json;
using missions::MissionError;
using runtime::BootError;
using runtime::Kernel;

const std::map<std::string, std::string>& mission_help() {
  static const std::map<std::string, std::string> help = {
      {"mission templates", R"(Usage: kiln mission templates [--json]

The mission templates loaded from missions.dirs (default: the embedded config/missions/), with
their inputs (and defaults) and steps (tool, needs, approval, retry, timeout).
)"},
      {"mission start",
       R"(Usage: kiln mission start TEMPLATE [--input JSON] [--param KEY=VALUE]... [--tenant T]
                          [--idempotency-key KEY] [--wait [--timeout SECONDS]] [--json]
                          [--as NAME] [--role ROLE]

Creates a mission. The governor decides at once, from the policy: ALLOW (PENDING), QUARANTINE
(held for an approver), BLOCK (refused, exit 1) or RETRY_LATER (the tenant is at capacity).
Inputs: a JSON object with --input, or one KEY=VALUE per --param (VALUE is read as JSON when it
parses, else as a string — and as written for an input the template declares a string, so
--param lot=42 is "42"); the template's defaults fill the rest; tenant default unless --tenant.
The same --idempotency-key returns the existing mission (created: false) instead of a new one.
--wait runs the mission in this process (or waits for the server's workers) until it is DONE,
FAILED, CANCELED or QUARANTINED; exit 1 unless it ends DONE or QUARANTINED.
Example: kiln mission start hello --param who=roaster --wait
)"},
      {"mission list",
       R"(Usage: kiln mission list [--tenant T] [--state STATE] [--template NAME] [--limit N]
                         [--starting-after ID] [--json]

Missions, newest first (default limit 100), each with its plain inputs (a roast report's
session=…). States: PENDING RUNNING RETRY QUARANTINED BLOCKED DONE FAILED CANCELED. With --json
each step's output is null: `kiln mission show ID` has it. After a full page a line says how to
ask for the next: --starting-after the last mission's id.
)"},
      {"mission show", R"(Usage: kiln mission show ID [--tenant T] [--json]

One mission: state, governor decision and reason, lease, every step (attempts, output, error),
and its history from the ledger (every transition with who and why).
)"},
      {"mission artifact", R"(Usage: kiln mission artifact ID STEP NAME [-o FILE] [--tenant T]

Writes a file a mission's step kept beside its output (kiln mission show lists them under the
step, e.g. speech.wav of a roast_report's step speak — the spoken summary) to FILE (default NAME
in the current directory). The step.completed ledger event holds its SHA-256.
)"},
      {"mission approve",
       R"(Usage: kiln mission approve ID [--reason TEXT] [--tenant T] [--as NAME] [--role ROLE]
                            [--wait [--timeout SECONDS]] [--json]

Approves a QUARANTINED mission (approver role): held for review at creation, a step with
approval: required, or a failed step with approval: on_failure (which then runs again).
The mission returns to PENDING. The local CLI acts as $USER with the admin role; --as and
--role set another identity (the HTTP API takes it from the API key).
)"},
      {"mission cancel",
       R"(Usage: kiln mission cancel ID [--reason TEXT] [--tenant T] [--as NAME] [--role ROLE]

Cancels a mission that is not finished (operator role). A step already running finishes, but
its result is not recorded against the canceled mission.
)"},
      {"mission retry",
       R"(Usage: kiln mission retry ID [--reason TEXT] [--tenant T] [--as NAME] [--role ROLE]
                          [--wait [--timeout SECONDS]] [--json]

RETRY → PENDING now (skips the back-off); FAILED → PENDING with its failed step reset
(operator role). --wait then runs it in this process (or waits for the server's workers) as
kiln mission start --wait does.
)"},
      {"mission prune",
       R"(Usage: kiln mission prune [--older-than AGE] [--tenant T] [--dry-run] [--reason TEXT]
                         [--as NAME] [--role ROLE] [--json]

Releases the files of missions that finished more than AGE ago (90d, 12h, 30m, up to 100
years; default missions.keep_files): a roast report's spoken summary (≈ 0.5 MB) and page
(≈ 30 KB) are most of what a roast adds to the database. Each mission's files go with a
mission.artifacts_released ledger event naming every file and its SHA-256, and --reason (default
"kiln mission prune: finished before TIME"); the mission, its steps' outputs and its history
stay, and a released file answers 404 saying when and why. Released are DONE, CANCELED and
BLOCKED missions; running, held and FAILED ones (a retry may run them on) keep theirs.
--dry-run counts what would go. A server with missions.keep_files does this by itself. SQLite
reuses the space for new data; the file does not shrink (a `kiln db backup` copy is compact).
)"},
      {"mission work", R"(Usage: kiln mission work [--workers N] [--until-idle]

Runs mission workers in this process (as `kiln serve` does with missions.workers) until SIGINT
or SIGTERM, or with --until-idle until no mission is PENDING, RUNNING or RETRY (a mission held
by a dead process is reclaimed once its lease lapses) — besides missions that wait for their
tenant's capacity (policy max_active) held by missions QUARANTINED for an approver or running
elsewhere, which it names and leaves waiting.
)"},
      {"ledger replay", R"(Usage: kiln ledger replay [--scratch FILE] [--json]

Rebuilds the tables that are projections of the ledger (missions and steps, API keys, device
keys, roast sessions, profiles and device profiles) from the ledger alone into a scratch database
(default: next to storage.path, named *.replay.db) and compares every column of every row with
the live tables. Exit 0 when they match (the default scratch file is then removed; one named
with --scratch is kept); 1 listing the differences, the scratch kept for inspection.
)"},
      {"keys create",
       R"(Usage: kiln keys create --tenant TENANT --role recorder|viewer|operator|approver|admin [--name N]

Creates an API key for the HTTP API and prints it ONCE; only its SHA-256 is stored. Every /v1
request sends it as 'Authorization: Bearer KEY' and acts in TENANT with ROLE. The creation is a
ledger event (key.created, stream keys).

Roles, each with what the ones below it may do: viewer reads; operator starts and cancels
missions, sends telemetry, manages devices and profiles; approver approves held missions; admin
reads the keys' ledger stream. A recorder key is a roaster's: it sends telemetry (POST
/v1/telemetry) and nothing else, so one taken from a roaster's controller cannot read, start or
revoke anything.
)"},
      {"keys list", R"(Usage: kiln keys list [--tenant T] [--json]

API keys: id, tenant, role, name, created, revoked. The keys themselves are never shown again.
)"},
      {"keys revoke", R"(Usage: kiln keys revoke KEY_ID

Revokes a key (ledger event key.revoked); a running server refuses it within a second.
)"},
      {"policy validate", R"(Usage: kiln policy validate [--file POLICY.yaml] [--json]

Checks a policy file (default: policy.file, else the embedded config/policy.yaml) against the
loaded tools, plugins and mission templates: structure, unknown names (with suggestions) and
contradictory settings. Exit 0 when valid (warnings are printed), 3 when not.
The format (tenants with missions, deny, review, max_active, retry_after_ms, rate_limits;
actuation; isolation; approvals), with an example: the embedded config/policy.yaml, and
docs/architecture/missions.md ("The governor ... and policy-as-code"). A running kiln serve keeps
the policy it started with: restart it after an edit.
)"},
  };
  return help;
}

namespace {

missions::Actor actor_of(const Args& a) {
  missions::Actor actor;
  if (a.actor) {
    // The ledger says who acted: not nobody, and not an API key (the server names a key's actor
    // "key:ID"; a local name shaped so would pass for it).
    if (a.actor->empty() || a.actor->find_first_not_of(" \t") == std::string::npos)
      throw std::invalid_argument("--as needs a name (the ledger records who acted)");
    if (a.actor->rfind("key:", 0) == 0)
      throw std::invalid_argument("--as '" + *a.actor +
                                  "': names starting with 'key:' are the API keys' (the HTTP "
                                  "API's actors); a local actor is a person's name");
    actor.name = *a.actor;
  } else {
    // The login name (local:$USER, else the account's), never a word that reads as a role.
    const char* user = std::getenv("USER");
    std::string name = user && *user ? user : "";
    if (name.empty())
      if (const passwd* pw = ::getpwuid(::geteuid()); pw && pw->pw_name) name = pw->pw_name;
    actor.name = "local:" + (name.empty() ? "uid-" + std::to_string(::geteuid()) : name);
  }
  actor.role = missions::Role::kAdmin;
  if (a.role) {
    auto r = missions::parse_role(*a.role);
    if (!r)
      throw std::invalid_argument("--role '" + *a.role +
                                  "' is not one of recorder, viewer, operator, approver, admin");
    actor.role = *r;
  }
  return actor;
}

std::chrono::milliseconds timeout_of(const Args& a, std::chrono::seconds dflt) {
  if (!a.timeout) return dflt;
  const double s = number_arg(a.timeout, "--timeout (seconds)", 0, 0.001, 864000);
  return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000));
}

// --wait: runs mission `id` in this process until it settles (DONE, FAILED, CANCELED, BLOCKED or
// QUARANTINED) or --timeout passes, saying on stderr what it waits for.
missions::MissionView wait_settled(Kernel& k, const std::string& id,
                                   std::chrono::milliseconds timeout) {
  return missions::run_until_settled(
      k.missions(), k.executor(), id, timeout, [&](const missions::MissionView& m) {
        if (m.state != missions::state::kRetry) return;
        if (m.reason == "TENANT_AT_CAPACITY")
          std::cerr << "mission " << id << " waits: tenant " << m.tenant
                    << " is at capacity (policy max_active); it runs when one of the tenant's "
                       "active missions ends — running ones end by themselves, QUARANTINED ones "
                       "wait for an approver (kiln mission list --tenant "
                    << m.tenant << "); waiting up to "
                    << std::chrono::duration_cast<std::chrono::seconds>(timeout).count()
                    << " s (--timeout)" << std::endl;
        else
          std::cerr << "mission " << id << ": RETRY (" << m.reason << "), next try at "
                    << m.not_before.value_or("once claimed") << std::endl;
      });
}

// After --wait: a mission that did not settle in time is said as it stands (exit 1).
std::optional<int> not_settled(const Args& a, const missions::MissionView& m, std::ostream& out) {
  if (!a.wait || missions::is_settled(m.state)) return std::nullopt;
  if (!a.json)
    out << "timed out waiting (--timeout): mission " << m.id << " stays " << m.state
        << (m.reason.empty() ? "" : " (" + m.reason + ")")
        << "; a kiln serve or kiln mission work on this database runs it on\n";
  return runtime::kExitFailed;
}

std::unique_ptr<Kernel> boot(const Args& a, bool resolve) {
  auto opts = boot_options(a, resolve);
  opts.open_storage = true;
  return Kernel::boot(opts);
}

std::string show_value(const json::value& v) {
  std::string s = v.is_string() ? std::string(v.as_string()) : common::json_text(v);
  return s.size() > 100 ? s.substr(0, 97) + "..." : s;
}

}  // namespace

void print_mission(const missions::MissionView& m, std::ostream& out) {
  out << "mission " << m.id << " (" << m.template_name << ", tenant " << m.tenant << ")\n";
  out << "  state:    " << m.state << " (" << m.reason << ")\n";
  out << "  governor: " << m.decision << "\n";
  out << "  created:  " << m.created_at << " by " << m.created_by << "\n";
  out << "  updated:  " << m.updated_at << "\n";
  if (m.idempotency_key) out << "  idempotency key: " << *m.idempotency_key << "\n";
  if (m.not_before) out << "  not before: " << *m.not_before << "\n";
  if (m.lease_owner)
    out << "  lease:    " << *m.lease_owner << " until " << m.lease_until.value_or("?") << "\n";
  out << "  inputs:   " << common::json_text(m.inputs) << "\n";
  out << "  steps:\n";
  for (const auto& s : m.steps) {
    out << "    " << std::left << std::setw(12) << s.step << " " << std::setw(12) << s.tool << " "
        << std::setw(8) << s.state << " attempts " << s.attempts;
    if (s.approval != "never") out << ", approval " << s.approval;
    if (s.approved_by) out << " (approved by " << *s.approved_by << ")";
    out << "\n";
    if (!s.output.is_null()) out << "      output: " << show_value(s.output) << "\n";
    if (!s.error.is_null()) out << "      error:  " << show_value(s.error) << "\n";
    for (const auto& f : s.artifacts)
      out << "      file:   " << f.name << " (" << f.media_type << ", " << f.bytes
          << " bytes): kiln mission artifact " << m.id << " " << s.step << " " << f.name
          << " -o FILE\n";
  }
}

static std::string next_hint(const missions::MissionView& m) {
  if (m.state == missions::state::kQuarantined)
    return "waiting for an approver: kiln mission approve " + m.id;
  if (m.state == missions::state::kPending)
    return "queued: `kiln serve` or `kiln mission work` runs it (or start it with --wait)";
  if (m.state == missions::state::kRetry && m.reason == "TENANT_AT_CAPACITY")
    return "waits for tenant " + m.tenant +
           "'s capacity (policy max_active): it is admitted when one of the tenant's active "
           "missions ends (kiln mission list --tenant " +
           m.tenant + ")";
  if (m.state == missions::state::kRetry)
    return "will retry after " + m.not_before.value_or("?") + " (kiln mission retry " + m.id +
           " retries now)";
  if (m.state == missions::state::kFailed) return "kiln mission retry " + m.id + " runs it again";
  // A refusal says which part of the policy (policy.file, `kiln policy validate`) refused it.
  if (m.reason == "UNKNOWN_TENANT")
    return "the policy has no rule for tenant '" + m.tenant + "' (and no \"*\")" +
           (m.tenant == "default" ? " — missions started without --tenant are tenant 'default'"
                                  : std::string()) +
           ": add the tenant under 'tenants' in the policy file, or pass --tenant";
  if (m.reason == "TEMPLATE_NOT_ALLOWED")
    return "tenant '" + m.tenant + "' may not start '" + m.template_name +
           "': the policy's tenants." + m.tenant + ".missions (or deny) says so";
  if (m.reason == "ACTUATION_DISABLED")
    return "a step of '" + m.template_name +
           "' moves the roaster and the policy's actuation.allowed is false";
  return "";
}

int report_mission(const Args& a, std::ostream& out, const missions::MissionView& m,
                   const std::string& headline, json::object extra) {
  if (a.json) {
    extra["mission"] = m.to_json();
    out << pretty(extra);
  } else {
    out << headline << "\n";
    print_mission(m, out);
    if (auto hint = next_hint(m); !hint.empty()) out << "  next:     " << hint << "\n";
  }
  return m.state == missions::state::kBlocked || m.state == missions::state::kFailed ||
                 m.state == missions::state::kCanceled
             ? runtime::kExitFailed
             : runtime::kExitOk;
}

void print_mission_history(const json::array& history, std::ostream& out) {
  out << "  history (ledger):\n";
  for (const auto& h : history) {
    const auto& e = h.as_object();
    const auto& p = e.at("payload").as_object();
    if (e.at("kind").as_string() == "mission.heartbeat") continue;
    out << "    #" << e.at("seq").as_int64() << " " << e.at("time").as_string().c_str() << " "
        << e.at("kind").as_string().c_str();
    if (auto* to = p.if_contains("to")) out << " → " << to->as_string().c_str();
    if (auto* r = p.if_contains("reason")) out << " (" << r->as_string().c_str() << ")";
    if (auto* s = p.if_contains("step")) out << " step " << s->as_string().c_str();
    if (auto* ac = p.if_contains("actor"))
      out << " by " << ac->as_object().at("name").as_string().c_str();
    if (auto* note = p.if_contains("note"); note && !note->as_string().empty())
      out << ": " << note->as_string().c_str();
    out << "\n";
  }
}

namespace {

std::string id_arg(const Args& a, const char* cmd) {
  if (a.positional.size() < 3)
    throw std::invalid_argument(std::string("kiln mission ") + cmd + " needs a mission ID");
  return a.positional[2];
}

}  // namespace

// --input and --param as the mission's inputs. A --param VALUE is read as JSON when it parses
// (42, true, [1,2]) — unless `schema` (the template's inputs) says the input is a string: then
// `--param lot=42` is the string "42", as meant.
json::object parse_inputs(const Args& a, const json::object* schema) {
  json::object inputs;
  if (a.input) {
    json::error_code ec;
    auto v = json::parse(*a.input, ec);
    if (ec || !v.is_object())
      throw std::invalid_argument("--input must be a JSON object, e.g. '{\"who\": \"x\"}'");
    inputs = v.as_object();
  }
  for (const auto& p : a.params) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      throw std::invalid_argument("--param takes KEY=VALUE, got '" + p + "'");
    std::string key = p.substr(0, eq), raw = p.substr(eq + 1);
    const json::value* type = nullptr;
    if (schema)
      if (const auto* props = schema->if_contains("properties"); props && props->is_object())
        if (const auto* prop = props->as_object().if_contains(key); prop && prop->is_object())
          type = prop->as_object().if_contains("type");
    json::error_code ec;
    auto v = json::parse(raw, ec);
    // A string input (type string, or string or null): the text as written — unless written
    // as a JSON string ('lot="42"', the way to say it before the template was asked).
    bool text = type && *type == "string", nullable = false;
    if (type && type->is_array()) {
      text = false;
      for (const auto& t : type->as_array()) {
        if (t == "string") text = true;
        if (t == "null") nullable = true;
        if (t != "string" && t != "null") {
          text = false;
          break;
        }
      }
    }
    if (text && !(!ec && (v.is_string() || (nullable && v.is_null())))) {
      inputs[key] = raw;
      continue;
    }
    inputs[key] = ec ? json::value(raw) : v;
  }
  return inputs;
}

int cmd_mission_templates(const Args& a, std::ostream& out) {
  auto k = Kernel::boot(boot_options(a, false));
  const auto arr = k->describe_templates();
  if (a.json)
    out << pretty(arr);
  else
    print_templates(arr, out);
  return runtime::kExitOk;
}

void print_templates(const json::array& arr, std::ostream& out) {
  for (const auto& v : arr) {
    const auto& o = v.as_object();
    out << o.at("name").as_string().c_str() << " — " << o.at("description").as_string().c_str()
        << "\n  inputs: " << common::json_text(o.at("inputs")) << "\n  steps:\n";
    // One a line, in the order they run: the tool, and what is not the default — needs,
    // approval, attempts, timeout.
    std::size_t id_width = 0, tool_width = 0;
    for (const auto& s : o.at("steps").as_array()) {
      id_width = std::max(id_width, s.at("id").as_string().size());
      tool_width = std::max(tool_width, s.at("tool").as_string().size());
    }
    for (const auto& s : o.at("steps").as_array()) {
      std::vector<std::string> notes;
      std::vector<std::string> needs;
      for (const auto& n : s.at("needs").as_array()) needs.emplace_back(n.as_string());
      if (!needs.empty()) notes.push_back("after " + common::join(needs));
      if (s.at("approval").as_string() != "never")
        notes.push_back("approval " + std::string(s.at("approval").as_string()));
      if (const auto* n = s.as_object().if_contains("max_attempts");
          n && n->is_int64() && n->as_int64() > 1)
        notes.push_back("up to " + std::to_string(n->as_int64()) + " attempts");
      if (const auto* t = s.as_object().if_contains("timeout_ms"); t && t->is_int64())
        notes.push_back("timeout " + std::to_string(t->as_int64()) + " ms");
      out << "    " << std::left << std::setw(static_cast<int>(id_width + 2))
          << s.at("id").as_string().c_str();
      if (notes.empty())
        out << s.at("tool").as_string().c_str() << "\n";
      else
        out << std::setw(static_cast<int>(tool_width + 2)) << s.at("tool").as_string().c_str()
            << common::join(notes, "; ") << "\n";
    }
    out << std::right;
  }
}

int cmd_mission_start(const Args& a, std::ostream& out) {
  if (a.positional.size() < 3)
    throw std::invalid_argument("kiln mission start needs a TEMPLATE (kiln mission templates)");
  const auto timeout = timeout_of(a, std::chrono::hours(1));  // said before the mission starts
  missions::CreateRequest req;
  req.template_name = a.positional[2];
  req.tenant = a.tenant;
  req.idempotency_key = a.idempotency_key;
  req.actor = actor_of(a);
  auto k = boot(a, a.wait);
  const auto* t = k->templates().find(req.template_name);
  req.inputs = parse_inputs(a, t ? &t->input_schema : nullptr);
  auto& svc = k->missions();
  auto r = svc.create(req);
  std::string headline = r.created ? "created mission " + r.mission.id + ": " + r.mission.state
                                   : "mission " + r.mission.id + " already exists for key '" +
                                         *req.idempotency_key + "' (created: false)";
  missions::MissionView m = r.mission;
  if (a.wait && !missions::is_settled(m.state)) {
    m = wait_settled(*k, m.id, timeout);
    headline += " → " + m.state;
  }
  int rc = report_mission(a, out, m, headline, json::object{{"created", r.created}});
  return not_settled(a, m, out).value_or(rc);
}

int cmd_mission_list(const Args& a, std::ostream& out) {
  missions::ListFilter f;
  f.tenant = a.tenant_filter;
  f.state = a.state;
  f.template_name = a.template_name;
  f.starting_after = a.starting_after;
  const auto limit =
      static_cast<std::int64_t>(number_arg(a.limit, "--limit", 100, 1, 100000, true));
  f.limit = limit + 1;  // one more tells whether there is a next page
  auto k = boot_reading(a);
  auto found = k->missions().list(f);
  const bool more = static_cast<std::int64_t>(found.size()) > limit;
  if (more) found.pop_back();
  json::array arr;
  // As GET /v1/missions lists them: without the steps' outputs (kiln mission show has them).
  for (const auto& m : found) arr.push_back(m.to_json(false));
  if (a.json) {
    out << pretty(arr);
  } else {
    print_missions(arr, out);
    if (more) print_next_page(arr, out);
  }
  return runtime::kExitOk;
}

void print_missions(const json::array& missions, std::ostream& out) {
  if (missions.empty()) {
    out << "no missions (kiln mission start TEMPLATE creates one)\n";
    return;
  }
  // What a mission is for, from its plain inputs ("session=ses_…"): the objects (targets,
  // marks) are in `kiln mission show`.
  auto inputs_of = [](const json::object& m) {
    std::string out;
    const auto* in = m.if_contains("inputs");
    if (!in || !in->is_object()) return out;
    for (const auto& [key, value] : in->as_object()) {
      std::string v;
      if (value.is_string())
        v = value.as_string();
      else if (value.is_number() || value.is_bool())
        v = json::serialize(value);
      if (v.empty()) continue;
      out += (out.empty() ? "" : " ") + std::string(key) + "=" + v;
    }
    return out.size() > 48 ? out.substr(0, 45) + "..." : out;
  };
  std::vector<std::vector<std::string>> rows{
      {"ID", "TENANT", "TEMPLATE", "INPUTS", "STATE", "REASON", "UPDATED"}};
  for (const auto& v : missions) {
    const auto& m = v.as_object();
    rows.push_back({string_at(m, "id"), string_at(m, "tenant"), string_at(m, "template"),
                    inputs_of(m), string_at(m, "state"), string_at(m, "reason"),
                    string_at(m, "updated_at")});
  }
  print_table(rows, out);
}

int cmd_mission_show(const Args& a, std::ostream& out) {
  const std::string id = id_arg(a, "show");
  auto k = boot_reading(a);
  auto m = k->missions().get(a.tenant_filter, id);
  if (!m)
    throw MissionError(MissionError::Code::kNotFound,
                       "no mission " + id + " (kiln mission list shows them)");
  ledger::ExportFilter f;
  f.tenant = m->tenant;
  f.stream = "mission/" + id;
  json::array history;
  k->ledger().for_each(f, [&](const ledger::Event& e) {
    if (e.kind == "mission.heartbeat") return;
    history.push_back(e.to_json());
  });
  if (a.json) {
    auto o = m->to_json();
    o["history"] = std::move(history);
    out << pretty(o);
    return runtime::kExitOk;
  }
  print_mission(*m, out);
  print_mission_history(history, out);
  if (auto hint = next_hint(*m); !hint.empty()) out << "  next: " << hint << "\n";
  return runtime::kExitOk;
}

int cmd_mission_artifact(const Args& a, std::ostream& out) {
  if (a.positional.size() < 5)
    throw std::invalid_argument(
        "kiln mission artifact needs ID STEP NAME (kiln mission show ID lists each step's files)");
  const std::string &id = a.positional[2], &step = a.positional[3], &name = a.positional[4];
  auto k = boot_reading(a);
  auto f = k->missions().artifact(a.tenant_filter, id, step, name);
  if (!f) {
    if (auto gone = k->missions().released(a.tenant_filter, id, step, name))
      throw MissionError(MissionError::Code::kNotFound,
                         "mission " + id + "'s file '" + name + "' from step '" + step + "' was " +
                             *gone + "; the ledger keeps its SHA-256");
    throw MissionError(MissionError::Code::kNotFound,
                       "mission " + id + " has no file '" + name + "' from step '" + step +
                           "' (kiln mission show " + id + " lists each step's files)");
  }
  const std::string file = a.out_file.value_or(name);
  write_output_file(file, f->data);
  out << "wrote " << file << " (" << f->data.size() << " bytes of " << f->info.media_type
      << ", sha256 " << f->info.sha256 << ")\n";
  return runtime::kExitOk;
}

int cmd_mission_approve(const Args& a, std::ostream& out) {
  const std::string id = id_arg(a, "approve");
  const auto timeout = timeout_of(a, std::chrono::hours(1));
  auto k = boot(a, a.wait);
  auto m = k->missions().approve(a.tenant_filter, id, actor_of(a), a.reason.value_or(""));
  if (a.wait) m = wait_settled(*k, id, timeout);
  const int rc = report_mission(a, out, m, "approved mission " + id + ": " + m.state);
  return not_settled(a, m, out).value_or(rc);
}

int cmd_mission_cancel(const Args& a, std::ostream& out) {
  const std::string id = id_arg(a, "cancel");
  auto k = boot(a, false);
  auto m = k->missions().cancel(a.tenant_filter, id, actor_of(a), a.reason.value_or(""));
  report_mission(a, out, m, "canceled mission " + id);
  return runtime::kExitOk;
}

int cmd_mission_retry(const Args& a, std::ostream& out) {
  const std::string id = id_arg(a, "retry");
  const auto timeout = timeout_of(a, std::chrono::hours(1));
  auto k = boot(a, a.wait);
  auto m = k->missions().retry(a.tenant_filter, id, actor_of(a), a.reason.value_or(""));
  if (a.wait) m = wait_settled(*k, id, timeout);
  const int rc = report_mission(a, out, m, "retrying mission " + id + ": " + m.state);
  return not_settled(a, m, out).value_or(rc);
}

int cmd_mission_prune(const Args& a, std::ostream& out) {
  if (a.tenant_filter && a.tenant_filter->empty())
    throw std::invalid_argument("--tenant is empty: name a tenant, or leave it out for every one");
  const auto keep = a.older_than ? common::parse_age(*a.older_than) : std::nullopt;
  if (a.older_than && !keep)
    throw std::invalid_argument("--older-than '" + *a.older_than +
                                "' is not an age: " + std::string(common::kAgeForm));
  auto k = boot_reading(a);
  const std::string configured = k->config().get_string("missions.keep_files");
  if (!keep && configured.empty())
    throw std::invalid_argument(
        "say how old: --older-than AGE (e.g. 90d), or set missions.keep_files in the config");
  const auto age = keep ? *keep : *common::parse_age(configured);  // the config checked it
  const std::string before = ledger::utc_millis(std::chrono::system_clock::now() - age);
  const auto pruned = k->missions().prune_files(
      a.tenant_filter, before, actor_of(a),
      a.reason.value_or("kiln mission prune: finished before " + before), a.dry_run);
  if (a.json) {
    out << pretty(json::object{{"before", before},
                               {"dry_run", a.dry_run},
                               {"missions", static_cast<std::int64_t>(pruned.missions)},
                               {"files", static_cast<std::int64_t>(pruned.files)},
                               {"bytes", pruned.bytes}});
    return runtime::kExitOk;
  }
  out << (a.dry_run ? "would release " : "released ") << pruned.files << " file(s), "
      << pruned.bytes << " bytes, of " << pruned.missions << " mission(s) finished before "
      << before << (a.tenant_filter ? " in tenant " + *a.tenant_filter : std::string()) << "\n";
  if (a.dry_run && pruned.files > 0) out << "(nothing released: run again without --dry-run)\n";
  return runtime::kExitOk;
}

int cmd_mission_work(const Args& a, std::ostream& out) {
  // Said before the database is opened.
  int workers =
      a.workers ? static_cast<int>(number_arg(a.workers, "--workers", 1, 1, 256, true)) : 0;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto k = boot(a, true);
  k->require_writable_storage();
  if (!a.workers) workers = static_cast<int>(k->config().get_int("missions.workers"));
  auto& svc = k->missions();
  missions::WorkerPool pool(svc, k->executor(), workers,
                            std::chrono::milliseconds(k->config().get_int("missions.poll_ms")));
  spdlog::info("{} mission worker(s) running", workers);
  if (a.until_idle) {
    // Idle: nothing runnable now or soon, and nothing running in this process.
    bool idle = false;
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      timespec zero{0, 0};
      if (sigtimedwait(&set, nullptr, &zero) > 0) break;
      if (!svc.has_work()) {
        idle = true;
        break;
      }
    }
    // What is left waits for capacity, held by missions that wait for an approver or run
    // elsewhere: named, not left to be found.
    missions::ListFilter retrying;
    retrying.state = "RETRY";
    retrying.limit = 1000;
    std::vector<std::string> waiting;
    if (idle)
      for (const auto& m : svc.list(retrying))
        if (m.reason == "TENANT_AT_CAPACITY")
          waiting.push_back(m.id + " (tenant " + m.tenant + ")");
    if (!waiting.empty())
      out << waiting.size() << " mission(s) wait for their tenant's capacity (policy max_active): "
          << common::join(waiting) << "; their tenants' active missions hold it — QUARANTINED ones "
          << "wait for an approver (kiln mission list --state QUARANTINED)\n";
  } else {
    int sig = 0;
    sigwait(&set, &sig);
    spdlog::info("received {}, finishing current steps", sig == SIGINT ? "SIGINT" : "SIGTERM");
  }
  pool.stop();
  out << "missions run: " << pool.missions_run() << "\n";
  return runtime::kExitOk;
}

int cmd_ledger_replay(const Args& a, std::ostream& out) {
  auto k = boot(a, false);
  auto scratch = a.scratch ? std::filesystem::path(*a.scratch)
                           : std::filesystem::path(k->storage_path().string() + ".replay.db");
  k->ledger().flush();
  auto r = missions::replay(k->storage_path(), scratch);
  // A match leaves nothing to inspect: the default scratch copy goes; a named one stays.
  const bool removed = r.ok() && !a.scratch;
  if (removed)
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::error_code ec;
      std::filesystem::remove(scratch.string() + suffix, ec);
    }
  if (a.json) {
    json::array diffs;
    for (const auto& d : r.differences) diffs.push_back(json::value(d));
    out << pretty(
        json::object{{"ok", r.ok()},
                     {"events", r.events},
                     {"mission_events", r.mission_events},
                     {"missions", r.missions},
                     {"scratch", removed ? json::value(nullptr) : json::value(r.scratch.string())},
                     {"differences", diffs}});
  } else if (r.ok()) {
    out << "replay matches: " << r.missions << " missions (and keys, devices, sessions, profiles) "
        << "rebuilt from " << r.mission_events << " of " << r.events << " ledger events";
    if (a.scratch) out << " (scratch: " << r.scratch.string() << ")";
    out << "\n";
  } else {
    out << "replay DIFFERS from the live tables (" << r.differences.size()
        << " difference(s)), scratch kept at " << r.scratch.string() << ":\n";
    for (const auto& d : r.differences) out << "  " << d << "\n";
  }
  return r.ok() ? runtime::kExitOk : runtime::kExitFailed;
}

int cmd_policy_validate(const Args& a, std::ostream& out) {
  auto args = a;
  if (a.file) {
    args.sets.push_back("policy.file=" + *a.file);
    args.set_origins[args.sets.back()] = "--file " + *a.file;
  }
  std::unique_ptr<Kernel> k;
  try {
    k = Kernel::boot(boot_options(args, false));
  } catch (const BootError& e) {
    // Its problems and warnings, one a line, without the boot's hint to run this very command.
    std::vector<std::string> problems;
    json::array errors, warnings;
    std::stringstream ss(e.what());
    for (std::string line; std::getline(ss, line);) {
      if (line.empty() || line == "(`kiln policy validate` checks the policy file)") continue;
      problems.push_back(line);
      if (line.rfind("warning: ", 0) == 0)
        warnings.push_back(json::value(line.substr(9)));
      else
        errors.push_back(json::value(line));
    }
    if (a.json) {
      out << pretty(json::object{{"ok", false}, {"errors", errors}, {"warnings", warnings}});
      return e.exit_code();
    }
    throw BootError(e.exit_code(), common::join(problems, "\n"));
  }
  const auto& c = k->policy_check();
  if (a.json) {
    json::array warnings;
    for (const auto& w : c.warnings) warnings.push_back(json::value(w));
    out << pretty(json::object{{"ok", true},
                               {"source", k->policy().source},
                               {"errors", json::array{}},
                               {"warnings", warnings}});
  } else {
    for (const auto& w : c.warnings) out << "warning: " << w << "\n";
    out << "policy " << k->policy().source << " is valid (" << k->policy().tenants.size()
        << " tenant rule(s), " << k->templates().names().size() << " template(s), "
        << c.warnings.size() << " warning(s))\n";
  }
  return runtime::kExitOk;
}

namespace {

json::object key_json(const auth::KeyInfo& k) {
  return {{"id", k.id},
          {"tenant", k.tenant},
          {"role", std::string(missions::to_string(k.role))},
          {"name", k.name},
          {"created_at", k.created_at},
          {"created_by", k.created_by},
          {"revoked_at", k.revoked_at ? json::value(*k.revoked_at) : json::value(nullptr)}};
}

}  // namespace

int cmd_keys_create(const Args& a, std::ostream& out) {
  if (!a.tenant_filter) throw std::invalid_argument("keys create needs --tenant TENANT");
  if (!a.role)
    throw std::invalid_argument("keys create needs --role recorder|viewer|operator|approver|admin");
  auto role = missions::parse_role(*a.role);
  if (!role)
    throw std::invalid_argument("--role '" + *a.role +
                                "' is not one of recorder, viewer, operator, approver, admin");
  auto k = boot(a, false);
  missions::Actor by = actor_of(Args{});
  auto key = k->keys().create(*a.tenant_filter, *role, a.name.value_or(""), by);
  // A key for a tenant the policy does not know (a typo?) can read, but every mission it starts
  // is BLOCKED: said now, not at the first mission.
  if (*role >= missions::Role::kOperator && !k->policy().tenant(*a.tenant_filter))
    spdlog::warn(
        "the policy ({}) has no rule for tenant '{}' (and no \"*\"): every mission this key "
        "starts is BLOCKED (UNKNOWN_TENANT) until the policy lists the tenant",
        k->config().get_string("policy.file").empty() ? std::string("the embedded policy")
                                                      : k->config().get_string("policy.file"),
        *a.tenant_filter);
  if (a.json) {
    auto o = key_json(key.info);
    o["key"] = key.secret;
    out << pretty(o);
  } else {
    out << key.secret << "\n";
    out << "(key " << key.info.id << " for tenant " << key.info.tenant << ", role "
        << missions::to_string(key.info.role)
        << "; shown only now — store it, send it as 'Authorization: Bearer KEY')\n";
  }
  return runtime::kExitOk;
}

int cmd_keys_list(const Args& a, std::ostream& out) {
  auto k = boot_reading(a);
  auto keys = k->keys().list(a.tenant_filter);
  if (a.json) {
    json::array arr;
    for (const auto& key : keys) arr.push_back(key_json(key));
    out << pretty(arr);
    return runtime::kExitOk;
  }
  if (keys.empty()) {
    out << "no API keys (kiln keys create --tenant T --role R)\n";
    return runtime::kExitOk;
  }
  std::vector<std::vector<std::string>> rows{
      {"ID", "TENANT", "ROLE", "NAME", "CREATED", "REVOKED"}};
  for (const auto& key : keys)
    rows.push_back({key.id, key.tenant, std::string(missions::to_string(key.role)), key.name,
                    key.created_at, key.revoked_at.value_or("")});
  print_table(rows, out);
  return runtime::kExitOk;
}

int cmd_keys_revoke(const Args& a, std::ostream& out) {
  if (a.positional.size() < 3) throw std::invalid_argument("keys revoke needs a KEY_ID");
  auto k = boot(a, false);
  auto key = k->keys().revoke(a.positional[2], actor_of(Args{}));
  out << "revoked " << key.id << " (tenant " << key.tenant << ")\n";
  return runtime::kExitOk;
}

}  // namespace kiln::cli
