// A drum coffee roaster as a lumped heat model (drum, air, beans, BT probe, bean water), stepped
// with explicit Euler at 0.1 s: the C++ port of model/reference_model.py, calibrated against the
// Bullet R1 fixtures (model/CALIBRATION.md). Deterministic for a seed; runs a 15-minute roast in
// milliseconds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kiln/telemetry.hpp"

namespace kiln::sim {

// R1 state codes.
inline constexpr int kStateOff = 0;
inline constexpr int kStatePreheat = 2;
inline constexpr int kStateCharge = 4;
inline constexpr int kStateRoasting = 6;
inline constexpr int kStateCooling = 8;

struct Params {
  double dt = 0.1, t_amb = 20.0, p_max = 1600.0, c_drum = 2500.0, c_air = 60.0;
  double h_da = 3.0, k_da_fan = 0.08, g_ex = 0.35, k_ex_fan = 0.14;
  double h_ab = 12.2, k_ab_fan = 0.28, h_db = 0.6, fan_sat = 5.0, k_db_drum = 0.2;
  double h_loss = 1.8, mass_ref = 0.5, mass_exp = 2.0 / 3.0;
  double cp_dry = 1400.0, cp_water = 4186.0, latent = 2.26e6, moisture0 = 0.105;
  double t_evap = 100.0, k_evap = 5.5e-05;
  double probe_w = 0.58, tau_probe = 35.3, probe_mass_exp = 1.0 / 3.0;
  double probe_empty_frac = 0.652, tau_probe_empty = 16.0, discharge_s = 20.0;
  double t_crack = 193.0, preheat_kp = 50.0, noise_bt = 0.15, noise_et = 0.25;
};

// SplitMix64 with Box–Muller normals, as the reference model draws them.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();
  double normal();

 private:
  std::uint64_t state_;
};

struct Options {
  double mass_g = 500;        // charge
  std::uint64_t seed = 1;     // measurement noise
  double interval_s = 1.0;    // a multiple of 0.1 s
  double charge_wait_s = 10;  // preheated drum, state CHARGE, before the beans go in
  double dtr = 0.20;          // DROP at this development time ratio after FCs
  double cool_s = 120;        // cooling after DROP, then the machine is OFF
  // Back-to-back roasts: OFF this long after cooling, then PREHEAT (the empty drum heated back
  // to the preheat temperature: at least kMinPreheatS, at most kMaxPreheatS), the CHARGE wait
  // and the next roast. Unset: the machine stays OFF after one roast.
  std::optional<double> between_s;
  double max_roast_s = 1200;           // DROP at the latest
  std::optional<double> preheat_temp;  // drum air at CHARGE; default by mass
};

// Setting overrides (actuation): once set, the schedule no longer drives that setting.
struct Overrides {
  std::optional<int> heater, fan, drum;
};

class Roaster {
 public:
  explicit Roaster(Options options, Params params = {});
  // The next reading, `interval_s` of model time after the one before; t counts seconds from
  // the start of the CHARGE wait (CHARGE itself is at charge_wait_s).
  telemetry::Sample next();
  Overrides& overrides() { return overrides_; }
  // Model time of the events so far (seconds from the start), for tests and reports.
  std::optional<double> charge_time() const { return charge_t_; }
  std::optional<double> fcs_time() const { return fcs_t_; }
  std::optional<double> drop_time() const { return drop_t_; }
  // OFF after its one roast (no between_s); back-to-back roasts never finish.
  bool finished() const { return phase_ == Phase::kOff && !o_.between_s; }
  int roasts_started() const { return roasts_; }

  static constexpr double kMinPreheatS = 120, kMaxPreheatS = 900;

 private:
  enum class Phase { kPreheat, kChargeWait, kRoasting, kCooling, kOff };
  struct Plant {
    double td, ta, tb, tp, water, phi;
  };
  Plant step(const Plant& s, double power, double fan, double drum) const;
  void advance();  // one dt
  void schedule(double& heater, double& fan, double& drum) const;

  Options o_;
  Params p_;
  SplitMix64 rng_;
  Plant s_{};
  Phase phase_ = Phase::kChargeWait;
  double mass_kg_;
  double preheat_;
  double p_hold_ = 0;
  long n_ = 0;        // steps since the start
  long n_phase_ = 0;  // steps since the phase began
  long n_fcs_ = -1;   // step (since CHARGE) of the first step after FCs
  long sps_;          // steps per reading
  long n_wait_;
  double heater_ = 0, fan_ = 1, drum_ = 0;           // shown settings
  int h0_, t1_, t2_, t3_;                            // default schedule
  std::optional<double> charge_t_, fcs_t_, drop_t_;  // of the latest roast
  int roasts_ = 1;
  std::vector<double> probe_history_;  // noise-free probe, one per reading (RoR)
  Overrides overrides_;
};

}  // namespace kiln::sim
