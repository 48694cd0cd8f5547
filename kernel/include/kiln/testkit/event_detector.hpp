// kiln/testkit/event_detector.hpp — contract and parity suites of the `event_detector` kind.
// `kiln gate run event_detector/NODE` runs exactly these; plugin authors run them in their own
// tests (see kiln/testkit/boost_test.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "kiln/nodes/event_detector.hpp"
#include "kiln/testkit/report.hpp"

namespace kiln::testkit {

using EventDetectorFactory =
    std::function<std::shared_ptr<nodes::EventDetector>(const boost::json::object& kind_config)>;

// A golden recording of the parity suite.
struct EventDetectorCase {
  std::string name;
  nodes::RoastCurve curve;
};

namespace event_detail {

struct Synthetic {
  nodes::RoastCurve curve;
  int charge = -1, tp = -1, drop = -1;  // the true events
};

// A smooth roast: 120 s of preheat (the probe sits in a 200 °C drum), CHARGE, beans rising to
// ≈ 196 °C at 8 min, DROP at 10 min, 120 s of cooling. `interval` seconds between readings.
inline Synthetic synthetic_roast(double interval, bool with_state) {
  Synthetic s;
  const double t_charge = 120, t_drop = 720, t_end = 840;
  auto bean = [](double u) { return 230.0 - 205.0 * std::exp(-u / 267.0); };
  for (double t = 0; t <= t_end + 1e-9; t += interval) {
    double bt = 0;
    double state = 2;
    if (t < t_charge) {
      bt = 195.0 + 0.02 * t;
    } else if (t < t_drop) {
      const double u = t - t_charge;
      bt = bean(u) + (197.4 - bean(u)) * std::exp(-u / 20.0);
      state = 6;
    } else {
      const double at_drop = bean(t_drop - t_charge);
      bt = 25.0 + (at_drop - 25.0) * std::exp(-(t - t_drop) / 25.0);
      state = 8;
    }
    const auto i = static_cast<int>(s.curve.time.size());
    if (s.charge < 0 && t >= t_charge) s.charge = i;
    if (s.drop < 0 && t >= t_drop) s.drop = i;
    s.curve.time.push_back(t);
    s.curve.bt.push_back(bt);
    s.curve.et.push_back(bt + 30.0);
    if (with_state) s.curve.state.push_back(state);
  }
  for (int i = s.charge; i < s.drop; ++i)
    if (s.tp < 0 ||
        s.curve.bt[static_cast<std::size_t>(i)] < s.curve.bt[static_cast<std::size_t>(s.tp)])
      s.tp = i;
  return s;
}

inline bool in_curve(const nodes::RoastCurve& c, int i) {
  return i >= 0 && static_cast<std::size_t>(i) < c.time.size();
}

// The time of reading `i`; -1 for none, NaN for an index outside the curve (a broken node's).
inline double time_at(const nodes::RoastCurve& c, int i) {
  return i < 0 ? -1 : in_curve(c, i) ? c.time[static_cast<std::size_t>(i)] : std::nan("");
}

inline std::string describe(const nodes::RoastCurve& c, const nodes::RoastEvents& e) {
  auto one = [&](const char* name, int i) {
    return std::string(name) + "=" +
           (i < 0 ? std::string("none")
            : in_curve(c, i)
                ? std::to_string(i) + "@" + std::to_string(time_at(c, i)).substr(0, 7) + "s"
                : std::to_string(i) + " (outside the curve's " + std::to_string(c.time.size()) +
                      " readings)");
  };
  return one("CHARGE", e.charge) + " " + one("TP", e.tp) + " " + one("DRY_END", e.dry_end) + " " +
         one("FCs", e.fcs) + " " + one("DROP", e.drop);
}

inline bool near(const nodes::RoastCurve& c, int got, int want, double tolerance_s) {
  if (got < 0 || want < 0) return got == want;
  if (!in_curve(c, got) || !in_curve(c, want)) return false;
  return std::abs(time_at(c, got) - time_at(c, want)) <= tolerance_s + 1e-9;
}

inline bool ordered(const nodes::RoastEvents& e) {
  std::vector<int> seq;
  for (int i : {e.charge, e.tp, e.dry_end, e.fcs, e.drop})
    if (i >= 0) seq.push_back(i);
  if (e.charge < 0 && seq.size() > 0) return false;  // nothing without CHARGE
  if (e.tp >= 0 && e.tp <= e.charge) return false;
  if (e.drop >= 0 && !seq.empty() && e.drop != seq.back()) return false;
  return std::is_sorted(seq.begin(), seq.end());
}

inline double to_f(double c) {
  return c * 9.0 / 5.0 + 32.0;
}

}  // namespace event_detail

// The kind's contract, version nodes::EventDetector::kContractVersion.
inline SuiteReport run_event_detector_contract(const EventDetectorFactory& make) {
  using namespace event_detail;
  SuiteReport report;
  report.suite = "contract";
  std::shared_ptr<nodes::EventDetector> node;
  guarded(report, "constructs with an empty kind config", [&] {
    node = make(boost::json::object{});
    report.add("constructs with an empty kind config", node != nullptr,
               node ? "" : "factory returned null");
  });
  if (!node) return report;

  guarded(report, "an empty curve has no events", [&] {
    auto e = node->detect(nodes::RoastCurve{});
    report.add("an empty curve has no events",
               e.charge < 0 && e.tp < 0 && e.dry_end < 0 && e.fcs < 0 && e.drop < 0,
               describe(nodes::RoastCurve{}, e));
  });

  guarded(report, "every event is a reading of the curve, or none", [&] {
    std::string outside;
    for (bool with_state : {false, true}) {
      auto s = synthetic_roast(1.0, with_state);
      nodes::RoastCurve prefix = s.curve;  // a live roast's first 3 minutes
      for (auto* v : {&prefix.time, &prefix.bt, &prefix.et, &prefix.state})
        if (v->size() > 180) v->resize(180);
      for (const auto* c : {&s.curve, &prefix}) {
        const auto e = node->detect(*c);
        try {
          e.validate(*c);
        } catch (const std::logic_error& x) {
          outside = x.what();
        }
      }
    }
    report.add("every event is a reading of the curve, or none", outside.empty(), outside);
  });

  guarded(report, "a curve whose channels disagree is refused", [&] {
    nodes::RoastCurve bad;
    bad.time = {0, 1, 2};
    bad.bt = {100, 101};
    bool refused = false;
    std::string what;
    try {
      node->detect(bad);
    } catch (const std::invalid_argument& e) {
      refused = true;
      what = e.what();
    }
    report.add("a curve whose channels disagree is refused", refused && !what.empty(),
               refused ? what : "detect() accepted bt shorter than time");
  });

  for (double interval : {1.0, 3.0}) {
    const std::string at = " (" + std::to_string(static_cast<int>(interval)) + " s readings)";
    guarded(report, "events of a smooth roast from BT alone" + at, [&] {
      auto s = synthetic_roast(interval, false);
      auto e = node->detect(s.curve);
      // From BT alone CHARGE is uncertain by the probe's lag (a few seconds on real roasters).
      const bool ok = near(s.curve, e.charge, s.charge, std::max(5.0, 2 * interval + 1)) &&
                      near(s.curve, e.tp, s.tp, 2 * interval + 1) &&
                      near(s.curve, e.drop, s.drop, 4 * interval + 4) && ordered(e);
      report.add("events of a smooth roast from BT alone" + at, ok,
                 "got " + describe(s.curve, e) + "; want CHARGE " +
                     std::to_string(time_at(s.curve, s.charge)) + "s TP " +
                     std::to_string(time_at(s.curve, s.tp)) + "s DROP " +
                     std::to_string(time_at(s.curve, s.drop)) + "s");
    });
  }

  guarded(report, "the roaster's state channel decides CHARGE and DROP", [&] {
    auto s = synthetic_roast(1.0, true);
    auto e = node->detect(s.curve);
    report.add("the roaster's state channel decides CHARGE and DROP",
               e.charge == s.charge && e.drop == s.drop && ordered(e),
               "got " + describe(s.curve, e) + "; want CHARGE index " + std::to_string(s.charge) +
                   ", DROP index " + std::to_string(s.drop));
  });

  guarded(report, "detection is deterministic", [&] {
    auto s = synthetic_roast(1.0, false);
    auto a = node->detect(s.curve);
    auto b = node->detect(s.curve);
    report.add("detection is deterministic",
               a.charge == b.charge && a.tp == b.tp && a.dry_end == b.dry_end && a.fcs == b.fcs &&
                   a.drop == b.drop,
               describe(s.curve, a) + " vs " + describe(s.curve, b));
  });

  guarded(report, "a live prefix before DROP keeps CHARGE and TP and has no DROP", [&] {
    auto s = synthetic_roast(1.0, false);
    auto full = node->detect(s.curve);
    nodes::RoastCurve prefix = s.curve;
    const auto keep = static_cast<std::size_t>(s.drop - 30);
    prefix.time.resize(keep);
    prefix.bt.resize(keep);
    prefix.et.resize(keep);
    auto e = node->detect(prefix);
    report.add("a live prefix before DROP keeps CHARGE and TP and has no DROP",
               e.charge == full.charge && e.tp == full.tp && e.drop < 0,
               "prefix: " + describe(prefix, e) + "; full: " + describe(s.curve, full));
  });

  guarded(report, "a Fahrenheit curve has the same events", [&] {
    auto s = synthetic_roast(1.0, false);
    auto c = node->detect(s.curve);
    nodes::RoastCurve f = s.curve;
    f.unit = 'F';
    for (auto& v : f.bt) v = to_f(v);
    for (auto& v : f.et) v = to_f(v);
    for (auto& v : f.phases) v = to_f(v);  // like every temperature, in the curve's unit
    auto e = node->detect(f);
    report.add("a Fahrenheit curve has the same events",
               e.charge == c.charge && e.tp == c.tp && e.dry_end == c.dry_end && e.fcs == c.fcs &&
                   e.drop == c.drop,
               "°F: " + describe(f, e) + "; °C: " + describe(s.curve, c));
  });

  guarded(report, "cooling readings after a DROP are no new roast", [&] {
    auto s = synthetic_roast(1.0, true);
    nodes::RoastCurve cooling;
    for (std::size_t i = static_cast<std::size_t>(s.drop) + 2; i < s.curve.time.size(); ++i) {
      cooling.time.push_back(s.curve.time[i]);
      cooling.bt.push_back(s.curve.bt[i]);
      cooling.et.push_back(s.curve.et[i]);
      cooling.state.push_back(s.curve.state[i]);
    }
    auto with_state = node->detect(cooling);
    cooling.state.clear();
    auto bt_only = node->detect(cooling);
    report.add("cooling readings after a DROP are no new roast",
               with_state.charge < 0 && bt_only.tp < 0,
               "with the state channel: " + describe(cooling, with_state) +
                   "; from BT alone (a fall, but no turning point): " + describe(cooling, bt_only));
  });

  guarded(report, "a flat curve (no roast) has no events", [&] {
    nodes::RoastCurve flat;
    for (int i = 0; i < 600; ++i) {
      flat.time.push_back(i);
      flat.bt.push_back(21.0 + 0.1 * std::sin(i * 0.3));
      flat.et.push_back(22.0);
    }
    auto e = node->detect(flat);
    report.add("a flat curve (no roast) has no events", e.charge < 0 && e.drop < 0 && e.tp < 0,
               describe(flat, e));
  });
  return report;
}

// Reads golden recordings: {"name", "unit", "time": [...], "bt": [...], "et": [...],
// "state": [...] (optional), "phases": [4 numbers] (optional)}. Throws std::runtime_error naming
// the file.
inline std::vector<EventDetectorCase> parse_event_detector_cases(std::string_view text,
                                                                 const std::string& origin) {
  auto numbers = [&](const boost::json::object& o, const char* key) {
    std::vector<double> out;
    if (const auto* v = o.if_contains(key)) {
      if (!v->is_array())
        throw std::invalid_argument(std::string("\"") + key + "\" must be an array of numbers");
      for (const auto& x : v->as_array()) out.push_back(x.to_number<double>());
    }
    return out;
  };
  std::vector<EventDetectorCase> out;
  try {
    auto doc = boost::json::parse(text);
    const auto& o = doc.as_object();
    EventDetectorCase c;
    c.name = std::string(o.at("name").as_string());
    if (const auto* u = o.if_contains("unit"))
      c.curve.unit = u->as_string().empty() ? 'C' : u->as_string()[0];
    c.curve.time = numbers(o, "time");
    c.curve.bt = numbers(o, "bt");
    c.curve.et = numbers(o, "et");
    c.curve.state = numbers(o, "state");
    auto ph = numbers(o, "phases");
    if (ph.size() == 4) std::copy(ph.begin(), ph.end(), c.curve.phases.begin());
    c.curve.validate();
    out.push_back(std::move(c));
  } catch (const std::exception& e) {
    throw std::runtime_error(origin + ": not an event_detector case: " + e.what());
  }
  return out;
}

// Parity: the candidate's events within `tolerance_s` seconds of the control's on every case.
inline SuiteReport run_event_detector_parity(const EventDetectorFactory& control,
                                             const EventDetectorFactory& candidate,
                                             const std::vector<EventDetectorCase>& cases,
                                             const std::vector<std::string>& intended,
                                             double tolerance_s = 2.0) {
  using namespace event_detail;
  SuiteReport report;
  report.suite = "parity";
  std::shared_ptr<nodes::EventDetector> a, b;
  guarded(report, "both nodes construct", [&] {
    a = control(boost::json::object{});
    b = candidate(boost::json::object{});
    report.add("both nodes construct", a && b);
  });
  if (!a || !b) return report;
  if (cases.empty()) report.add("golden cases present", false, "no parity cases were given");
  for (const auto& c : cases) {
    guarded(report, c.name, [&] {
      auto want = a->detect(c.curve);
      auto got = b->detect(c.curve);
      const bool ok = near(c.curve, got.charge, want.charge, tolerance_s) &&
                      near(c.curve, got.tp, want.tp, tolerance_s) &&
                      near(c.curve, got.dry_end, want.dry_end, tolerance_s) &&
                      near(c.curve, got.fcs, want.fcs, tolerance_s) &&
                      near(c.curve, got.drop, want.drop, tolerance_s);
      report.add(c.name, ok,
                 "candidate " + describe(c.curve, got) + "; control " + describe(c.curve, want));
      if (!ok && std::find(intended.begin(), intended.end(), c.name) != intended.end())
        report.checks.back().intended = true;
    });
  }
  return report;
}

}  // namespace kiln::testkit
