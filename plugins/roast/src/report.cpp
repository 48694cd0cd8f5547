#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <regex>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "analysis.hpp"
#include "profile.hpp"

namespace kiln::roast {
namespace json = boost::json;

namespace {

std::string esc(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string f1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::vector<double> numbers(const json::object& o, const char* key) {
  std::vector<double> out;
  const auto* v = o.if_contains(key);
  if (!v) return out;
  if (!v->is_array()) throw std::invalid_argument(std::string("curve.") + key + " is not a list");
  for (const auto& x : v->as_array()) out.push_back(x.is_number() ? x.to_number<double>() : NAN);
  return out;
}

std::optional<double> at(const json::object& o, std::initializer_list<const char*> path) {
  const json::value* v = nullptr;
  const json::object* cur = &o;
  for (const char* k : path) {
    if (!cur) return std::nullopt;
    v = cur->if_contains(k);
    if (!v) return std::nullopt;
    cur = v->is_object() ? &v->as_object() : nullptr;
  }
  if (!v || !v->is_number()) return std::nullopt;
  return v->to_number<double>();
}

std::string spoken_time(double s) {
  const int t = static_cast<int>(std::lround(s));
  const int m = t / 60, sec = t % 60;
  std::string out = std::to_string(m) + (m == 1 ? " minute" : " minutes");
  if (sec) out += " " + std::to_string(sec) + (sec == 1 ? " second" : " seconds");
  return out;
}

// A QC reason as it is said: "FCs at 7:15, 0:17 later than 5:58–6:58" → "FCs at 7 minutes 15
// seconds, 17 seconds later than 5 minutes 58 seconds to 6 minutes 58 seconds".
std::string speakable(std::string text) {
  static const std::regex clock("\\b([0-9]+):([0-5][0-9])\\b");
  std::string out;
  auto it = std::sregex_iterator(text.begin(), text.end(), clock);
  std::size_t from = 0;
  for (; it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    out += text.substr(from, static_cast<std::size_t>(m.position()) - from);
    const int minutes = std::stoi(m[1].str()), seconds = std::stoi(m[2].str());
    out += minutes ? spoken_time(minutes * 60 + seconds)
                   : std::to_string(seconds) + (seconds == 1 ? " second" : " seconds");
    from = static_cast<std::size_t>(m.position() + m.length());
  }
  out += text.substr(from);
  for (const auto& [sign, words] :
       std::initializer_list<std::pair<std::string, std::string>>{{"–", " to "},
                                                                  {" °C/min", " degrees a minute"},
                                                                  {" °F/min", " degrees a minute"},
                                                                  {" °C", " degrees"},
                                                                  {" °F", " degrees"},
                                                                  {" %", " percent"}})
    for (std::size_t at; (at = out.find(sign)) != std::string::npos;)
      out.replace(at, sign.size(), words);
  return out;
}

// `text` without the commands it names in parentheses ("(kiln sessions mark SESSION DROP --at
// M:SS)"): a command is for reading, not for hearing.
std::string without_commands(std::string text) {
  for (std::size_t at; (at = text.find(" (kiln ")) != std::string::npos;) {
    const auto end = text.find(')', at);
    if (end == std::string::npos) break;
    text.erase(at, end + 1 - at);
  }
  return text;
}

// A sentence begins with a capital ("the time of FCs …" follows a full stop).
std::string sentence(std::string text) {
  if (!text.empty() && text[0] >= 'a' && text[0] <= 'z') text[0] = static_cast<char>(text[0] - 32);
  return text;
}

std::string joined(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// FCs not marked by the roaster but estimated from the curve (the detector's phase temperature).
bool fcs_estimated(const boost::json::object& analysis) {
  const auto* sources = analysis.if_contains("event_sources");
  if (!sources || !sources->is_object()) return false;
  const auto* f = sources->as_object().if_contains("FCs");
  return f && f->is_string() && f->as_string() != "marked";
}

// The profile to compare with (ReportInput::reference) and its label "name vN"; nullopt without
// one. Throws std::invalid_argument for an unusable one.
std::optional<ReferenceCurve> reference_of(const ReportInput& in, std::string* label) {
  const auto* body = in.reference.if_contains("profile");
  if (!body || !body->is_object()) return std::nullopt;
  std::optional<ReferenceCurve> ref;
  try {
    ref = reference_curve(body->as_object());
  } catch (const AlogError& e) {
    throw std::invalid_argument(std::string("reference.profile: ") + e.what());
  }
  label->clear();
  if (const auto* n = in.reference.if_contains("name"); n && n->is_string())
    *label = std::string(n->as_string());
  if (auto v = at(in.reference, {"version"}))
    *label += " v" + std::to_string(static_cast<long long>(*v));
  return ref;
}

// A roaster's settings through the roast on the roaster's own scale (a Bullet R1's panel): P the
// heater's power, F the fan, D the drum's speed. `t` is seconds after CHARGE.
struct Setting {
  double t;
  char control;  // 'P', 'F' or 'D'
  int level;
};

const char* control_name(char c) {
  return c == 'P' ? "heater" : c == 'F' ? "fan" : "drum";
}

// The levels in force at CHARGE (the last of each control at or before it) and every change
// after it, in time order; readings of one control that never leave 0 are a roaster without it.
std::vector<Setting> changes_of(std::vector<Setting> all) {
  std::stable_sort(all.begin(), all.end(),
                   [](const Setting& a, const Setting& b) { return a.t < b.t; });
  std::vector<Setting> out;
  std::map<char, int> now;
  std::map<char, bool> used;
  for (const auto& s : all) used[s.control] = used[s.control] || s.level != 0;
  for (const auto& s : all) {
    if (!used[s.control]) continue;
    if (s.t <= 0) {
      now[s.control] = s.level;
      continue;
    }
    if (out.empty())  // the first change: what CHARGE began with comes first
      for (const auto& [c, level] : now) out.push_back({0, c, level});
    if (auto it = now.find(s.control); it != now.end() && it->second == s.level) continue;
    now[s.control] = s.level;
    out.push_back(s);
  }
  if (out.empty())
    for (const auto& [c, level] : now) out.push_back({0, c, level});
  // P, F, D at one moment (the same second) in that order, as the panel reads.
  const auto key = [](const Setting& s) {
    return std::tuple(std::lround(s.t), s.control == 'P' ? 0 : s.control == 'F' ? 1 : 2, s.t);
  };
  std::stable_sort(out.begin(), out.end(),
                   [&](const Setting& a, const Setting& b) { return key(a) < key(b); });
  return out;
}

// A recorded roast's settings: the curve's heater, fan and drum readings from CHARGE to DROP (to
// the last reading without one).
std::vector<Setting> curve_settings(const json::object& curve, const std::vector<double>& time,
                                    double charge_offset, std::optional<double> drop) {
  std::vector<Setting> all;
  for (const auto& [key, c] : {std::pair{"heater", 'P'}, {"fan", 'F'}, {"drum", 'D'}}) {
    const auto v = numbers(curve, key);
    if (v.size() != time.size()) continue;
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double t = time[i] - charge_offset;
      if (drop && t > *drop + 0.5) break;
      if (std::isfinite(v[i])) all.push_back({t, c, static_cast<int>(std::lround(v[i]))});
    }
  }
  return changes_of(std::move(all));
}

// A profile's settings: its Artisan controls named Heater, Fan and Drum (a Bullet R1's log), on
// Artisan's 0-100 sliders, which step the R1's levels by 10 (Fan 20 is F2).
std::vector<Setting> profile_settings(const json::object& profile) {
  std::vector<Setting> all;
  const auto* cs = profile.if_contains("controls");
  if (!cs || !cs->is_array()) return {};
  for (const auto& v : cs->as_array()) {
    const auto* o = v.if_object();
    if (!o) continue;
    const auto t = at(*o, {"t"}), value = at(*o, {"value"});
    const auto* name = o->if_contains("control");
    if (!t || !value || !name || !name->is_string()) continue;
    const std::string n(name->as_string());
    const char c = n == "Heater" ? 'P' : n == "Fan" ? 'F' : n == "Drum" ? 'D' : 0;
    if (c) all.push_back({*t, c, static_cast<int>(std::lround(*value / 10))});
  }
  return changes_of(std::move(all));
}

// The roast's own settings (ReportInput::curve), from CHARGE to DROP.
std::vector<Setting> roast_settings(const ReportInput& in) {
  const auto time = numbers(in.curve, "time");
  if (time.empty()) return {};
  double charge_offset = time.front();
  if (auto idx = at(in.analysis, {"events", "CHARGE", "index"});
      idx && *idx >= 0 && *idx < static_cast<double>(time.size()))
    charge_offset = time[static_cast<std::size_t>(*idx)];
  return curve_settings(in.curve, time, charge_offset, at(in.analysis, {"events", "DROP", "time"}));
}

// The profile's (ReportInput::reference), or none.
std::vector<Setting> reference_settings(const ReportInput& in) {
  const auto* body = in.reference.if_contains("profile");
  return body && body->is_object() ? profile_settings(body->as_object()) : std::vector<Setting>{};
}

// "0:00 P7 F2 D9 · 3:30 F3 · 6:10 P6"
std::string settings_text(const std::vector<Setting>& settings) {
  std::string out;
  long moment = -1;
  for (const auto& s : settings) {
    const long t = std::lround(s.t);
    if (t != moment) out += (out.empty() ? "" : " · ") + clock_text(s.t);
    out += std::string(" ") + s.control + std::to_string(s.level);
    moment = t;
  }
  return out;
}

json::value settings_json(const std::vector<Setting>& settings) {
  if (settings.empty()) return nullptr;
  json::array out;
  for (const auto& s : settings)
    out.push_back(json::object{{"t", std::round(s.t * 10) / 10},
                               {"control", control_name(s.control)},
                               {"level", s.level}});
  return out;
}

// How the roast's settings kept to the profile's: the levels set at CHARGE (the last of each
// control in its first 5 s: a roaster sets the panel as the beans go in, and Artisan logs it a
// second or two later), then each of the profile's later changes against the roast's change of
// that control to that level nearest in time, each of the roast's changes answering one of the
// profile's at most. "F3 0:30 later (4:30; profile 4:00)", "P5 not made (profile 6:10)".
std::string settings_against(const std::vector<Setting>& ours, const std::vector<Setting>& theirs) {
  constexpr double kSettle = 5;  // s after CHARGE still "at CHARGE"; also the on-time tolerance
  const auto at_charge = [](const std::vector<Setting>& all) {
    std::map<char, int> level;
    for (const auto& s : all)
      if (s.t <= kSettle) level[s.control] = s.level;
    return level;
  };
  const auto ours_0 = at_charge(ours), theirs_0 = at_charge(theirs);
  std::vector<std::string> parts;
  for (const char c : {'P', 'F', 'D'}) {
    const auto o = ours_0.find(c), t = theirs_0.find(c);
    if (o != ours_0.end() && t != theirs_0.end() && o->second != t->second)
      parts.push_back("at CHARGE " + std::string(1, c) + std::to_string(o->second) + " (profile " +
                      std::string(1, c) + std::to_string(t->second) + ")");
  }
  // Nearest pairs first, so a change made on time answers the profile's change at that time
  // rather than an earlier one of the same level that was skipped.
  struct Pair {
    double gap;
    std::size_t p, s;
  };
  std::vector<Pair> pairs;
  for (std::size_t i = 0; i < theirs.size(); ++i)
    for (std::size_t j = 0; j < ours.size(); ++j)
      if (theirs[i].t > kSettle && ours[j].t > kSettle && theirs[i].control == ours[j].control &&
          theirs[i].level == ours[j].level)
        pairs.push_back({std::abs(ours[j].t - theirs[i].t), i, j});
  std::stable_sort(pairs.begin(), pairs.end(),
                   [](const Pair& a, const Pair& b) { return a.gap < b.gap; });
  std::vector<std::optional<std::size_t>> answer(theirs.size());
  std::vector<bool> taken(ours.size(), false);
  for (const auto& x : pairs)
    if (!answer[x.p] && !taken[x.s]) {
      answer[x.p] = x.s;
      taken[x.s] = true;
    }
  for (std::size_t i = 0; i < theirs.size(); ++i) {
    const auto& p = theirs[i];
    if (p.t <= kSettle) continue;
    const std::string what = std::string(1, p.control) + std::to_string(p.level);
    if (!answer[i]) {
      parts.push_back(what + " not made (profile " + clock_text(p.t) + ")");
      continue;
    }
    const auto& made = ours[*answer[i]];
    const double d = made.t - p.t;
    if (std::abs(d) >= kSettle)
      parts.push_back(what + " " + clock_text(std::abs(d)) + (d > 0 ? " later" : " earlier") +
                      " (" + clock_text(made.t) + "; profile " + clock_text(p.t) + ")");
  }
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out.empty() ? "as the profile (within 5 s)" : out;
}
}  // namespace

json::object report_summary(const ReportInput& in) {
  check_report_input(in);
  auto num = [](std::optional<double> v, double scale) {
    return v ? json::value(std::round(*v * scale) / scale) : json::value(nullptr);
  };
  json::object session;
  for (const char* k : {"id", "tenant", "device", "state", "charge_t", "drop_t", "profile"})
    if (const auto* v = in.session.if_contains(k)) session[k] = *v;
  json::object events;
  for (const char* ev : {"CHARGE", "TP", "DRY_END", "FCs", "DROP"}) {
    const auto t = at(in.analysis, {"events", ev, "time"});
    events[ev] =
        t ? json::value(json::object{{"time", num(t, 10)},
                                     {"bt", num(at(in.analysis, {"events", ev, "bt"}), 10)}})
          : json::value(nullptr);
  }
  if (events.at("FCs").is_object())
    events["FCs"].as_object()["estimated"] = fcs_estimated(in.analysis);
  // How each was found: "marked" (the roaster's, or the file's), or the detector's way.
  if (const auto* src = in.analysis.if_contains("event_sources"); src && src->is_object())
    for (auto& [name, e] : events)
      if (const auto* how = src->as_object().if_contains(name); how && e.is_object())
        e.as_object()["source"] = *how;
  json::object out{
      {"format", "kiln.roast-report/1"},
      {"title", in.title},
      {"session", std::move(session)},
      {"events", std::move(events)},
      {"phases", json::object{{"drying", num(at(in.analysis, {"phases", "drying"}), 10)},
                              {"maillard", num(at(in.analysis, {"phases", "maillard"}), 10)},
                              {"development", num(at(in.analysis, {"phases", "development"}), 10)},
                              {"dtr", num(at(in.analysis, {"phases", "dtr"}), 10)}}},
      {"auc", num(at(in.analysis, {"auc"}), 10)},
      {"ror", json::object{{"at_fcs", num(at(in.analysis, {"ror", "at", "FCs"}), 10)},
                           {"at_drop", num(at(in.analysis, {"ror", "at", "DROP"}), 10)}}},
      {"weight", json::object{{"green", num(at(in.analysis, {"weight", "in"}), 10)},
                              {"roasted", num(at(in.analysis, {"weight", "out"}), 10)},
                              {"loss_percent", num(at(in.analysis, {"weight", "loss"}), 10)}}},
      {"summary", spoken_summary(in)}};
  if (const auto* r = in.analysis.if_contains("ror"); r && r->is_object())
    for (const char* k : {"crash", "flick"})
      if (const auto* v = r->as_object().if_contains(k)) out["ror"].as_object()[k] = *v;
  json::value qc = nullptr;
  if (const auto* v = in.qc.if_contains("verdict"); v && v->is_string()) {
    json::array checks;
    if (const auto* cs = in.qc.if_contains("checks"); cs && cs->is_array())
      for (const auto& c : cs->as_array())
        checks.push_back(json::object{
            {"check", c.at("check")}, {"result", c.at("result")}, {"reason", c.at("reason")}});
    qc = json::object{{"verdict", *v}, {"checks", std::move(checks)}};
    // A failed roast an approver accepted (the mission was held, then approved): who did.
    if (const auto* by = in.qc.if_contains("accepted_by"); by && by->is_string())
      qc.as_object()["accepted_by"] = *by;
  }
  out["qc"] = std::move(qc);
  std::string label;
  json::value reference = nullptr;
  if (const auto ref = reference_of(in, &label)) {
    auto delta = [&](const char* event, const char* field, std::optional<double> theirs) {
      const auto ours = at(in.analysis, {"events", event, field});
      return ours && theirs ? json::value(std::round((*ours - *theirs) * 10) / 10)
                            : json::value(nullptr);
    };
    reference =
        json::object{{"profile", label},
                     {"fcs_time", num(ref->fcs_time, 10)},
                     {"drop_time", num(ref->drop_time, 10)},
                     {"drop_bt", num(ref->drop_bt, 10)},
                     {"delta", json::object{{"fcs_time", delta("FCs", "time", ref->fcs_time)},
                                            {"drop_time", delta("DROP", "time", ref->drop_time)},
                                            {"drop_bt", delta("DROP", "bt", ref->drop_bt)}}}};
  }
  const auto ours = roast_settings(in), theirs = reference_settings(in);
  out["settings"] = settings_json(ours);
  if (reference.is_object()) reference.as_object()["settings"] = settings_json(theirs);
  out["reference"] = std::move(reference);
  return out;
}

namespace {

// The summary aloud (times and units in words, for the speech engine) or written (m:ss, °C, %:
// the report page).
std::string summary_text(const ReportInput& in, bool aloud) {
  const auto& a = in.analysis;
  const auto when = [&](double t) { return aloud ? spoken_time(t) : clock_text(t); };
  const std::string degrees = aloud ? " degrees" : " °C", percent = aloud ? " percent" : " %";
  // What to call the roast aloud: a recorded session by its roaster and profile (its id is a
  // string of digits that takes seconds to say), anything else by its title.
  std::string name = "Roast " + in.title;
  if (const auto* device = in.session.if_contains("device"); device && device->is_string()) {
    name = "The roast on " + std::string(device->as_string());
    if (const auto* p = in.session.if_contains("profile"); p && p->is_object())
      if (const auto* n = p->as_object().if_contains("name"); n && n->is_string())
        name += ", profile " + std::string(n->as_string()) + ",";
  }
  // A session still open is a roast under way: its report is a snapshot, not the result.
  const auto* state = in.session.if_contains("state");
  std::string out = state && *state == "open"
                        ? name + " is still under way; this is its report so far."
                        : name + " is done.";
  if (auto fcs = at(a, {"events", "FCs", "time"})) {
    out +=
        fcs_estimated(a) ? " First crack, estimated from the temperature, at " : " First crack at ";
    out += when(*fcs);
    if (auto bt = at(a, {"events", "FCs", "bt"}))
      out += " at " + std::to_string(static_cast<int>(std::lround(*bt))) + degrees;
    out += ".";
  }
  if (auto drop = at(a, {"events", "DROP", "time"})) {
    out += " Dropped at " + when(*drop);
    if (auto bt = at(a, {"events", "DROP", "bt"}))
      out += " at " + std::to_string(static_cast<int>(std::lround(*bt))) + degrees;
    out += ".";
  }
  if (auto dtr = at(a, {"phases", "dtr"}))
    out += " Development " + std::to_string(static_cast<int>(std::lround(*dtr))) + percent + ".";
  if (auto loss = at(a, {"weight", "loss"})) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " Weight loss %.1f%s.", *loss, percent.c_str());
    out += buf;
  }
  if (const auto* v = in.qc.if_contains("verdict"); v && v->is_string()) {
    const std::string verdict(v->as_string());
    const bool accepted = in.qc.contains("accepted_by");
    out += verdict == "pending" ? std::string(" Quality check: once the roast is over.")
           : accepted           ? " Quality check: " + verdict + ", accepted by an approver."
                                : " Quality check: " + verdict + ".";
    // Every check that gave the verdict: an approver hears all that is wrong, not the first.
    // Reasons that end alike ("FCs not found: the readings end before DROP …", "DROP not found:
    // …") are said once, their beginnings joined; a command to type is not read aloud.
    if (verdict != "pass")
      if (const auto* checks = in.qc.if_contains("checks"); checks && checks->is_array()) {
        std::vector<std::pair<std::string, std::vector<std::string>>> said;  // (tail, heads)
        for (const auto& c : checks->as_array())
          if (c.as_object().at("result").as_string() == verdict) {
            std::string reason(c.as_object().at("reason").as_string());
            if (aloud) reason = speakable(without_commands(reason));
            const auto colon = reason.find(": ");
            const std::string head = colon == std::string::npos ? reason : reason.substr(0, colon);
            const std::string tail = colon == std::string::npos ? "" : reason.substr(colon + 2);
            auto it = std::find_if(said.begin(), said.end(),
                                   [&](const auto& s) { return !tail.empty() && s.first == tail; });
            if (it == said.end())
              said.emplace_back(tail, std::vector<std::string>{head});
            else
              it->second.push_back(head);
          }
        for (const auto& [tail, heads] : said)
          out += " " + sentence(joined(heads, "; ") + (tail.empty() ? "" : ": " + tail)) + ".";
      }
  }
  return out;
}

}  // namespace

std::string spoken_summary(const ReportInput& in) {
  return summary_text(in, true);
}

std::string written_summary(const ReportInput& in) {
  return summary_text(in, false);
}

void check_report_input(const ReportInput& in) {
  // What the chart and the text can show: a roast is hours long at most, and a temperature is
  // within ±1000 °C (as ingestion refuses a reading). A value beyond — 1e308 — once made the
  // chart's grid loop for minutes and the times print as garbage.
  constexpr double kMaxSpan = 24 * 3600, kMaxTemperature = 1000;
  const auto time = numbers(in.curve, "time");
  for (std::size_t i = 0; i < time.size(); ++i) {
    if (!std::isfinite(time[i]))
      throw std::invalid_argument("curve.time[" + std::to_string(i) + "] is not a number");
    if (i > 0 && time[i] < time[i - 1])
      throw std::invalid_argument("curve.time[" + std::to_string(i) +
                                  "] is earlier than the reading before it: times must not "
                                  "go back");
  }
  if (!time.empty() && time.back() - time.front() > kMaxSpan)
    throw std::invalid_argument("curve.time spans " + shown(time.back() - time.front()) +
                                " s; a roast's readings span at most a day");
  for (const char* key : {"bt", "et"}) {
    const auto v = numbers(in.curve, key);
    for (std::size_t i = 0; i < v.size(); ++i)
      if (std::isfinite(v[i]) && std::abs(v[i]) > kMaxTemperature)
        throw std::invalid_argument(std::string("curve.") + key + "[" + std::to_string(i) +
                                    "] is " + shown(v[i]) + "; a temperature is within ±1000 °C");
  }
  const auto* evs = in.analysis.if_contains("events");
  if (!evs || evs->is_null()) return;
  if (!evs->is_object()) throw std::invalid_argument("analysis.events is not an object");
  for (const char* name : {"CHARGE", "TP", "DRY_END", "FCs", "DROP"}) {
    const auto* v = evs->as_object().if_contains(name);
    if (!v || v->is_null()) continue;
    const std::string where = std::string("analysis.events.") + name;
    if (!v->is_object())
      throw std::invalid_argument(where + " is not an object ({index, time, bt}) or null");
    for (const char* field : {"time", "bt"}) {
      const auto* x = v->as_object().if_contains(field);
      if (!x || !x->is_number())
        throw std::invalid_argument(where + "." + field + " is not a number");
      const double d = x->to_number<double>();
      const double limit = std::string_view(field) == "time" ? kMaxSpan : kMaxTemperature;
      if (!std::isfinite(d) || std::abs(d) > limit)
        throw std::invalid_argument(where + "." + field + " is " + shown(d) +
                                    (std::string_view(field) == "time"
                                         ? "; an event is within a day of CHARGE"
                                         : "; a temperature is within ±1000 °C"));
    }
  }
}

std::string render_report_html(const ReportInput& in) {
  check_report_input(in);
  const auto time = numbers(in.curve, "time");
  const auto bt = numbers(in.curve, "bt");
  const auto et = numbers(in.curve, "et");
  if (time.size() < 2 || bt.size() != time.size())
    throw std::invalid_argument("the report needs a curve with time and bt of the same length");
  // Times on the chart: seconds after CHARGE (the analysis' clock).
  double charge_offset = time.front();
  if (auto idx = at(in.analysis, {"events", "CHARGE", "index"});
      idx && *idx >= 0 && *idx < static_cast<double>(time.size()))
    charge_offset = time[static_cast<std::size_t>(*idx)];

  // The profile's curve behind the roast's, aligned at CHARGE.
  std::string ref_label;
  const auto ref = reference_of(in, &ref_label);

  const double W = 960, H = 470, L = 56, R = 56, T = 30, B = 40;
  const double t0 = time.front() - charge_offset, t1 = time.back() - charge_offset;
  double tmax = 0;
  for (std::size_t i = 0; i < bt.size(); ++i) {
    if (std::isfinite(bt[i])) tmax = std::max(tmax, bt[i]);
    if (i < et.size() && std::isfinite(et[i])) tmax = std::max(tmax, et[i]);
  }
  if (ref)
    for (std::size_t i = 0; i < ref->time.size(); ++i)
      if (ref->time[i] >= t0 && ref->time[i] <= t1) tmax = std::max({tmax, ref->bt[i], ref->et[i]});
  const double y_hi = std::ceil((std::min(tmax, 1000.0) + 10) / 50) * 50, y_lo = 0;
  const double ror_hi = 40, ror_lo = -10;
  auto X = [&](double t) { return L + (t - t0) / std::max(t1 - t0, 1.0) * (W - L - R); };
  auto Y = [&](double v) { return T + (y_hi - v) / (y_hi - y_lo) * (H - T - B); };
  auto YR = [&](double v) {
    return T + (ror_hi - std::clamp(v, ror_lo, ror_hi)) / (ror_hi - ror_lo) * (H - T - B);
  };
  auto polyline = [&](const std::vector<double>& ys, const char* color, const char* name) {
    std::string pts;
    for (std::size_t i = 0; i < ys.size() && i < time.size(); ++i)
      if (std::isfinite(ys[i])) pts += f1(X(time[i] - charge_offset)) + "," + f1(Y(ys[i])) + " ";
    return std::string("<polyline class=\"") + name + "\" fill=\"none\" stroke=\"" + color +
           "\" stroke-width=\"2\" points=\"" + pts + "\"/>\n";
  };

  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + f1(W) + " " +
                    f1(H) +
                    "\" role=\"img\" aria-label=\"roast curve\" font-family=\"sans-serif\">\n";
  // Phase bands: drying (CHARGE→DRY END), maillard (→FCs), development (→DROP).
  const auto dry = at(in.analysis, {"events", "DRY_END", "time"});
  const auto fcs = at(in.analysis, {"events", "FCs", "time"});
  const auto drop = at(in.analysis, {"events", "DROP", "time"});
  auto band = [&](std::optional<double> a, std::optional<double> b, const char* color,
                  const char* label) {
    if (!a || !b || *b <= *a) return;
    svg += "<rect class=\"phase\" x=\"" + f1(X(*a)) + "\" y=\"" + f1(T) + "\" width=\"" +
           f1(X(*b) - X(*a)) + "\" height=\"" + f1(H - T - B) + "\" fill=\"" + color +
           "\" opacity=\"0.18\"><title>" + label + "</title></rect>\n";
  };
  band(0.0, dry, "#2e7d32", "drying");
  band(dry, fcs, "#f9a825", "maillard");
  band(fcs, drop, "#6d4c41", "development");
  // Axes and grid.
  for (double v = y_lo; v <= y_hi; v += 50) {
    svg += "<line x1=\"" + f1(L) + "\" x2=\"" + f1(W - R) + "\" y1=\"" + f1(Y(v)) + "\" y2=\"" +
           f1(Y(v)) + "\" stroke=\"#ddd\"/><text x=\"" + f1(L - 6) + "\" y=\"" + f1(Y(v) + 4) +
           "\" text-anchor=\"end\" font-size=\"11\">" + f1(v).substr(0, f1(v).size() - 2) +
           "</text>\n";
  }
  for (double v = ror_lo; v <= ror_hi; v += 10)
    svg += "<text x=\"" + f1(W - R + 6) + "\" y=\"" + f1(YR(v) + 4) +
           "\" font-size=\"11\" fill=\"#1565c0\">" + f1(v).substr(0, f1(v).size() - 2) +
           "</text>\n";
  // A minute a tick, or more for a long recording: at most about 30 labels.
  const double minutes_a_tick = std::max(1.0, std::ceil((t1 - t0) / 60 / 30));
  for (double m = std::ceil(t0 / 60 / minutes_a_tick) * minutes_a_tick; m * 60 <= t1;
       m += minutes_a_tick)
    svg += "<text x=\"" + f1(X(m * 60)) + "\" y=\"" + f1(H - B + 16) +
           "\" text-anchor=\"middle\" font-size=\"11\">" + std::to_string(static_cast<int>(m)) +
           "</text>\n";
  svg += "<text x=\"" + f1((L + W - R) / 2) + "\" y=\"" + f1(H - 6) +
         "\" text-anchor=\"middle\" font-size=\"12\">minutes after CHARGE</text>\n";
  // Axis units above the top tick labels, inside the picture.
  svg += "<text x=\"" + f1(L - 6) + "\" y=\"" + f1(T - 8) +
         "\" text-anchor=\"end\" font-size=\"12\">°C</text>";
  svg += "<text x=\"" + f1(W - 4) + "\" y=\"" + f1(T - 8) +
         "\" text-anchor=\"end\" font-size=\"12\" fill=\"#1565c0\">RoR °C/min</text>\n";
  if (ref) {
    // Dashed and pale, under the roast's own lines; only where the roast's chart reaches.
    auto dashed = [&](const std::vector<double>& ys, const char* color, const char* name) {
      std::string pts;
      for (std::size_t i = 0; i < ys.size(); ++i)
        if (ref->time[i] >= t0 && ref->time[i] <= t1 && std::isfinite(ys[i]) && ys[i] != -1)
          pts += f1(X(ref->time[i])) + "," + f1(Y(ys[i])) + " ";
      return std::string("<polyline class=\"") + name + "\" fill=\"none\" stroke=\"" + color +
             "\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\" opacity=\"0.55\" points=\"" + pts +
             "\"/>\n";
    };
    svg += dashed(ref->et, "#c62828", "reference-et");
    svg += dashed(ref->bt, "#212121", "reference-bt");
  }
  svg += polyline(et, "#c62828", "et");
  svg += polyline(bt, "#212121", "bt");
  // Rate of rise from the analysis (seconds after CHARGE).
  if (const auto* r = in.analysis.if_contains("ror"); r && r->is_object())
    if (const auto* s = r->as_object().if_contains("series"); s && s->is_array()) {
      // Off the axis' scale (a crash after CHARGE, the cooling after DROP) the line breaks
      // instead of running along the axis' end, where it would read as −10 or 40.
      std::string d;
      bool pen_down = false;
      for (const auto& p : s->as_array()) {
        const auto& pa = p.as_array();
        const double t = pa.at(0).to_number<double>(), v = pa.at(1).to_number<double>();
        if (t < 20) continue;  // the probe recovers first
        if (!std::isfinite(v) || v < ror_lo || v > ror_hi) {
          pen_down = false;
          continue;
        }
        d += std::string(pen_down ? "L" : "M") + f1(X(t)) + "," + f1(YR(v)) + " ";
        pen_down = true;
      }
      svg += "<path class=\"ror\" fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\" d=\"" + d +
             "\"/>\n";
    }
  // The roaster's settings: a lane each for P, F and D along the bottom of the chart (below any
  // roast temperature), the new level where it changes; a label that would overlap the lane's
  // previous one is left out of the chart (the table lists them all).
  const auto settings = roast_settings(in);
  if (!settings.empty()) {
    std::map<char, double> lane_end;
    const std::string lanes = "PFD";
    for (std::size_t k = 0; k < lanes.size(); ++k) {
      const char c = lanes[k];
      if (std::none_of(settings.begin(), settings.end(),
                       [&](const Setting& s) { return s.control == c; }))
        continue;
      const double y = H - B - 6 - 14 * static_cast<double>(lanes.size() - 1 - k);
      // The lane's letter in the left margin, clear of the curves before CHARGE.
      svg += "<g class=\"settings\" font-size=\"10\" fill=\"#616161\"><text x=\"" + f1(L - 4) +
             "\" y=\"" + f1(y) + "\" text-anchor=\"end\">" + c + "</text>";
      lane_end[c] = L + 2;
      for (const auto& s : settings) {
        if (s.control != c || s.t < t0 || s.t > t1) continue;
        const std::string level = std::to_string(s.level);
        const double x = std::max(X(s.t), L + 2);
        if (x < lane_end[c]) continue;
        svg += "<line x1=\"" + f1(X(s.t)) + "\" x2=\"" + f1(X(s.t)) + "\" y1=\"" + f1(y + 2) +
               "\" y2=\"" + f1(y - 9) + "\" stroke=\"#9e9e9e\"/><text x=\"" + f1(x + 2) +
               "\" y=\"" + f1(y) + "\"><title>" + control_name(c) + " " + level + " at " +
               clock_text(s.t) + "</title>" + level + "</text>";
        lane_end[c] = x + 4 + 6.2 * static_cast<double>(level.size());
      }
      svg += "</g>\n";
    }
  }
  // Events, in roast order. A label near the right edge reads leftwards (DROP ran off the
  // chart); one that would overlap an earlier label (DRY END at TP) moves down a line.
  struct Box {
    double x0, x1, y;
  };
  std::vector<Box> placed;
  if (const auto* evs = in.analysis.if_contains("events"); evs && evs->is_object())
    for (const char* name : {"CHARGE", "TP", "DRY_END", "FCs", "DROP"}) {
      const auto* v = evs->as_object().if_contains(name);
      if (!v || !v->is_object()) continue;
      const auto& e = v->as_object();
      const double t = e.at("time").to_number<double>(), b = e.at("bt").to_number<double>();
      const std::string label =
          std::string(std::string_view(name) == "DRY_END" ? "DRY END" : name) + " " +
          clock_text(t) + " " + f1(b);
      const double width = 6.2 * static_cast<double>(label.size());  // 11 px sans, roughly
      const bool leftwards = X(t) + 5 + width > W - R;
      const double x0 = leftwards ? X(t) - 5 - width : X(t) + 5, x1 = x0 + width;
      double y = Y(b) - 8;
      for (int tries = 0; tries < 6; ++tries) {
        const bool clash = std::any_of(placed.begin(), placed.end(), [&](const Box& p) {
          return x0 < p.x1 && p.x0 < x1 && std::abs(p.y - y) < 13;
        });
        if (!clash) break;
        y += 14;
      }
      placed.push_back({x0, x1, y});
      // The label on a pale box, so it reads where it crosses a curve.
      svg += "<g class=\"event\"><circle cx=\"" + f1(X(t)) + "\" cy=\"" + f1(Y(b)) +
             "\" r=\"4\" fill=\"#212121\"/><rect x=\"" + f1(x0 - 2) + "\" y=\"" + f1(y - 10) +
             "\" width=\"" + f1(width + 4) + "\" height=\"13\" fill=\"#fff\" opacity=\"0.8\"/>" +
             "<text x=\"" + f1(leftwards ? X(t) - 5 : X(t) + 5) + "\" y=\"" + f1(y) + "\"" +
             (leftwards ? " text-anchor=\"end\"" : "") + " font-size=\"11\">" + esc(label) +
             "</text></g>\n";
    }
  svg += "</svg>\n";
  // What the lines and bands are.
  const std::string legend =
      "<p class=\"legend\"><span style=\"color:#212121\">&#9644; BT (bean)</span> "
      "<span style=\"color:#c62828\">&#9644; ET (environment)</span> "
      "<span style=\"color:#1565c0\">&#9644; rate of rise, right axis</span> "
      "<span class=\"band\" style=\"background:#2e7d3240\">drying</span> "
      "<span class=\"band\" style=\"background:#f9a82540\">maillard</span> "
      "<span class=\"band\" style=\"background:#6d4c4140\">development</span>" +
      (ref ? "<span>- - - profile " + esc(ref_label) + " (BT, ET)</span>" : std::string()) +
      (settings.empty() ? std::string()
                        : "<span>settings: P heater power, F fan, D drum speed (the "
                          "roaster's levels)</span>") +
      "</p>\n";

  std::string rows;
  auto row = [&](const std::string& k, const std::string& v) {
    rows += "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>\n";
  };
  // A recorded session's page is headed by its roaster and when ("Roast on r1, 2026-12-04
  // 10:20 UTC"), its id a row below; anything else by its title.
  std::string heading = "Roast " + in.title;
  std::string when;
  if (auto c = at(in.session, {"charge_t"}); c && *c > 0) {
    // When it was roasted (the device's clock at CHARGE), in UTC.
    const auto secs = static_cast<std::time_t>(*c);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
    when = buf;
    row("roasted", when);
  }
  if (const auto* d = in.session.if_contains("device"); d && d->is_string()) {
    row("device", std::string(d->as_string()));
    heading = "Roast on " + std::string(d->as_string()) + (when.empty() ? "" : ", " + when);
    if (const auto* id = in.session.if_contains("id"); id && id->is_string())
      row("session", std::string(id->as_string()));
  }
  if (const auto* p = in.session.if_contains("profile"); p && p->is_object())
    if (const auto* n = p->as_object().if_contains("name"); n && n->is_string())
      row("profile",
          std::string(n->as_string()) +
              (at(p->as_object(), {"version"})
                   ? " v" + std::to_string(static_cast<long long>(*at(p->as_object(), {"version"})))
                   : std::string()));
  if (const auto* evs = in.analysis.if_contains("events"); evs && evs->is_object())
    for (const char* ev : {"CHARGE", "TP", "DRY_END", "FCs", "DROP"}) {
      const auto* e = evs->as_object().if_contains(ev);
      const bool estimated = std::string_view(ev) == "FCs" && fcs_estimated(in.analysis);
      if (e && e->is_object())
        row(std::string_view(ev) == "DRY_END" ? "DRY END" : ev,
            clock_text(e->as_object().at("time").to_number<double>()) + "  BT " +
                f1(e->as_object().at("bt").to_number<double>()) +
                (estimated ? "  (estimated: BT reached the FCs temperature; not marked)"
                 : std::string_view(ev) == "FCs" ? "  (marked)"
                                                 : ""));
      else
        row(std::string_view(ev) == "DRY_END" ? "DRY END" : ev, "not found");
    }
  if (auto v = at(in.analysis, {"phases", "drying"})) row("drying", clock_text(*v));
  if (auto v = at(in.analysis, {"phases", "maillard"})) row("maillard", clock_text(*v));
  if (auto v = at(in.analysis, {"phases", "development"})) row("development", clock_text(*v));
  if (auto v = at(in.analysis, {"phases", "dtr"})) row("DTR", f1(*v) + " %");
  if (auto v = at(in.analysis, {"auc"})) {
    const auto base = at(in.analysis, {"auc_base"});
    row("AUC", f1(*v) + " °C·min" + (base ? " (above " + f1(*base) + " °C, TP to DROP)" : ""));
  }
  if (auto v = at(in.analysis, {"ror", "at", "FCs"})) row("RoR at FCs", f1(*v) + " °C/min");
  if (auto v = at(in.analysis, {"ror", "at", "DROP"})) row("RoR at DROP", f1(*v) + " °C/min");
  {
    // The batch's weights, where they were taken: green in, roasted out, and the loss.
    const auto in_g = at(in.analysis, {"weight", "in"}), out_g = at(in.analysis, {"weight", "out"});
    std::string unit = "g";
    if (const auto* w = in.analysis.if_contains("weight"); w && w->is_object())
      if (const auto* u = w->as_object().if_contains("unit"); u && u->is_string())
        unit = std::string(u->as_string());
    if (in_g || out_g)
      row("weight",
          (in_g ? f1(*in_g) + " " + unit + " green" : std::string("green not weighed")) + " → " +
              (out_g ? f1(*out_g) + " " + unit + " roasted" : std::string("roasted not weighed")) +
              (at(in.analysis, {"weight", "loss"})
                   ? ", loss " + f1(*at(in.analysis, {"weight", "loss"})) + " %"
                   : std::string()));
  }
  if (!settings.empty()) row("settings", settings_text(settings));
  if (ref) {
    // The roast against its profile, as a roaster says it: "FCs 0:12 later (7:42; profile 7:30)".
    std::vector<std::string> parts;
    auto when = [&](const char* name, const char* event, std::optional<double> theirs) {
      const auto ours = at(in.analysis, {"events", event, "time"});
      if (!ours || !theirs) return;
      const double d = *ours - *theirs;
      parts.push_back(std::string(name) + " " +
                      (std::abs(d) < 0.5
                           ? std::string("on time")
                           : clock_text(std::abs(d)) + (d > 0 ? " later" : " earlier")) +
                      " (" + clock_text(*ours) + "; profile " + clock_text(*theirs) + ")");
    };
    when("FCs", "FCs", ref->fcs_time);
    when("DROP", "DROP", ref->drop_time);
    if (const auto ours = at(in.analysis, {"events", "DROP", "bt"}); ours && ref->drop_bt) {
      const double d = *ours - *ref->drop_bt;
      parts.push_back("BT at DROP " + std::string(d >= 0 ? "+" : "−") + f1(std::abs(d)) + " °C (" +
                      f1(*ours) + "; profile " + f1(*ref->drop_bt) + ")");
    }
    std::string joined;
    for (const auto& p : parts) joined += (joined.empty() ? "" : ", ") + p;
    row("vs profile " + ref_label, joined.empty() ? "no events to compare" : joined);
    if (const auto theirs = reference_settings(in); !theirs.empty()) {
      row("profile settings", settings_text(theirs));
      if (!settings.empty()) row("settings vs profile", settings_against(settings, theirs));
    }
  }

  std::string qc_rows;
  std::string verdict;
  if (const auto* v = in.qc.if_contains("verdict"); v && v->is_string())
    verdict = std::string(v->as_string());
  if (const auto* checks = in.qc.if_contains("checks"); checks && checks->is_array())
    for (const auto& c : checks->as_array()) {
      const auto& o = c.as_object();
      qc_rows += "<tr class=\"" + esc(o.at("result").as_string()) + "\"><td>" +
                 esc(o.at("check").as_string()) + "</td><td>" + esc(o.at("result").as_string()) +
                 "</td><td>" + esc(o.at("reason").as_string()) + "</td></tr>\n";
    }

  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" + esc(heading) +
      "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#212121}"
      "table{border-collapse:collapse;margin:12px 0}th,td{padding:3px 10px;text-align:left;"
      "border-bottom:1px solid #eee}tr.fail td{color:#b71c1c}tr.warn td{color:#e65100}"
      ".verdict{font-weight:bold}.legend span{margin-right:14px}"
      ".band{padding:0 6px}svg{max-width:100%;height:auto;border:1px solid #eee}"
      "</style></head>\n<body>\n<h1>" +
      esc(heading) + "</h1>\n<p class=\"summary\">" + esc(written_summary(in)) + "</p>\n" + legend +
      svg + "<h2>Events and phases</h2>\n<table>\n" + rows + "</table>\n";
  std::string accepted;
  if (const auto* by = in.qc.if_contains("accepted_by"); by && by->is_string())
    accepted = " — accepted by " + esc(std::string(by->as_string()));
  if (!verdict.empty())
    html += "<h2>Quality check: <span class=\"verdict\">" + esc(verdict) + "</span>" + accepted +
            "</h2>\n<table>\n<tr><th>check</th><th>result</th><th>reason</th></tr>\n" + qc_rows +
            "</table>\n";
  html += "<p><small>Made by kiln; times are after CHARGE.</small></p>\n</body></html>\n";
  return html;
}

}  // namespace kiln::roast
