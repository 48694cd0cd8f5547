#include "analysis.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <tuple>

#include "artisan_detector.hpp"
#include "pyliteral.hpp"

namespace kiln::roast {

namespace json = boost::json;

namespace {

std::vector<double> numbers(const json::object& o, const char* key, bool required) {
  std::vector<double> out;
  const auto* v = o.if_contains(key);
  if (!v) {
    if (required) throw AlogError(std::string("the log has no '") + key + "'");
    return out;
  }
  if (!v->is_array()) throw AlogError(std::string("'") + key + "' is not a list");
  out.reserve(v->as_array().size());
  for (const auto& x : v->as_array()) {
    if (!x.is_number())
      throw AlogError(std::string("'") + key + "' holds a non-number at position " +
                      std::to_string(out.size()));
    out.push_back(x.to_number<double>());
  }
  return out;
}

double number_or(const json::object& o, const char* key, double fallback) {
  const auto* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : fallback;
}

EventPoint point(const RoastLog& log, int index, int charge) {
  return EventPoint{
      index, log.time[static_cast<std::size_t>(index)] - log.time[static_cast<std::size_t>(charge)],
      log.bt[static_cast<std::size_t>(index)]};
}

// Least-squares slope of BT over the `n` readings ending at i, in degrees per minute.
double ls_slope(const RoastLog& log, std::size_t i, std::size_t n) {
  const std::size_t start = i + 1 >= n ? i + 1 - n : 0;
  const double count = static_cast<double>(i - start + 1);
  if (count < 2) return 0;
  double st = 0, sb = 0;
  for (std::size_t k = start; k <= i; ++k) {
    st += log.time[k];
    sb += log.bt[k];
  }
  const double mt = st / count, mb = sb / count;
  double num = 0, den = 0;
  for (std::size_t k = start; k <= i; ++k) {
    num += (log.time[k] - mt) * (log.bt[k] - mb);
    den += (log.time[k] - mt) * (log.time[k] - mt);
  }
  return den > 0 ? num / den * 60.0 : 0;
}

json::value event_json(const std::optional<EventPoint>& e) {
  if (!e) return nullptr;
  return json::object{{"index", e->index},
                      {"time", std::round(e->time * 1000) / 1000},
                      {"bt", std::round(e->bt * 100) / 100}};
}

// Rounded to `scale` (1000: three decimals), or null.
json::value opt(const std::optional<double>& v, double scale = 1000) {
  if (!v) return nullptr;
  return std::round(*v * scale) / scale;
}

}  // namespace

namespace {

// Artisan writes -1 for a reading the device did not give. Each is replaced by the straight line
// between the nearest real readings in time (the nearest one at either end); returns how many.
std::size_t fill_missing(std::vector<double>& v, const std::vector<double>& time,
                         const char* channel) {
  auto missing = [](double x) { return x == -1.0; };
  std::size_t filled = 0;
  std::optional<std::size_t> before;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!missing(v[i])) {
      before = i;
      continue;
    }
    std::size_t after = i + 1;
    while (after < v.size() && missing(v[after])) ++after;
    if (!before && after == v.size()) {
      if (channel == std::string_view("temp1")) return 0;  // a logger without ET: left as is
      throw AlogError(std::string("'") + channel + "' has no reading (every value is -1)");
    }
    for (std::size_t k = i; k < after; ++k, ++filled) {
      if (!before)
        v[k] = v[after];
      else if (after == v.size())
        v[k] = v[*before];
      else
        v[k] = v[*before] +
               (v[after] - v[*before]) * (time[k] - time[*before]) / (time[after] - time[*before]);
    }
    i = after - 1;
  }
  return filled;
}

}  // namespace

std::string display_title(const RoastLog& log) {
  auto blank = [](const std::string& s) {
    return s.find_first_not_of(" \t\r\n") == std::string::npos;
  };
  if (!blank(log.title) && log.title != "Roaster Scope") return log.title;
  if (!blank(log.beans)) return log.beans;
  std::string out = blank(log.roaster) ? std::string("roast") : log.roaster;
  if (log.batch > 0) out += " batch " + std::to_string(log.batch);
  if (!blank(log.date)) out += ", " + log.date;
  return out == "roast" && !log.title.empty() ? log.title : out;
}

namespace {

// Artisan keeps an event's value as v / 10 + 1 (0 as 1; negatives mirrored) and shows
// round(10 v) - 10.
double shown_event_value(double v) {
  if (v >= -1.0 && v <= 1.0) return 0;
  return v > 1.0 ? std::round(v * 10) - 10 : std::round(v * 10) + 10;
}

// The log's special events (RoastLog::controls): four parallel lists, and the type names.
void read_controls(const json::object& o, RoastLog& log) {
  if (!o.contains("specialevents")) return;
  const auto index = numbers(o, "specialevents", true);
  const auto type = numbers(o, "specialeventstype", true);
  const auto value = numbers(o, "specialeventsvalue", true);
  if (type.size() != index.size() || value.size() != index.size())
    throw AlogError("'specialevents' (" + std::to_string(index.size()) +
                    "), 'specialeventstype' (" + std::to_string(type.size()) +
                    ") and 'specialeventsvalue' (" + std::to_string(value.size()) +
                    ") must have the same length");
  std::vector<std::string> labels(index.size());
  if (const auto* s = o.if_contains("specialeventsStrings"); s && s->is_array())
    for (std::size_t k = 0; k < labels.size() && k < s->as_array().size(); ++k)
      if (s->as_array()[k].is_string()) labels[k] = std::string(s->as_array()[k].as_string());
  // Artisan's default names, where the log has none.
  std::vector<std::string> names{"Air", "Drum", "Damper", "Burner"};
  if (const auto* e = o.if_contains("etypes"); e && e->is_array())
    for (std::size_t k = 0; k < names.size() && k < e->as_array().size(); ++k)
      if (e->as_array()[k].is_string() && !e->as_array()[k].as_string().empty())
        names[k] = std::string(e->as_array()[k].as_string());
  for (std::size_t k = 0; k < index.size(); ++k) {
    const std::string at = "'specialevents'[" + std::to_string(k) + "]";
    if (index[k] != std::floor(index[k]) || index[k] < 0 ||
        index[k] >= static_cast<double>(log.time.size()))
      throw AlogError(at + " = " + std::to_string(index[k]) + " is not a reading index (0 to " +
                      std::to_string(log.time.size() - 1) + ")");
    if (type[k] != std::floor(type[k]) || type[k] < 0 || type[k] > 4)
      throw AlogError("'specialeventstype'[" + std::to_string(k) + "] is not an event type (0-4)");
    const auto t = static_cast<std::size_t>(type[k]);
    log.controls.push_back(RoastLog::Control{static_cast<int>(index[k]),
                                             t < names.size() ? names[t] : "Event",
                                             shown_event_value(value[k]), labels[k]});
  }
}

}  // namespace

std::string clock_text(double seconds) {
  if (!std::isfinite(seconds) || std::abs(seconds) >= 366 * 86400.0) return "-";
  const long t = std::lround(std::abs(seconds));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%ld:%02ld", t > 0 && seconds < 0 ? "-" : "", t / 60, t % 60);
  return buf;
}

constexpr double kMaxLogSeconds = 24 * 3600;

// A number in a message: 1e+308, not 309 digits.
std::string shown(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

RoastLog parse_alog(std::string_view text) {
  json::value v = parse_python_literal(text);
  if (!v.is_object()) throw AlogError("an .alog is a dict; this literal is not");
  const auto& o = v.as_object();
  RoastLog log;
  for (auto [key, into] :
       {std::pair{"title", &log.title}, std::pair{"beans", &log.beans},
        std::pair{"roastertype", &log.roaster}, std::pair{"roastdate", &log.date}})
    if (const auto* t = o.if_contains(key); t && t->is_string())
      *into = std::string(t->as_string());
  if (const auto* b = o.if_contains("roastbatchnr"); b && b->is_int64() && b->as_int64() > 0)
    log.batch = b->as_int64();
  if (const auto* m = o.if_contains("mode")) {
    if (!m->is_string()) throw AlogError("'mode' is not text; expected 'C' or 'F'");
    const std::string mode(m->as_string());
    if (mode != "C" && mode != "F")
      throw AlogError("'mode' is '" + mode + "'; expected 'C' or 'F'");
    log.mode = mode[0];
  }
  log.interval = number_or(o, "samplinginterval", 1.0);
  log.time = numbers(o, "timex", true);
  log.et = numbers(o, "temp1", true);
  log.bt = numbers(o, "temp2", true);
  if (log.time.size() < 2) throw AlogError("'timex' has fewer than 2 readings");
  if (log.et.size() != log.time.size() || log.bt.size() != log.time.size())
    throw AlogError("'timex' (" + std::to_string(log.time.size()) + "), 'temp1' (" +
                    std::to_string(log.et.size()) + ") and 'temp2' (" +
                    std::to_string(log.bt.size()) + ") must have the same length");
  for (std::size_t i = 1; i < log.time.size(); ++i)
    if (!(log.time[i] > log.time[i - 1]))
      throw AlogError("'timex' is not increasing at position " + std::to_string(i));
  // A roast log spans minutes; a day and more is a broken clock (and times that no clock text
  // can show).
  if (!std::isfinite(log.time.front()) || !std::isfinite(log.time.back()) ||
      log.time.back() - log.time.front() > kMaxLogSeconds)
    throw AlogError("'timex' spans " + shown(log.time.back() - log.time.front()) +
                    " s; a roast log spans at most a day");
  const double hottest = log.mode == 'F' ? 1832 : 1000;  // 1000 °C
  for (const auto* series : {&log.bt, &log.et})
    for (std::size_t i = 0; i < series->size(); ++i)
      if (!std::isfinite((*series)[i]) || std::abs((*series)[i]) > hottest)
        throw AlogError(std::string(series == &log.bt ? "'temp2'" : "'temp1'") + "[" +
                        std::to_string(i) + "] is " + shown((*series)[i]) +
                        "; a temperature is within ±" + std::to_string(int(hottest)) + " °" +
                        log.mode);
  log.filled_bt = fill_missing(log.bt, log.time, "temp2");
  log.filled_et = fill_missing(log.et, log.time, "temp1");
  if (o.if_contains("timeindex")) {
    auto idx = numbers(o, "timeindex", true);
    if (idx.size() < 8) throw AlogError("'timeindex' has fewer than 8 entries");
    for (std::size_t k = 0; k < 8; ++k) {
      if (idx[k] != std::floor(idx[k]) || idx[k] < -1 || idx[k] > 1e9)
        throw AlogError("'timeindex'[" + std::to_string(k) + "] is not a reading index");
      const int i = static_cast<int>(idx[k]);
      const bool unset = k == 0 ? i < 0 : i <= 0;
      if (!unset && static_cast<std::size_t>(i) >= log.time.size())
        throw AlogError("'timeindex'[" + std::to_string(k) + "] = " + std::to_string(i) +
                        " is past the last reading (" + std::to_string(log.time.size() - 1) + ")");
      log.timeindex[k] = unset ? (k == 0 ? -1 : 0) : i;
    }
    // Marked events in roast order: none before CHARGE; DRY END, FCs and DROP in that order.
    static constexpr const char* kSlot[8] = {"CHARGE", "DRY END", "FCs",  "FCe",
                                             "SCs",    "SCe",     "DROP", "COOL END"};
    const auto& ti = log.timeindex;
    for (std::size_t k = 1; k < 8; ++k)
      if (ti[0] >= 0 && ti[k] > 0 && ti[k] < ti[0])
        throw AlogError(std::string("'timeindex' puts ") + kSlot[k] + " (reading " +
                        std::to_string(ti[k]) + ") before CHARGE (reading " +
                        std::to_string(ti[0]) + ")");
    for (auto [a, b] : {std::pair{1, 2}, std::pair{2, 6}, std::pair{1, 6}})
      if (ti[a] > 0 && ti[b] > 0 && ti[b] < ti[a])
        throw AlogError(std::string("'timeindex' puts ") + kSlot[b] + " (reading " +
                        std::to_string(ti[b]) + ") before " + kSlot[a] + " (reading " +
                        std::to_string(ti[a]) + ")");
  }
  if (auto ph = numbers(o, "phases", false); ph.size() == 4)
    for (std::size_t k = 0; k < 4; ++k) log.phases[k] = ph[k];
  else if (log.mode == 'F')
    log.phases = {302, 302, 392, 446};
  // The Bullet R1's state channel (Artisan's extra device "State").
  if (const auto* names = o.if_contains("extraname1"); names && names->is_array()) {
    const auto* temps = o.if_contains("extratemp1");
    for (std::size_t k = 0; k < names->as_array().size(); ++k) {
      const auto& n = names->as_array()[k];
      if (n.is_string() && n.as_string() == "State" && temps && temps->is_array() &&
          k < temps->as_array().size() && temps->as_array()[k].is_array()) {
        for (const auto& x : temps->as_array()[k].as_array())
          log.roaster_state.push_back(x.is_number() ? x.to_number<double>() : -1);
        if (log.roaster_state.size() != log.time.size()) log.roaster_state.clear();
      }
    }
  }
  if (const auto* c = o.if_contains("computed"); c && c->is_object()) log.computed = c->as_object();
  read_controls(o, log);
  if (const auto* w = o.if_contains("weight"); w && w->is_array() && w->as_array().size() >= 2) {
    const auto& wa = w->as_array();
    if (wa[0].is_number()) log.weight_in = wa[0].to_number<double>();
    if (wa[1].is_number()) log.weight_out = wa[1].to_number<double>();
    for (double w : {log.weight_in, log.weight_out})
      if (!std::isfinite(w) || w < 0 || w > 1e6)
        throw AlogError("'weight' holds " + shown(w) +
                        "; a batch's weight is from 0 (not weighed) to 1,000,000");
    if (wa.size() >= 3 && wa[2].is_string() && !wa[2].as_string().empty())
      log.weight_unit = std::string(wa[2].as_string());
  }
  return log;
}

nodes::RoastCurve curve_of(const RoastLog& log) {
  nodes::RoastCurve c;
  c.time = log.time;
  c.bt = log.bt;
  c.et = log.et;
  c.state = log.roaster_state;
  c.unit = log.mode;
  c.phases = log.phases;
  return c;
}

Analysis analyze(const RoastLog& log, const AnalysisOptions& opt,
                 const nodes::EventDetector* detector) {
  Analysis a;
  const std::size_t n = log.bt.size();
  const bool celsius = log.mode == 'C';
  auto deg = [&](double c) { return celsius ? c : c * 9.0 / 5.0 + 32.0; };
  const nodes::RoastCurve curve = curve_of(log);
  const int last_reading = static_cast<int>(n) - 1;

  if (log.filled_bt || log.filled_et)
    a.warnings.push_back(std::to_string(log.filled_bt) + " BT and " +
                         std::to_string(log.filled_et) +
                         " ET readings were missing in the file (-1) and are interpolated");
  int charge = -1, drop = -1, fcs = -1, dry = -1, tp = -1;
  if (opt.detect) {
    if (!detector)
      throw std::invalid_argument("event detection needs an event_detector node; none is given");
    const auto e = detector->detect(curve);
    e.validate(curve);
    charge = e.charge;
    drop = e.drop;
    fcs = e.fcs;
    dry = e.dry_end;
    tp = e.tp;
    a.charge_source = e.charge_source;
    a.drop_source = e.drop_source;
    a.dry_end_source = e.dry_end_source;
    a.fcs_source = e.fcs_source;
    if (opt.keep_marks) {
      bool any = false;
      for (auto [slot, ev, source] :
           {std::tuple{0, &charge, &a.charge_source}, std::tuple{1, &dry, &a.dry_end_source},
            std::tuple{2, &fcs, &a.fcs_source}, std::tuple{6, &drop, &a.drop_source}}) {
        const int m = log.timeindex[static_cast<std::size_t>(slot)];
        if (m < 0 || (slot > 0 && m == 0) || m > last_reading) continue;
        *ev = m;
        *source = "marked";
        any = true;
      }
      if (any && charge >= 0)
        tp = turning_point(curve, charge, fcs > charge ? fcs : drop > charge ? drop : last_reading);
    }
    // An event out of order would make phases meaningless: drop what does not fit.
    if (charge < 0 || charge > last_reading) charge = -1;
    for (auto [ev, name, source] :
         {std::tuple{&tp, "TP", static_cast<std::string*>(nullptr)},
          std::tuple{&dry, "DRY END", &a.dry_end_source}, std::tuple{&fcs, "FCs", &a.fcs_source},
          std::tuple{&drop, "DROP", &a.drop_source}})
      if (charge < 0 || *ev <= charge || *ev > last_reading) {
        if (*ev >= 0 && source && *source == "marked") {
          a.warnings.push_back(std::string("the ") + name +
                               " marked is not after CHARGE: left out of the analysis");
          source->clear();
        } else if (*ev >= 0 && a.charge_source == "marked") {  // the roaster's CHARGE moved
          a.warnings.push_back(std::string("the detected ") + name + " (reading " +
                               std::to_string(*ev) +
                               ") is not after the marked CHARGE: left out of the analysis");
          if (source) source->clear();
        } else if (*ev >= 0) {  // the node's own answer breaks its contract (CHARGE < TP ...)
          a.warnings.push_back(
              std::string("the event_detector node's ") + name + " (reading " +
              std::to_string(*ev) + ") is not after its CHARGE (" +
              (charge < 0 ? std::string("none") : "reading " + std::to_string(charge)) +
              "): left out of the analysis; `kiln gate run event_detector/NODE` checks the node");
          if (source) source->clear();
        }
        *ev = -1;
      }
  } else {
    charge = log.timeindex[0];
    dry = log.timeindex[1] > 0 ? log.timeindex[1] : -1;
    fcs = log.timeindex[2] > 0 ? log.timeindex[2] : -1;
    drop = log.timeindex[6] > 0 ? log.timeindex[6] : -1;
    a.charge_source = a.drop_source = "marked";
    if (fcs >= 0) a.fcs_source = "marked";
    if (charge >= 0) {
      // TP is derived even where events are marked: the lowest BT between CHARGE and FCs (or
      // DROP, or the end), as Artisan takes it.
      tp = turning_point(curve, charge, fcs > 0 ? fcs : drop > 0 ? drop : last_reading);
      if (dry > 0) {
        a.dry_end_source = "marked";
      } else if (tp >= 0) {
        dry = first_at_or_above(curve, tp,
                                fcs > 0    ? fcs
                                : drop > 0 ? drop
                                           : last_reading,
                                log.phases[1]);
        if (dry >= 0) a.dry_end_source = dry == tp ? "TP" : "phases";
      }
    }
  }
  if (charge < 0) {
    a.warnings.push_back(opt.detect ? "no CHARGE detected"
                                    : "CHARGE is not marked in the file (--detect finds the "
                                      "events from the curve)");
    a.ror = json::object{{"span_s", opt.ror_span_s}};
    return a;
  }
  if (!opt.detect)
    for (const auto& [index, name] : {std::pair{fcs, "FCs"}, std::pair{drop, "DROP"}})
      if (index < 0)
        a.warnings.push_back(std::string(name) +
                             " is not marked in the file: the phases after it are missing "
                             "(--detect finds the events from the curve)");
  a.charge = point(log, charge, charge);
  if (drop >= 0) a.drop = point(log, drop, charge);
  if (tp >= 0)
    a.tp = point(log, tp, charge);
  else
    a.warnings.push_back("no turning point between 50 and 150 °C after CHARGE");
  if (fcs > 0) a.fcs = point(log, fcs, charge);
  if (dry >= 0) a.dry_end = point(log, dry, charge);
  if (opt.detect && tp >= 0) {
    // FCs is heard, not seen: detection takes the first reading at the FCs phase temperature.
    // Say so where that is missing or far from what the roaster marked.
    const int marked = log.timeindex[2] > 0 ? log.timeindex[2] : -1;
    char buf[200];
    if (fcs <= 0) {
      std::snprintf(buf, sizeof buf,
                    "FCs not detected: BT stayed below the FCs phase temperature (%.0f) before "
                    "DROP; detection takes FCs from that temperature (roasters mark it by ear)",
                    log.phases[2]);
      a.warnings.emplace_back(buf);
    } else if (marked > charge) {
      const double off =
          log.time[static_cast<std::size_t>(fcs)] - log.time[static_cast<std::size_t>(marked)];
      if (std::abs(off) > 30) {
        std::snprintf(buf, sizeof buf,
                      "detected FCs (BT at the FCs phase temperature, %.0f) is %.0f s %s the FCs "
                      "marked in the file",
                      log.phases[2], std::abs(off), off > 0 ? "after" : "before");
        a.warnings.emplace_back(buf);
      }
    }
  }

  if (a.drop) a.total = a.drop->time;
  if (a.dry_end) a.drying = a.dry_end->time;
  if (a.dry_end && a.fcs) a.maillard = a.fcs->time - a.dry_end->time;
  if (a.fcs && a.drop) {
    a.development = a.drop->time - a.fcs->time;
    if (a.drop->time > 0) a.dtr_percent = *a.development / a.drop->time * 100.0;
  }

  // AUC: degree-minutes above the base from TP to DROP (Artisan's default base 100 °C).
  a.auc_base = deg(100);
  if (const auto* b = log.computed.if_contains("AUCbase"); b && b->is_number())
    a.auc_base = b->to_number<double>();
  if (a.tp && a.drop) {
    double area = 0;
    for (int i = a.tp->index; i < a.drop->index; ++i) {
      const auto k = static_cast<std::size_t>(i);
      area += std::max(log.bt[k] - a.auc_base, 0.0) * (log.time[k + 1] - log.time[k]);
    }
    a.auc = area / 60.0;
  }

  // Rate of rise: least-squares slope of BT over the delta span, clipped to ±95 °/min, between
  // CHARGE and DROP.
  const std::size_t span = std::max<std::size_t>(
      2, static_cast<std::size_t>(std::lround(opt.ror_span_s / std::max(log.interval, 0.1))));
  const int last = drop > 0 ? drop : static_cast<int>(n) - 1;
  std::vector<double> ror(n, 0.0);
  for (int i = charge; i <= last; ++i)
    ror[static_cast<std::size_t>(i)] =
        std::clamp(ls_slope(log, static_cast<std::size_t>(i), span + 1), -95.0, 95.0);
  auto at = [&](const std::optional<EventPoint>& e) -> json::value {
    if (!e) return nullptr;
    return std::round(ror[static_cast<std::size_t>(e->index)] * 10) / 10;
  };
  json::object r{{"span_s", opt.ror_span_s},
                 {"method", "least-squares slope of BT over the span, clipped to ±95"},
                 {"unit", celsius ? "C/min" : "F/min"},
                 {"at", json::object{{"TP", at(a.tp)},
                                     {"DRY_END", at(a.dry_end)},
                                     {"FCs", at(a.fcs)},
                                     {"DROP", at(a.drop)}}}};
  if (a.tp) {
    // Peak after TP (the first readings after CHARGE are the probe recovering).
    int peak = a.tp->index;
    for (int i = a.tp->index; i <= last; ++i)
      if (ror[static_cast<std::size_t>(i)] > ror[static_cast<std::size_t>(peak)]) peak = i;
    r["max"] = json::object{{"time", std::round(point(log, peak, charge).time * 1000) / 1000},
                            {"value", std::round(ror[static_cast<std::size_t>(peak)] * 10) / 10}};
  }
  if (a.fcs && a.drop && a.drop->index > a.fcs->index) {
    // Crash: RoR falls below half its value at FCs within the development phase; flick: it rises
    // again by more than 1 °/min over the last 30 s before DROP after having fallen.
    const double at_fcs = ror[static_cast<std::size_t>(a.fcs->index)];
    double lowest = at_fcs;
    int lowest_i = a.fcs->index;
    for (int i = a.fcs->index; i <= a.drop->index; ++i)
      if (ror[static_cast<std::size_t>(i)] < lowest) {
        lowest = ror[static_cast<std::size_t>(i)];
        lowest_i = i;
      }
    r["crash"] = at_fcs > 0 && lowest < at_fcs * 0.5;
    // Where it was lowest between FCs and DROP: what a crash fell to, what a flick rose from.
    r["lowest"] =
        json::object{{"time", std::round(point(log, lowest_i, charge).time * 1000) / 1000},
                     {"value", std::round(lowest * 10) / 10}};
    const double end_value = ror[static_cast<std::size_t>(a.drop->index)];
    const bool late = log.time[static_cast<std::size_t>(a.drop->index)] -
                          log.time[static_cast<std::size_t>(lowest_i)] <=
                      30;
    r["flick"] = late && end_value - lowest > 1.0;
  }
  if (opt.ror_series) {
    json::array series;
    for (int i = charge; i <= last; ++i)
      series.push_back(json::array{std::round(point(log, i, charge).time * 1000) / 1000,
                                   std::round(ror[static_cast<std::size_t>(i)] * 100) / 100});
    r["series"] = std::move(series);
  }
  a.ror = std::move(r);
  a.weight_unit = log.weight_unit;
  if (log.weight_in > 0) a.weight_in = log.weight_in;
  if (log.weight_out > 0) a.weight_out = log.weight_out;
  if (a.weight_in && a.weight_out && *a.weight_out <= *a.weight_in)
    a.weight_loss_percent = (*a.weight_in - *a.weight_out) / *a.weight_in * 100;
  return a;
}

json::object to_json(const Analysis& a) {
  json::object sources{{"CHARGE", a.charge_source}, {"DROP", a.drop_source}};
  if (!a.dry_end_source.empty()) sources["DRY_END"] = a.dry_end_source;
  if (!a.fcs_source.empty()) sources["FCs"] = a.fcs_source;
  json::array warnings;
  for (const auto& w : a.warnings) warnings.emplace_back(w);
  return json::object{{"events", json::object{{"CHARGE", event_json(a.charge)},
                                              {"TP", event_json(a.tp)},
                                              {"DRY_END", event_json(a.dry_end)},
                                              {"FCs", event_json(a.fcs)},
                                              {"DROP", event_json(a.drop)}}},
                      {"event_sources", sources},
                      {"phases", json::object{{"drying", opt(a.drying)},
                                              {"maillard", opt(a.maillard)},
                                              {"development", opt(a.development)},
                                              {"dtr", opt(a.dtr_percent, 100)},
                                              {"total", opt(a.total)}}},
                      {"auc", opt(a.auc, 10)},
                      {"auc_base", a.auc_base},
                      {"weight", json::object{{"in", opt(a.weight_in)},
                                              {"out", opt(a.weight_out)},
                                              {"unit", a.weight_unit},
                                              {"loss", opt(a.weight_loss_percent, 10)}}},
                      {"ror", a.ror},
                      {"warnings", warnings}};
}

}  // namespace kiln::roast
