#include "profile.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "analysis.hpp"
#include "qc.hpp"

namespace kiln::roast {
namespace json = boost::json;

namespace {

void write_float(std::string& out, double x) {
  if (!std::isfinite(x)) throw AlogError("a profile number is not finite");
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x);  // shortest text that reads back
  std::string s(buf, end);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // stays a float in Python
  out += s;
}

void write_str(std::string& out, std::string_view s) {
  out += '\'';
  for (unsigned char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\'':
        out += "\\'";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through: .alog files are UTF-8 text
        }
    }
  }
  out += '\'';
}

void write(std::string& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      out += "None";
      break;
    case json::kind::bool_:
      out += v.get_bool() ? "True" : "False";
      break;
    case json::kind::int64:
      out += std::to_string(v.get_int64());
      break;
    case json::kind::uint64:
      out += std::to_string(v.get_uint64());
      break;
    case json::kind::double_:
      write_float(out, v.get_double());
      break;
    case json::kind::string:
      write_str(out, v.get_string());
      break;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& x : v.get_array()) {
        if (!first) out += ", ";
        first = false;
        write(out, x);
      }
      out += ']';
      break;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.get_object()) {
        if (!first) out += ", ";
        first = false;
        write_str(out, kv.key());
        out += ": ";
        write(out, kv.value());
      }
      out += '}';
      break;
    }
  }
}

json::array floats(const std::vector<double>& v) {
  json::array a;
  a.reserve(v.size());
  for (double x : v) a.emplace_back(x);
  return a;
}

std::vector<double> numbers(const json::object& o, const char* key, const char* where) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_array())
    throw AlogError(std::string(where) + "." + key + " must be a list of numbers");
  std::vector<double> out;
  for (const auto& x : v->as_array()) {
    if (!x.is_number())
      throw AlogError(std::string(where) + "." + key + " holds a value that is not a number");
    out.push_back(x.to_number<double>());
  }
  return out;
}

// The index of an event in a profile's "events", or `unset`.
int event_index(const json::object& events, const char* name, int unset) {
  const auto* e = events.if_contains(name);
  if (!e || !e->is_object()) return unset;
  const auto* i = e->as_object().if_contains("index");
  if (!i || !i->is_number()) return unset;
  return static_cast<int>(i->to_number<double>());
}

double round_to(double x, double step) {
  return std::round(x / step) * step;
}

// A profile's controls (checked by check_profile_json) as Artisan's special events: up to four
// named event types (`etypes`, then "--"), each value kept as Artisan keeps it (v / 10 + 1).
void write_controls(const json::array& controls, json::object& alog) {
  std::vector<std::string> names;
  json::array index, type, value, labels;
  for (const auto& v : controls) {
    const auto& c = v.as_object();
    const std::string name(c.at("control").as_string());
    auto slot = std::find(names.begin(), names.end(), name);
    if (slot == names.end()) {
      if (name == "Event") {
        type.emplace_back(4);
      } else {
        if (names.size() == 4)
          throw AlogError("profile.controls name more than 4 controls (" + names[0] + ", " +
                          names[1] + ", " + names[2] + ", " + names[3] + ", " + name +
                          "): an .alog holds 4 event types");
        names.push_back(name);
        type.emplace_back(static_cast<std::int64_t>(names.size() - 1));
      }
    } else {
      type.emplace_back(static_cast<std::int64_t>(slot - names.begin()));
    }
    index.emplace_back(c.at("index").to_number<std::int64_t>());
    const double x = c.at("value").to_number<double>();
    value.emplace_back(x > -1 && x < 1 ? 1.0 : x >= 1 ? x / 10 + 1 : x / 10 - 1);
    const auto* l = c.if_contains("label");
    labels.emplace_back(l && l->is_string() ? l->as_string() : json::string());
  }
  // Artisan's own names fill the slots the profile does not use.
  for (const char* fill : {"Air", "Drum", "Damper", "Burner"})
    if (names.size() < 4 && std::find(names.begin(), names.end(), fill) == names.end())
      names.emplace_back(fill);
  json::array etypes;
  for (const auto& n : names) etypes.emplace_back(n);
  etypes.emplace_back("--");
  alog["specialevents"] = std::move(index);
  alog["specialeventstype"] = std::move(type);
  alog["specialeventsvalue"] = std::move(value);
  alog["specialeventsStrings"] = std::move(labels);
  alog["etypes"] = std::move(etypes);
}

// Equal JSON, numbers within a rounding error (°F converted, written and read again).
bool same_numbers(const json::value& a, const json::value& b) {
  if (a.is_number() && b.is_number())
    return std::abs(a.to_number<double>() - b.to_number<double>()) <=
           1e-9 * std::max(1.0, std::abs(b.to_number<double>()));
  if (a.is_array() && b.is_array()) {
    if (a.as_array().size() != b.as_array().size()) return false;
    for (std::size_t i = 0; i < a.as_array().size(); ++i)
      if (!same_numbers(a.as_array()[i], b.as_array()[i])) return false;
    return true;
  }
  if (a.is_object() && b.is_object()) {
    if (a.as_object().size() != b.as_object().size()) return false;
    for (const auto& kv : a.as_object()) {
      const auto* other = b.as_object().if_contains(kv.key());
      if (!other || !same_numbers(kv.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}

json::object derived_targets(const Analysis& a, char mode) {
  json::object t;
  if (a.fcs) t["fcs_time"] = json::object{{"target", round_to(a.fcs->time, 1)}, {"tolerance", 30}};
  if (a.drop) {
    t["drop_time"] = json::object{{"target", round_to(a.drop->time, 1)}, {"tolerance", 30}};
    t["drop_bt"] =
        json::object{{"target", round_to(a.drop->bt, 0.1)}, {"tolerance", mode == 'F' ? 5.4 : 3.0}};
  }
  if (a.dtr_percent)
    t["dtr"] = json::object{{"target", round_to(*a.dtr_percent, 0.1)}, {"tolerance", 2}};
  // A weighed reference roast: its weight loss, the plainest sign of how far a batch roasted
  // (±1.5 points: a scale's and a batch's spread).
  if (a.weight_loss_percent)
    t["weight_loss"] =
        json::object{{"target", round_to(*a.weight_loss_percent, 0.1)}, {"tolerance", 1.5}};
  return t;
}

double f_to_c(double f) {
  return (f - 32.0) * 5.0 / 9.0;
}

// Targets in °C from targets in the log's unit: temperatures move and scale, differences and
// rates (tolerances, margins, RoR, AUC) scale, times and ratios stay.
json::object celsius_targets(const json::object& targets, char mode) {
  if (mode != 'F') return targets;
  json::object out;
  for (const auto& kv : targets) {
    const std::string metric(kv.key());
    const bool temperature = metric == "tp_bt" || metric == "fcs_bt" || metric == "drop_bt";
    const bool scaled = metric == "ror_fcs" || metric == "ror_drop" || metric == "auc";
    if (!kv.value().is_object() || (!temperature && !scaled)) {
      out[metric] = kv.value();
      continue;
    }
    json::object t;
    for (const auto& f : kv.value().as_object()) {
      if (!f.value().is_number()) {
        t[f.key()] = f.value();
        continue;
      }
      const double x = f.value().to_number<double>();
      const bool level = f.key() == "target" || f.key() == "min" || f.key() == "max";
      t[f.key()] = temperature && level ? f_to_c(x) : x * 5.0 / 9.0;
    }
    out[metric] = std::move(t);
  }
  return out;
}

json::object build(const RoastLog& log, const Analysis& a, json::object targets,
                   json::object source) {
  json::object analysis = to_json(a);
  json::object curve{{"time", floats(log.time)}, {"bt", floats(log.bt)}, {"et", floats(log.et)}};
  // What sessions use — recorded curves are in °C — when the log is in °F.
  json::array phases_c;
  for (double p : log.phases) phases_c.emplace_back(log.mode == 'F' ? f_to_c(p) : p);
  json::object celsius{{"phases", std::move(phases_c)},
                       {"targets", celsius_targets(targets, log.mode)}};
  if (!log.roaster_state.empty()) curve["state"] = floats(log.roaster_state);
  // What the profile does not check, said where it is made (and kept with it): QC would
  // otherwise skip a check, or use roast.qc's defaults, without a word.
  json::array notes;
  if (targets.empty())
    notes.emplace_back(
        "the profile sets no QC targets: roasts to it are checked against roast.qc's defaults "
        "(DTR 15-25 %, FCs 6:00-10:00, DROP 7:30-13:00)");
  else if (!a.fcs && !targets.contains("fcs_time"))
    notes.emplace_back(
        "FCs is not marked: the profile has no FCs time or DTR target (mark FCs in Artisan and "
        "import the log again)");
  // Phase temperatures no roast passes in order (an R1's logs say DRY END at 18 °C): a
  // session's DRY END would be detected at TP, its drying phase wrong.
  if (a.tp && log.phases[1] <= a.tp->bt) {
    // The suggestion keeps the log's own FCs temperature where it is one (estimates of first
    // crack and the prediction aim at it), else Artisan's defaults.
    const bool f = log.mode == 'F';
    const double dry = f ? 302 : 150, fcs_default = f ? 383 : 195, end_default = f ? 437 : 225;
    const double fcs =
        log.phases[2] > dry && log.phases[2] < (f ? 482 : 250) ? log.phases[2] : fcs_default;
    const double end = log.phases[3] > fcs ? log.phases[3] : std::max(end_default, fcs + 10);
    char buf[400];
    std::snprintf(buf, sizeof buf,
                  "its DRY END temperature (%.1f °%c, Artisan's phases %g, %g, %g, %g) is not "
                  "above TP's BT (%.1f °%c): a session roasted to it would end drying at TP; "
                  "import it with --phases (POST /v1/profiles: phases), e.g. %g,%g,%g,%g (°%c: "
                  "DRY END at %g, the log's FCs temperature kept)",
                  log.phases[1], log.mode, log.phases[0], log.phases[1], log.phases[2],
                  log.phases[3], a.tp->bt, log.mode, dry, dry, fcs, end, log.mode, dry);
    if (fcs != log.phases[2])
      std::snprintf(buf, sizeof buf,
                    "its DRY END temperature (%.1f °%c, Artisan's phases %g, %g, %g, %g) is not "
                    "above TP's BT (%.1f °%c): a session roasted to it would end drying at TP; "
                    "import it with --phases (POST /v1/profiles: phases), e.g. %g,%g,%g,%g (°%c)",
                    log.phases[1], log.mode, log.phases[0], log.phases[1], log.phases[2],
                    log.phases[3], a.tp->bt, log.mode, dry, dry, fcs, end, log.mode);
    notes.emplace_back(buf);
  }
  // What QC checks roasts to it against, as a roaster reads it (`kiln profiles show`).
  json::array described;
  for (auto& line : describe_targets(targets, log.mode)) described.emplace_back(std::move(line));
  json::object out{
      {"format", kProfileFormat},
      {"title", display_title(log)},
      {"unit", std::string(1, log.mode)},
      {"phases", json::array{log.phases[0], log.phases[1], log.phases[2], log.phases[3]}},
      {"curve", std::move(curve)},
      {"events", analysis.at("events")},
      {"event_sources", analysis.at("event_sources")},
      {"summary", json::object{{"phases", analysis.at("phases")}, {"auc", analysis.at("auc")}}},
      {"weight",
       json::object{{"in", log.weight_in}, {"out", log.weight_out}, {"unit", log.weight_unit}}},
      {"celsius", celsius},
      {"targets", std::move(targets)},
      {"qc_targets", std::move(described)},
      {"source", std::move(source)}};
  if (!notes.empty()) out["notes"] = std::move(notes);
  if (!log.controls.empty()) {
    // The settings to roast it again with, times after CHARGE as the roaster's clock reads them.
    const double charge = a.charge ? log.time[static_cast<std::size_t>(a.charge->index)] : 0;
    json::array controls;
    for (const auto& c : log.controls) {
      json::object x{
          {"t", std::round((log.time[static_cast<std::size_t>(c.index)] - charge) * 10) / 10},
          {"index", c.index},
          {"control", c.name},
          {"value", c.value}};
      if (!c.label.empty()) x["label"] = c.label;
      controls.push_back(std::move(x));
    }
    out["controls"] = std::move(controls);
  }
  return out;
}

}  // namespace

std::string python_literal(const json::value& v) {
  std::string out;
  write(out, v);
  return out;
}

json::object profile_from_alog(std::string_view text) {
  RoastLog log = parse_alog(text);
  Analysis a = analyze(log, AnalysisOptions{});
  if (!a.charge)
    throw AlogError("the .alog has no CHARGE marked: a profile needs its roast's start");
  if (!a.drop)
    throw AlogError(
        "the .alog has no DROP marked: a profile needs its roast's end (mark DROP in Artisan "
        "and save the log again)");
  // The log's record of the roast beyond its curve, kept with the profile.
  json::object source{{"format", "alog"}};
  for (auto [key, value] : {std::pair{"beans", &log.beans}, std::pair{"roaster", &log.roaster},
                            std::pair{"date", &log.date}})
    if (!value->empty()) source[key] = *value;
  if (log.batch > 0) source["batch"] = log.batch;
  return build(log, a, derived_targets(a, log.mode), std::move(source));
}

// The parts of a profile's JSON that the .alog round trip would otherwise report in .alog terms.
void check_profile_json(const json::object& profile) {
  const auto* c = profile.if_contains("curve");
  if (!c || !c->is_object() || !c->as_object().contains("time") ||
      !c->as_object().at("time").is_array())
    throw AlogError("profile.curve.time is missing (a list of seconds)");
  const auto n = c->as_object().at("time").as_array().size();
  for (const char* key : {"bt", "et"})
    if (const auto* v = c->as_object().if_contains(key);
        v && (!v->is_array() || v->as_array().size() != n))
      throw AlogError(std::string("profile.curve.") + key + " must be a list as long as " +
                      "profile.curve.time (" + std::to_string(n) + " readings)");
  if (const auto* ph = profile.if_contains("phases")) {
    bool ok = ph->is_array() && ph->as_array().size() == 4;
    if (ok)
      for (const auto& x : ph->as_array()) ok = ok && x.is_number();
    if (!ok) throw AlogError("profile.phases must be 4 temperatures");
  }
  if (const auto* cs = profile.if_contains("controls")) {
    if (!cs->is_array())
      throw AlogError("profile.controls must be a list of {index, control, value[, label]}");
    for (std::size_t k = 0; k < cs->as_array().size(); ++k) {
      const std::string at = "profile.controls[" + std::to_string(k) + "]";
      const auto* c = cs->as_array()[k].if_object();
      if (!c) throw AlogError(at + " must be an object {index, control, value[, label]}");
      const auto* i = c->if_contains("index");
      const double x = i && i->is_number() ? i->to_number<double>() : -1;
      if (x != std::floor(x) || x < 0 || x >= static_cast<double>(n))
        throw AlogError(at + ".index must be a reading index from 0 to " + std::to_string(n - 1));
      const auto* name = c->if_contains("control");
      if (!name || !name->is_string() || name->as_string().empty() || name->as_string() == "--")
        throw AlogError(at + ".control must name the control (e.g. Heater, Fan, Drum)");
      const auto* v = c->if_contains("value");
      if (!v || !v->is_number() || !std::isfinite(v->to_number<double>()))
        throw AlogError(at + ".value must be a number (Artisan's 0-100 scale)");
      if (const auto* l = c->if_contains("label"); l && !l->is_string())
        throw AlogError(at + ".label must be text");
    }
  }
  const auto* events = profile.if_contains("events");
  if (!events || !events->is_object()) throw AlogError("profile.events is missing");
  for (const char* name : {"CHARGE", "DRY_END", "FCs", "DROP"}) {
    const auto* e = events->as_object().if_contains(name);
    if (!e || e->is_null()) continue;
    const auto* i = e->is_object() ? e->as_object().if_contains("index") : nullptr;
    const double x = i && i->is_number() ? i->to_number<double>() : -1;
    if (x != std::floor(x) || x < 0 || x >= static_cast<double>(n))
      throw AlogError(std::string("profile.events.") + name +
                      ".index must be a reading index from 0 to " + std::to_string(n - 1));
  }
}

json::object profile_from_json(const json::object& profile) {
  check_profile_json(profile);
  RoastLog log = parse_alog(alog_of_profile(profile));
  Analysis a = analyze(log, AnalysisOptions{});
  if (!a.charge) throw AlogError("profile.events.CHARGE.index is missing");
  if (!a.drop)
    throw AlogError("profile.events.DROP.index is missing: a profile needs its roast's end");
  json::object targets = derived_targets(a, log.mode);
  if (const auto* t = profile.if_contains("targets")) {
    if (!t->is_object()) throw std::invalid_argument("profile.targets must be an object");
    run_qc(to_json(a), t->as_object());  // throws std::invalid_argument naming a bad target
    targets = t->as_object();
  }
  json::object source{{"format", "json"}};
  if (const auto* s = profile.if_contains("source"); s && s->is_object()) source = s->as_object();
  auto out = build(log, a, std::move(targets), std::move(source));
  // `celsius` is made from `phases` and `targets` (sessions check against it): a target edited
  // there alone would be dropped without a word, so it is refused. An exported profile whose
  // targets were edited carries the old celsius view; its `qc_targets` (the old targets in
  // words) tell that apart: they no longer describe its targets. (Its phases are always taken
  // from `phases`.)
  const auto* words = profile.if_contains("qc_targets");
  const bool targets_edited = words && *words != out.at("qc_targets");
  if (const auto* c = profile.if_contains("celsius"); c && c->is_object() && !targets_edited)
    if (const auto* given = c->as_object().if_contains("targets");
        given && !same_numbers(*given, out.at("celsius").at("targets")))
      throw AlogError(
          "profile.celsius.targets differs from what profile.targets gives: edit "
          "profile.targets (in the profile's unit, " +
          std::string(out.at("unit").as_string()) +
          "); celsius is made from them (or leave celsius out)");
  return out;
}

ReferenceCurve reference_curve(const json::object& p) {
  const auto* c = p.if_contains("curve");
  if (!c || !c->is_object()) throw AlogError("profile.curve (time, bt, et) is missing");
  const auto& curve = c->as_object();
  const auto time = numbers(curve, "time", "profile.curve");
  const auto bt = numbers(curve, "bt", "profile.curve");
  const auto et = curve.contains("et") ? numbers(curve, "et", "profile.curve")
                                       : std::vector<double>(time.size(), -1.0);
  if (bt.size() != time.size() || et.size() != time.size())
    throw AlogError("profile.curve: time, bt and et differ in length");
  json::object events;
  if (const auto* e = p.if_contains("events"); e && e->is_object()) events = e->as_object();
  const int charge = event_index(events, "CHARGE", -1);
  if (charge < 0 || static_cast<std::size_t>(charge) >= time.size())
    throw AlogError("profile.events.CHARGE.index is missing");
  int drop = event_index(events, "DROP", -1);
  if (drop < charge || static_cast<std::size_t>(drop) >= time.size())
    drop = static_cast<int>(time.size()) - 1;
  const bool fahrenheit = [&] {
    const auto* u = p.if_contains("unit");
    return u && u->is_string() && u->as_string() == "F";
  }();
  auto celsius = [&](double x) { return fahrenheit && x != -1 ? f_to_c(x) : x; };
  ReferenceCurve r;
  for (int i = charge; i <= drop; ++i) {
    const auto k = static_cast<std::size_t>(i);
    r.time.push_back(time[k] - time[static_cast<std::size_t>(charge)]);
    r.bt.push_back(celsius(bt[k]));
    r.et.push_back(celsius(et[k]));
  }
  auto at = [&](const char* name, std::optional<double>& t, std::optional<double>& b) {
    const int i = event_index(events, name, -1);
    if (i < charge || i > drop) return;
    t = time[static_cast<std::size_t>(i)] - time[static_cast<std::size_t>(charge)];
    b = celsius(bt[static_cast<std::size_t>(i)]);
  };
  at("FCs", r.fcs_time, r.fcs_bt);
  at("DROP", r.drop_time, r.drop_bt);
  return r;
}

std::string alog_of_profile(const json::object& p) {
  const auto* c = p.if_contains("curve");
  if (!c || !c->is_object()) throw AlogError("profile.curve (time, bt, et) is missing");
  check_profile_json(p);
  const auto& curve = c->as_object();
  auto time = numbers(curve, "time", "profile.curve");
  auto bt = numbers(curve, "bt", "profile.curve");
  auto et = curve.contains("et") ? numbers(curve, "et", "profile.curve")
                                 : std::vector<double>(time.size(), -1.0);
  json::object events;
  if (const auto* e = p.if_contains("events"); e && e->is_object()) events = e->as_object();
  std::string mode = "C";
  if (const auto* u = p.if_contains("unit"); u && u->is_string())
    mode = std::string(u->as_string());
  if (mode != "C" && mode != "F") throw AlogError("profile.unit is '" + mode + "'; use C or F");
  json::array phases{150, 150, 195, 225};
  if (const auto* ph = p.if_contains("phases"); ph && ph->is_array()) phases = ph->as_array();
  std::string title;
  if (const auto* t = p.if_contains("title"); t && t->is_string())
    title = std::string(t->as_string());
  double w_in = 0, w_out = 0;
  std::string w_unit = "g";
  if (const auto* w = p.if_contains("weight"); w && w->is_object()) {
    if (const auto* u = w->as_object().if_contains("unit"); u && u->is_string())
      w_unit = std::string(u->as_string());
    if (const auto* x = w->as_object().if_contains("in"); x && x->is_number())
      w_in = x->to_number<double>();
    if (const auto* x = w->as_object().if_contains("out"); x && x->is_number())
      w_out = x->to_number<double>();
  }
  // Artisan's timeindex: CHARGE, DRY END, FCs, FCe, SCs, SCe, DROP, COOL END (-1 / 0 = unset).
  // DRY END goes in only when it was marked: otherwise readers derive it (from TP or the phase
  // temperatures), as they did for the original.
  // So does an FCs the detector estimated from the phase temperature: roasters mark FCs by ear,
  // and Artisan would show the estimate as their mark.
  auto marked = [&](const char* event) {
    if (const auto* src = p.if_contains("event_sources"); src && src->is_object())
      if (const auto* d = src->as_object().if_contains(event); d && d->is_string())
        return d->as_string() == "marked";
    return true;
  };
  json::array timeindex{event_index(events, "CHARGE", -1),
                        marked("DRY_END") ? std::max(0, event_index(events, "DRY_END", 0)) : 0,
                        marked("FCs") ? std::max(0, event_index(events, "FCs", 0)) : 0,
                        0,
                        0,
                        0,
                        std::max(0, event_index(events, "DROP", 0)),
                        0};
  double interval = time.size() > 1 ? (time.back() - time.front()) / (time.size() - 1) : 1.0;
  json::object alog{
      {"version", "kiln"},     {"mode", mode},
      {"title", title},        {"samplinginterval", std::round(interval * 1000) / 1000},
      {"timex", floats(time)}, {"temp1", floats(et)},
      {"temp2", floats(bt)},   {"timeindex", timeindex},
      {"phases", phases},      {"weight", json::array{w_in, w_out, json::value(w_unit)}}};
  if (const auto* cs = p.if_contains("controls"); cs && cs->is_array() && !cs->as_array().empty())
    write_controls(cs->as_array(), alog);
  // The roast's record from its source log, where Artisan keeps it: an exported profile imported
  // again is the same profile (not a new version without its beans, machine, date and batch).
  if (const auto* src = p.if_contains("source"); src && src->is_object()) {
    for (auto [key, field] : {std::pair{"beans", "beans"}, std::pair{"roaster", "roastertype"},
                              std::pair{"date", "roastdate"}, std::pair{"isodate", "roastisodate"},
                              std::pair{"time", "roasttime"}, std::pair{"notes", "roastingnotes"}})
      if (const auto* v = src->as_object().if_contains(key); v && v->is_string())
        alog[field] = v->as_string();
    if (const auto* b = src->as_object().if_contains("batch"); b && b->is_int64())
      alog["roastbatchnr"] = b->as_int64();
    if (const auto* e = src->as_object().if_contains("epoch"); e && e->is_int64())
      alog["roastepoch"] = e->as_int64();
  }
  if (curve.contains("state")) {
    // The roaster's state as Artisan records a Bullet R1's (extra device 87: State / Fan RPM):
    // Artisan reads an extra channel only with its device and time lists.
    alog["extradevices"] = json::array{87};
    alog["extratimex"] = json::array{floats(time)};
    alog["extraname1"] = json::array{"State"};
    alog["extraname2"] = json::array{"Fan RPM"};
    alog["extratemp1"] = json::array{floats(numbers(curve, "state", "profile.curve"))};
    alog["extratemp2"] = json::array{json::array(time.size(), -1.0)};
    alog["extramathexpression1"] = json::array{""};
    alog["extramathexpression2"] = json::array{""};
    alog["extraDelta1"] = json::array{false};
    alog["extraDelta2"] = json::array{false};
    alog["extraFill1"] = json::array{0};
    alog["extraFill2"] = json::array{0};
    alog["extraCurveVisibility1"] = json::array{true};
    alog["extraCurveVisibility2"] = json::array{false};
    alog["extraLCDvisibility1"] = json::array{true};
    alog["extraLCDvisibility2"] = json::array{false};
  }
  if (const auto* s = p.if_contains("summary"); s && s->is_object()) {
    // Artisan recomputes these when it opens the file; kept for readers that do not.
    json::object computed;
    const auto& sum = s->as_object();
    auto copy_event = [&](const char* ev, const char* time_key, const char* bt_key) {
      const auto* e = events.if_contains(ev);
      if (!e || !e->is_object()) return;
      if (const auto* t = e->as_object().if_contains("time"); t && t->is_number())
        computed[time_key] = *t;
      if (const auto* b = e->as_object().if_contains("bt"); b && b->is_number())
        computed[bt_key] = *b;
    };
    copy_event("TP", "TP_time", "TP_BT");
    copy_event("DRY_END", "DRY_time", "DRY_BT");
    copy_event("FCs", "FCs_time", "FCs_BT");
    copy_event("DROP", "DROP_time", "DROP_BT");
    if (const auto* ph = sum.if_contains("phases"); ph && ph->is_object()) {
      const auto& o = ph->as_object();
      if (const auto* x = o.if_contains("drying"); x && x->is_number())
        computed["dryphasetime"] = *x;
      if (const auto* x = o.if_contains("maillard"); x && x->is_number())
        computed["midphasetime"] = *x;
      if (const auto* x = o.if_contains("development"); x && x->is_number())
        computed["finishphasetime"] = *x;
    }
    if (const auto* x = sum.if_contains("auc"); x && x->is_number()) computed["AUC"] = *x;
    alog["computed"] = computed;
  }
  return python_literal(alog) + "\n";
}

}  // namespace kiln::roast
