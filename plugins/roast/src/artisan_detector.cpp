#include "artisan_detector.hpp"

#include <algorithm>
#include <cmath>

namespace kiln::roast {

namespace {

// Artisan's BT-break test over the six readings ending at i: both of the last two slopes fall
// faster than 0.67 °/sample and the mean fall exceeds min(6.4, offset + 2.5 |mean earlier slope|).
bool bt_break(const std::vector<double>& bt, std::size_t i, double offset) {
  if (i < 5) return false;
  const double pre = ((bt[i - 4] - bt[i - 5]) + (bt[i - 3] - bt[i - 4])) / 2;
  const double p1 = bt[i - 1] - bt[i - 2], p2 = bt[i] - bt[i - 1];
  return p1 < -0.67 && p2 < -0.67 &&
         std::abs((p1 + p2) / 2) > std::min(6.4, offset + 2.5 * std::abs(pre));
}

// The fall a break was found in may have begun earlier (a probe lags and the fall steepens
// gradually; a recording may start with the fall under way): walk back from `k` while the reading
// before is higher by more than 0.2 °C, to the last reading before the fall.
int start_of_fall(const std::vector<double>& bt, int k, int floor) {
  while (k > floor && bt[static_cast<std::size_t>(k) - 1] - bt[static_cast<std::size_t>(k)] > 0.2)
    --k;
  return k;
}

}  // namespace

int turning_point(const nodes::RoastCurve& c, int charge, int end) {
  const bool celsius = c.unit == 'C';
  const double lo = celsius ? 50 : 122, hi = celsius ? 150 : 302;
  int best = -1;
  for (int i = charge; i <= end; ++i)
    if (best < 0 || c.bt[static_cast<std::size_t>(i)] <= c.bt[static_cast<std::size_t>(best)])
      best = i;
  // Artisan arms TP once four readings after it are no lower: a curve still falling (a live
  // recording just after CHARGE, or cooling readings) has no TP yet.
  const auto b = static_cast<std::size_t>(best < 0 ? 0 : best);
  if (best < 0 || b + 4 >= c.bt.size()) return -1;
  for (std::size_t k = b + 1; k <= b + 4; ++k)
    if (c.bt[k] < c.bt[b]) return -1;
  if (best > charge && c.bt[b] > lo && c.bt[b] < hi) return best;
  return -1;
}

int first_at_or_above(const nodes::RoastCurve& c, int from, int end, double threshold) {
  for (int i = std::max(from, 0); i <= end; ++i)
    if (c.bt[static_cast<std::size_t>(i)] >= threshold) return i;
  return -1;
}

nodes::RoastEvents ArtisanDetector::detect(const nodes::RoastCurve& c) const {
  c.validate();
  nodes::RoastEvents e;
  const std::size_t n = c.bt.size();
  if (n == 0) return e;
  const bool celsius = c.unit == 'C';
  auto deg = [&](double v) { return celsius ? v : v * 9.0 / 5.0 + 32.0; };
  // Slopes are tested per reading in the curve's unit; Artisan's thresholds are °C per reading.
  const double scale = celsius ? 1.0 : 9.0 / 5.0;
  const auto& bt = c.bt;

  if (!c.state.empty()) {
    // The roaster reports its own state: 6 while roasting; leaving it (cooling, or an aborted
    // roast) is DROP.
    // A recording that starts while roasting has its CHARGE at the first reading.
    for (std::size_t i = 0; i < n && e.charge < 0; ++i)
      if (c.state[i] == 6 && (i == 0 || c.state[i - 1] < 6)) e.charge = static_cast<int>(i);
    for (std::size_t i = e.charge < 0 ? n : static_cast<std::size_t>(e.charge) + 1;
         i < n && e.drop < 0; ++i)
      if (c.state[i] != 6 && c.state[i - 1] == 6) e.drop = static_cast<int>(i);
    if (e.charge >= 0) e.charge_source = "roaster state";
    if (e.drop >= 0) e.drop_source = "roaster state";
  }
  std::vector<double> scaled;
  const std::vector<double>* b = &bt;
  if (!celsius) {
    scaled.reserve(n);
    for (double v : bt) scaled.push_back(v / scale);
    b = &scaled;
  }
  // A roaster that reports its state knows when it roasts: with a state channel, CHARGE and DROP
  // come from it alone (cooling readings fall like a charge, but the roaster says "cooling").
  const bool has_state = !c.state.empty();
  if (e.charge < 0 && !has_state) {
    // Artisan's BT break: armed above 77 °C. The window's last two slopes are the fall, so the
    // beans went in after reading i - 2 at the latest: CHARGE is the last reading before the fall
    // (its BT the charge BT).
    for (std::size_t i = 5; i < n && e.charge < 0; ++i)
      if (bt[i - 5] > deg(77) && bt_break(*b, i, 0.5)) {
        e.charge = start_of_fall(*b, static_cast<int>(i) - 2, 0);
        e.charge_source = "BT break";
      }
    // A fall that steepens gradually never passes the ratio test: then the first two readings
    // in a row that fall faster than 0.67 °C/reading (2 °C over the window) mark it.
    for (std::size_t i = 5; i < n && e.charge < 0; ++i)
      if (bt[i - 5] > deg(77) && (*b)[i - 1] - (*b)[i - 2] < -0.67 &&
          (*b)[i] - (*b)[i - 1] < -0.67 && (*b)[i - 5] - (*b)[i] > 2.0) {
        e.charge = start_of_fall(*b, static_cast<int>(i) - 2, 0);
        e.charge_source = "BT fall";
      }
  }
  if (e.charge < 0) return e;
  if (e.charge_source != "roaster state") {
    // The probe lags the beans: CHARGE is probe_lag_s before the start of the fall.
    const double at = c.time[static_cast<std::size_t>(e.charge)] - probe_lag_s_;
    while (e.charge > 0 && c.time[static_cast<std::size_t>(e.charge) - 1] >= at - 1e-9) --e.charge;
  }
  const auto charge = static_cast<std::size_t>(e.charge);
  if (e.drop < 0 && !has_state) {
    // DROP: armed above 160 °C and 420 s after CHARGE; the last reading before the fall, as for
    // CHARGE (the probe may lag the real drop by a reading or two where no state is recorded).
    for (std::size_t i = charge + 5; i < n && e.drop < 0; ++i)
      if (bt[i - 5] > deg(160) && c.time[i] - c.time[charge] > 420 && bt_break(*b, i, 0.2)) {
        e.drop = start_of_fall(*b, static_cast<int>(i) - 2, e.charge + 1);
        e.drop_source = "BT break";
      }
    // A probe that leaves the beans slowly falls too gradually for the ratio test: then the first
    // two readings in a row below −0.67 °C with 2 °C lost over the window, as for CHARGE.
    for (std::size_t i = charge + 5; i < n && e.drop < 0; ++i)
      if (bt[i - 5] > deg(160) && c.time[i] - c.time[charge] > 420 &&
          (*b)[i - 1] - (*b)[i - 2] < -0.67 && (*b)[i] - (*b)[i - 1] < -0.67 &&
          (*b)[i - 5] - (*b)[i] > 2.0) {
        e.drop = start_of_fall(*b, static_cast<int>(i) - 2, e.charge + 1);
        e.drop_source = "BT fall";
      }
  }
  const int last = static_cast<int>(n) - 1;
  // TP: the search ends at DROP (or the last reading). FCs is predicted from the phase
  // temperature (roasters mark it by ear): the first reading after TP at phases[2].
  e.tp = turning_point(c, e.charge, e.drop > 0 ? e.drop : last);
  if (e.tp < 0) return e;
  e.fcs = first_at_or_above(c, e.tp, e.drop > 0 ? e.drop : last, c.phases[2]);
  if (e.fcs >= 0) e.fcs_source = "phases";
  e.dry_end =
      first_at_or_above(c, e.tp, e.fcs >= 0 ? e.fcs : (e.drop > 0 ? e.drop : last), c.phases[1]);
  if (e.dry_end >= 0) e.dry_end_source = e.dry_end == e.tp ? "TP" : "phases";
  if (e.fcs >= 0 && e.drop >= 0 && e.fcs >= e.drop) e.fcs = -1;
  return e;
}

}  // namespace kiln::roast
