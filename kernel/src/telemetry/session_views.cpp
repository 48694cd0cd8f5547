#include "telemetry/session_views.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <optional>

#include "auth/keys.hpp"
#include "telemetry/sessions.hpp"

namespace kiln::telemetry {

namespace json = boost::json;

namespace {

// 581.4 → "9:41".
std::string mmss(double seconds) {
  const long t = std::lround(seconds);
  char buf[24];
  std::snprintf(buf, sizeof buf, "%s%ld:%02ld", t < 0 ? "-" : "", std::labs(t) / 60,
                std::labs(t) % 60);
  return buf;
}

// The error of a step, its message prefixed with what the step was for.
Unexpected<ToolError> failed(const char* step, ToolError e) {
  e.message = std::string(step) + ": " + e.message;
  return Unexpected<ToolError>{std::move(e)};
}

// The roaster's settings as Artisan's controls (Heater, Fan, Drum on its 0-100 sliders: a Bullet
// R1's levels × 10): each control's level at the first reading, then each change, in time order.
// A control whose readings never leave 0 is one the roaster does not have.
json::array controls_of(const json::object& curve) {
  json::array out;
  for (auto [key, name] : {std::pair{"heater", "Heater"}, {"fan", "Fan"}, {"drum", "Drum"}}) {
    const auto* v = curve.if_contains(key);
    if (!v || !v->is_array()) continue;
    const auto& levels = v->as_array();
    bool used = false;
    for (const auto& x : levels) used = used || (x.is_number() && x.to_number<double>() != 0);
    if (!used) continue;
    std::optional<double> now;
    for (std::size_t i = 0; i < levels.size(); ++i) {
      if (!levels[i].is_number()) continue;
      const double level = levels[i].to_number<double>();
      if (now && *now == level) continue;
      now = level;
      out.push_back(json::object{
          {"index", static_cast<std::int64_t>(i)}, {"control", name}, {"value", level * 10}});
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const json::value& a, const json::value& b) {
    return a.at("index").as_int64() < b.at("index").as_int64();
  });
  return out;
}

// The roast's record as Artisan keeps it (roastdate "Fri Dec 04 2026", roastisodate, roasttime;
// UTC, as kiln keeps every time), from the session's CHARGE.
json::object record_of(const json::object& session) {
  json::object source;
  const auto* charge = session.if_contains("charge_t");
  if (charge && charge->is_number()) {
    const auto t = static_cast<std::time_t>(std::floor(charge->to_number<double>()));
    std::tm utc{};
    gmtime_r(&t, &utc);
    char date[32], iso[16], clock[16];
    std::strftime(date, sizeof date, "%a %b %d %Y", &utc);
    std::strftime(iso, sizeof iso, "%Y-%m-%d", &utc);
    std::strftime(clock, sizeof clock, "%H:%M:%S", &utc);
    source["date"] = date;
    source["isodate"] = iso;
    source["time"] = clock;
    source["epoch"] = static_cast<std::int64_t>(t);
  }
  if (const auto* d = session.if_contains("device"); d && d->is_string())
    source["roaster"] = "kiln device " + std::string(d->as_string());
  if (const auto* id = session.if_contains("id"); id && id->is_string())
    source["notes"] = "kiln session " + std::string(id->as_string()) + " (times in UTC)";
  return source;
}

}  // namespace

AcceptedBy accepted_in(const missions::MissionService& missions, std::optional<std::string> tenant,
                       std::filesystem::path db) {
  return [&missions, tenant = std::move(tenant),
          db = std::move(db)](const std::string& id) -> std::optional<std::string> {
    const auto m = missions.get(tenant, id);
    if (!m) return std::nullopt;
    for (const auto& s : m->steps)
      if (const auto* o = s.output.if_object())
        if (const auto* by = o->if_contains("accepted_by"); by && by->is_string())
          return auth::actor_named(db, std::string(by->as_string()));
    return std::nullopt;
  };
}

Result<json::object, ToolError> session_report(const ToolRunner& run, const std::string& session,
                                               const AcceptedBy& accepted) {
  auto s = run("telemetry.session", {{"session", session}});
  if (!s.ok()) return Unexpected<ToolError>{s.error()};
  const auto& rec = s.value().as_object();
  auto an = run("roast.analyze", {{"curve", rec.at("curve")}, {"ror_series", true}});
  if (!an.ok()) return failed("analysis", an.error());
  // Made to be read, not kept: a view asked again and again writes no files.
  json::object in{{"session", rec.at("session")},
                  {"curve", rec.at("curve")},
                  {"analysis", an.value()},
                  {"keep", false}};
  // A roast under way is checked once it is over: until then every missing event would fail.
  const auto& info = rec.at("session").as_object();
  if (const auto* state = info.if_contains("state"); state && *state == "open") {
    in["qc"] = json::object{{"verdict", "pending"}, {"checks", json::array{}}};
  } else {
    auto qc = run("roast.qc", {{"analysis", an.value()}, {"targets", rec.at("targets")}});
    if (!qc.ok() && qc.error().code != "qc_failed") return failed("quality check", qc.error());
    // A failed check carries the checks in its details.
    if (json::value v = qc.ok() ? qc.value() : qc.error().details; v.is_object()) in["qc"] = v;
    if (const auto* mission = info.if_contains("mission_id");
        !qc.ok() && accepted && mission && mission->is_string() && in.contains("qc"))
      if (auto who = accepted(std::string(mission->as_string())))
        in["qc"].as_object()["accepted_by"] = *who;
  }
  if (const auto* ref = rec.if_contains("reference"); ref && ref->is_object())
    in["reference"] = *ref;
  auto rep = run("roast.report", std::move(in));
  if (!rep.ok()) return failed("report", rep.error());
  return rep.value().as_object();
}

Result<json::object, ToolError> session_predict(const ToolRunner& run, const std::string& session) {
  auto s = run("telemetry.session", {{"session", session}});
  if (!s.ok()) return Unexpected<ToolError>{s.error()};
  const auto& rec = s.value().as_object();
  const auto& info = rec.at("session").as_object();
  if (const auto* state = info.if_contains("state"); state && *state == "closed") {
    std::string what = "session " + session + " is closed (" +
                       (info.contains("close_reason") && info.at("close_reason").is_string()
                            ? std::string(info.at("close_reason").as_string())
                            : std::string("closed")) +
                       ")";
    if (const auto* drop = info.if_contains("drop_t"); drop && drop->is_number())
      what += ": the roast dropped at " +
              mmss(drop->to_number<double>() - info.at("charge_t").to_number<double>()) +
              " after CHARGE";
    what += "; nothing to predict (its report has the analysis: `kiln report " + session +
            " -o report.html`, GET /v1/sessions/" + session + "/report)";
    return json::object{{"status", "closed"}, {"message", what}};
  }
  json::object in{{"curve", rec.at("curve")}};
  if (const auto* t = rec.if_contains("targets"); t && t->is_object())
    if (const auto* dtr = t->as_object().if_contains("dtr"); dtr && dtr->is_object()) {
      const auto& d = dtr->as_object();
      std::optional<double> aim;
      if (d.contains("target") && d.at("target").is_number())
        aim = d.at("target").to_number<double>();
      else if (d.contains("min") && d.contains("max") && d.at("min").is_number() &&
               d.at("max").is_number())
        aim = (d.at("min").to_number<double>() + d.at("max").to_number<double>()) / 2;
      if (aim) in["dtr"] = std::clamp(*aim, 5.0, 40.0);
    }
  auto p = run("roast.predict", std::move(in));
  if (!p.ok()) return failed("prediction", p.error());
  return p.value().as_object();
}

Result<json::object, ToolError> session_alog(const ToolRunner& run, const std::string& session) {
  auto s = run("telemetry.session", {{"session", session}});
  if (!s.ok()) return Unexpected<ToolError>{s.error()};
  const auto& curve = s.value().at("curve").as_object();
  const auto& info = s.value().at("session").as_object();
  auto an = run("roast.analyze", {{"curve", curve}});
  if (!an.ok()) return failed("analysis", an.error());
  const auto& analysis = an.value().as_object();
  // Titled as a roaster finds it in Artisan: the roaster and when ("r1 2026-12-04 10:20 UTC").
  auto record = record_of(info);
  std::string title = session;
  if (const auto* d = info.if_contains("device"); d && d->is_string() && record.contains("isodate"))
    title = std::string(d->as_string()) + " " + std::string(record.at("isodate").as_string()) +
            " " + std::string(record.at("time").as_string()).substr(0, 5) + " UTC";
  json::object profile{{"curve", curve},
                       {"events", analysis.at("events")},
                       {"unit", "C"},
                       {"title", title},
                       {"source", std::move(record)}};
  // The batch's weights (kiln sessions weigh) and the roaster's settings, as Artisan keeps them.
  if (const auto* w = curve.if_contains("weight"); w && w->is_object()) profile["weight"] = *w;
  if (auto controls = controls_of(curve); !controls.empty())
    profile["controls"] = std::move(controls);
  if (const auto* src = analysis.if_contains("event_sources")) profile["event_sources"] = *src;
  if (const auto* ph = curve.if_contains("phases"); ph && ph->is_array()) profile["phases"] = *ph;
  auto alog = run("roast.profile_export", {{"profile", profile}});
  if (!alog.ok()) return failed("export", alog.error());
  bool estimated = false;
  if (const auto* src = analysis.if_contains("event_sources"); src && src->is_object())
    if (const auto* fcs = src->as_object().if_contains("FCs"); fcs && fcs->is_string())
      estimated = fcs->as_string() != "marked";
  return json::object{{"alog", alog.value().at("alog")},
                      {"bytes", alog.value().at("bytes")},
                      {"fcs_estimated", estimated}};
}

Result<missions::StoredArtifact, ToolError> session_summary_audio(
    const std::filesystem::path& db, const missions::MissionService& missions,
    const std::optional<std::string>& tenant, const std::string& session) {
  auto not_ready = [&](std::string message, json::object details) {
    details["session"] = session;
    return Unexpected<ToolError>{ToolError{"not_ready", std::move(message), false, details}};
  };
  const auto s = Sessionizer::get(db, tenant, session);
  if (!s)
    return Unexpected<ToolError>{ToolError{error_code::kNotFound, no_session(session, tenant),
                                           false, json::object{{"session", session}}}};
  if (!s->mission_id)
    return not_ready(
        "session " + session + " has no report yet" +
            (s->state == "open" ? " (it is still under way; its report mission starts when it "
                                  "closes)"
                                : " (no report mission was started for it: is the roast plugin "
                                  "loaded?)"),
        {{"state", s->state}});
  const std::string& id = *s->mission_id;
  const auto m = missions.get(tenant, id);
  if (m)
    for (const auto& step : m->steps)
      for (const auto& f : step.artifacts)
        if (f.media_type.starts_with("audio/"))
          if (auto a = missions.artifact(tenant, id, step.step, f.name)) return std::move(*a);
  const std::string state = m ? m->state : "missing";
  if (state == missions::state::kDone)
    if (auto gone = missions.released(tenant, id, "", "", "audio/"))
      return Unexpected<ToolError>{
          ToolError{error_code::kNotFound,
                    "the spoken summary of session " + session + " (report mission " + id +
                        ") was " + *gone + "; the ledger keeps its SHA-256",
                    false, json::object{{"session", session}, {"mission", id}}}};
  return not_ready(
      "the report mission " + id + " of session " + session + " has no spoken summary" +
          (state == missions::state::kQuarantined
               ? " yet: it is QUARANTINED for an approver (kiln mission approve " + id + ")"
           : state == missions::state::kDone
               ? " (its template speaks none)"
               : " yet (it is " + state + "; kiln mission show " + id + ")"),
      {{"mission", id}, {"mission_state", state}});
}

}  // namespace kiln::telemetry
