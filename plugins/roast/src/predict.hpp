// Predictive assist (read-only): from a live curve, when first crack (FCs) and DROP are expected,
// with an uncertainty band. The rate of rise of the last minute is fitted as an exponential
// decline (ln RoR linear in time) and BT is integrated forward until it reaches the FCs
// temperature; the band integrates a decline flatter and steeper by max(2 standard errors, 50 %)
// to a first crack cooler and hotter by fcs_bt_spread (so it stays open just before FCs); a
// steeper decline that stalls leaves its late end open.
// DROP follows from FCs and the target development ratio. See docs/architecture/roast.md.
#pragma once

#include <optional>
#include <string>

#include <boost/json.hpp>

#include "kiln/nodes/event_detector.hpp"

namespace kiln::roast {

struct PredictOptions {
  double fcs_bt = 195;  // BT at which first crack is expected (the profile's, or curve_phases)
  // The reading at which a roaster marked first crack (heard it), or -1: FCs is then that, not
  // where BT reaches fcs_bt.
  int fcs_marked = -1;
  double dtr = 0.20;  // target development time ratio for the DROP estimate
  // RoR points fitted, ending now. 60 s and the band's ±50 % of the decline rate were chosen on
  // the ten fixtures (240 s: predictions 57-95 s early; 120 s: 2/10 within 60 s) — in-sample.
  double fit_window_s = 60;
  // How far first crack's BT strays from fcs_bt, roast to roast (°C): the band reaches it.
  double fcs_bt_spread = 3;
  // The rate of rise the forward integration keeps at least, as a share of the RoR now (the
  // band's late end keeps half of that): a decline fitted over one minute, extrapolated, made a
  // roast whose RoR levels off (the heat still on) "stall" at 12-19 °C/min minutes before FCs.
  double ror_floor = 0.65;
  // Seconds after TP before any prediction: sooner, the RoR has hardly begun to decline and the
  // fit ran 2-4 min early with a band a few seconds wide.
  double min_after_tp_s = 120;
  // The band reaches at least this share of the time still to go to FCs, on either side.
  // These three were chosen on the ten fixtures and on simulated roasts (in-sample):
  // parity_roast_analysis and unit_telemetry_sim say how they do.
  double band_share = 0.25;
};

struct Prediction {
  // "ok" | "fcs_reached" | "drop_due" (past the DROP for the DTR aimed at) | "too_early" |
  // "no_charge" | "stalling"
  std::string status;
  std::string message;
  double now = 0;  // seconds after CHARGE of the last reading
  double bt = 0, ror = 0;
  std::optional<double> fcs, fcs_early, fcs_late;  // seconds after CHARGE
  bool fcs_marked = false;  // FCs is behind and the roaster marked it (not BT at its temperature)
  std::optional<double> drop, drop_early, drop_late;
  double ror_slope = 0;  // °C/min per minute, of the fitted RoR
  boost::json::object to_json() const;
};

// `charge`, `tp`: indices from the event detector (tp may be -1 early in a roast).
Prediction predict(const nodes::RoastCurve& curve, int charge, int tp, const PredictOptions& o);

}  // namespace kiln::roast
