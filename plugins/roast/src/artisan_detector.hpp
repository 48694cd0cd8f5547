// The `event_detector/artisan` node: Artisan's detection rules (DOMAIN §1) — CHARGE and DROP from
// the roaster's state channel when recorded (then only from it), else from a BT break; TP as the
// lowest BT after CHARGE; DRY END and FCs from the phase temperatures. See
// docs/architecture/roast.md.
#pragma once

#include "kiln/nodes/event_detector.hpp"

namespace kiln::roast {

class ArtisanDetector final : public nodes::EventDetector {
 public:
  // `probe_lag_s`: how long the BT probe's fall lags the beans going in (kind config
  // event_detector.probe_lag_s); a CHARGE found from BT alone is moved back by it.
  explicit ArtisanDetector(double probe_lag_s = kDefaultProbeLag) : probe_lag_s_(probe_lag_s) {}
  nodes::RoastEvents detect(const nodes::RoastCurve& curve) const override;

  // Measured on the Bullet R1 fixtures: the probe starts falling 2–5 s after the roaster reports
  // CHARGE (docs/architecture/roast.md).
  static constexpr double kDefaultProbeLag = 3.0;

 private:
  double probe_lag_s_;
};

// The rules the detector and the analysis of marked events share.
// TP: the last reading of the lowest BT in [charge, end], accepted only between 50 and 150 °C
// (122–302 °F) and once four readings after it are no lower; -1 when there is none.
int turning_point(const nodes::RoastCurve& curve, int charge, int end);
// The first reading in [from, end] whose BT reaches `threshold`; -1 when none does.
int first_at_or_above(const nodes::RoastCurve& curve, int from, int end, double threshold);

}  // namespace kiln::roast
