#include "missions/service.hpp"

#include <algorithm>
#include <ctime>
#include <random>

#include "auth/keys.hpp"
#include "common/sha256.hpp"
#include "common/strings.hpp"
#include "runtime/json_schema.hpp"
#include "storage/sqlite.hpp"

namespace kiln::missions {
namespace json = boost::json;
using storage::Connection;
using Code = MissionError::Code;

std::optional<Role> parse_role(std::string_view s) {
  if (s == "recorder") return Role::kRecorder;
  if (s == "viewer") return Role::kViewer;
  if (s == "operator") return Role::kOperator;
  if (s == "approver") return Role::kApprover;
  if (s == "admin") return Role::kAdmin;
  return std::nullopt;
}

std::string_view to_string(Role r) {
  switch (r) {
    case Role::kRecorder:
      return "recorder";
    case Role::kViewer:
      return "viewer";
    case Role::kOperator:
      return "operator";
    case Role::kApprover:
      return "approver";
    case Role::kAdmin:
      return "admin";
  }
  return "viewer";
}

json::object Actor::to_json() const {
  return {{"name", name}, {"role", std::string(to_string(role))}};
}

bool is_terminal(std::string_view s) {
  return s == state::kDone || s == state::kFailed || s == state::kCanceled || s == state::kBlocked;
}

bool is_settled(std::string_view s) {
  return is_terminal(s) || s == state::kQuarantined;
}

std::string_view MissionError::code_name() const {
  switch (code_) {
    case Code::kNotFound:
      return "not_found";
    case Code::kForbidden:
      return "forbidden";
    case Code::kConflict:
      return "conflict";
    case Code::kInvalidState:
      return "invalid_state";
    case Code::kInvalidInput:
      return "invalid_input";
    case Code::kLeaseLost:
      return "lease_lost";
  }
  return "error";
}

bool ToolFacts::actuates(std::string_view tool) const {
  return std::find(actuation_tools.begin(), actuation_tools.end(), tool) != actuation_tools.end();
}

namespace {

std::string utc_in(std::chrono::milliseconds d) {
  return ledger::utc_millis(std::chrono::system_clock::now() + d);
}

// A ledger time (2026-12-04T18:30:00.000Z) as a time point; nullopt for anything else.
std::optional<std::chrono::system_clock::time_point> utc_time(const std::string& text) {
  std::tm tm{};
  int ms = 0, used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &used) != 7 ||
      static_cast<std::size_t>(used) != text.size())
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return std::chrono::system_clock::from_time_t(::timegm(&tm)) + std::chrono::milliseconds(ms);
}

// When a mission waiting for its tenant's capacity is asked about again: after the policy's
// retry_after_ms at first, then after half the time it has waited, up to five minutes — a mission
// that waits a night behind one held for an approver adds ≈ a hundred events to the ledger, not
// one every retry_after_ms. It does not wait that long once capacity frees: a mission of its
// tenant that ends wakes it (projection.cpp).
std::chrono::milliseconds capacity_recheck(const MissionView& m, std::int64_t retry_after_ms) {
  using namespace std::chrono;
  const milliseconds floor(retry_after_ms);
  const auto created = utc_time(m.created_at);
  if (!created) return floor;
  const auto waited = duration_cast<milliseconds>(system_clock::now() - *created);
  return std::max(floor, std::min<milliseconds>(waited / 2, minutes(5)));
}

std::string new_mission_id() {
  thread_local std::mt19937_64 rng{
      std::random_device{}() ^
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  char buf[20];
  std::snprintf(buf, sizeof buf, "m-%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

json::value parse_or_null(const std::string& s) {
  json::error_code ec;
  auto v = json::parse(s, ec);
  return ec ? json::value(nullptr) : v;
}

std::optional<std::string> opt_text(const storage::Statement& st, int col) {
  if (st.is_null(col)) return std::nullopt;
  return st.text(col);
}

json::value opt_json(const std::optional<std::string>& s) {
  return s ? json::value(*s) : json::value(nullptr);
}

void require_role(const Actor& actor, Role needed, const char* verb) {
  if (actor.role < needed)
    throw MissionError(Code::kForbidden,
                       std::string(verb) + " needs the " + std::string(to_string(needed)) +
                           " role; " + actor.name + " is " + std::string(to_string(actor.role)));
}

std::string stream_of(const std::string& id) {
  return "mission/" + id;
}

constexpr const char* kMissionColumns =
    "id, tenant, template, inputs, state, decision, reason, idempotency_key, created_by, "
    "created_at, updated_at, not_before, lease_owner, lease_until, claims, last_seq";

MissionView mission_row(const storage::Statement& st) {
  MissionView m;
  m.id = st.text(0);
  m.tenant = st.text(1);
  m.template_name = st.text(2);
  auto inputs = parse_or_null(st.text(3));
  if (inputs.is_object()) m.inputs = inputs.as_object();
  m.state = st.text(4);
  m.decision = st.text(5);
  m.reason = st.text(6);
  m.idempotency_key = opt_text(st, 7);
  m.created_by = st.text(8);
  m.created_at = st.text(9);
  m.updated_at = st.text(10);
  m.not_before = opt_text(st, 11);
  m.lease_owner = opt_text(st, 12);
  m.lease_until = opt_text(st, 13);
  m.claims = st.int64(14);
  m.last_seq = st.int64(15);
  return m;
}

void load_steps(Connection& c, MissionView& m) {
  auto st = c.prepare(
      "SELECT step, tool, approval, state, attempts, approved_by, output, error, started_at, "
      "finished_at FROM mission_steps WHERE mission_id = ? ORDER BY position");
  st.bind(1, m.id);
  while (st.step()) {
    StepView s;
    s.step = st.text(0);
    s.tool = st.text(1);
    s.approval = st.text(2);
    s.state = st.text(3);
    s.attempts = st.int64(4);
    s.approved_by = opt_text(st, 5);
    // An approver by API key as the key was named ("me-approver (key:k-…)"), not by its id alone.
    if (s.approved_by) s.approved_by = auth::actor_named(c, *s.approved_by);
    s.output = st.is_null(6) ? json::value(nullptr) : parse_or_null(st.text(6));
    s.error = st.is_null(7) ? json::value(nullptr) : parse_or_null(st.text(7));
    s.started_at = opt_text(st, 8);
    s.finished_at = opt_text(st, 9);
    m.steps.push_back(std::move(s));
  }
  auto files = c.prepare(
      "SELECT step, name, media_type, bytes, sha256, created_at FROM mission_artifacts "
      "WHERE mission_id = ? ORDER BY step, name");
  files.bind(1, m.id);
  while (files.step()) {
    ArtifactInfo a{files.text(0),  files.text(1), files.text(2),
                   files.int64(3), files.text(4), files.text(5)};
    for (auto& s : m.steps)
      if (s.step == a.step) s.artifacts.push_back(std::move(a));
  }
}

// Missions that count against max_active: admitted and not finished. Missions the governor
// deferred (RETRY_LATER, never claimed) are still waiting to be admitted and do not count.
std::int64_t active_missions(Connection& c, const std::string& tenant) {
  auto st = c.prepare(
      "SELECT count(*) FROM missions WHERE tenant = ? AND (state IN ('PENDING', 'RUNNING', "
      "'QUARANTINED') OR (state = 'RETRY' AND NOT (decision = 'RETRY_LATER' AND claims = 0)))");
  st.bind(1, tenant);
  st.step();
  return st.int64(0);
}

}  // namespace

std::optional<MissionView> load_mission(Connection& c, const std::string& id) {
  auto st = c.prepare(std::string("SELECT ") + kMissionColumns + " FROM missions WHERE id = ?");
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  MissionView m = mission_row(st);
  load_steps(c, m);
  return m;
}

json::object ArtifactInfo::to_json() const {
  return {{"name", name},
          {"media_type", media_type},
          {"bytes", bytes},
          {"sha256", sha256},
          {"created_at", created_at}};
}

json::object MissionView::to_json(bool outputs) const {
  json::array s;
  for (const auto& x : steps) {
    json::array files;
    for (const auto& a : x.artifacts) files.push_back(a.to_json());
    s.push_back(json::object{{"step", x.step},
                             {"tool", x.tool},
                             {"approval", x.approval},
                             {"state", x.state},
                             {"attempts", x.attempts},
                             {"approved_by", opt_json(x.approved_by)},
                             {"output", outputs ? x.output : json::value(nullptr)},
                             {"error", x.error},
                             {"started_at", opt_json(x.started_at)},
                             {"finished_at", opt_json(x.finished_at)},
                             {"artifacts", std::move(files)}});
  }
  return {{"id", id},
          {"tenant", tenant},
          {"template", template_name},
          {"inputs", inputs},
          {"state", state},
          {"decision", decision},
          {"reason", reason},
          {"idempotency_key", opt_json(idempotency_key)},
          {"created_by", created_by},
          {"created_at", created_at},
          {"updated_at", updated_at},
          {"not_before", opt_json(not_before)},
          {"lease_owner", opt_json(lease_owner)},
          {"lease_until", opt_json(lease_until)},
          {"claims", claims},
          {"last_seq", last_seq},
          {"steps", std::move(s)}};
}

MissionView MissionView::from_json(const json::value& v) {
  const auto* o = v.if_object();
  if (!o || !o->contains("id") || !o->contains("state") || !o->contains("steps"))
    throw std::invalid_argument("not a mission: " + json::serialize(v).substr(0, 200));
  auto str = [](const json::object& x, const char* k) {
    const auto* f = x.if_contains(k);
    return f && f->is_string() ? std::string(f->as_string()) : std::string();
  };
  auto opt = [](const json::object& x, const char* k) -> std::optional<std::string> {
    const auto* f = x.if_contains(k);
    if (f && f->is_string()) return std::string(f->as_string());
    return std::nullopt;
  };
  auto num = [](const json::object& x, const char* k) -> std::int64_t {
    const auto* f = x.if_contains(k);
    return f && f->is_number() ? f->to_number<std::int64_t>() : 0;
  };
  auto val = [](const json::object& x, const char* k) {
    const auto* f = x.if_contains(k);
    return f ? *f : json::value(nullptr);
  };
  MissionView m;
  m.id = str(*o, "id");
  m.tenant = str(*o, "tenant");
  m.template_name = str(*o, "template");
  if (const auto* in = o->if_contains("inputs"); in && in->is_object()) m.inputs = in->as_object();
  m.state = str(*o, "state");
  m.decision = str(*o, "decision");
  m.reason = str(*o, "reason");
  m.idempotency_key = opt(*o, "idempotency_key");
  m.created_by = str(*o, "created_by");
  m.created_at = str(*o, "created_at");
  m.updated_at = str(*o, "updated_at");
  m.not_before = opt(*o, "not_before");
  m.lease_owner = opt(*o, "lease_owner");
  m.lease_until = opt(*o, "lease_until");
  m.claims = num(*o, "claims");
  m.last_seq = num(*o, "last_seq");
  for (const auto& sv : o->at("steps").as_array()) {
    const auto& x = sv.as_object();
    StepView s;
    s.step = str(x, "step");
    s.tool = str(x, "tool");
    s.approval = str(x, "approval");
    s.state = str(x, "state");
    s.attempts = num(x, "attempts");
    s.approved_by = opt(x, "approved_by");
    s.output = val(x, "output");
    s.error = val(x, "error");
    s.started_at = opt(x, "started_at");
    s.finished_at = opt(x, "finished_at");
    if (const auto* files = x.if_contains("artifacts"); files && files->is_array())
      for (const auto& f : files->as_array())
        s.artifacts.push_back({s.step, str(f.as_object(), "name"), str(f.as_object(), "media_type"),
                               num(f.as_object(), "bytes"), str(f.as_object(), "sha256"),
                               str(f.as_object(), "created_at")});
    m.steps.push_back(std::move(s));
  }
  return m;
}

MissionService::MissionService(ledger::SqliteLedger& ledger, std::filesystem::path db_path,
                               const TemplateSet& templates, const Policy& policy, ToolFacts tools,
                               MissionOptions options)
    : ledger_(ledger),
      db_path_(std::move(db_path)),
      templates_(templates),
      policy_(policy),
      tools_(std::move(tools)),
      options_(options) {}

ledger::NewEvent MissionService::transition(const MissionView& m, const std::string& kind,
                                            const std::string& to, const std::string& reason,
                                            const json::object& actor, json::object extra) {
  extra["id"] = m.id;
  extra["from"] = m.state;
  extra["to"] = to;
  extra["reason"] = reason;
  extra["actor"] = actor;
  return ledger::NewEvent{m.tenant, stream_of(m.id), kind, std::move(extra)};
}

CreateResult MissionService::create(const CreateRequest& req) {
  require_role(req.actor, Role::kOperator, "starting a mission");
  const MissionTemplate* t = templates_.find(req.template_name);
  if (!t)
    throw MissionError(Code::kInvalidInput,
                       "unknown mission template '" + req.template_name + "'" +
                           common::did_you_mean(req.template_name, templates_.names()) +
                           " (templates: " + common::join(templates_.names()) + ")",
                       "template");
  json::object inputs;
  try {
    inputs = complete_inputs(*t, req.inputs);
  } catch (const InputError& e) {
    throw MissionError(Code::kInvalidInput, e.what(), e.field);
  }
  // A step whose input the mission's inputs alone decide is checked against its tool now: an
  // approver is not asked to approve "heater 12", which the tool would then refuse.
  for (const auto& s : t->steps) {
    if (s.tool_input_schema.is_null()) continue;
    const bool from_inputs = std::all_of(s.texts.begin(), s.texts.end(), [](const auto& x) {
      return x.text.find("${steps.") == std::string::npos &&
             x.text.find("${mission.") == std::string::npos;
    });
    if (!from_inputs) continue;
    RenderContext ctx;
    ctx.inputs = &inputs;
    json::value given;
    try {
      given = render(s.input, ctx);
    } catch (const std::exception&) {
      continue;  // said when the step runs, as before
    }
    if (auto why = runtime::validate_json(s.tool_input_schema, given, "input"))
      throw MissionError(Code::kInvalidInput,
                         "step '" + s.id + "' of " + t->name + " would give tool " + s.tool +
                             " an input it refuses: " + *why + " (from the mission's inputs)",
                         "inputs");
  }
  if (req.tenant.empty()) throw MissionError(Code::kInvalidInput, "tenant may not be empty");
  if (req.idempotency_key && (req.idempotency_key->empty() || req.idempotency_key->size() > 200))
    throw MissionError(Code::kInvalidInput, "idempotency key must be 1-200 characters");

  std::string id;
  bool existing = false;
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    existing = false;
    if (req.idempotency_key) {
      auto st = c.prepare(
          "SELECT id, template, inputs FROM missions WHERE tenant = ? AND idempotency_key = ?");
      st.bind(1, req.tenant).bind(2, *req.idempotency_key);
      if (st.step()) {
        if (st.text(1) != t->name || parse_or_null(st.text(2)) != json::value(inputs))
          throw MissionError(Code::kConflict,
                             "idempotency key '" + *req.idempotency_key +
                                 "' was already used for mission " + st.text(0) +
                                 " with a different template or inputs; use a new key");
        id = st.text(0);
        existing = true;
        return {};
      }
    }
    id = new_mission_id();
    // The governor.
    std::string decision = "ALLOW", to = state::kPending, reason = "ALLOWED";
    std::optional<std::string> not_before;
    const TenantPolicy* tp = policy_.tenant(req.tenant);
    bool actuates = std::any_of(t->steps.begin(), t->steps.end(),
                                [&](const StepTemplate& s) { return tools_.actuates(s.tool); });
    if (!tp) {
      decision = "BLOCK", to = state::kBlocked, reason = "UNKNOWN_TENANT";
    } else if (!tp->allows(t->name)) {
      decision = "BLOCK", to = state::kBlocked, reason = "TEMPLATE_NOT_ALLOWED";
    } else if (actuates && !policy_.actuation_allowed) {
      decision = "BLOCK", to = state::kBlocked, reason = "ACTUATION_DISABLED";
    } else {
      const std::int64_t active = tp->max_active > 0 ? active_missions(c, req.tenant) : 0;
      if (tp->max_active > 0 && active >= tp->max_active) {
        decision = "RETRY_LATER", to = state::kRetry, reason = "TENANT_AT_CAPACITY";
        not_before = utc_in(std::chrono::milliseconds(tp->retry_after_ms));
      } else if (tp->reviews(t->name)) {
        decision = "QUARANTINE", to = state::kQuarantined, reason = "REVIEW_REQUIRED";
      }
    }
    json::array steps;
    for (const auto& s : t->steps)
      steps.push_back(json::object{
          {"step", s.id},
          {"tool", s.tool},
          {"approval", std::string(to_string(policy_.step_approval(s, tools_.actuates(s.tool))))}});
    json::object payload{{"id", id},
                         {"template", t->name},
                         {"inputs", inputs},
                         {"state", to},
                         {"decision", decision},
                         {"reason", reason},
                         {"idempotency_key", opt_json(req.idempotency_key)},
                         {"actor", req.actor.to_json()},
                         {"not_before", opt_json(not_before)},
                         {"steps", std::move(steps)}};
    return {ledger::NewEvent{req.tenant, stream_of(id), "mission.created", std::move(payload)}};
  });
  auto m = get(req.tenant, id);
  if (!m) throw MissionError(Code::kNotFound, "mission " + id + " vanished after creation");
  return CreateResult{std::move(*m), !existing};
}

std::string MissionService::actor_named(const std::string& actor) const {
  return auth::actor_named(db_path_, actor);
}

std::optional<MissionView> MissionService::get(const std::optional<std::string>& tenant,
                                               const std::string& id) const {
  Connection c(db_path_, Connection::Mode::kReadOnly);
  auto m = load_mission(c, id);
  if (m && tenant && m->tenant != *tenant) return std::nullopt;
  return m;
}

bool MissionService::has_work() const {
  Connection c(db_path_, Connection::Mode::kReadOnly);
  auto st = c.prepare(
      "SELECT 1 FROM missions WHERE state IN ('PENDING', 'RUNNING') OR (state = 'RETRY' AND NOT "
      "(decision = 'RETRY_LATER' AND claims = 0 AND not_before > ?1)) LIMIT 1");
  st.bind(1, ledger::utc_now_millis());
  return st.step();
}

std::vector<MissionView> MissionService::list(const ListFilter& filter) const {
  ListFilter f = filter;
  // A state in any case (done, Done); one that is none is an error, not an empty list.
  if (f.state) {
    static const std::vector<std::string> states = {
        state::kPending, state::kRunning, state::kRetry,  state::kQuarantined,
        state::kBlocked, state::kDone,    state::kFailed, state::kCanceled};
    const std::string up = common::to_upper(*f.state);
    if (std::find(states.begin(), states.end(), up) == states.end())
      throw MissionError(Code::kInvalidInput,
                         "no mission state '" + *f.state + "': one of " + common::join(states) +
                             common::did_you_mean(up, states),
                         "state");
    f.state = up;
  }
  Connection c(db_path_, Connection::Mode::kReadOnly);
  // Keyset paging: the cursor is a mission; the page goes on from its place in the order.
  std::string after_time;
  if (f.starting_after) {
    auto at = c.prepare("SELECT created_at FROM missions WHERE id = ?1" +
                        std::string(f.tenant ? " AND tenant = ?2" : ""));
    at.bind(1, *f.starting_after);
    if (f.tenant) at.bind(2, *f.tenant);
    if (!at.step())
      throw MissionError(
          Code::kInvalidInput,
          (f.starting_after->empty()
               ? std::string("starting_after is empty: it takes")
               : "no mission '" + *f.starting_after + "' to start after: starting_after takes") +
              " the id of the last mission of the previous page",
          "starting_after");
    after_time = at.text(0);
  }
  std::string sql = std::string("SELECT ") + kMissionColumns + " FROM missions WHERE 1";
  if (f.tenant) sql += " AND tenant = ?1";
  if (f.state) sql += " AND state = ?2";
  if (f.template_name) sql += " AND template = ?3";
  if (f.starting_after) sql += " AND (created_at < ?5 OR (created_at = ?5 AND id > ?6))";
  sql += " ORDER BY created_at DESC, id LIMIT ?4";
  auto st = c.prepare(sql);
  if (f.tenant) st.bind(1, *f.tenant);
  if (f.state) st.bind(2, *f.state);
  if (f.template_name) st.bind(3, *f.template_name);
  st.bind(4, f.limit);
  if (f.starting_after) st.bind(5, after_time).bind(6, *f.starting_after);
  std::vector<MissionView> out;
  while (st.step()) out.push_back(mission_row(st));
  for (auto& m : out) load_steps(c, m);
  return out;
}

MissionView MissionService::act(const std::optional<std::string>& tenant, const std::string& id,
                                const Actor& actor, Role needed, const char* verb,
                                const std::function<ledger::NewEvent(const MissionView&)>& decide) {
  require_role(actor, needed, verb);
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    auto m = load_mission(c, id);
    if (!m || (tenant && m->tenant != *tenant))
      throw MissionError(Code::kNotFound,
                         "no mission " + id + (tenant ? " for tenant " + *tenant : "") +
                             " (GET /v1/missions or `kiln mission list` shows them)");
    return {decide(*m)};
  });
  return *get(tenant, id);
}

MissionView MissionService::approve(const std::optional<std::string>& tenant, const std::string& id,
                                    const Actor& actor, const std::string& note) {
  return act(tenant, id, actor, Role::kApprover, "approving a mission", [&](const MissionView& m) {
    if (m.state != state::kQuarantined)
      throw MissionError(Code::kInvalidState, "mission " + id + " is " + m.state +
                                                  "; only QUARANTINED missions wait for approval");
    json::object extra{{"note", note}};
    // The step held: the first one not done that failed or needs an approval it lacks. A review
    // at creation is its own gate: approving it does not approve a step as well.
    for (const auto& s : m.steps) {
      if (m.reason == "REVIEW_REQUIRED") break;
      if (s.state == "DONE") continue;
      if (s.state == "FAILED" || (s.approval == "required" && !s.approved_by)) {
        extra["step"] = s.step;
        // Four eyes on the physical world: who started it does not also approve it.
        if (policy_.actuation_distinct_approver && tools_.actuates(s.tool) &&
            actor.name == m.created_by)
          throw MissionError(
              Code::kForbidden,
              "mission " + id + " was started by " + m.created_by + " and its step '" + s.step +
                  "' actuates (" + s.tool +
                  "): another approver must approve it (policy actuation.distinct_approver; "
                  "locally `kiln mission approve --as NAME`)");
      }
      break;
    }
    return transition(m, "mission.approved", state::kPending, "APPROVED", actor.to_json(),
                      std::move(extra));
  });
}

MissionView MissionService::cancel(const std::optional<std::string>& tenant, const std::string& id,
                                   const Actor& actor, const std::string& note) {
  return act(tenant, id, actor, Role::kOperator, "canceling a mission", [&](const MissionView& m) {
    if (is_terminal(m.state))
      throw MissionError(Code::kInvalidState,
                         "mission " + id + " is already " + m.state + "; nothing to cancel");
    return transition(m, "mission.canceled", state::kCanceled, "CANCELED", actor.to_json(),
                      json::object{{"note", note}});
  });
}

MissionView MissionService::retry(const std::optional<std::string>& tenant, const std::string& id,
                                  const Actor& actor, const std::string& note) {
  return act(tenant, id, actor, Role::kOperator, "retrying a mission", [&](const MissionView& m) {
    if (m.state == state::kRetry)
      return transition(m, "mission.retried", state::kPending, "RETRY_NOW", actor.to_json(),
                        json::object{{"note", note}});
    // An approval was for the run that failed: a step that needs one (or an actuation) asks
    // again rather than running on it a second time.
    if (m.state == state::kFailed)
      return transition(m, "mission.retried", state::kPending, "RETRIED", actor.to_json(),
                        json::object{{"note", note}, {"approvals_reset", true}});
    throw MissionError(Code::kInvalidState, "mission " + id + " is " + m.state +
                                                "; only RETRY and FAILED missions can be retried");
  });
}

std::size_t MissionService::release_artifacts(const std::string& tenant, const std::string& id,
                                              const Actor& actor, const std::string& reason,
                                              std::int64_t* bytes) {
  require_role(actor, Role::kOperator, "releasing a mission's files");
  std::size_t released = 0;
  std::int64_t size = 0;
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    released = 0;
    size = 0;
    auto m = load_mission(c, id);
    if (!m || m->tenant != tenant)
      throw MissionError(Code::kNotFound, "no mission " + id + " for tenant " + tenant);
    if (!is_terminal(m->state))
      throw MissionError(Code::kInvalidState, "mission " + id + " is " + m->state +
                                                  "; only a finished mission's files are released");
    json::array files;
    for (const auto& step : m->steps)
      for (const auto& a : step.artifacts) {
        size += a.bytes;
        files.push_back(json::object{{"step", a.step},
                                     {"name", a.name},
                                     {"media_type", a.media_type},
                                     {"bytes", a.bytes},
                                     {"sha256", a.sha256}});
      }
    if (files.empty()) return {};
    released = files.size();
    // The projection removes the rows (missions::project), as a replay would.
    return {ledger::NewEvent{tenant, stream_of(id), "mission.artifacts_released",
                             json::object{{"id", id},
                                          {"files", std::move(files)},
                                          {"reason", reason},
                                          {"actor", actor.to_json()}}}};
  });
  if (bytes) *bytes = size;
  return released;
}

MissionService::Pruned MissionService::prune_files(const std::optional<std::string>& tenant,
                                                   const std::string& before, const Actor& actor,
                                                   const std::string& reason, bool dry_run,
                                                   const std::function<bool()>& stopping) {
  require_role(actor, Role::kOperator, "releasing missions' files");
  struct Held {
    std::string id, tenant;
    std::size_t files = 0;
    std::int64_t bytes = 0;
  };
  std::vector<Held> held;
  {
    Connection c(db_path_, Connection::Mode::kReadOnly);
    auto st = c.prepare(
        "SELECT m.id, m.tenant, COUNT(*), SUM(a.bytes) FROM mission_artifacts a "
        "JOIN missions m ON m.id = a.mission_id "
        "WHERE m.state IN ('DONE', 'CANCELED', 'BLOCKED') AND m.updated_at < ?1" +
        std::string(tenant ? " AND m.tenant = ?2" : "") +
        " GROUP BY m.id ORDER BY m.updated_at, m.id");
    st.bind(1, before);
    if (tenant) st.bind(2, *tenant);
    while (st.step())
      held.push_back({st.text(0), st.text(1), static_cast<std::size_t>(st.int64(2)), st.int64(3)});
  }
  Pruned out;
  for (const auto& h : held) {
    // Released one mission at a time: a retention pass over a year of files is not one
    // transaction holding the writer, and what was released stays released if it stops.
    if (stopping && stopping()) break;
    std::size_t n = h.files;
    std::int64_t bytes = h.bytes;
    if (!dry_run) try {
        n = release_artifacts(h.tenant, h.id, actor, reason, &bytes);
      } catch (const MissionError& e) {
        if (e.code() != Code::kInvalidState) throw;
        n = 0;  // no longer finished (cannot happen to these states today): its files kept
      }
    if (n == 0) continue;  // released since the listing
    ++out.missions;
    out.files += n;
    out.bytes += bytes;
  }
  return out;
}

std::optional<MissionService::Claim> MissionService::claim(
    const std::string& worker, const std::optional<std::string>& only_id) {
  std::optional<Claim> out;
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    out.reset();
    const std::string now = ledger::utc_now_millis();
    std::string sql =
        "SELECT id FROM missions WHERE (state = 'PENDING' OR (state = 'RETRY' AND not_before <= "
        "?1) OR (state = 'RUNNING' AND lease_until < ?1))";
    if (only_id) sql += " AND id = ?2";
    sql += " ORDER BY created_at, rowid LIMIT 1";  // rowid: creation order within a group
    auto st = c.prepare(sql);
    st.bind(1, now);
    if (only_id) st.bind(2, *only_id);
    if (!st.step()) return {};
    auto m = load_mission(c, st.text(0));
    // A mission the governor deferred (RETRY_LATER) has not passed it yet: ask again now — it
    // may still be over capacity, and it may need review.
    if (m->decision == "RETRY_LATER" && m->claims == 0 && m->state == state::kRetry) {
      const MissionTemplate* t = templates_.find(m->template_name);
      const TenantPolicy* tp = policy_.tenant(m->tenant);
      const json::object governor{{"name", "governor"}, {"role", "system"}};
      if (tp && t && tp->reviews(t->name))
        return {
            transition(*m, "mission.held", state::kQuarantined, "REVIEW_REQUIRED", governor, {})};
      if (tp && tp->max_active > 0 && active_missions(c, m->tenant) >= tp->max_active)
        return {transition(
            *m, "mission.retry_scheduled", state::kRetry, "TENANT_AT_CAPACITY", governor,
            json::object{{"not_before", utc_in(capacity_recheck(*m, tp->retry_after_ms))}})};
    }
    const bool reclaimed = m->state == state::kRunning;
    Claim cl{worker, *m, utc_in(options_.lease)};
    json::object extra{{"worker", worker}, {"lease_until", cl.lease_until}};
    if (reclaimed) extra["previous_owner"] = opt_json(m->lease_owner);
    auto e =
        transition(*m, "mission.claimed", state::kRunning, reclaimed ? "LEASE_EXPIRED" : "CLAIMED",
                   json::object{{"name", worker}, {"role", "worker"}}, std::move(extra));
    cl.mission.state = state::kRunning;
    cl.mission.lease_owner = worker;
    cl.mission.lease_until = cl.lease_until;
    out = std::move(cl);
    return {std::move(e)};
  });
  return out;
}

std::optional<StoredArtifact> MissionService::artifact(const std::optional<std::string>& tenant,
                                                       const std::string& mission,
                                                       const std::string& step,
                                                       const std::string& name) const {
  Connection c(db_path_, Connection::Mode::kReadOnly);
  auto st = c.prepare(
      "SELECT a.media_type, a.bytes, a.sha256, a.created_at, a.data FROM mission_artifacts a "
      "JOIN missions m ON m.id = a.mission_id "
      "WHERE a.mission_id = ?1 AND a.step = ?2 AND a.name = ?3 AND (?4 IS NULL OR m.tenant = ?4)");
  st.bind(1, mission).bind(2, step).bind(3, name);
  if (tenant)
    st.bind(4, *tenant);
  else
    st.bind_null(4);
  if (!st.step()) return std::nullopt;
  return StoredArtifact{{step, name, st.text(0), st.int64(1), st.text(2), st.text(3)}, st.blob(4)};
}

std::optional<std::string> MissionService::released(const std::optional<std::string>& tenant,
                                                    const std::string& mission,
                                                    const std::string& step,
                                                    const std::string& name,
                                                    std::string_view media) const {
  Connection c(db_path_, Connection::Mode::kReadOnly);
  auto st = c.prepare(
      "SELECT l.time, l.payload FROM missions m JOIN ledger l ON l.tenant = m.tenant AND "
      "l.stream = 'mission/' || m.id WHERE m.id = ?1 AND (?2 IS NULL OR m.tenant = ?2) AND "
      "l.kind = 'mission.artifacts_released' ORDER BY l.seq DESC");
  st.bind(1, mission);
  if (tenant)
    st.bind(2, *tenant);
  else
    st.bind_null(2);
  while (st.step()) {
    json::error_code ec;
    const auto p = json::parse(st.text(1), ec);
    if (ec || !p.is_object()) continue;
    const auto* files = p.as_object().if_contains("files");
    if (!files || !files->is_array()) continue;
    for (const auto& f : files->as_array()) {
      const auto* o = f.if_object();
      if (!o || !o->contains("step") || !o->contains("name")) continue;
      if (step.empty() && name.empty()) {
        const auto* type = o->if_contains("media_type");
        const std::string file(o->at("name").is_string() ? o->at("name").as_string() : "");
        if (type && type->is_string() ? !type->as_string().starts_with(media)
                                      : !(media == "audio/" && file.starts_with("speech.")))
          continue;
      } else if (o->at("step") != step.c_str() || o->at("name") != name.c_str()) {
        continue;
      }
      const auto* why = p.as_object().if_contains("reason");
      return "released at " + st.text(0) +
             (why && why->is_string() && !why->as_string().empty()
                  ? " (" + std::string(why->as_string()) + ")"
                  : std::string());
    }
  }
  return std::nullopt;
}

std::vector<ledger::Event> MissionService::record(const Claim& claim,
                                                  std::vector<ledger::NewEvent> events,
                                                  std::vector<StepFiles> artifacts) {
  return ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    auto st = c.prepare("SELECT state, lease_owner, lease_until FROM missions WHERE id = ?");
    st.bind(1, claim.mission.id);
    if (!st.step())
      throw MissionError(Code::kLeaseLost, "mission " + claim.mission.id + " does not exist");
    const std::string state = st.text(0);
    const std::string owner = st.is_null(1) ? "" : st.text(1);
    if (state != state::kRunning || owner != claim.worker)
      throw MissionError(Code::kLeaseLost,
                         "mission " + claim.mission.id + " is no longer held by " + claim.worker +
                             " (now " + state + (owner.empty() ? "" : ", held by " + owner) + ")");
    // An expired lease is lost even before another worker reclaims it: that worker may be
    // claiming it right now, and two workers must never both run the mission's next step.
    if (!st.is_null(2) && st.text(2) < ledger::utc_now_millis())
      throw MissionError(Code::kLeaseLost, "the lease of " + claim.worker + " on mission " +
                                               claim.mission.id + " expired at " + st.text(2));
    const std::string now = ledger::utc_now_millis();
    for (const auto& step : artifacts) {
      c.prepare("DELETE FROM mission_artifacts WHERE mission_id = ? AND step = ?")
          .bind(1, claim.mission.id)
          .bind(2, step.step)
          .step();
      auto ins = c.prepare(
          "INSERT OR REPLACE INTO mission_artifacts (mission_id, step, name, media_type, bytes, "
          "sha256, created_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
      for (std::size_t i = 0; i < step.files.size(); ++i) {
        const auto& f = step.files[i];
        ins.reset();
        ins.bind(1, claim.mission.id)
            .bind(2, step.step)
            .bind(3, f.name)
            .bind(4, f.media_type)
            .bind(5, static_cast<std::int64_t>(f.data.size()))
            .bind(6, i < step.sha256.size() ? step.sha256[i] : common::sha256_hex(f.data))
            .bind(7, now)
            .bind_blob(8, f.data)
            .step();
      }
    }
    return std::move(events);
  });
}

bool MissionService::heartbeat(Claim& claim) {
  const std::string until = utc_in(options_.lease);
  try {
    record(claim,
           {ledger::NewEvent{
               claim.mission.tenant, stream_of(claim.mission.id), "mission.heartbeat",
               json::object{
                   {"id", claim.mission.id}, {"worker", claim.worker}, {"lease_until", until}}}});
  } catch (const MissionError& e) {
    if (e.code() == Code::kLeaseLost) return false;
    throw;
  }
  claim.lease_until = until;
  return true;
}

}  // namespace kiln::missions
