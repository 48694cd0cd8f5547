#include "qc.hpp"

#include "analysis.hpp"

#include <cmath>
#include <map>
#include <optional>
#include <stdexcept>
#include <vector>

namespace kiln::roast {
namespace json = boost::json;

namespace {

std::optional<double> number_at(const json::object& o, std::initializer_list<const char*> path) {
  const json::value* v = nullptr;
  const json::object* cur = &o;
  for (const char* key : path) {
    if (!cur) return std::nullopt;
    v = cur->if_contains(key);
    if (!v) return std::nullopt;
    cur = v->is_object() ? &v->as_object() : nullptr;
  }
  if (!v || !v->is_number()) return std::nullopt;
  return v->to_number<double>();
}

std::optional<double> metric(const json::object& a, const std::string& name) {
  if (name == "tp_time") return number_at(a, {"events", "TP", "time"});
  if (name == "tp_bt") return number_at(a, {"events", "TP", "bt"});
  if (name == "dry_time") return number_at(a, {"events", "DRY_END", "time"});
  if (name == "fcs_time") return number_at(a, {"events", "FCs", "time"});
  if (name == "fcs_bt") return number_at(a, {"events", "FCs", "bt"});
  if (name == "drop_time") return number_at(a, {"events", "DROP", "time"});
  if (name == "drop_bt") return number_at(a, {"events", "DROP", "bt"});
  if (name == "development_time") return number_at(a, {"phases", "development"});
  if (name == "dtr") return number_at(a, {"phases", "dtr"});
  if (name == "auc") return number_at(a, {"auc"});
  if (name == "ror_fcs") return number_at(a, {"ror", "at", "FCs"});
  if (name == "ror_drop") return number_at(a, {"ror", "at", "DROP"});
  if (name == "weight_loss") return number_at(a, {"weight", "loss"});
  throw std::invalid_argument(
      "unknown QC metric '" + name +
      "'; known: tp_time, tp_bt, dry_time, fcs_time, fcs_bt, drop_time, drop_bt, "
      "development_time, dtr, auc, ror_fcs, ror_drop, weight_loss");
}

double num(const json::object& o, const char* key, const std::string& metric_name) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_number())
    throw std::invalid_argument("QC target '" + metric_name + "': '" + key + "' must be a number");
  return v->to_number<double>();
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// How a roaster names and reads a metric: "FCs at 7:15", "BT at DROP 207.9 °C", "DTR 17.0 %".
struct Words {
  std::string label;  // "FCs at", "BT at FCs", "DTR"
  enum class Kind { kTime, kTemperature, kPercent, kRate, kPlain } kind;
};

Words words_of(const std::string& name) {
  using K = Words::Kind;
  static const std::map<std::string, Words> words = {
      {"tp_time", {"TP at", K::kTime}},
      {"dry_time", {"DRY END at", K::kTime}},
      {"fcs_time", {"FCs at", K::kTime}},
      {"drop_time", {"DROP at", K::kTime}},
      {"development_time", {"development", K::kTime}},
      {"tp_bt", {"BT at TP", K::kTemperature}},
      {"fcs_bt", {"BT at FCs", K::kTemperature}},
      {"drop_bt", {"BT at DROP", K::kTemperature}},
      {"dtr", {"DTR", K::kPercent}},
      {"auc", {"AUC", K::kPlain}},
      {"ror_fcs", {"RoR at FCs", K::kRate}},
      {"ror_drop", {"RoR at DROP", K::kRate}},
      {"weight_loss", {"weight loss", K::kPercent}}};
  auto it = words.find(name);
  return it != words.end() ? it->second : Words{name, K::kPlain};
}

// One reading, a difference or a range of `name` as a roaster writes it; `unit` is 'C' or 'F'.
struct Say {
  Words w;
  char unit;
  std::string value(double v) const {
    switch (w.kind) {
      case Words::Kind::kTime:
        return clock_text(v);
      case Words::Kind::kTemperature:
        return fmt(v) + " °" + unit;
      case Words::Kind::kPercent:
        return fmt(v) + " %";
      case Words::Kind::kRate:
        return fmt(v) + " °" + unit + "/min";
      case Words::Kind::kPlain:
        break;
    }
    return fmt(v);
  }
  std::string range(double lo, double hi) const {
    if (w.kind == Words::Kind::kTime) return clock_text(lo) + "–" + clock_text(hi);
    return value(lo).substr(0, fmt(lo).size()) + "–" + value(hi);
  }
  // "0:17 later than", "3.0 °C below"
  std::string off(double by, bool low) const {
    if (w.kind == Words::Kind::kTime)
      return clock_text(by) + (low ? " earlier than " : " later than ");
    // A difference of percentages is in points: "DTR 26.9 %, 11.1 points above 11.8–15.8 %".
    if (w.kind == Words::Kind::kPercent)
      return fmt(by) + (low ? " points below " : " points above ");
    return value(by) + (low ? " below " : " above ");
  }
};

// A target's accepted range and warn margin. Throws std::invalid_argument naming what is wrong.
struct Range {
  double lo, hi, margin;
};
Range range_of(const std::string& name, const json::object& t) {
  Range r{};
  if (t.contains("target")) {
    const double target = num(t, "target", name), tol = num(t, "tolerance", name);
    if (tol < 0) throw std::invalid_argument("QC target '" + name + "': tolerance < 0");
    r = Range{target - tol, target + tol, tol / 2};
  } else {
    r.lo = num(t, "min", name);
    r.hi = num(t, "max", name);
    if (r.lo > r.hi) throw std::invalid_argument("QC target '" + name + "': min > max");
    r.margin = (r.hi - r.lo) / 10;
  }
  if (t.contains("warn_margin")) r.margin = num(t, "warn_margin", name);
  return r;
}

int rank(const std::string& verdict) {
  return verdict == "fail" ? 2 : verdict == "warn" ? 1 : 0;
}

}  // namespace

json::object default_targets() {
  return json::object{{"dtr", json::object{{"min", 15}, {"max", 25}}},
                      {"fcs_time", json::object{{"min", 360}, {"max", 600}}},
                      {"drop_time", json::object{{"min", 450}, {"max", 780}}}};
}

std::vector<std::string> describe_targets(const json::object& targets, char unit) {
  std::vector<std::string> out;
  for (const auto& kv : targets) {
    const std::string name(kv.key());
    metric(json::object{}, name);  // an unknown metric is an error here too
    if (!kv.value().is_object())
      throw std::invalid_argument("QC target '" + name + "' must be an object");
    const auto r = range_of(name, kv.value().as_object());
    const Say say{words_of(name), unit};
    out.push_back(say.w.label + " " + say.range(r.lo, r.hi));
  }
  return out;
}

json::object run_qc(const json::object& analysis, const json::object& targets) {
  // The analysis's unit (its RoR's, "C/min" or "F/min"), for temperatures in reasons.
  char unit = 'C';
  if (const auto* r = analysis.if_contains("ror"); r && r->is_object())
    if (const auto* u = r->as_object().if_contains("unit");
        u && u->is_string() && !u->as_string().empty())
      unit = u->as_string()[0];
  json::array checks;
  std::string verdict = "pass";
  auto add = [&](const std::string& name, const std::string& result, const std::string& reason,
                 json::value value = nullptr, json::value range = nullptr) {
    checks.push_back(json::object{{"check", name},
                                  {"result", result},
                                  {"reason", reason},
                                  {"value", value},
                                  {"range", range}});
    if (rank(result) > rank(verdict)) verdict = result;
  };
  const auto* events = analysis.if_contains("events");
  auto found = [&](const char* ev) {
    return events && events->is_object() && events->as_object().if_contains(ev) &&
           !events->as_object().at(ev).is_null();
  };
  // Readings that end before DROP (a session closed by silence: the recording stopped, or the
  // detector missed DROP) say nothing against the roast about what they do not reach: those
  // checks warn, naming the way to complete them, instead of failing the roast and holding it
  // for an approver. What the readings do reach is checked as usual.
  const bool cut_short = found("CHARGE") && !found("DROP");
  const std::string complete =
      "the readings end before DROP (the recording stopped, or DROP went undetected); mark DROP "
      "(kiln sessions mark SESSION DROP --at M:SS) to check it";
  for (const char* ev : {"CHARGE", "FCs", "DROP"}) {
    if (found(ev)) continue;
    if (cut_short && std::string(ev) != "CHARGE")
      add(std::string("event ") + ev, "warn", std::string(ev) + " not found: " + complete);
    else
      add(std::string("event ") + ev, "fail", std::string(ev) + " was not found");
  }
  // FCs the detector estimated from the phase temperature (no roaster's mark): a check that rests
  // on it says so, for a roaster to mark it where they heard it.
  const json::value* fcs_source = nullptr;
  if (const auto* src = analysis.if_contains("event_sources"); src && src->is_object())
    fcs_source = src->as_object().if_contains("FCs");
  const bool fcs_estimated = fcs_source && fcs_source->is_string() && *fcs_source == "phases";
  for (const auto& kv : targets) {
    const std::string name(kv.key());
    if (!kv.value().is_object())
      throw std::invalid_argument("QC target '" + name + "' must be an object");
    const auto [lo, hi, margin] = range_of(name, kv.value().as_object());
    const std::string estimate =
        fcs_estimated && (name == "fcs_time" || name == "fcs_bt" || name == "development_time" ||
                          name == "dtr" || name == "ror_fcs")
            ? std::string(kFcsEstimatedNote)
            : "";
    const auto v = metric(analysis, name);
    json::array range{lo, hi};
    const Say say{words_of(name), unit};
    if (!v && name == "weight_loss") {
      // Roasted beans are weighed after cooling, after the report was first made: not a fault of
      // the roast (the report is made again once they are weighed).
      add(name, "warn",
          "weight loss not known: the batch is not weighed (green and roasted; kiln sessions "
          "weigh)",
          nullptr, range);
      continue;
    }
    if (!v) {
      // "FCs at" reads on with a time; a time of an event is named by its event alone.
      const std::string what = say.w.kind == Words::Kind::kTime && say.w.label.size() > 3 &&
                                       say.w.label.compare(say.w.label.size() - 3, 3, " at") == 0
                                   ? "the time of " + say.w.label.substr(0, say.w.label.size() - 3)
                                   : say.w.label;
      if (cut_short)
        add(name, "warn", what + " not measured: " + complete, nullptr, range);
      else
        add(name, "fail", what + " could not be measured (an event is missing)", nullptr, range);
      continue;
    }
    const double x = *v;
    if (x >= lo && x <= hi) {
      add(name, "pass",
          say.w.label + " " + say.value(x) + ", within " + say.range(lo, hi) + estimate, x, range);
    } else {
      const bool low = x < lo;
      const double off = low ? lo - x : x - hi;
      add(name, off <= margin ? "warn" : "fail",
          say.w.label + " " + say.value(x) + ", " + say.off(off, low) + say.range(lo, hi) +
              estimate,
          x, range);
    }
  }
  if (const auto* r = analysis.if_contains("ror"); r && r->is_object()) {
    const auto& ror = r->as_object();
    const Say rate{words_of("ror_fcs"), unit};
    const Say clock{words_of("fcs_time"), unit};
    const auto at_fcs = number_at(ror, {"at", "FCs"}), at_drop = number_at(ror, {"at", "DROP"});
    const auto low = number_at(ror, {"lowest", "value"}),
               low_t = number_at(ror, {"lowest", "time"});
    // The lowest RoR between FCs and DROP, and when: what a crash fell to, a flick rose from
    // (not said when it is the RoR at DROP itself).
    const auto drop_t = number_at(analysis, {"events", "DROP", "time"});
    const std::string lowest = low && low_t && !(drop_t && std::abs(*low_t - *drop_t) < 0.5)
                                   ? rate.value(*low) + " at " + clock.value(*low_t)
                                   : std::string();
    if (auto* c = ror.if_contains("crash"); c && c->is_bool() && c->as_bool())
      add("ror crash", "warn",
          "RoR fell below half its FCs value before DROP" +
              (at_fcs && at_drop ? " (RoR " + rate.value(*at_fcs) + " at FCs" +
                                       (lowest.empty() ? "" : ", lowest " + lowest) + ", " +
                                       rate.value(*at_drop) + " at DROP)"
                                 : std::string()));
    if (auto* f = ror.if_contains("flick"); f && f->is_bool() && f->as_bool())
      add("ror flick", "warn",
          "RoR rose again in the last 30 s before DROP" +
              (at_drop && !lowest.empty()
                   ? ", from " + lowest + " to " + rate.value(*at_drop) + " at DROP" +
                         (at_fcs ? " (RoR " + rate.value(*at_fcs) + " at FCs)" : std::string())
                   : std::string()));
  }
  return json::object{{"verdict", verdict}, {"checks", std::move(checks)}};
}

}  // namespace kiln::roast
