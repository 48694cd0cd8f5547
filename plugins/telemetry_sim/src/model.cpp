#include "model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace kiln::sim {

namespace {

double clamp(double x, double lo, double hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

long iround(double x) {
  return static_cast<long>(std::floor(x + 0.5));
}

// (mass g, preheat °C, heater at CHARGE, t1, t2, t3): the default schedule's anchors.
constexpr double kAnchors[4][6] = {{350, 235, 7, 60, 120, 420},
                                   {500, 260, 7, 150, 330, 450},
                                   {750, 290, 7, 360, 540, 560},
                                   {1000, 295, 7, 600, 700, 760}};

double anchor(double mass_g, int col) {
  if (mass_g <= kAnchors[0][0]) return kAnchors[0][col];
  for (int i = 1; i < 4; ++i)
    if (mass_g <= kAnchors[i][0]) {
      const double x = (mass_g - kAnchors[i - 1][0]) / (kAnchors[i][0] - kAnchors[i - 1][0]);
      return kAnchors[i - 1][col] + x * (kAnchors[i][col] - kAnchors[i - 1][col]);
    }
  return kAnchors[3][col];
}

}  // namespace

std::uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ull;
  std::uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SplitMix64::normal() {
  const std::uint64_t a = next(), b = next();
  constexpr double kTwoM53 = 1.0 / 9007199254740992.0;
  const double u1 = static_cast<double>((a >> 11) + 1) * kTwoM53;
  const double u2 = static_cast<double>(b >> 11) * kTwoM53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

Roaster::Roaster(Options options, Params params)
    : o_(options), p_(params), rng_(options.seed), mass_kg_(options.mass_g / 1000.0) {
  if (!(o_.mass_g >= 100 && o_.mass_g <= 1500))
    throw std::invalid_argument("charge mass " + std::to_string(o_.mass_g) +
                                " g is outside 100-1500 g");
  if (o_.between_s && !(*o_.between_s >= 0 && *o_.between_s <= 86400))
    throw std::invalid_argument("the time between roasts must be 0-86400 s, not " +
                                std::to_string(*o_.between_s));
  sps_ = iround(o_.interval_s / p_.dt);
  if (sps_ < 1 || std::abs(static_cast<double>(sps_) * p_.dt - o_.interval_s) > 1e-9)
    throw std::invalid_argument("the interval must be a positive multiple of 0.1 s, not " +
                                std::to_string(o_.interval_s));
  preheat_ = o_.preheat_temp.value_or(anchor(o_.mass_g, 1));
  h0_ = static_cast<int>(iround(anchor(o_.mass_g, 2)));
  t1_ = static_cast<int>(iround(anchor(o_.mass_g, 3)));
  t2_ = static_cast<int>(iround(anchor(o_.mass_g, 4)));
  t3_ = static_cast<int>(iround(anchor(o_.mass_g, 5)));
  // The empty drum held at the preheat temperature, fan 1 (exact steady state).
  const double h_da = p_.h_da, g_ex = p_.g_ex;
  s_.ta = preheat_;
  s_.td = (preheat_ * (h_da + g_ex) - g_ex * p_.t_amb) / h_da;
  s_.tb = p_.t_amb;
  s_.tp = p_.t_amb + p_.probe_empty_frac * (preheat_ - p_.t_amb);
  s_.water = 0;
  s_.phi = 0;
  p_hold_ = p_.h_loss * (s_.td - p_.t_amb) + g_ex * (preheat_ - p_.t_amb);
  n_wait_ = iround(o_.charge_wait_s / p_.dt);
  n_wait_ += (sps_ - n_wait_ % sps_) % sps_;
}

Roaster::Plant Roaster::step(const Plant& s, double power, double fan, double drum) const {
  const double dt = p_.dt, t_amb = p_.t_amb, phi = s.phi;
  const double f = clamp(fan, 1.0, 12.0);
  const double fc = std::min(f, p_.fan_sat);
  const double d = clamp(drum, 1.0, 9.0);
  const double h_da = p_.h_da * (1.0 + p_.k_da_fan * (fc - 1.0));
  const double g_ex = p_.g_ex * (1.0 + p_.k_ex_fan * (f - 1.0));
  const double r = std::pow(mass_kg_ / p_.mass_ref, p_.mass_exp);
  const double h_ab = p_.h_ab * r * (1.0 + p_.k_ab_fan * (fc - 1.0));
  const double h_db = p_.h_db * r * (1.0 - p_.k_db_drum * (9.0 - d) / 8.0);

  const double q_da = h_da * (s.td - s.ta);
  const double q_db = h_db * (s.td - s.tb);
  const double q_ab = h_ab * (s.ta - s.tb);
  const double q_ex = g_ex * (s.ta - t_amb);
  const double q_loss = p_.h_loss * (s.td - t_amb);
  const double d_td = (power - q_da - phi * q_db - q_loss) / p_.c_drum;
  const double d_ta = (q_da - phi * q_ab - q_ex) / p_.c_air;
  double d_tb = 0, d_w = 0;
  if (phi > 0.0) {
    const double evap = p_.k_evap * s.water * std::max(0.0, s.tb - p_.t_evap);
    const double c_b = mass_kg_ * (1.0 - p_.moisture0) * p_.cp_dry + s.water * p_.cp_water;
    d_tb = (q_db + q_ab - p_.latent * evap) / c_b;
    d_w = -evap;
  }
  const double w = p_.probe_w;
  const double target_beans = w * s.tb + (1.0 - w) * s.ta;
  const double target_empty = t_amb + p_.probe_empty_frac * (s.ta - t_amb);
  const double target = phi * target_beans + (1.0 - phi) * target_empty;
  const double tau_beans = p_.tau_probe * std::pow(mass_kg_ / p_.mass_ref, -p_.probe_mass_exp);
  const double rate = phi / tau_beans + (1.0 - phi) / p_.tau_probe_empty;
  const double d_tp = (target - s.tp) * rate;
  return Plant{s.td + dt * d_td, s.ta + dt * d_ta,   s.tb + dt * d_tb,
               s.tp + dt * d_tp, s.water + dt * d_w, phi};
}

void Roaster::schedule(double& heater, double& fan, double& drum) const {
  struct Entry {
    bool after_fcs;
    double t, h, f, d;
  };
  const double h0 = h0_;
  const Entry entries[] = {{false, 0, h0, 1, 9},
                           {false, 90, h0, 2, 9},
                           {false, static_cast<double>(t1_), h0 - 1, 3, 9},
                           {false, static_cast<double>(t2_), h0 - 2, 3, 9},
                           {false, static_cast<double>(t3_), h0 - 3, 3, 9},
                           {true, 0, std::max(h0 - 4, 0.0), 4, 9},
                           {true, 45, std::max(h0 - 5, 0.0), 4, 9}};
  heater = 0;
  fan = 1;
  drum = 9;
  for (const auto& e : entries) {
    long start = iround(e.t / p_.dt);
    if (e.after_fcs) {
      if (n_fcs_ < 0) continue;
      start += n_fcs_;
    }
    if (n_phase_ >= start) {
      heater = e.h;
      fan = e.f;
      drum = e.d;
    }
  }
}

// The start of a step: phase changes and the settings in force.
void Roaster::advance() {
  if (phase_ == Phase::kChargeWait && n_phase_ >= n_wait_) {
    s_ = Plant{s_.td, s_.ta, p_.t_amb, s_.tp, mass_kg_ * p_.moisture0, 1.0};
    phase_ = Phase::kRoasting;
    n_phase_ = 0;
    charge_t_ = static_cast<double>(n_) * p_.dt;
  }
  if (phase_ == Phase::kRoasting) {
    const double since = static_cast<double>(n_phase_) * p_.dt;
    const bool drop = n_phase_ >= iround(o_.max_roast_s / p_.dt) ||
                      (fcs_t_ && since >= (*fcs_t_ - *charge_t_) / (1.0 - o_.dtr));
    if (drop) {
      phase_ = Phase::kCooling;
      n_phase_ = 0;
      drop_t_ = static_cast<double>(n_) * p_.dt;
    }
  }
  if (phase_ == Phase::kCooling && n_phase_ >= iround(o_.cool_s / p_.dt)) {
    phase_ = Phase::kOff;
    n_phase_ = 0;
  }
  if (phase_ == Phase::kOff && o_.between_s && n_phase_ >= iround(*o_.between_s / p_.dt)) {
    phase_ = Phase::kPreheat;
    n_phase_ = 0;
    charge_t_.reset();
    fcs_t_.reset();
    drop_t_.reset();
    n_fcs_ = -1;
    ++roasts_;
  }
  // Preheated once the air holds the preheat temperature (the drum may still be short of it, as
  // between real batches); the CHARGE wait starts on a reading, so CHARGE falls on one.
  if (phase_ == Phase::kPreheat && n_ % sps_ == 0 &&
      ((n_phase_ >= iround(kMinPreheatS / p_.dt) && std::abs(s_.ta - preheat_) <= 2.0) ||
       n_phase_ >= iround(kMaxPreheatS / p_.dt))) {
    phase_ = Phase::kChargeWait;
    n_phase_ = 0;
  }
  switch (phase_) {
    case Phase::kPreheat:
    case Phase::kChargeWait: {
      const double power = clamp(p_hold_ + p_.preheat_kp * (preheat_ - s_.ta), 0.0, p_.p_max);
      heater_ = static_cast<double>(iround(power / p_.p_max * 9.0));
      fan_ = 1;
      drum_ = 0;
      break;
    }
    case Phase::kRoasting:
      schedule(heater_, fan_, drum_);
      break;
    case Phase::kCooling:
      heater_ = 0;
      fan_ = 7;
      drum_ = 1;
      s_.phi = std::max(0.0, 1.0 - static_cast<double>(n_phase_) / (p_.discharge_s / p_.dt));
      break;
    case Phase::kOff:
      heater_ = 0;
      fan_ = 0;
      drum_ = 0;
      s_.phi = 0;
      break;
  }
  if (phase_ == Phase::kRoasting || phase_ == Phase::kCooling || phase_ == Phase::kOff) {
    if (overrides_.heater) heater_ = *overrides_.heater;
    if (overrides_.fan) fan_ = *overrides_.fan;
    if (overrides_.drum) drum_ = *overrides_.drum;
  }
}

telemetry::Sample Roaster::next() {
  advance();
  telemetry::Sample out;
  out.t = static_cast<double>(n_) * p_.dt;
  out.bt = s_.tp + p_.noise_bt * rng_.normal();
  out.et = s_.ta + p_.noise_et * rng_.normal();
  out.heater = static_cast<int>(heater_);
  out.fan = static_cast<int>(fan_);
  out.drum = static_cast<int>(drum_);
  out.state = phase_ == Phase::kPreheat      ? kStatePreheat
              : phase_ == Phase::kChargeWait ? kStateCharge
              : phase_ == Phase::kRoasting   ? kStateRoasting
              : phase_ == Phase::kCooling    ? kStateCooling
                                             : kStateOff;
  // The roaster's own RoR: BT change over the last 30 s, °C/min (noise-free probe); over what
  // there is in the first 30 s of a recording, rather than a 0 a chart would take for a reading.
  probe_history_.push_back(s_.tp);
  const std::size_t back = static_cast<std::size_t>(iround(30.0 / o_.interval_s));
  if (probe_history_.size() > back) {
    out.ror = (probe_history_.back() - probe_history_[probe_history_.size() - 1 - back]) * 2.0;
    if (probe_history_.size() > 4 * back)
      probe_history_.erase(probe_history_.begin(),
                           probe_history_.begin() + static_cast<std::ptrdiff_t>(2 * back));
  } else if (probe_history_.size() > 1) {
    const double span_s = static_cast<double>(probe_history_.size() - 1) * o_.interval_s;
    out.ror = (probe_history_.back() - probe_history_.front()) / span_s * 60.0;
  }
  for (long k = 0; k < sps_; ++k) {
    if (k > 0) advance();
    double power = 0;
    if (phase_ == Phase::kChargeWait || phase_ == Phase::kPreheat)
      power = clamp(p_hold_ + p_.preheat_kp * (preheat_ - s_.ta), 0.0, p_.p_max);
    else if (phase_ == Phase::kRoasting || phase_ == Phase::kOff)
      power = heater_ / 9.0 * p_.p_max;
    Plant next = step(s_, power, fan_, drum_);
    if (phase_ == Phase::kRoasting && !fcs_t_ && s_.tb < p_.t_crack && p_.t_crack <= next.tb) {
      const double frac = (p_.t_crack - s_.tb) / (next.tb - s_.tb);
      fcs_t_ = (static_cast<double>(n_) + frac) * p_.dt;
      n_fcs_ = n_phase_ + 1;
    }
    s_ = next;
    ++n_;
    ++n_phase_;
  }
  return out;
}

}  // namespace kiln::sim
