#include "qc.hpp"

#include <cmath>
#include <optional>
#include <stdexcept>

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
  throw std::invalid_argument(
      "unknown QC metric '" + name +
      "'; known: tp_time, tp_bt, dry_time, fcs_time, fcs_bt, drop_time, drop_bt, "
      "development_time, dtr, auc, ror_fcs, ror_drop");
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

int rank(const std::string& verdict) {
  return verdict == "fail" ? 2 : verdict == "warn" ? 1 : 0;
}

}  // namespace

json::object default_targets() {
  return json::object{{"dtr", json::object{{"min", 15}, {"max", 25}}},
                      {"fcs_time", json::object{{"min", 360}, {"max", 600}}},
                      {"drop_time", json::object{{"min", 450}, {"max", 780}}}};
}

json::object run_qc(const json::object& analysis, const json::object& targets) {
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
  for (const char* ev : {"CHARGE", "FCs", "DROP"}) {
    const auto* e = analysis.if_contains("events");
    const bool present =
        e && e->is_object() && e->as_object().if_contains(ev) && !e->as_object().at(ev).is_null();
    if (!present) add(std::string("event ") + ev, "fail", std::string(ev) + " was not found");
  }
  for (const auto& kv : targets) {
    const std::string name(kv.key());
    if (!kv.value().is_object())
      throw std::invalid_argument("QC target '" + name + "' must be an object");
    const auto& t = kv.value().as_object();
    double lo = 0, hi = 0, margin = 0;
    if (t.contains("target")) {
      const double target = num(t, "target", name), tol = num(t, "tolerance", name);
      if (tol < 0) throw std::invalid_argument("QC target '" + name + "': tolerance < 0");
      lo = target - tol;
      hi = target + tol;
      margin = tol / 2;
    } else {
      lo = num(t, "min", name);
      hi = num(t, "max", name);
      if (lo > hi) throw std::invalid_argument("QC target '" + name + "': min > max");
      margin = (hi - lo) / 10;
    }
    if (t.contains("warn_margin")) margin = num(t, "warn_margin", name);
    const auto v = metric(analysis, name);
    json::array range{lo, hi};
    if (!v) {
      add(name, "fail", name + " could not be measured (a missing event)", nullptr, range);
      continue;
    }
    const double x = *v;
    if (x >= lo && x <= hi) {
      add(name, "pass", name + " " + fmt(x) + " within " + fmt(lo) + "-" + fmt(hi), x, range);
    } else {
      const double off = x < lo ? lo - x : x - hi;
      const std::string where = x < lo ? "below" : "above";
      add(name, off <= margin ? "warn" : "fail",
          name + " " + fmt(x) + " is " + fmt(off) + " " + where + " " + fmt(lo) + "-" + fmt(hi), x,
          range);
    }
  }
  if (const auto* r = analysis.if_contains("ror"); r && r->is_object()) {
    const auto& ror = r->as_object();
    if (auto* c = ror.if_contains("crash"); c && c->is_bool() && c->as_bool())
      add("ror crash", "warn", "the rate of rise crashed after first crack");
    if (auto* f = ror.if_contains("flick"); f && f->is_bool() && f->as_bool())
      add("ror flick", "warn", "the rate of rise flicked up before DROP");
  }
  return json::object{{"verdict", verdict}, {"checks", std::move(checks)}};
}

}  // namespace kiln::roast
