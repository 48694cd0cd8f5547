#include "missions/projection.hpp"

#include <iterator>
#include <map>

#include <boost/json.hpp>

#include "auth/keys.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"
#include "telemetry/devices.hpp"
#include "telemetry/profiles.hpp"
#include "telemetry/sessions.hpp"

namespace kiln::missions {
namespace json = boost::json;
using storage::Connection;

namespace {

bool terminal(std::string_view s) {
  return s == "DONE" || s == "FAILED" || s == "CANCELED" || s == "BLOCKED";
}

std::string str(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_string())
    throw std::runtime_error(std::string("mission event without string field '") + key + "'");
  return std::string(v->as_string());
}

std::optional<std::string> opt_str(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  return std::string(v->as_string());
}

void bind_opt(storage::Statement& st, int i, const std::optional<std::string>& v) {
  if (v)
    st.bind(i, *v);
  else
    st.bind_null(i);
}

void expect_changed(Connection& c, const ledger::Event& e) {
  if (c.changes() == 0)
    throw std::runtime_error("ledger seq " + std::to_string(e.seq) + " (" + e.kind +
                             ") refers to a mission or step that does not exist");
}

void created(Connection& c, const ledger::Event& e, const json::object& p) {
  const std::string state = str(p, "state");
  auto st = c.prepare(
      "INSERT INTO missions (id, tenant, template, inputs, state, decision, reason, "
      "idempotency_key, created_by, created_at, updated_at, not_before, last_seq, terminal_seq) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13)");
  st.bind(1, str(p, "id")).bind(2, e.tenant).bind(3, str(p, "template"));
  st.bind(4, json::serialize(p.at("inputs"))).bind(5, state).bind(6, str(p, "decision"));
  st.bind(7, str(p, "reason"));
  bind_opt(st, 8, opt_str(p, "idempotency_key"));
  st.bind(9, str(p.at("actor").as_object(), "name")).bind(10, e.time);
  bind_opt(st, 11, opt_str(p, "not_before"));
  st.bind(12, e.seq);
  if (terminal(state))
    st.bind(13, e.seq);
  else
    st.bind_null(13);
  st.step();
  auto step = c.prepare(
      "INSERT INTO mission_steps (mission_id, step, position, tool, approval, state) "
      "VALUES (?, ?, ?, ?, ?, 'PENDING')");
  std::int64_t pos = 0;
  for (const auto& sv : p.at("steps").as_array()) {
    const auto& so = sv.as_object();
    step.reset();
    step.bind(1, str(p, "id")).bind(2, str(so, "step")).bind(3, pos++);
    step.bind(4, str(so, "tool")).bind(5, str(so, "approval"));
    step.step();
  }
}

void touch(Connection& c, const ledger::Event& e, const std::string& id) {
  auto st = c.prepare("UPDATE missions SET updated_at = ?2, last_seq = ?3 WHERE id = ?1");
  st.bind(1, id).bind(2, e.time).bind(3, e.seq);
  st.step();
  expect_changed(c, e);
}

void claimed(Connection& c, const ledger::Event& e, const json::object& p) {
  auto st = c.prepare(
      "UPDATE missions SET state = 'RUNNING', reason = ?2, lease_owner = ?3, lease_until = ?4, "
      "not_before = NULL, claims = claims + 1 WHERE id = ?1");
  st.bind(1, str(p, "id")).bind(2, str(p, "reason")).bind(3, str(p, "worker"));
  st.bind(4, str(p, "lease_until"));
  st.step();
  expect_changed(c, e);
}

void heartbeat(Connection& c, const ledger::Event& e, const json::object& p) {
  auto st = c.prepare("UPDATE missions SET lease_until = ?2 WHERE id = ?1");
  st.bind(1, str(p, "id")).bind(2, str(p, "lease_until"));
  st.step();
  expect_changed(c, e);
}

void step_event(Connection& c, const ledger::Event& e, const json::object& p) {
  const std::string id = str(p, "id");
  const std::string step = str(p, "step");
  if (e.kind == "step.started") {
    auto st = c.prepare(
        "UPDATE mission_steps SET state = 'RUNNING', attempts = ?3, started_at = ?4, "
        "finished_at = NULL WHERE mission_id = ?1 AND step = ?2");
    st.bind(1, id).bind(2, step).bind(3, p.at("attempt").to_number<std::int64_t>());
    st.bind(4, e.time);
    st.step();
  } else if (e.kind == "step.completed") {
    auto st = c.prepare(
        "UPDATE mission_steps SET state = 'DONE', output = ?3, error = NULL, finished_at = ?4 "
        "WHERE mission_id = ?1 AND step = ?2");
    st.bind(1, id).bind(2, step).bind(3, json::serialize(p.at("output"))).bind(4, e.time);
    st.step();
  } else {  // step.failed
    auto st = c.prepare(
        "UPDATE mission_steps SET state = 'FAILED', error = ?3, finished_at = ?4 "
        "WHERE mission_id = ?1 AND step = ?2");
    st.bind(1, id).bind(2, step).bind(3, json::serialize(p.at("error"))).bind(4, e.time);
    st.step();
  }
  expect_changed(c, e);
}

// mission.held / retry_scheduled / completed / failed / approved / canceled / retried.
void transition(Connection& c, const ledger::Event& e, const json::object& p) {
  const std::string id = str(p, "id");
  const std::string to = str(p, "to");
  auto st = c.prepare(
      "UPDATE missions SET state = ?2, reason = ?3, not_before = ?4, lease_owner = NULL, "
      "lease_until = NULL, terminal_seq = ?5 WHERE id = ?1");
  st.bind(1, id).bind(2, to).bind(3, str(p, "reason"));
  bind_opt(st, 4, opt_str(p, "not_before"));
  if (terminal(to))
    st.bind(5, e.seq);
  else
    st.bind_null(5);
  st.step();
  expect_changed(c, e);
  if (terminal(to)) {
    // One active mission fewer, one place free: the tenant's oldest mission waiting for capacity
    // is asked again now rather than at its next check (service.cpp, capacity_recheck) — one, not
    // all of them, each of which would be refused again with an event of its own. From the
    // event's own time, so that a replay makes the same rows.
    auto wake = c.prepare(
        "UPDATE missions SET not_before = ?2 WHERE rowid = (SELECT w.rowid FROM missions w WHERE "
        "w.tenant = (SELECT tenant FROM missions WHERE id = ?1) AND w.state = 'RETRY' AND "
        "w.decision = 'RETRY_LATER' AND w.claims = 0 AND w.not_before > ?2 ORDER BY w.created_at, "
        "w.rowid LIMIT 1)");
    wake.bind(1, id).bind(2, e.time);
    wake.step();
  }
  if (e.kind == "mission.approved") {
    if (auto step = opt_str(p, "step")) {
      auto ap = c.prepare(
          "UPDATE mission_steps SET approved_by = ?3, "
          "state = CASE state WHEN 'FAILED' THEN 'PENDING' ELSE state END, "
          "attempts = CASE state WHEN 'FAILED' THEN 0 ELSE attempts END "
          "WHERE mission_id = ?1 AND step = ?2");
      ap.bind(1, id).bind(2, *step).bind(3, str(p.at("actor").as_object(), "name"));
      ap.step();
      expect_changed(c, e);
    }
  } else if (e.kind == "mission.retried" && str(p, "reason") == "RETRIED") {
    // From FAILED: the failed step starts over. (RETRY_NOW only skips the wait.) Since
    // `approvals_reset` (earlier events lack it and replay as they ran), without the approval
    // its failed run had.
    const auto* reset = p.if_contains("approvals_reset");
    auto rs = c.prepare(
        reset && reset->is_bool() && reset->as_bool()
            ? "UPDATE mission_steps SET state = 'PENDING', attempts = 0, approved_by = NULL "
              "WHERE mission_id = ?1 AND state IN ('FAILED', 'RUNNING')"
            : "UPDATE mission_steps SET state = 'PENDING', attempts = 0 "
              "WHERE mission_id = ?1 AND state IN ('FAILED', 'RUNNING')");
    rs.bind(1, id);
    rs.step();
  }
}

}  // namespace

void project(Connection& c, const ledger::Event& e) {
  if (e.kind.rfind("mission.", 0) != 0 && e.kind.rfind("step.", 0) != 0) return;
  json::error_code ec;
  json::value v = json::parse(e.payload, ec);
  if (ec || !v.is_object())
    throw std::runtime_error("ledger seq " + std::to_string(e.seq) + " (" + e.kind +
                             ") has a payload that is not a JSON object");
  const auto& p = v.as_object();
  try {
    if (e.kind == "mission.created") {
      created(c, e, p);
      return;
    }
    if (e.kind == "mission.claimed")
      claimed(c, e, p);
    else if (e.kind == "mission.heartbeat")
      heartbeat(c, e, p);
    else if (e.kind.rfind("step.", 0) == 0)
      step_event(c, e, p);
    else if (e.kind == "mission.artifacts_released")
      c.prepare("DELETE FROM mission_artifacts WHERE mission_id = ?").bind(1, str(p, "id")).step();
    else
      transition(c, e, p);
    touch(c, e, str(p, "id"));
  } catch (const std::out_of_range& ex) {
    throw std::runtime_error("ledger seq " + std::to_string(e.seq) + " (" + e.kind +
                             "): payload lacks a field: " + ex.what());
  } catch (const std::invalid_argument& ex) {
    throw std::runtime_error("ledger seq " + std::to_string(e.seq) + " (" + e.kind +
                             "): " + ex.what());
  }
}

namespace {

using Columns = std::vector<std::pair<std::string, std::string>>;
using Rows = std::map<std::string, Columns>;

// Every row of a query keyed by its first `key_columns` columns, every column as text.
Rows dump(Connection& c, const std::string& sql, int key_columns) {
  Rows rows;
  auto st = c.prepare(sql);
  while (st.step()) {
    std::string key;
    Columns cols;
    for (int i = 0; i < st.column_count(); ++i) {
      std::string v = st.is_null(i) ? "NULL" : st.text(i);
      if (i < key_columns) key += (key.empty() ? "" : "/") + v;
      cols.emplace_back(st.column_name(i), std::move(v));
    }
    rows.emplace(std::move(key), std::move(cols));
  }
  return rows;
}

void diff(const std::string& what, const Rows& live, const Rows& replayed,
          std::vector<std::string>& out, std::size_t max) {
  auto add = [&](std::string s) {
    if (out.size() < max) out.push_back(std::move(s));
  };
  for (const auto& [key, cols] : live) {
    auto it = replayed.find(key);
    if (it == replayed.end()) {
      add(what + " " + key + ": in the live tables but not in the ledger");
      continue;
    }
    for (std::size_t i = 0; i < cols.size() && i < it->second.size(); ++i)
      if (cols[i].second != it->second[i].second)
        add(what + " " + key + ": " + cols[i].first + ": live " + cols[i].second + ", replayed " +
            it->second[i].second);
  }
  for (const auto& [key, _] : replayed)
    if (!live.count(key))
      add(what + " " + key + ": in the ledger but missing from the live tables");
}

const char* kMissionsSql = "SELECT * FROM missions ORDER BY id";
const char* kStepsSql = "SELECT * FROM mission_steps ORDER BY mission_id, step";
const char* kKeysSql = "SELECT * FROM api_keys ORDER BY id";

// The other projections of the ledger, each with its key columns: (what, query, key columns).
struct Table {
  const char* what;
  const char* sql;
  int key_columns;
};
const Table kOtherTables[] = {
    {"device key", "SELECT * FROM device_keys ORDER BY kid, tenant", 2},
    {"session", "SELECT * FROM telemetry_sessions ORDER BY id", 1},
    {"profile", "SELECT * FROM profiles ORDER BY tenant, name, version", 3},
    {"profile name", "SELECT * FROM profile_names ORDER BY tenant, name", 2},
    {"device profile", "SELECT * FROM device_profiles ORDER BY tenant, device", 2},
};

bool projected(const std::string& kind) {
  for (const char* prefix : {"mission.", "step.", "key.", "device.", "session.", "profile."})
    if (kind.rfind(prefix, 0) == 0) return true;
  return false;
}

}  // namespace

ReplayReport replay(const std::filesystem::path& db_path, const std::filesystem::path& scratch,
                    std::size_t max_differences) {
  ReplayReport r;
  r.scratch = scratch;
  {
    std::error_code ec;
    const auto live = std::filesystem::weakly_canonical(db_path, ec).string();
    const auto scr = std::filesystem::weakly_canonical(scratch, ec).string();
    if (scr == live || scr == live + "-wal" || scr == live + "-shm" || scr == live + "-journal")
      throw std::invalid_argument("the scratch database " + scratch.string() +
                                  " is the live database; pick another --scratch path");
  }
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    std::filesystem::remove(scratch.string() + suffix, ec);
  }
  Connection live(db_path, Connection::Mode::kReadOnly);
  Connection out(scratch, Connection::Mode::kReadWrite);
  out.exec("PRAGMA synchronous = OFF");
  storage::migrate(out, storage::kernel_migrations());
  {
    // One read transaction on the live file, so the ledger and the tables compared below are the
    // same snapshot even while kiln keeps appending.
    live.exec("BEGIN");
    auto st = live.prepare(
        "SELECT seq, time, tenant, stream, kind, payload, prev_hash, hash FROM ledger "
        "ORDER BY seq");
    std::optional<storage::Transaction> tx;
    tx.emplace(out);
    std::int64_t in_tx = 0;
    while (st.step()) {
      ledger::Event e{st.int64(0), st.text(1), st.text(2), st.text(3),
                      st.text(4),  st.text(5), st.text(6), st.text(7)};
      ++r.events;
      if (projected(e.kind)) {
        ++r.mission_events;
        project(out, e);
        auth::project_keys(out, e);
        telemetry::project_devices(out, e);
        telemetry::project_sessions(out, e);
        telemetry::project_profiles(out, e);
        if (++in_tx == 10000) {
          tx->commit();
          tx.emplace(out);
          in_tx = 0;
        }
      }
    }
    tx->commit();
    Rows live_missions = dump(live, kMissionsSql, 1);
    Rows live_steps = dump(live, kStepsSql, 2);
    Rows live_keys = dump(live, kKeysSql, 1);
    std::vector<Rows> live_other;
    for (const auto& t : kOtherTables) live_other.push_back(dump(live, t.sql, t.key_columns));
    live.exec("COMMIT");
    Rows rep_missions = dump(out, kMissionsSql, 1);
    Rows rep_steps = dump(out, kStepsSql, 2);
    Rows rep_keys = dump(out, kKeysSql, 1);
    r.missions = static_cast<std::int64_t>(rep_missions.size());
    diff("mission", live_missions, rep_missions, r.differences, max_differences);
    diff("step", live_steps, rep_steps, r.differences, max_differences);
    diff("api key", live_keys, rep_keys, r.differences, max_differences);
    for (std::size_t i = 0; i < std::size(kOtherTables); ++i)
      diff(kOtherTables[i].what, live_other[i],
           dump(out, kOtherTables[i].sql, kOtherTables[i].key_columns), r.differences,
           max_differences);
  }
  return r;
}

}  // namespace kiln::missions
