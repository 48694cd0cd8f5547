#include "predict.hpp"

#include "analysis.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

namespace kiln::roast {
namespace json = boost::json;

namespace {

// Least-squares slope of BT over the readings in (t - span, t], °C per minute.
double ror_at(const nodes::RoastCurve& c, std::size_t i, double span) {
  double st = 0, sb = 0, n = 0;
  std::size_t k = i;
  for (;;) {
    if (c.time[i] - c.time[k] > span) break;
    st += c.time[k];
    sb += c.bt[k];
    n += 1;
    if (k == 0) break;
    --k;
  }
  if (n < 3) return 0;
  const double mt = st / n, mb = sb / n;
  double num = 0, den = 0;
  for (std::size_t j = i + 1 - static_cast<std::size_t>(n); j <= i; ++j) {
    num += (c.time[j] - mt) * (c.bt[j] - mb);
    den += (c.time[j] - mt) * (c.time[j] - mt);
  }
  return den > 0 ? num / den * 60.0 : 0;
}

double round1(double v) {
  return std::round(v * 10) / 10;
}

std::string percent(double fraction) {
  return std::to_string(static_cast<int>(std::lround(fraction * 100))) + " %";
}

}  // namespace

json::object Prediction::to_json() const {
  auto opt = [](const std::optional<double>& v) {
    return v ? json::value(round1(*v)) : json::value(nullptr);
  };
  return {{"status", status},
          {"message", message},
          {"now", round1(now)},
          {"bt", round1(bt)},
          {"ror", round1(ror)},
          {"ror_slope", std::round(ror_slope * 100) / 100},
          {"fcs", json::object{{"eta", opt(fcs)},
                               {"early", opt(fcs_early)},
                               {"late", opt(fcs_late)},
                               {"marked", fcs_marked}}},
          {"drop",
           json::object{{"eta", opt(drop)}, {"early", opt(drop_early)}, {"late", opt(drop_late)}}}};
}

Prediction predict(const nodes::RoastCurve& c, int charge, int tp, const PredictOptions& o) {
  c.validate();
  Prediction p;
  if (charge < 0 || c.time.empty()) {
    p.status = "no_charge";
    p.message = "no CHARGE yet: nothing to predict";
    return p;
  }
  const std::size_t last = c.time.size() - 1;
  const double t0 = c.time[static_cast<std::size_t>(charge)];
  p.now = c.time[last] - t0;
  p.bt = c.bt[last];
  p.ror = ror_at(c, last, 30);
  // FCs already reached (marked by the roaster, else BT at its temperature): report it.
  const bool marked = o.fcs_marked > charge && o.fcs_marked <= static_cast<int>(last);
  for (std::size_t i = static_cast<std::size_t>(marked ? o.fcs_marked : std::max(tp, charge));
       (marked || tp >= 0) && i <= last; ++i)
    if (marked || c.bt[i] >= o.fcs_bt) {
      p.status = "fcs_reached";
      p.fcs_marked = marked;
      p.fcs = p.fcs_early = p.fcs_late = c.time[i] - t0;
      p.drop = *p.fcs / (1 - o.dtr);
      p.drop_early = p.drop_late = p.drop;
      p.message = std::string(marked ? "FCs marked at " : "BT reached the FCs temperature at ") +
                  clock_text(*p.fcs) + "; DROP at " + clock_text(*p.drop) + " for DTR " +
                  percent(o.dtr);
      // Past that DROP the roast runs darker every second: say so, with how far it is.
      if (p.now >= *p.drop) {
        p.status = "drop_due";
        p.message = "DROP was due at " + clock_text(*p.drop) + " for DTR " + percent(o.dtr) +
                    "; at " + clock_text(p.now) + " the DTR is " +
                    percent((p.now - *p.fcs) / p.now) + ": drop now";
      }
      return p;
    }
  if (tp < 0 || c.time[last] - c.time[static_cast<std::size_t>(tp)] < o.min_after_tp_s) {
    p.status = "too_early";
    p.message = "the beans have not turned long enough (" +
                std::to_string(static_cast<int>(o.min_after_tp_s)) +
                " s after TP) for a prediction";
    return p;
  }
  // RoR declines roughly exponentially after its peak: fit ln RoR = a + b t over the window
  // (from 30 s after TP on: the probe recovers first), then integrate BT forward.
  const double from =
      std::max(c.time[static_cast<std::size_t>(tp)] + 30, c.time[last] - o.fit_window_s);
  std::vector<double> ts, rs;
  for (std::size_t i = static_cast<std::size_t>(tp); i <= last; ++i)
    if (c.time[i] >= from) {
      const double r = ror_at(c, i, 30);
      if (r <= 0.5) continue;
      ts.push_back(c.time[i] - t0);
      rs.push_back(std::log(r));
    }
  const double n = static_cast<double>(ts.size());
  if (n < 10) {
    p.status = "too_early";
    p.message = "too few rising readings since the turning point";
    return p;
  }
  double mt = 0, mr = 0;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    mt += ts[i];
    mr += rs[i];
  }
  mt /= n;
  mr /= n;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    num += (ts[i] - mt) * (rs[i] - mr);
    den += (ts[i] - mt) * (ts[i] - mt);
  }
  const double b = den > 0 ? std::min(num / den, 0.0) : 0;  // per second; RoR does not grow
  const double a = mr - b * mt;
  double ss = 0;
  for (std::size_t i = 0; i < ts.size(); ++i) ss += std::pow(rs[i] - (a + b * ts[i]), 2);
  // The band: the fitted decline steeper or flatter by its standard error and the residuals.
  const double se_b = den > 0 ? std::sqrt(ss / std::max(1.0, n - 2) / den) : 0;
  const double spread_b = std::max(2 * se_b, 0.5 * std::abs(b));
  p.ror_slope = (std::exp(a + b * (p.now + 60)) - std::exp(a + b * p.now));
  // Integrate BT forward a second at a time, the RoR declining as fitted but keeping
  // `floor_share` of ror_floor × the RoR now; below 1 °C/min the roast is stalling.
  const double floor_r = o.ror_floor * p.ror;
  auto reach = [&](double fcs_bt, double db, double floor_share) -> std::optional<double> {
    double bt = p.bt;
    if (bt >= fcs_bt) return p.now;
    const double bb = std::min(b + db, 0.0);
    const double aa = a + b * p.now - bb * p.now;  // same RoR now, another decline
    for (double t = p.now; t < p.now + 1200; t += 1) {
      const double r = std::max(std::exp(aa + bb * t), floor_share * floor_r);
      if (r < 1) return std::nullopt;
      bt += r / 60;
      if (bt >= fcs_bt) return t + 1;
    }
    return std::nullopt;
  };
  p.fcs = reach(o.fcs_bt, 0, 1);
  if (!p.fcs) {
    p.status = "stalling";
    char text[200];
    std::snprintf(text, sizeof text,
                  "the rate of rise is %.1f °C/min: at that rate BT does not reach the FCs "
                  "temperature (%.1f °C) within 20 min",
                  p.ror, o.fcs_bt);
    p.message = text;
    return p;
  }
  // The band: a flatter decline and first crack a little cooler than expected (sooner), a
  // steeper one and a little hotter (later). Near FCs the decline hardly matters and the FCs
  // temperature's spread keeps the band open; a steeper decline that stalls leaves the late end
  // open (null) rather than inventing one.
  p.fcs_early = reach(o.fcs_bt - o.fcs_bt_spread, spread_b, 1);
  p.fcs_late = reach(o.fcs_bt + o.fcs_bt_spread, -spread_b, 0.5);
  // However well the last minute fits, minutes ahead the band stays open in proportion.
  const double to_go = *p.fcs - p.now;
  if (p.fcs_early)
    p.fcs_early = std::max(p.now, std::min(*p.fcs_early, *p.fcs - o.band_share * to_go));
  if (p.fcs_late) p.fcs_late = std::max(*p.fcs_late, *p.fcs + o.band_share * to_go);
  p.status = "ok";
  p.message = "expected from the rate of rise since the turning point (fitted over the last " +
              std::to_string(static_cast<int>(o.fit_window_s)) + " s)";
  p.drop = *p.fcs / (1 - o.dtr);
  if (p.fcs_early) p.drop_early = *p.fcs_early / (1 - o.dtr);
  if (p.fcs_late) p.drop_late = *p.fcs_late / (1 - o.dtr);
  return p;
}

}  // namespace kiln::roast
