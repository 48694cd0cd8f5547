#include "telemetry/sessions.hpp"

#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "auth/keys.hpp"
#include "common/strings.hpp"
#include "storage/sqlite.hpp"
#include "telemetry/devices.hpp"
#include "telemetry/ingest.hpp"
#include "telemetry/profiles.hpp"

namespace kiln::telemetry {
namespace json = boost::json;
using missions::MissionError;
using storage::Connection;

namespace {

// A session's samples in time order, later than `after` when given (Sessionizer::samples).
std::vector<Sample> samples_in(Connection& c, const SessionInfo& s, std::optional<double> after);

constexpr const char* kColumns =
    "id, tenant, device, state, start_t, charge_t, end_t, close_reason, opened_at, closed_at, "
    "mission_id, profile, profile_version, first_boot, last_boot, drop_t, reopens, marks, green_g, "
    "roasted_g";

SessionInfo row(const storage::Statement& st) {
  SessionInfo s;
  s.id = st.text(0);
  s.tenant = st.text(1);
  s.device = st.text(2);
  s.state = st.text(3);
  s.start_t = st.real(4);
  s.charge_t = st.real(5);
  if (!st.is_null(6)) s.end_t = st.real(6);
  if (!st.is_null(7)) s.close_reason = st.text(7);
  s.opened_at = st.text(8);
  if (!st.is_null(9)) s.closed_at = st.text(9);
  if (!st.is_null(10)) s.mission_id = st.text(10);
  if (!st.is_null(11)) {
    s.profile = st.text(11);
    s.profile_version = st.int64(12);
  }
  if (!st.is_null(13)) s.first_boot = st.int64(13);
  if (!st.is_null(14)) s.last_boot = st.int64(14);
  if (!st.is_null(15)) s.drop_t = st.real(15);
  s.reopens = st.int64(16);
  const auto marks = json::parse(st.text(17));
  for (const auto& [event, t] : marks.as_object())
    s.marks[std::string(event)] = t.to_number<double>();
  if (!st.is_null(18)) s.green_g = st.real(18);
  if (!st.is_null(19)) s.roasted_g = st.real(19);
  return s;
}

// The newest reading of an open session (its readings' batches in its boots).
void find_last_reading(Connection& c, SessionInfo& s) {
  if (s.state != "open") return;
  auto st = c.prepare(
      "SELECT MAX(last_t) FROM telemetry_all WHERE tenant = ? AND device = ? AND last_t >= ? AND "
      "boot >= ?");
  st.bind(1, s.tenant).bind(2, s.device).bind_real(3, s.start_t);
  st.bind(4, s.first_boot.value_or(0));
  if (st.step() && !st.is_null(0)) s.last_t = st.real(0);
}

// Where the session's report mission stands: its state, and its QC step's verdict (a failed
// check holds the verdict in the error's details) and acceptance.
void find_report(Connection& c, SessionInfo& s) {
  if (!s.mission_id) return;
  auto st = c.prepare(
      "SELECT m.state, q.output, q.error, m.inputs, EXISTS (SELECT 1 FROM ledger l WHERE l.tenant "
      "= m.tenant AND l.stream = 'mission/' || m.id AND l.kind = 'mission.artifacts_released') "
      "FROM missions m LEFT JOIN mission_steps q ON q.mission_id = m.id AND q.tool = 'roast.qc' "
      "WHERE m.id = ? AND m.tenant = ?");
  st.bind(1, *s.mission_id).bind(2, s.tenant);
  if (!st.step()) return;
  SessionInfo::Report r;
  r.state = st.text(0);
  r.files_released = st.int64(4) != 0;
  auto member = [](const json::value& v, std::initializer_list<const char*> path) {
    const json::value* at = &v;
    for (const char* k : path) {
      const auto* o = at->if_object();
      if (!o || !(at = o->if_contains(k))) return std::optional<std::string>();
    }
    return at->is_string() ? std::optional<std::string>(std::string(at->as_string()))
                           : std::optional<std::string>();
  };
  json::error_code ec;
  if (!st.is_null(1)) {
    const auto out = json::parse(st.text(1), ec);
    if (!ec) {
      r.verdict = member(out, {"verdict"});
      r.accepted_by = member(out, {"accepted_by"});
    }
  }
  // An approver by API key is named as the key was ("me-approver (key:k-…)"), not by its id.
  if (r.accepted_by) r.accepted_by = auth::actor_named(c, *r.accepted_by);
  if (!r.verdict && !st.is_null(2)) {
    const auto err = json::parse(st.text(2), ec);
    if (!ec && member(err, {"code"}) == std::optional<std::string>("qc_failed"))
      r.verdict = member(err, {"details", "verdict"});
  }
  // The marks and weights it was made for (its inputs; a mission started before they were
  // carried took whatever the session had when it ran) against the session's now.
  const auto inputs = json::parse(st.text(3), ec);
  if (!ec && inputs.is_object() && inputs.as_object().contains("marks")) {
    const auto& in = inputs.as_object();
    const auto now = s.report_inputs();
    auto member = [](const json::object& o, const char* k) {
      return o.contains(k) ? o.at(k) : json::value();
    };
    r.outdated = member(in, "marks") != member(now, "marks") ||
                 member(in, "weight") != member(now, "weight");
  }
  s.report = std::move(r);
}

nodes::RoastCurve curve_of(const std::vector<Sample>& samples, double from) {
  nodes::RoastCurve c;
  bool any_state = false;
  for (const auto& s : samples) {
    if (s.t < from) continue;
    c.time.push_back(s.t - from);
    c.bt.push_back(s.bt);
    c.et.push_back(s.et);
    c.state.push_back(s.state);
    any_state = any_state || s.state != 0;
  }
  if (!any_state) c.state.clear();  // a driver without a state channel reports 0
  return c;
}

// The node's events, checked to be readings of the curve before any is read there: a broken
// node's answer fails the device's round (logged) instead of reading past the readings.
nodes::RoastEvents detect_on(const nodes::EventDetector& detector, const nodes::RoastCurve& c) {
  auto e = detector.detect(c);
  e.validate(c);
  return e;
}

// Inserts samples keeping time order; a sample at a time already present is dropped.
void merge(std::vector<Sample>& into, std::vector<Sample> more) {
  // Batches may arrive out of order (concurrent requests, a drained spool).
  auto by_time = [](const Sample& a, const Sample& b) { return a.t < b.t; };
  if (!std::is_sorted(more.begin(), more.end(), by_time))
    std::stable_sort(more.begin(), more.end(), by_time);
  const bool in_order = into.empty() || more.empty() || more.front().t > into.back().t;
  into.insert(into.end(), more.begin(), more.end());
  if (!in_order) {
    std::stable_sort(into.begin(), into.end(),
                     [](const Sample& a, const Sample& b) { return a.t < b.t; });
    into.erase(std::unique(into.begin(), into.end(),
                           [](const Sample& a, const Sample& b) { return a.t == b.t; }),
               into.end());
  }
}

}  // namespace

std::string no_session(const std::string& id, const std::optional<std::string>& tenant) {
  return "no session '" + id + "'" + (tenant ? " in tenant " + *tenant : std::string()) +
         " (a session's id ends with its tenant, after the '@'; GET /v1/sessions or `kiln "
         "sessions list` shows them)";
}

json::object SessionInfo::report_inputs() const {
  json::object ms;
  for (const auto& [event, t] : marks) ms[event] = std::llround(t * 1000);
  json::object out{{"marks", std::move(ms)}};
  auto mg = [](const std::optional<double>& g) {
    return g ? json::value(std::llround(*g * 1000)) : json::value();
  };
  if (green_g || roasted_g)
    out["weight"] = json::object{{"green_mg", mg(green_g)}, {"roasted_mg", mg(roasted_g)}};
  return out;
}

json::object SessionInfo::to_json() const {
  json::object o{
      {"id", id},
      {"tenant", tenant},
      {"device", device},
      {"state", state},
      {"start_t", start_t},
      {"charge_t", charge_t},
      {"end_t", end_t ? json::value(*end_t) : json::value(nullptr)},
      {"close_reason", close_reason.empty() ? json::value(nullptr) : json::value(close_reason)},
      {"opened_at", opened_at},
      {"closed_at", closed_at ? json::value(*closed_at) : json::value(nullptr)},
      {"mission_id", mission_id ? json::value(*mission_id) : json::value(nullptr)},
      {"profile", profile
                      ? json::value(json::object{{"name", *profile}, {"version", profile_version}})
                      : json::value(nullptr)},
      {"first_boot", first_boot ? json::value(*first_boot) : json::value(nullptr)},
      {"last_boot", last_boot ? json::value(*last_boot) : json::value(nullptr)}};
  o["drop_t"] = drop_t ? json::value(*drop_t) : json::value(nullptr);
  o["reopens"] = reopens;
  json::object m;
  for (const auto& [event, t] : marks) m[event] = t;
  o["marks"] = std::move(m);
  auto grams = [](const std::optional<double>& g) { return g ? json::value(*g) : json::value(); };
  json::object weight{{"green_g", grams(green_g)}, {"roasted_g", grams(roasted_g)}};
  weight["loss_percent"] =
      green_g && roasted_g ? json::value(std::round((*green_g - *roasted_g) / *green_g * 1000) / 10)
                           : json::value();
  o["weight"] = std::move(weight);
  if (report) {
    auto opt = [](const std::optional<std::string>& v) {
      return v ? json::value(*v) : json::value(nullptr);
    };
    o["report"] = json::object{{"mission", mission_id ? json::value(*mission_id) : nullptr},
                               {"state", report->state},
                               {"verdict", opt(report->verdict)},
                               {"accepted_by", opt(report->accepted_by)},
                               {"outdated", report->outdated},
                               {"files_released", report->files_released}};
  } else {
    o["report"] = nullptr;
  }
  // The newest reading: where it ended, or (open) the newest so far.
  o["last_t"] = end_t ? json::value(*end_t) : last_t ? json::value(*last_t) : json::value(nullptr);
  // The roast's length: CHARGE to DROP (the roaster's marks where there are some); to the last
  // reading when it closed without a DROP, or so far while it is open.
  const auto marked = [&](const char* event, std::optional<double> otherwise) {
    const auto it = marks.find(event);
    return it != marks.end() ? std::optional<double>(it->second) : otherwise;
  };
  const double charge = *marked("CHARGE", charge_t);
  const auto drop = marked("DROP", drop_t);
  if (end_t)
    o["duration_s"] = std::round(((drop ? *drop : *end_t) - charge) * 10) / 10;
  else if (last_t)
    o["duration_s"] = std::round(((drop ? *drop : *last_t) - charge) * 10) / 10;
  return o;
}

void project_sessions(Connection& c, const ledger::Event& e) {
  if (e.kind.rfind("session.", 0) != 0) return;
  auto v = json::parse(e.payload);
  const auto& p = v.as_object();
  const std::string id(p.at("session").as_string());
  if (e.kind == "session.opened") {
    auto st = c.prepare(
        "INSERT INTO telemetry_sessions (id, tenant, device, state, start_t, charge_t, opened_at, "
        "profile, profile_version, first_boot) VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)");
    st.bind(1, id).bind(2, e.tenant).bind(3, std::string(p.at("device").as_string()));
    st.bind_real(4, p.at("start_t").to_number<double>())
        .bind_real(5, p.at("charge_t").to_number<double>())
        .bind(6, e.time);
    const auto* prof = p.if_contains("profile");
    if (prof && prof->is_object()) {
      st.bind(7, std::string(prof->at("name").as_string()));
      st.bind(8, prof->at("version").to_number<std::int64_t>());
    } else {
      st.bind_null(7).bind_null(8);
    }
    // Events written before migration 9 carry no boots.
    if (const auto* b = p.if_contains("boot"); b && b->is_number())
      st.bind(9, b->to_number<std::int64_t>());
    else
      st.bind_null(9);
    st.step();
  } else if (e.kind == "session.closed") {
    auto st = c.prepare(
        "UPDATE telemetry_sessions SET state = 'closed', end_t = ?, close_reason = ?, "
        "closed_at = ?3, last_boot = ?, drop_t = ?, report_due = CASE WHEN ? THEN ?3 END WHERE "
        "id = ? AND tenant = ?");
    st.bind_real(1, p.at("end_t").to_number<double>())
        .bind(2, std::string(p.at("reason").as_string()))
        .bind(3, e.time);
    if (const auto* b = p.if_contains("last_boot"); b && b->is_number())
      st.bind(4, b->to_number<std::int64_t>());
    else
      st.bind_null(4);
    // Events written before migration 10 carry no DROP.
    if (const auto* d = p.if_contains("drop_t"); d && d->is_number())
      st.bind_real(5, d->to_number<double>());
    else
      st.bind_null(5);
    // A session too short to be a roast (sessions.min_length_s) closes with "report": false.
    const auto* report = p.if_contains("report");
    st.bind(6, static_cast<std::int64_t>(!(report && report->is_bool() && !report->as_bool())));
    st.bind(7, id).bind(8, e.tenant);
    st.step();
  } else if (e.kind == "session.reopened") {
    auto st = c.prepare(
        "UPDATE telemetry_sessions SET state = 'open', end_t = NULL, close_reason = NULL, "
        "closed_at = NULL, drop_t = NULL, reopens = reopens + 1, report_due = NULL WHERE id = ? "
        "AND tenant = ?");
    st.bind(1, id).bind(2, e.tenant);
    st.step();
  } else if (e.kind == "session.marked") {
    // {"session", "event", "t"}: t null clears the mark.
    auto get = c.prepare("SELECT marks FROM telemetry_sessions WHERE id = ? AND tenant = ?");
    get.bind(1, id).bind(2, e.tenant);
    if (!get.step()) return;
    auto marks = json::parse(get.text(0)).as_object();
    const std::string event(p.at("event").as_string());
    if (p.at("t").is_null())
      marks.erase(event);
    else
      marks[event] = p.at("t").to_number<double>();
    auto st = c.prepare("UPDATE telemetry_sessions SET marks = ? WHERE id = ? AND tenant = ?");
    st.bind(1, json::serialize(marks)).bind(2, id).bind(3, e.tenant);
    st.step();
  } else if (e.kind == "session.weighed") {
    // {"session", "green_g"?, "roasted_g"?}: a weight left out stays as it was.
    auto st = c.prepare(
        "UPDATE telemetry_sessions SET green_g = coalesce(?, green_g), roasted_g = coalesce(?, "
        "roasted_g) WHERE id = ? AND tenant = ?");
    for (int i : {1, 2}) {
      const auto* g = p.if_contains(i == 1 ? "green_g" : "roasted_g");
      if (g && g->is_number())
        st.bind_real(i, g->to_number<double>());
      else
        st.bind_null(i);
    }
    st.bind(3, id).bind(4, e.tenant);
    st.step();
  } else if (e.kind == "session.reported") {
    auto st = c.prepare(
        "UPDATE telemetry_sessions SET mission_id = ?, report_due = NULL WHERE id = ? AND tenant "
        "= ?");
    st.bind(1, std::string(p.at("mission").as_string())).bind(2, id).bind(3, e.tenant);
    st.step();
  }
  // A roaster's change to a closed session that asks for its report again makes it due (events
  // from before migration 16 carry no "report": their report was started, or not, then).
  if (e.kind == "session.marked" || e.kind == "session.weighed")
    if (const auto* report = p.if_contains("report");
        report && report->is_bool() && report->as_bool()) {
      auto st = c.prepare(
          "UPDATE telemetry_sessions SET report_due = ? WHERE id = ? AND tenant = ? AND state = "
          "'closed'");
      st.bind(1, e.time).bind(2, id).bind(3, e.tenant);
      st.step();
    }
}

Sessionizer::Sessionizer(ledger::SqliteLedger& ledger, DetectorFn detector, ClosedFn on_closed,
                         SessionOptions options)
    : ledger_(ledger),
      detector_(std::move(detector)),
      on_closed_(std::move(on_closed)),
      options_(options) {
  // Open sessions survive a restart: loaded now, so that silence closes them even if their
  // device never sends again.
  try {
    Connection c(ledger_.path(), Connection::Mode::kReadOnly);
    auto st = c.prepare(std::string("SELECT ") + kColumns +
                        " FROM telemetry_sessions WHERE state = 'open'");
    std::vector<SessionInfo> open;
    while (st.step()) open.push_back(row(st));
    for (auto& s : open) {
      Device& d = devices_[{s.tenant, s.device}];
      d.loaded = true;
      d.buffer = samples(ledger_.path(), s);
      d.boot = d.buffer_boot = s.first_boot;
      d.open = std::move(s);
    }
  } catch (const std::exception& e) {
    spdlog::error("sessions: open sessions could not be loaded: {}", e.what());
  }
  worker_ = std::thread([this] { run(); });
}

Sessionizer::~Sessionizer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void Sessionizer::add(const std::string& tenant, const std::string& device, std::int64_t boot,
                      std::vector<Sample> samples, std::uint64_t seq) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Item{tenant, device, boot, std::move(samples), seq});
  }
  cv_.notify_all();
}

void Sessionizer::flush() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return (queue_.empty() && !busy_) || stop_; });
}

void Sessionizer::run() {
  pthread_setname_np(pthread_self(), "kiln-sessions");  // names it in top -H, perf and gdb
  for (;;) {
    std::vector<Item> round;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      while (!queue_.empty()) {
        round.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      busy_ = true;
    }
    // Coalesce: one detection per device and boot per round (boots in arrival order).
    struct Run {
      std::int64_t boot;
      std::vector<Sample> samples;
      std::uint64_t first_seq;  // the lowest (0: one not known)
    };
    std::map<std::pair<std::string, std::string>, std::vector<Run>> by_device;
    for (auto& it : round) {
      auto& runs = by_device[{it.tenant, it.device}];
      if (runs.empty() || runs.back().boot != it.boot) runs.push_back(Run{it.boot, {}, it.seq});
      auto& run = runs.back();
      run.samples.insert(run.samples.end(), it.samples.begin(), it.samples.end());
      run.first_seq = run.first_seq == 0 || it.seq == 0 ? 0 : std::min(run.first_seq, it.seq);
    }
    for (auto& [id, runs] : by_device)
      for (auto& [boot, samples, first_seq] : runs) {
        try {
          handle(id.first, id.second, boot, std::move(samples), first_seq);
        } catch (const std::exception& e) {
          spdlog::error("sessions: device {} (tenant {}): {}", id.second, id.first, e.what());
        }
      }
    try {
      sweep();
    } catch (const std::exception& e) {
      spdlog::error("sessions: sweep: {}", e.what());
    }
    {
      std::lock_guard lock(mu_);
      busy_ = false;
    }
    idle_cv_.notify_all();
    // (Not while busy: flush() does not wait for the missions started here.)
    const auto now = std::chrono::steady_clock::now();
    if (options_.report_retry_s > 0 &&
        now - last_due_check_ >= std::chrono::duration<double>(options_.report_retry_s)) {
      last_due_check_ = now;
      try {
        start_due_reports();
      } catch (const std::exception& e) {
        spdlog::error("sessions: reports due: {}", e.what());
      }
    }
  }
}

void Sessionizer::load(const std::string& tenant, const std::string& device, Device& d,
                       std::uint64_t first_seq) {
  if (d.loaded) return;
  d.loaded = true;
  Connection c(ledger_.path(), Connection::Mode::kReadOnly);
  auto st = c.prepare(std::string("SELECT ") + kColumns +
                      " FROM telemetry_sessions WHERE tenant = ? AND device = ? "
                      "ORDER BY opened_at DESC, start_t DESC LIMIT 1");
  st.bind(1, tenant).bind(2, device);
  if (st.step()) {
    auto s = row(st);
    if (s.state == "open") {
      d.buffer = samples(ledger_.path(), s);
      d.boot = d.buffer_boot = s.first_boot;
      d.open = s;
      return;
    }
    if (s.end_t) {
      d.last_end_t = *s.end_t;
      d.boot = s.last_boot ? s.last_boot : s.first_boot;
      d.last_closed = s;
    }
  }
  // No roast under way: the device's newest readings stored before this process saw any — the
  // idle window of its newest boot, after its last session. A process that stopped after storing
  // a batch never handed it on, and sent again it is a duplicate, which is not: without it the
  // next batch's CHARGE would be the first reading held, taken for a roast already under way,
  // and the whole roast would have no session. (Not for a boot's first batch: nothing of its
  // boot is stored before it, and the read scans the unindexed inbox.)
  if (first_seq == 1) return;
  auto newest = c.prepare(
      "SELECT boot, max(last_t) FROM telemetry_all WHERE tenant = ? AND device = ? GROUP BY boot "
      "ORDER BY boot DESC LIMIT 1");
  newest.bind(1, tenant).bind(2, device);
  if (!newest.step() || newest.is_null(1)) return;
  SessionInfo window;
  window.tenant = tenant;
  window.device = device;
  window.first_boot = window.last_boot = newest.int64(0);
  if (d.boot && *window.first_boot < *d.boot) return;
  window.start_t = std::max(newest.real(1) - options_.idle_buffer_s,
                            std::nextafter(d.last_end_t, std::numeric_limits<double>::infinity()));
  // (Readings of a clock that started over lie before the last session's end: none are taken,
  // and handle() sees the new timeline as it comes.)
  d.buffer = samples(ledger_.path(), window);
  if (!d.buffer.empty()) d.boot = d.buffer_boot = window.first_boot;
}

void Sessionizer::handle(const std::string& tenant, const std::string& device, std::int64_t boot,
                         std::vector<Sample> more, std::uint64_t first_seq) {
  std::lock_guard lock(state_mu_);
  Device& d = devices_[{tenant, device}];
  load(tenant, device, d, first_seq);
  d.last_arrival = std::chrono::steady_clock::now();
  if (!more.empty()) d.last_batch_span_s = more.back().t - more.front().t;
  if (d.boot && boot < *d.boot) {
    // Readings of an earlier boot after the next one's (requests that crossed): they are stored,
    // but the sessions have moved on.
    spdlog::debug("sessions: {} readings of device {} from boot {} after boot {}: not followed",
                  more.size(), device, boot, *d.boot);
    return;
  }
  if (d.boot && boot > *d.boot && !more.empty()) {
    // A new boot whose clock starts at or before what this device has shown already (a clock
    // that starts over, a simulated roaster run again): a new timeline. A session of the old
    // one ends with it; readings of the new one are not compared with the old one's.
    const double first =
        std::min_element(more.begin(), more.end(), [](const Sample& a, const Sample& b) {
          return a.t < b.t;
        })->t;
    const double newest =
        std::max(d.buffer.empty() ? d.last_end_t : d.buffer.back().t, d.last_end_t);
    if (first <= newest) {
      if (d.open)
        close_session(d, d.buffer.empty() ? d.open->charge_t : d.buffer.back().t, "reboot");
      d.buffer.clear();
      d.last_end_t = -1;
      d.last_closed.reset();
    } else if (!d.buffer.empty() && first - d.buffer.back().t > options_.resume_gap_s) {
      // A new recording long after this device's readings stopped: a new roast, not the rest of
      // the last one (a recorder restarted mid-roast goes on within resume_gap_s). An open
      // session ends where its readings did (the new boot's readings were once its "DROP");
      // readings that opened none (a roast cut off before TP) are not read with the new ones
      // (the two once made one session from the first CHARGE to the second DROP).
      if (d.open)
        close_session(d, d.buffer.back().t, "silence");
      else
        d.buffer.clear();
    }
  }
  if (!d.boot || boot > *d.boot) d.boot = boot;
  if (d.buffer.empty()) d.buffer_boot = boot;
  merge(d.buffer, std::move(more));
  if (d.buffer.empty()) return;
  // A session closed for silence whose readings go on within resume_gap_s of its last one
  // (device time): the link was down and a spool drained late. It opens again and closes at its
  // DROP, whose report then covers the whole roast.
  if (!d.open && d.last_closed && d.last_closed->close_reason == "silence" &&
      d.last_closed->end_t) {
    const double end = *d.last_closed->end_t;
    const auto next =
        std::find_if(d.buffer.begin(), d.buffer.end(), [&](const Sample& x) { return x.t > end; });
    if (next != d.buffer.end() && next->t - end <= options_.resume_gap_s &&
        next->t - d.last_closed->charge_t <= options_.max_length_s)
      reopen_session(d);
  }
  auto detector = detector_ ? detector_() : nullptr;
  if (!detector) {
    // Nothing to detect with: keep only the idle window, so memory stays bounded.
    const double keep_from = d.buffer.back().t - options_.idle_buffer_s;
    d.buffer.erase(d.buffer.begin(),
                   std::find_if(d.buffer.begin(), d.buffer.end(),
                                [&](const Sample& x) { return x.t > keep_from; }));
    if (!warned_no_detector_)
      spdlog::warn(
          "sessions: no event_detector node is running; telemetry is stored but no roast "
          "sessions are opened (nodes.event_detector, plugin roast)");
    warned_no_detector_ = true;
    return;
  }
  auto keep_idle_window = [&] {
    if (d.buffer.empty()) return;
    const double keep_from = d.buffer.back().t - options_.idle_buffer_s;
    d.buffer.erase(d.buffer.begin(),
                   std::find_if(d.buffer.begin(), d.buffer.end(),
                                [&](const Sample& s) { return s.t > keep_from; }));
  };
  try {
    for (int round = 0; round < 64; ++round) {  // one roast a round: a backlog may hold several
      if (!d.open) {
        // Drop what belongs to the last session. The idle window is applied after looking for a
        // CHARGE, not before: a backlog (a drained spool) may bring a whole roast in one round.
        d.buffer.erase(d.buffer.begin(),
                       std::find_if(d.buffer.begin(), d.buffer.end(),
                                    [&](const Sample& s) { return s.t > d.last_end_t; }));
        if (d.buffer.empty()) return;
        auto e = detect_on(*detector, curve_of(d.buffer, d.buffer.front().t));
        // A roaster-state CHARGE at the first reading held is no CHARGE seen: the roast was under
        // way already (a recorder started mid-roast, or readings resumed after this device's
        // session closed for silence). Those readings open no session: drop them (up to the first
        // reading in another state) and look again, so a real CHARGE after them is found at once.
        if (e.charge == 0 && e.charge_source == "roaster state") {
          const int state = d.buffer.front().state;
          d.buffer.erase(d.buffer.begin(),
                         std::find_if(d.buffer.begin(), d.buffer.end(),
                                      [&](const Sample& x) { return x.state != state; }));
          if (d.buffer.empty()) return;
          e = detect_on(*detector, curve_of(d.buffer, d.buffer.front().t));
        }
        // From BT alone a fall is a CHARGE only once the beans turn (TP): cooling readings after a
        // DROP fall the same way. A roaster's own state is trusted at once.
        const bool seen = e.charge > 0 || (e.charge == 0 && e.charge_source != "roaster state");
        if (!seen || (e.charge_source != "roaster state" && e.tp < 0)) {
          keep_idle_window();
          return;
        }
        const double charge_t = d.buffer[static_cast<std::size_t>(e.charge)].t;
        if (charge_t <= d.last_end_t) {
          keep_idle_window();
          return;
        }
        open_session(tenant, device, d, charge_t);
      }
      // An open session: look for its end on its own curve.
      auto& s = *d.open;
      auto curve = curve_of(d.buffer, s.start_t);
      if (curve.time.empty()) return;
      auto e = detect_on(*detector, curve);
      const double last_t = d.buffer.back().t;
      if (e.drop >= 0) {
        const double drop_t = s.start_t + curve.time[static_cast<std::size_t>(e.drop)];
        // A backlog (a drained spool, a recorder that restarted the roaster's program) may hold the
        // next roast too: this one ends before the next CHARGE, which then opens its own session
        // (it ended at the last reading, and the next roast was lost behind it).
        double end_t = last_t;
        const auto after = std::find_if(d.buffer.begin(), d.buffer.end(),
                                        [&](const Sample& x) { return x.t > drop_t; });
        if (after != d.buffer.end()) {
          const std::vector<Sample> rest(after, d.buffer.end());
          std::size_t next_from = rest.size();
          const auto next = detect_on(*detector, curve_of(rest, rest.front().t));
          if (next.charge > 0 && (next.charge_source == "roaster state" || next.tp >= 0))
            next_from = static_cast<std::size_t>(next.charge);
          // The roaster waiting for the next charge (R1 state 4) is the next roast's, even before
          // its CHARGE is in.
          for (std::size_t i = 0; i < next_from; ++i)
            if (rest[i].state == 4) next_from = i;
          if (next_from < rest.size()) end_t = next_from > 0 ? rest[next_from - 1].t : drop_t;
        }
        close_session(d, end_t, "drop", drop_t);
        if (end_t < last_t) continue;  // the next roast's readings are in the buffer
      } else if (last_t - s.charge_t > options_.max_length_s) {
        close_session(d, last_t, "max_length");
      }
      return;
    }
  } catch (const std::logic_error&) {
    // A broken node's answer (RoastEvents::validate): what bounds the device's readings still
    // does — the idle window, a session's maximum length — or, answering so every round, it
    // would hold every reading the device sends, and its session would never close.
    if (!d.open) {
      keep_idle_window();
    } else if (!d.buffer.empty() && d.buffer.back().t - d.open->charge_t > options_.max_length_s) {
      close_session(d, d.buffer.back().t, "max_length");
    }
    throw;
  }
}

void Sessionizer::open_session(const std::string& tenant, const std::string& device, Device& d,
                               double charge_t) {
  SessionInfo s;
  s.tenant = tenant;
  s.device = device;
  s.state = "open";
  s.charge_t = charge_t;
  s.start_t = std::max(d.buffer.front().t, charge_t - options_.preroll_s);
  // Deterministic: the same CHARGE of the same device is the same session.
  // Unique across tenants (device names are only unique within one): the tenant follows an '@',
  // which no device name holds, so no tenant name can make two ids alike (with '-' it could:
  // device "sim" at second 1 in tenant "17962-acme" against device "sim-1" at 17962 in "acme").
  s.first_boot = d.buffer_boot;
  const std::string core =
      "s-" + device + "-" + std::to_string(static_cast<std::int64_t>(std::floor(charge_t)));
  const std::string of_tenant = tenant != "default" ? "@" + tenant : "";
  s.id = core + of_tenant;
  bool exists = false;
  auto events = ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    // The same CHARGE of the same timeline is the same session; a clock that started over may
    // show a CHARGE at the same second again, on another boot: that one's id names its boot.
    auto st = c.prepare("SELECT first_boot FROM telemetry_sessions WHERE id = ? AND tenant = ?");
    st.bind(1, s.id).bind(2, tenant);
    exists = st.step();
    if (exists && s.first_boot && !st.is_null(0) && st.int64(0) != *s.first_boot) {
      st.reset();
      s.id = core + "~b" + std::to_string(*s.first_boot) + of_tenant;
      auto again = c.prepare("SELECT 1 FROM telemetry_sessions WHERE id = ? AND tenant = ?");
      again.bind(1, s.id).bind(2, tenant);
      exists = again.step();
    }
    if (exists) return {};
    // The device's profile, pinned to the version current at CHARGE.
    json::value profile = nullptr;
    s.profile.reset();
    if (auto a = ProfileStore::assigned(c, tenant, device)) {
      if (auto r = ProfileStore::resolve(c, tenant, *a)) {
        profile = json::object{{"name", r->first}, {"version", r->second}};
        s.profile = r->first;
        s.profile_version = r->second;
      } else {
        spdlog::warn(
            "session {}: device {} is assigned profile '{}', which is archived or gone; "
            "the session has no profile",
            s.id, device, *a);
      }
    }
    return {ledger::NewEvent{
        tenant, "sessions", "session.opened",
        json::object{{"session", s.id},
                     {"device", device},
                     {"start_t", s.start_t},
                     {"charge_t", s.charge_t},
                     {"profile", profile},
                     {"boot", s.first_boot ? json::value(*s.first_boot) : json::value(nullptr)}}}};
  });
  if (!events.empty()) s.opened_at = events.front().time;
  // The device's clock at CHARGE as a time a person reads (UTC), not epoch seconds.
  spdlog::info("session {} opened (device {}, CHARGE at {} by its clock)", s.id, device,
               ledger::utc_millis(std::chrono::system_clock::time_point(
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(
                       std::chrono::duration<double>(charge_t)))));
  d.open = s;
}

void Sessionizer::reopen_session(Device& d) {
  auto s = *d.last_closed;
  ledger_.execute([&](Connection&) -> std::vector<ledger::NewEvent> {
    return {ledger::NewEvent{
        s.tenant, "sessions", "session.reopened",
        json::object{{"session", s.id},
                     {"device", s.device},
                     {"after", s.close_reason},
                     {"end_t", s.end_t ? json::value(*s.end_t) : json::value(nullptr)}}}};
  });
  spdlog::info("session {} opened again: readings continue it after it closed ({})", s.id,
               s.close_reason);
  s.state = "open";
  s.end_t.reset();
  s.drop_t.reset();
  s.close_reason.clear();
  s.closed_at.reset();
  s.last_boot.reset();
  ++s.reopens;
  // Its readings from storage (those before the close were let go), with the new ones held.
  auto readings = samples(ledger_.path(), s);
  merge(readings, std::move(d.buffer));
  d.buffer = std::move(readings);
  d.open = std::move(s);
  d.last_closed.reset();
}

void Sessionizer::close_session(Device& d, double end_t, const std::string& reason,
                                std::optional<double> drop_t) {
  auto s = *d.open;
  s.last_boot = d.boot;
  // A DROP that soon after CHARGE was no roast (the roaster's state flickered to roasting, or
  // its program started over). A recording cut short (silence, a reboot) keeps its report: the
  // roast went on, and the report says what is missing.
  const double length = (drop_t ? *drop_t : end_t) - s.charge_t;
  const bool too_short = drop_t && length < options_.min_length_s;
  auto events = ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    // The marks and weights as stored now: a roaster's mark committed while this round held the
    // session (its in-memory copy waits for state_mu_) is the report's too. One committed after
    // this finds the session closed and asks for a report of its own.
    {
      auto st = c.prepare("SELECT marks, green_g, roasted_g FROM telemetry_sessions WHERE id = ?");
      st.bind(1, s.id);
      if (st.step()) {
        s.marks.clear();
        const auto marks = json::parse(st.text(0));  // kept: the loop reads into it
        for (const auto& [event, t] : marks.as_object())
          s.marks[std::string(event)] = t.to_number<double>();
        s.green_g = st.is_null(1) ? std::nullopt : std::optional<double>(st.real(1));
        s.roasted_g = st.is_null(2) ? std::nullopt : std::optional<double>(st.real(2));
      }
    }
    json::object closed{
        {"session", s.id},
        {"device", s.device},
        {"end_t", end_t},
        {"reason", reason},
        {"last_boot", s.last_boot ? json::value(*s.last_boot) : json::value(nullptr)}};
    if (drop_t) closed["drop_t"] = *drop_t;
    if (too_short) closed["report"] = false;  // no report is due (project_sessions)
    return {ledger::NewEvent{s.tenant, "sessions", "session.closed", std::move(closed)}};
  });
  s.state = "closed";
  s.end_t = end_t;
  s.drop_t = drop_t;
  s.close_reason = reason;
  s.closed_at = events.front().time;
  d.last_closed = s;
  d.open.reset();
  d.last_end_t = end_t;
  d.buffer.erase(d.buffer.begin(), std::find_if(d.buffer.begin(), d.buffer.end(),
                                                [&](const Sample& x) { return x.t > end_t; }));
  if (drop_t)
    spdlog::info("session {} closed at DROP, {:.0f} s after CHARGE", s.id, *drop_t - s.charge_t);
  else
    spdlog::info("session {} closed ({}), {:.0f} s after CHARGE", s.id, reason, end_t - s.charge_t);
  if (too_short) {
    spdlog::info(
        "session {}: {:.0f} s from CHARGE to its end is shorter than sessions.min_length_s ({:.0f} "
        "s): no report (a roaster's mark or weights asking for one starts it)",
        s.id, length, options_.min_length_s);
    return;
  }
  hand_on(s);
}

bool Sessionizer::hand_on(const SessionInfo& s, const std::optional<std::string>& due_since) {
  if (!on_closed_) return false;
  try {
    // Until the mission is recorded the report stays due: start_due_reports() hands it on again
    // if this process stops (or the start fails) in between.
    if (const auto mission = on_closed_(s)) return set_mission(s, *mission, due_since);
  } catch (const std::exception& e) {
    spdlog::error("session {}: its report: {}", s.id, e.what());
  }
  return false;
}

void Sessionizer::start_due_reports() {
  if (!on_closed_) return;
  const auto now = std::chrono::system_clock::now();
  const auto steady = std::chrono::steady_clock::now();
  const auto retry = std::chrono::duration<double>(options_.report_retry_s);
  const auto age = std::chrono::duration_cast<std::chrono::system_clock::duration>(retry);
  const std::string day_ago = ledger::utc_millis(now - std::chrono::hours(24));
  std::vector<std::pair<std::string, std::string>> due;       // (id, tenant), newest first
  Connection c(ledger_.path(), Connection::Mode::kReadOnly);  // each read its own transaction
  {
    auto st = c.prepare(
        "SELECT id, tenant FROM telemetry_sessions WHERE report_due IS NOT NULL AND report_due <= "
        "? AND report_due >= ? AND state = 'closed' ORDER BY report_due DESC LIMIT 1000");
    st.bind(1, ledger::utc_millis(now - age)).bind(2, day_ago);
    while (st.step()) due.emplace_back(st.text(0), st.text(1));
    // Older ones are not started again (a roast's report a day late is news to nobody): said
    // once, so that they are not lost without a word.
    if (!told_of_stale_reports_) {
      told_of_stale_reports_ = true;
      auto old = c.prepare(
          "SELECT count(*), min(report_due) FROM telemetry_sessions WHERE report_due < ? AND "
          "state = 'closed'");
      old.bind(1, day_ago);
      if (old.step() && old.int64(0) > 0)
        spdlog::warn(
            "sessions: {} session(s) have had their report due for more than a day (the oldest "
            "since {}) and are not started again: `kiln sessions list` shows them without a "
            "mission; `kiln mission start` with their session starts one",
            old.int64(0), old.text(1));
    }
  }
  for (const auto& [id, tenant] : due) {
    auto& backoff = report_backoff_[id];
    if (steady < backoff.next) continue;
    // Read again just before: a roaster's change (this process or another) may have started
    // and recorded a newer report meanwhile, which this one must not replace. One in this
    // process waits until this session's report is recorded (report_mu_).
    const std::lock_guard report_lock(report_mu_);
    std::optional<SessionInfo> s;
    std::string since;
    {
      auto st = c.prepare(std::string("SELECT ") + kColumns +
                          ", report_due FROM telemetry_sessions WHERE id = ? AND tenant = ? AND "
                          "state = 'closed' AND report_due IS NOT NULL");
      st.bind(1, id).bind(2, tenant);
      if (st.step()) {
        s = row(st);
        since = st.text(20);
      }
    }
    if (!s) {
      report_backoff_.erase(id);
      continue;
    }
    spdlog::warn(
        "session {}: its report has been due since {} and no mission was recorded for it (the "
        "process stopped before, or starting it failed): starting it now",
        id, since);
    if (hand_on(*s, since)) {
      report_backoff_.erase(id);
    } else {  // failing again: asked less often (up to hourly), not every pass for a day
      backoff.next = steady + std::min<std::chrono::steady_clock::duration>(
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      retry * (1 << std::min(backoff.failures, 7))),
                                  std::chrono::hours(1));
      ++backoff.failures;
    }
  }
}

void Sessionizer::sweep() {
  std::lock_guard lock(state_mu_);
  const auto now = std::chrono::steady_clock::now();
  for (auto& [id, d] : devices_)
    if (d.open && now - d.last_arrival > std::chrono::duration<double>(options_.silence_s))
      close_session(d, d.buffer.empty() ? d.open->charge_t : d.buffer.back().t, "silence");
}

bool Sessionizer::set_mission(const SessionInfo& s, const std::string& mission_id,
                              const std::optional<std::string>& due_since) {
  bool recorded = false;
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    if (due_since) {
      auto st = c.prepare("SELECT report_due FROM telemetry_sessions WHERE id = ? AND tenant = ?");
      st.bind(1, s.id).bind(2, s.tenant);
      if (!st.step() || st.is_null(0) || st.text(0) != *due_since) {
        spdlog::info("session {}: mission {} not recorded: a newer report was started meanwhile",
                     s.id, mission_id);
        return {};
      }
    }
    recorded = true;
    return {ledger::NewEvent{s.tenant, "sessions", "session.reported",
                             json::object{{"session", s.id}, {"mission", mission_id}}}};
  });
  return recorded;
}

namespace {

// The session a roaster changes (marks, weights), as stored, with its newest reading. Throws
// MissionError (not_found) naming where the sessions are listed.
SessionInfo session_to_change(Connection& c, const std::string& tenant, const std::string& id) {
  auto st = c.prepare(std::string("SELECT ") + kColumns +
                      " FROM telemetry_sessions WHERE id = ? AND tenant = ?");
  st.bind(1, id).bind(2, tenant);
  if (!st.step()) throw MissionError(MissionError::Code::kNotFound, no_session(id, tenant));
  auto s = row(st);
  find_last_reading(c, s);
  return s;
}

}  // namespace

std::optional<std::string> markable_event(std::string_view text) {
  auto key = [](std::string_view name) {
    std::string k;
    for (char c : name)
      if (c != '_' && c != ' ' && c != '-') k += static_cast<char>(std::tolower(c));
    return k;
  };
  for (const char* e : kMarkableEvents)
    if (key(e) == key(text)) return std::string(e);
  return std::nullopt;
}

Mark Mark::from_json(const json::object& b) {
  Mark m;
  if (const auto* e = b.if_contains("event"); e && e->is_string()) m.event = e->as_string();
  if (const auto* t = b.if_contains("t"); t && t->is_number()) m.t = t->to_number<double>();
  if (const auto* a = b.if_contains("after_charge"); a && a->is_number())
    m.after_charge = a->to_number<double>();
  if (const auto* c = b.if_contains("clear"); c && c->is_bool()) m.clear = c->as_bool();
  if (m.clear && (m.t || m.after_charge))
    throw MissionError(MissionError::Code::kInvalidInput,
                       "clear removes the mark: give no time with it (t, after_charge, --at)");
  if (m.t && m.after_charge)
    throw MissionError(MissionError::Code::kInvalidInput,
                       "give the time once: t (the device's clock) or after_charge");
  return m;
}

SessionInfo Sessionizer::mark(const std::string& tenant, const std::string& id, const Mark& m,
                              const missions::Actor& by, bool report) {
  require_operator(by, "marking a roast event");
  const auto event = markable_event(m.event);
  if (!event) {
    const std::string key = common::to_lower(m.event);
    const std::string hint = key == "fc" || key.find("first") != std::string::npos
                                 ? " (first crack: FCs)"
                             : key.rfind("sc", 0) == 0 || key.find("second") != std::string::npos
                                 ? " (second crack is not analysed: it is not marked here)"
                             : key == "tp" ? " (TP is always the lowest BT after CHARGE)"
                                           : "";
    throw MissionError(MissionError::Code::kInvalidInput,
                       "'" + m.event +
                           "' is not an event a roaster marks: one of CHARGE, DRY_END, FCs, DROP" +
                           hint,
                       "event");
  }
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  // The request member a time refused was in (none for a mark at now).
  const std::string time_field = m.t ? "t" : m.after_charge ? "after_charge" : "";
  // The readings TP is found in, read before the ledger's writer runs the change (it stays free
  // for other writes meanwhile); a reading arriving in between only continues the roast.
  std::vector<Sample> readings;
  const bool at_now = !m.clear && !m.t && !m.after_charge;
  std::optional<double> quiet_s;  // since this process last had a batch of its open session
  double quiet_limit_s = options_.live_mark_quiet_s;
  if (!m.clear && (*event != "CHARGE" || at_now))
    if (const auto s = get(ledger_.path(), tenant, id)) {
      if (*event != "CHARGE") readings = samples(ledger_.path(), *s);
      std::lock_guard lock(state_mu_);
      if (auto it = devices_.find({tenant, s->device});
          at_now && it != devices_.end() && it->second.open && it->second.open->id == id) {
        quiet_s = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                it->second.last_arrival)
                      .count();
        quiet_limit_s += 2 * std::max(0.0, it->second.last_batch_span_s);
      }
    }
  SessionInfo after;
  bool changed = false;
  std::unique_lock report_lock(report_mu_, std::defer_lock);
  if (report) report_lock.lock();  // until its report is handed on (report_mu_)
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    auto s = session_to_change(c, tenant, id);
    after = s;
    json::value t = nullptr;
    if (m.clear) {
      if (!s.marks.erase(*event)) {
        std::string marked;
        for (const auto& [e, x] : s.marks) marked += (marked.empty() ? "" : ", ") + e;
        throw MissionError(MissionError::Code::kInvalidState,
                           "session " + id + " has no " + *event + " mark to clear (" +
                               (marked.empty() ? "it has no marks" : "marked: " + marked) + ")",
                           "event");
      }
    } else {
      // Times as the roast's clock reads them: from CHARGE (the marked one, else the detected).
      const double charge = s.marks.count("CHARGE") ? s.marks.at("CHARGE") : s.charge_t;
      auto clock = [&](double x) {
        const long v = std::lround(x - charge);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%s%ld:%02ld", v < 0 ? "-" : "", std::labs(v) / 60,
                      std::labs(v) % 60);
        return std::string(buf);
      };
      // A mark without a time is one made as it happens: a closed session's roast is over.
      if (!m.t && !m.after_charge && s.end_t)
        throw MissionError(MissionError::Code::kInvalidInput,
                           "session " + id + " is closed, so a mark needs its time: when " +
                               *event + " happened after CHARGE (`kiln sessions mark " + id + " " +
                               *event + " --at M:SS`; over HTTP after_charge, in seconds)",
                           "after_charge");
      // Made as it happens while nothing comes in (the recorder stopped, or its batches wait in
      // a spool): now is past the readings, and the report would move the mark to the last.
      if (at_now && quiet_s && *quiet_s > quiet_limit_s)
        throw MissionError(
            MissionError::Code::kInvalidInput,
            "no readings of session " + id + " have arrived for " +
                std::to_string(std::lround(*quiet_s)) + " s" +
                (s.last_t ? " (the newest is at " + clock(*s.last_t) + " after CHARGE)"
                          : std::string()) +
                ", so now is past them: give the time " + *event +
                " happened (`kiln sessions mark " + id + " " + *event +
                " --at M:SS`; over HTTP after_charge, in seconds)",
            "after_charge");
      const double when = m.t ? *m.t : m.after_charge ? charge + *m.after_charge : now;
      // A mark at now is placed by this machine's clock; a roaster's clock that disagrees (a
      // simulated one run faster than real time) puts it somewhere else on the curve.
      const std::string clocks_hint =
          at_now ? "; the mark is now by this machine's clock" +
                       (s.last_t ? ", and the roast's newest reading is at " + clock(*s.last_t)
                                 : std::string()) +
                       ": where the roaster's clock and this one disagree (a simulated roaster "
                       "run faster than real time), give the time after CHARGE (--at M:SS)"
                 : std::string();
      // Within the session's readings; an open one's go on (a mark may come before the batch
      // holding the reading it marks).
      const double last = s.end_t ? *s.end_t : std::max(now, s.last_t.value_or(now)) + 60;
      if (!std::isfinite(when) || when < s.start_t || when > last) {
        throw MissionError(MissionError::Code::kInvalidInput,
                           *event + " at " + clock(when) + " after CHARGE is outside session " +
                               id + " (" + clock(s.start_t) + " to " +
                               (s.end_t ? clock(*s.end_t) : std::string("now")) + ")" + clocks_hint,
                           time_field);
      }
      // In roast order with the other marks, the detected CHARGE and the DROP it closed at.
      std::map<std::string, std::pair<double, const char*>> at;
      for (const auto& [e, x] : s.marks) at[e] = {x, "marked"};
      if (!at.count("CHARGE")) at["CHARGE"] = {s.charge_t, "detected"};
      if (!at.count("DROP") && s.drop_t) at["DROP"] = {*s.drop_t, "detected"};
      at[*event] = {when, "marked"};
      const char* prev = nullptr;
      for (const char* e : kMarkableEvents) {
        if (!at.count(e)) continue;
        if (prev && !(at.at(prev).first < at.at(e).first) && (*event == prev || *event == e)) {
          const bool self_first = *event == prev;
          const char* other = self_first ? e : prev;
          throw MissionError(
              MissionError::Code::kInvalidInput,
              *event + " at " + clock(when) + " is not " + (self_first ? "before " : "after ") +
                  other + " (" + at.at(other).second + " at " + clock(at.at(other).first) +
                  "): a roast passes CHARGE, DRY_END, FCs, DROP in that order" + clocks_hint,
              time_field);
        }
        prev = e;
      }
      // After TP, the lowest BT after CHARGE, for the events that follow it: FCs at 1:00 is a
      // mistyped time (8:00?), not a roast.
      if (*event != "CHARGE") {
        const double charge_at = at.at("CHARGE").first;
        const double drop_at = at.count("DROP") && *event != "DROP"
                                   ? at.at("DROP").first
                                   : s.end_t.value_or(std::numeric_limits<double>::infinity());
        std::optional<Sample> tp;
        for (const auto& x : readings)
          if (x.t >= charge_at && x.t <= drop_at && (!tp || x.bt < tp->bt)) tp = x;
        if (tp && when <= tp->t) {
          char bt[32];
          std::snprintf(bt, sizeof bt, "%.1f", tp->bt);
          throw MissionError(
              MissionError::Code::kInvalidInput,
              *event + " at " + clock(when) + " is not after TP, the lowest BT after CHARGE (" +
                  bt + " °C at " + clock(tp->t) + "): a roast passes TP before " + *event +
                  (at_now ? clocks_hint
                          : "; is the time right? (on the command line M:SS after CHARGE, "
                            "8:00; in after_charge seconds, 480)"),
              time_field);
        }
      }
      s.marks[*event] = when;
      t = when;
    }
    after = s;
    changed = true;
    return {ledger::NewEvent{tenant, "sessions", "session.marked",
                             json::object{{"session", id},
                                          {"event", *event},
                                          {"t", t},
                                          {"actor", by.to_json()},
                                          {"report", report}}}};
  });
  if (changed) changed_by_roaster(after, report);
  return after;
}

void Sessionizer::changed_by_roaster(const SessionInfo& s, bool report) {
  {
    // The worker's copy: the mission it starts at the close sees the marks and weights.
    std::lock_guard lock(state_mu_);
    if (auto it = devices_.find({s.tenant, s.device}); it != devices_.end()) {
      for (auto* held : {&it->second.open, &it->second.last_closed})
        if (*held && (*held)->id == s.id) {
          (*held)->marks = s.marks;
          (*held)->green_g = s.green_g;
          (*held)->roasted_g = s.roasted_g;
        }
    }
  }
  if (report && s.state == "closed") {
    // The report to replace as it is now: a close handing the session on while this change was
    // made (it holds state_mu_ until its mission is recorded) has recorded one since `s` was read.
    auto now = s;
    if (const auto stored = get(ledger_.path(), s.tenant, s.id))
      now.mission_id = stored->mission_id;
    hand_on(now);
  }
}

SessionInfo Sessionizer::change(const std::string& tenant, const std::string& id,
                                const std::string& action, const json::object& body,
                                const missions::Actor& by) {
  const auto* r = body.if_contains("report");
  const bool report = !r || !r->is_bool() || r->as_bool();
  if (action == "mark") return mark(tenant, id, Mark::from_json(body), by, report);
  auto grams = [&](const char* key) -> std::optional<double> {
    const auto* v = body.if_contains(key);
    return v && v->is_number() ? std::optional<double>(v->to_number<double>()) : std::nullopt;
  };
  return weigh(tenant, id, grams("green_g"), grams("roasted_g"), by, report);
}

SessionInfo Sessionizer::weigh(const std::string& tenant, const std::string& id,
                               std::optional<double> green_g, std::optional<double> roasted_g,
                               const missions::Actor& by, bool report) {
  require_operator(by, "weighing a roast");
  if (!green_g && !roasted_g)
    throw MissionError(MissionError::Code::kInvalidInput,
                       "give a weight: green_g (the green beans charged) or roasted_g (the "
                       "roasted beans out), in grams",
                       "green_g");
  for (const auto& [g, field] : {std::pair{green_g, "green_g"}, std::pair{roasted_g, "roasted_g"}})
    if (g && !(std::isfinite(*g) && *g >= 10 && *g <= 100000)) {
      char buf[240];
      std::snprintf(buf, sizeof buf,
                    "the %s weight (%s) must be in grams, from 10 g to 100000 g (100 kg), not %g%s",
                    field == std::string("green_g") ? "green" : "roasted", field, *g,
                    *g > 0 && *g < 10 ? ": weights are in grams (500 for half a kilo)" : "");
      throw MissionError(MissionError::Code::kInvalidInput, buf, field);
    }
  SessionInfo after;
  bool changed = false;
  std::unique_lock report_lock(report_mu_, std::defer_lock);
  if (report) report_lock.lock();  // until its report is handed on (report_mu_)
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    auto s = session_to_change(c, tenant, id);
    after = s;
    const double green = green_g ? *green_g : s.green_g.value_or(0);
    const double roasted = roasted_g ? *roasted_g : s.roasted_g.value_or(0);
    if (green > 0 && roasted > 0 && !(roasted < green)) {
      char buf[200];
      std::snprintf(buf, sizeof buf,
                    "roasted beans weigh less than the green beans charged: %.1f g roasted is not "
                    "below %.1f g green",
                    roasted, green);
      throw MissionError(MissionError::Code::kInvalidInput, buf,
                         roasted_g ? "roasted_g" : "green_g");
    }
    // Coffee loses about 10-25 % of its weight in a roast: half or more is a typo.
    if (green > 0 && roasted > 0 && roasted < green / 2) {
      char buf[260];
      std::snprintf(buf, sizeof buf,
                    "%.1f g roasted from %.1f g green is a loss of %.0f %%; a roast loses about "
                    "10-25 %%: check the weights (grams; give both to correct one stored before)",
                    roasted, green, (green - roasted) / green * 100);
      throw MissionError(MissionError::Code::kInvalidInput, buf,
                         roasted_g ? "roasted_g" : "green_g");
    }
    // The same weights again record nothing.
    if ((!green_g || green_g == s.green_g) && (!roasted_g || roasted_g == s.roasted_g)) return {};
    if (green_g) s.green_g = green_g;
    if (roasted_g) s.roasted_g = roasted_g;
    after = s;
    changed = true;
    json::object payload{{"session", id}, {"actor", by.to_json()}, {"report", report}};
    if (green_g) payload["green_g"] = *green_g;
    if (roasted_g) payload["roasted_g"] = *roasted_g;
    return {ledger::NewEvent{tenant, "sessions", "session.weighed", std::move(payload)}};
  });
  if (changed) changed_by_roaster(after, report);
  return after;
}

std::vector<SessionInfo> Sessionizer::list(const std::filesystem::path& db, const ListFilter& f) {
  Connection c(db, Connection::Mode::kReadOnly);
  // One device's sessions are newest first by its recordings (boots), then start: a device whose
  // clock started over (or the simulator run ahead of the wall clock before) has a newer roast
  // at an earlier device time, and "the roaster's newest session" (predict and sessions mark
  // --device) took an older one. A session's newest boot is its last_boot once closed, its
  // first_boot while open (last_boot is set at the close). Across devices, boots do not
  // compare: by start.
  const char* boot =
      f.device ? "COALESCE(last_boot, first_boot, 0)" : "(0)";  // (0): not a column number
  // Keyset paging: the cursor is a session; the page goes on from its place in the order.
  double after_t = 0;
  std::int64_t after_boot = 0;
  if (f.starting_after) {
    auto at =
        c.prepare(std::string("SELECT start_t, ") + boot + " FROM telemetry_sessions WHERE id = ?" +
                  (f.tenant ? " AND tenant = ?" : ""));
    at.bind(1, *f.starting_after);
    if (f.tenant) at.bind(2, *f.tenant);
    if (!at.step())
      throw MissionError(
          MissionError::Code::kInvalidInput,
          (f.starting_after->empty()
               ? std::string("starting_after is empty: it takes")
               : "no session '" + *f.starting_after + "' to start after: starting_after takes") +
              " the id of the last session of the previous page",
          "starting_after");
    after_t = at.real(0);
    after_boot = at.int64(1);
  }
  std::string sql = std::string("SELECT ") + kColumns + " FROM telemetry_sessions WHERE 1";
  if (f.tenant) sql += " AND tenant = ?";
  if (f.device) sql += " AND device = ?";
  if (f.since) sql += " AND start_t >= ?";
  if (f.before) sql += " AND start_t < ?";
  if (f.state) sql += " AND state = ?";
  if (f.starting_after)
    sql += std::string(" AND (") + boot + " < ? OR (" + boot +
           " = ? AND (start_t < ? OR (start_t = ? AND id < ?))))";
  sql += std::string(" ORDER BY ") + (f.device ? std::string(boot) + " DESC, " : "") +
         "start_t DESC, id DESC LIMIT ?";
  auto st = c.prepare(sql);
  int i = 1;
  if (f.tenant) st.bind(i++, *f.tenant);
  if (f.device) st.bind(i++, *f.device);
  if (f.since) st.bind_real(i++, *f.since);
  if (f.before) st.bind_real(i++, *f.before);
  if (f.state) st.bind(i++, *f.state);
  if (f.starting_after) {
    st.bind(i++, after_boot);
    st.bind(i++, after_boot);
    st.bind_real(i++, after_t);
    st.bind_real(i++, after_t);
    st.bind(i++, *f.starting_after);
  }
  st.bind(i, f.limit);
  std::vector<SessionInfo> out;
  while (st.step()) out.push_back(row(st));
  for (auto& s : out) {
    find_last_reading(c, s);
    find_report(c, s);
  }
  return out;
}

std::optional<SessionInfo> Sessionizer::get(const std::filesystem::path& db,
                                            const std::optional<std::string>& tenant,
                                            const std::string& id) {
  Connection c(db, Connection::Mode::kReadOnly);
  auto st = c.prepare(std::string("SELECT ") + kColumns + " FROM telemetry_sessions WHERE id = ?" +
                      (tenant ? " AND tenant = ?" : ""));
  st.bind(1, id);
  if (tenant) st.bind(2, *tenant);
  if (!st.step()) return std::nullopt;
  auto s = row(st);
  find_last_reading(c, s);
  find_report(c, s);
  return s;
}

json::object Sessionizer::described(const std::filesystem::path& db, const SessionInfo& s) {
  auto o = s.to_json();
  o["samples"] = samples(db, s).size();
  return o;
}

std::vector<Sample> Sessionizer::samples(const std::filesystem::path& db, const SessionInfo& s,
                                         std::optional<double> after) {
  Connection c(db, Connection::Mode::kReadOnly);
  return samples_in(c, s, after);
}

namespace {

std::vector<Sample> samples_in(Connection& c, const SessionInfo& s, std::optional<double> after) {
  // Within its boots: another boot's clock may cover the same times (a clock that started over).
  // With `after`, batches that end by then are not even decoded.
  auto st = c.prepare(
      "SELECT samples, envelope FROM telemetry_all WHERE tenant = ? AND device = ? AND "
      "last_t >= ? AND first_t <= ? AND boot >= ? AND boot <= ? ORDER BY first_t, boot, seq");
  const double from = after ? std::max(s.start_t, std::nextafter(*after, 1e300)) : s.start_t;
  st.bind(1, s.tenant).bind(2, s.device).bind_real(3, from);
  st.bind_real(4, s.end_t ? *s.end_t : 1e18);
  st.bind(5, s.first_boot.value_or(0));
  st.bind(6, s.last_boot.value_or(std::numeric_limits<std::int64_t>::max()));
  std::vector<Sample> out;
  while (st.step()) {
    // The signed envelope as it arrived; JSON rows for batches stored before migration 8.
    const auto batch = st.is_null(1) ? samples_from_json(json::parse(st.text(0)).as_array())
                                     : samples_from_envelope(st.blob(1), s.tenant, s.device);
    for (const auto& x : batch)
      if (x.t >= from && (!s.end_t || x.t <= *s.end_t)) out.push_back(x);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Sample& a, const Sample& b) { return a.t < b.t; });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const Sample& a, const Sample& b) { return a.t == b.t; }),
            out.end());
  return out;
}

}  // namespace

}  // namespace kiln::telemetry
