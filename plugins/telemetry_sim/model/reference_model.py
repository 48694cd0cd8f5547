#!/usr/bin/env python3
"""Reference heat model for kiln's simulated roaster telemetry driver (telemetry_sim).

A lumped, deterministic model of a small induction-heated drum roaster (Aillio Bullet R1 style),
written to be ported line by line to C++. Plain Python 3 (stdlib only; numpy is not needed).
CALIBRATION.md (next to this file) gives the parameter values, what they mean, the results table
and how they were compared with the real Artisan logs in shared/fixtures/artisan-alog/.

Model (explicit Euler, dt = 0.1 s; all temperatures in degC, heat flows in W):

  state: Td drum, Ta drum air (= the ET channel), Tb bean mass, Tp BT probe, W water in the beans (kg)
  inputs: heater level h (0..9), fan f (1..12), drum speed d (1..9), charge mass M (kg)
  phi = fraction of the charge that is in the drum (0 before CHARGE, 1 while ROASTING,
        ramping 1 -> 0 over discharge_s after DROP)

  P     = h / 9 * p_max                       (PREHEAT / CHARGE-wait: hold controller, below)
  r     = (M / mass_ref) ** mass_exp           (bean contact/convection area scales as M^(2/3))
  fc    = min(f, fan_sat)                      (convective gains saturate; exhaust keeps growing)
  H_da  = h_da * (1 + k_da_fan * (fc - 1))     drum -> air
  G_ex  = g_ex * (1 + k_ex_fan * (f - 1))      air -> exhaust (fresh air comes in at t_amb)
  H_ab  = h_ab * r * (1 + k_ab_fan * (fc - 1)) air -> beans (convection)
  H_db  = h_db * r * (1 - k_db_drum * (9 - d) / 8)   drum -> beans (contact; d clamped to 1..9)
  E     = k_evap * W * max(0, Tb - t_evap)      evaporation, kg/s
  Cb    = M * (1 - moisture0) * cp_dry + W * cp_water

  c_drum dTd/dt = P - H_da (Td - Ta) - phi H_db (Td - Tb) - h_loss (Td - t_amb)
  c_air  dTa/dt = H_da (Td - Ta) - phi H_ab (Ta - Tb) - G_ex (Ta - t_amb)
  Cb     dTb/dt = H_db (Td - Tb) + H_ab (Ta - Tb) - latent E          (only while phi > 0)
         dW/dt  = -E                                                   (only while phi > 0)
  probe target  = phi (w Tb + (1 - w) Ta) + (1 - phi) (t_amb + probe_empty_frac (Ta - t_amb))
         dTp/dt = (target - Tp) * (phi / tau_b + (1 - phi) / tau_probe_empty),
         tau_b  = tau_probe * (M / mass_ref) ** -probe_mass_exp   (probe deeper in a bigger pile)

  All derivatives are computed from the old state, then all states are updated together.
  FCs is the moment Tb crosses t_crack (interpolated linearly inside the 0.1 s step).

Measurement: BT = Tp + noise_bt * N(0,1), ET = Ta + noise_et * N(0,1), one BT draw then one ET
draw per emitted sample, from the SplitMix64 + Box-Muller generator defined below.

Usage:
  reference_model.py                      results table, masses 350/500/750 x seeds 1..3
  reference_model.py table [--masses 350,500,750 --seeds 1,2,3]
  reference_model.py csv --mass 500 --seed 1 [--interval 1] [--preheat cold]
                         [--dtr 0.2 | --dev-s 120 | --drop-bt 205] > roast.csv
  reference_model.py fixtures [file.alog ...]   drive the model with real logs' own schedules
  reference_model.py golden               check values for the C++ port
"""

import argparse
import ast
import glob
import math
import os
import sys

# R1 state codes (frame 1 byte 29).
STATE_OFF = 0
STATE_PREHEAT = 2
STATE_CHARGE = 4
STATE_ROASTING = 6
STATE_COOLING = 8

# Calibrated parameters. See CALIBRATION.md for what each means and where the value comes from.
DEFAULT_PARAMS = {
    "dt": 0.1,  # s, Euler step
    "t_amb": 20.0,  # degC, ambient air and green beans
    "p_max": 1600.0,  # W at heater level 9
    "c_drum": 2500.0,  # J/K, drum + heated structure
    "c_air": 60.0,  # J/K, drum air (sets ET's few-second lag)
    "h_da": 3.0,  # W/K, drum -> air at fan 1
    "k_da_fan": 0.08,  # per fan step
    "g_ex": 0.35,  # W/K, exhaust (mass flow * cp) at fan 1
    "k_ex_fan": 0.14,  # per fan step
    "h_ab": 12.2,  # W/K, air -> beans at fan 1 and mass_ref
    "k_ab_fan": 0.28,  # per fan step
    "h_db": 0.6,  # W/K, drum -> beans (contact) at drum speed 9 and mass_ref
    "fan_sat": 5.0,  # convective gains (k_da_fan, k_ab_fan) stop growing above this fan level
    "k_db_drum": 0.2,  # contact conductance lost going from drum speed 9 down to 1
    "h_loss": 1.8,  # W/K, drum/body -> room
    "mass_ref": 0.5,  # kg
    "mass_exp": 2.0 / 3.0,  # conductance ~ (M / mass_ref) ** mass_exp
    "cp_dry": 1400.0,  # J/(kg K), dry bean matter
    "cp_water": 4186.0,  # J/(kg K)
    "latent": 2.26e6,  # J/kg
    "moisture0": 0.105,  # water mass fraction of the green charge
    "t_evap": 100.0,  # degC, evaporation starts above this bean temperature
    "k_evap": 5.5e-05,  # 1/(K s): E = k_evap * W * (Tb - t_evap)
    "probe_w": 0.58,  # probe target weight on Tb (rest on Ta) with beans in the drum
    "tau_probe": 35.3,  # s, probe lag with beans in the drum, at mass_ref
    "probe_mass_exp": 1.0 / 3.0,  # tau_probe scales as (M / mass_ref) ** -probe_mass_exp (immersion)
    "probe_empty_frac": 0.652,  # empty drum: probe target = t_amb + frac * (Ta - t_amb)
    "tau_probe_empty": 16.0,  # s, probe lag in the empty drum
    "discharge_s": 20.0,  # s, beans leave the drum linearly over this time after DROP
    "t_crack": 193.0,  # degC, bean-mass temperature of first crack start (FCs)
    "preheat_kp": 50.0,  # W/K, hold controller gain on Ta during PREHEAT / CHARGE-wait
    "noise_bt": 0.15,  # degC, sigma of BT measurement noise
    "noise_et": 0.25,  # degC, sigma of ET measurement noise
}

# ----------------------------------------------------------------------------------------------
# PRNG: SplitMix64 (Steele, Lea, Flood 2014) + Box-Muller, cosine branch only.
#   state += 0x9E3779B97F4A7C15; z = state;
#   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
#   return z ^ (z >> 31)                                  (all uint64, wrapping)
# normal(): a = next(), b = next();  u1 = ((a >> 11) + 1) * 2^-53  in (0, 1]
#           u2 = (b >> 11) * 2^-53  in [0, 1);  z = sqrt(-2 ln u1) * cos(2 pi u2)
# The initial state is the seed itself (uint64).
# ----------------------------------------------------------------------------------------------
MASK64 = (1 << 64) - 1
TWO_M53 = 1.0 / 9007199254740992.0  # 2^-53


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def normal(self):
        a = self.next_u64()
        b = self.next_u64()
        u1 = ((a >> 11) + 1) * TWO_M53
        u2 = (b >> 11) * TWO_M53
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


# ----------------------------------------------------------------------------------------------
# Physics
# ----------------------------------------------------------------------------------------------
class PlantState:
    """Td, Ta, Tb, Tp in degC; water in kg; phi = fraction of the charge in the drum."""

    def __init__(self, td, ta, tb, tp, water, phi):
        self.td = td
        self.ta = ta
        self.tb = tb
        self.tp = tp
        self.water = water
        self.phi = phi


def clamp(x, lo, hi):
    return lo if x < lo else (hi if x > hi else x)


def iround(x):
    """Round half up (std::floor(x + 0.5) in C++; Python's round() rounds half to even)."""
    return int(math.floor(x + 0.5))


def air_conductances(p, fan):
    """(H_da, G_ex) in W/K for a fan level (clamped to 1..12)."""
    f = clamp(fan, 1.0, 12.0)
    fc = min(f, p["fan_sat"])
    h_da = p["h_da"] * (1.0 + p["k_da_fan"] * (fc - 1.0))
    g_ex = p["g_ex"] * (1.0 + p["k_ex_fan"] * (f - 1.0))
    return h_da, g_ex


def bean_conductances(p, mass_kg, fan, drum):
    """(H_ab, H_db) in W/K for the whole charge."""
    fc = min(clamp(fan, 1.0, 12.0), p["fan_sat"])
    d = clamp(drum, 1.0, 9.0)
    r = (mass_kg / p["mass_ref"]) ** p["mass_exp"]
    h_ab = p["h_ab"] * r * (1.0 + p["k_ab_fan"] * (fc - 1.0))
    h_db = p["h_db"] * r * (1.0 - p["k_db_drum"] * (9.0 - d) / 8.0)
    return h_ab, h_db


def euler_step(p, s, mass_kg, power, fan, drum):
    """One explicit Euler step of length p['dt']; returns a new PlantState."""
    dt = p["dt"]
    t_amb = p["t_amb"]
    phi = s.phi
    h_da, g_ex = air_conductances(p, fan)
    h_ab, h_db = bean_conductances(p, mass_kg, fan, drum)

    q_da = h_da * (s.td - s.ta)
    q_db = h_db * (s.td - s.tb)
    q_ab = h_ab * (s.ta - s.tb)
    q_ex = g_ex * (s.ta - t_amb)
    q_loss = p["h_loss"] * (s.td - t_amb)

    d_td = (power - q_da - phi * q_db - q_loss) / p["c_drum"]
    d_ta = (q_da - phi * q_ab - q_ex) / p["c_air"]

    if phi > 0.0:
        evap = p["k_evap"] * s.water * max(0.0, s.tb - p["t_evap"])
        c_b = mass_kg * (1.0 - p["moisture0"]) * p["cp_dry"] + s.water * p["cp_water"]
        d_tb = (q_db + q_ab - p["latent"] * evap) / c_b
        d_w = -evap
    else:
        d_tb = 0.0
        d_w = 0.0

    w = p["probe_w"]
    target_beans = w * s.tb + (1.0 - w) * s.ta
    target_empty = t_amb + p["probe_empty_frac"] * (s.ta - t_amb)
    target = phi * target_beans + (1.0 - phi) * target_empty
    tau_beans = p["tau_probe"] * (mass_kg / p["mass_ref"]) ** (-p["probe_mass_exp"])
    rate = phi / tau_beans + (1.0 - phi) / p["tau_probe_empty"]
    d_tp = (target - s.tp) * rate

    return PlantState(s.td + dt * d_td, s.ta + dt * d_ta, s.tb + dt * d_tb, s.tp + dt * d_tp,
                      s.water + dt * d_w, phi)


def preheat_steady_state(p, ta_target):
    """Empty drum, fan 1, held so that Ta == ta_target: returns (PlantState, hold power W)."""
    t_amb = p["t_amb"]
    h_da, g_ex = air_conductances(p, 1.0)
    td = (ta_target * (h_da + g_ex) - g_ex * t_amb) / h_da
    tp = t_amb + p["probe_empty_frac"] * (ta_target - t_amb)
    hold = p["h_loss"] * (td - t_amb) + g_ex * (ta_target - t_amb)
    return PlantState(td, ta_target, t_amb, tp, 0.0, 0.0), hold


def hold_power(p, s, ta_target, p_hold):
    """PREHEAT / CHARGE-wait controller: feed-forward hold power plus P action on Ta."""
    return clamp(p_hold + p["preheat_kp"] * (ta_target - s.ta), 0.0, p["p_max"])


# ----------------------------------------------------------------------------------------------
# Control schedules
# ----------------------------------------------------------------------------------------------
# A schedule is a list of steps (anchor, t, heater, fan, drum); anchor "charge" = seconds after
# CHARGE, "fcs" = seconds after the FCs event (ignored until FCs happens). At any time the step
# in force is the last one (in list order) whose anchor time has been reached.

# Default schedule, calibrated at anchor masses and interpolated linearly in mass between them
# (clamped outside 350..1000 g): preheat ET target, heater at charge (H0) and the times of its
# step-downs (s after CHARGE). Template (default_schedule): H0 fan 1 drum 9 at CHARGE, fan 2 at
# 90 s, H0-1 fan 3 at t1, H0-2 at t2, H0-3 at t3, H0-4 fan 4 at FCs, H0-5 at FCs + 45 s.
DEFAULT_SCHEDULE_ANCHORS = [
    # mass g, preheat degC, H0, t(H0-1), t(H0-2), t(H0-3)
    (350.0, 235.0, 7.0, 60.0, 120.0, 420.0),
    (500.0, 260.0, 7.0, 150.0, 330.0, 450.0),
    (750.0, 290.0, 7.0, 360.0, 540.0, 560.0),
    (1000.0, 295.0, 7.0, 600.0, 700.0, 760.0),
]


def _interp_anchor(mass_g, col):
    a = DEFAULT_SCHEDULE_ANCHORS
    if mass_g <= a[0][0]:
        return a[0][col]
    for i in range(1, len(a)):
        if mass_g <= a[i][0]:
            m0, m1 = a[i - 1][0], a[i][0]
            x = (mass_g - m0) / (m1 - m0)
            return a[i - 1][col] + x * (a[i][col] - a[i - 1][col])
    return a[-1][col]


def default_preheat(mass_g):
    return _interp_anchor(mass_g, 1)


def default_schedule(mass_g):
    h0 = float(iround(_interp_anchor(mass_g, 2)))
    t1 = float(iround(_interp_anchor(mass_g, 3)))
    t2 = float(iround(_interp_anchor(mass_g, 4)))
    t3 = float(iround(_interp_anchor(mass_g, 5)))
    return [
        ("charge", 0.0, h0, 1.0, 9.0),
        ("charge", 90.0, h0, 2.0, 9.0),
        ("charge", t1, h0 - 1.0, 3.0, 9.0),
        ("charge", t2, h0 - 2.0, 3.0, 9.0),
        ("charge", t3, h0 - 3.0, 3.0, 9.0),
        ("fcs", 0.0, max(h0 - 4.0, 0.0), 4.0, 9.0),
        ("fcs", 45.0, max(h0 - 5.0, 0.0), 4.0, 9.0),
    ]


def schedule_inputs(schedule, n, n_fcs, dt):
    """(heater, fan, drum) in force at step n (time n*dt after CHARGE); n_fcs = step of FCs or None."""
    cur = (0.0, 1.0, 9.0)
    for anchor, t, h, f, d in schedule:
        start = iround(t / dt)
        if anchor == "fcs":
            if n_fcs is None:
                continue
            start += n_fcs
        if n >= start:
            cur = (h, f, d)
    return cur


# ----------------------------------------------------------------------------------------------
# A whole roast
# ----------------------------------------------------------------------------------------------
def simulate_roast(mass_g=500.0, seed=1, interval=1.0, schedule=None, preheat_temp=None,
                   preheat_mode="steady", charge_wait_s=10.0, dtr=0.20, dev_s=None, drop_bt=None,
                   drop_time=None, max_roast_s=1200.0, cool_s=120.0, cool_fan=7.0,
                   cool_drum=1.0, params=None):
    """Run PREHEAT (optional) -> CHARGE-wait -> ROASTING -> COOLING.

    DROP happens at the first step where (in this order of precedence) t >= drop_time, or the
    noise-free probe >= drop_bt, or (after FCs) t >= t_FCs + dev_s, or (after FCs, dev_s None)
    t >= t_FCs / (1 - dtr); t >= max_roast_s always drops. Returns a dict: 'samples' (list of dicts, see below), 'events' (name -> t),
    'mass_g', 'seed', 'preheat_temp', 'final_moisture' (water fraction of the charge left at DROP).
    Sample keys: t, bt, et, heater, fan, drum, state (what the driver emits) and, for analysis
    only, bt_true, et_true, tb, td.
    """
    p = dict(DEFAULT_PARAMS)
    if params:
        p.update(params)
    dt = p["dt"]
    sps = iround(interval / dt)  # steps per emitted sample
    if sps < 1 or abs(sps * dt - interval) > 1e-9:
        raise ValueError("interval must be a positive multiple of dt")
    if schedule is None:
        schedule = default_schedule(mass_g)
    if preheat_temp is None:
        preheat_temp = default_preheat(mass_g)
    mass_kg = mass_g / 1000.0
    rng = SplitMix64(seed)
    samples = []
    events = {}

    def emit(n, s, heater, fan, drum, state):
        bt_noise = p["noise_bt"] * rng.normal()
        et_noise = p["noise_et"] * rng.normal()
        samples.append({"t": n * dt, "bt": s.tp + bt_noise, "et": s.ta + et_noise,
                        "heater": heater, "fan": fan, "drum": drum, "state": state,
                        "bt_true": s.tp, "et_true": s.ta, "tb": s.tb, "td": s.td})

    # --- PREHEAT and CHARGE-wait (pre-charge steps, emitted with t < 0) ------------------------
    steady, p_hold = preheat_steady_state(p, preheat_temp)
    pre = []  # (state PlantState, heater level shown, fan, drum, R1 state) per pre-charge step
    if preheat_mode == "cold":
        s = PlantState(p["t_amb"], p["t_amb"], p["t_amb"], p["t_amb"], 0.0, 0.0)
        limit = iround(3600.0 / dt)
        for _ in range(limit):
            if abs(s.ta - preheat_temp) < 0.5 and abs(s.td - steady.td) < 1.0:
                break
            power = hold_power(p, s, preheat_temp, p_hold)
            pre.append((s, iround(power / p["p_max"] * 9.0), 1.0, 0.0, STATE_PREHEAT, power))
            s = euler_step(p, s, mass_kg, power, 1.0, 0.0)
    elif preheat_mode == "steady":
        s = steady
    else:
        raise ValueError("preheat_mode must be 'steady' or 'cold'")
    n_wait = iround(charge_wait_s / dt)
    n_wait += (sps - (len(pre) + n_wait) % sps) % sps  # pre-charge steps a multiple of sps
    for _ in range(n_wait):
        power = hold_power(p, s, preheat_temp, p_hold)
        pre.append((s, iround(power / p["p_max"] * 9.0), 1.0, 0.0, STATE_CHARGE, power))
        s = euler_step(p, s, mass_kg, power, 1.0, 0.0)
    n0 = -len(pre)
    for i, (ps, h, f, d, st, _) in enumerate(pre):
        if i % sps == 0:
            emit(n0 + i, ps, h, f, d, st)

    # --- CHARGE ----------------------------------------------------------------------------------
    s = PlantState(s.td, s.ta, p["t_amb"], s.tp, mass_kg * p["moisture0"], 1.0)
    events["CHARGE"] = 0.0
    n = 0
    n_fcs = None
    n_drop = None
    n_drop_target = None if drop_time is None else iround(drop_time / dt)
    n_max = iround(max_roast_s / dt)
    n_cool = iround(cool_s / dt)
    n_discharge = p["discharge_s"] / dt
    final_moisture = None
    while True:
        # DROP decision at the start of the step
        if n_drop is None:
            drop = n >= n_max
            if n_drop_target is not None:
                drop = drop or n >= n_drop_target
            elif drop_bt is not None:
                drop = drop or s.tp >= drop_bt
            elif n_fcs is not None and dev_s is not None:
                drop = drop or n * dt >= events["FCs"] + dev_s
            elif n_fcs is not None:
                drop = drop or n * dt >= events["FCs"] / (1.0 - dtr)
            if drop:
                n_drop = n
                events["DROP"] = n * dt
                final_moisture = s.water / mass_kg
        if n_drop is None:
            state = STATE_ROASTING
            heater, fan, drum = schedule_inputs(schedule, n, n_fcs, dt)
        else:
            if n - n_drop >= n_cool:
                events["END"] = n * dt
                if n % sps == 0:
                    emit(n, s, 0.0, cool_fan, cool_drum, STATE_COOLING)
                break
            state = STATE_COOLING
            heater, fan, drum = 0.0, cool_fan, cool_drum
            s.phi = max(0.0, 1.0 - (n - n_drop) / n_discharge)
        if n % sps == 0:
            emit(n, s, heater, fan, drum, state)
        power = heater / 9.0 * p["p_max"]
        s_new = euler_step(p, s, mass_kg, power, fan, drum)
        if n_fcs is None and n_drop is None and s.tb < p["t_crack"] <= s_new.tb:
            frac = (p["t_crack"] - s.tb) / (s_new.tb - s.tb)
            events["FCs"] = (n + frac) * dt
            n_fcs = n + 1  # "fcs"-anchored schedule steps count from the first step after it
        s = s_new
        n += 1
    return {"samples": samples, "events": events, "mass_g": mass_g, "seed": seed,
            "preheat_temp": preheat_temp, "final_moisture": final_moisture}


# ----------------------------------------------------------------------------------------------
# Analysis helpers (not part of the driver)
# ----------------------------------------------------------------------------------------------
def sample_at(samples, t):
    """First sample with time >= t."""
    for smp in samples:
        if smp["t"] >= t - 1e-9:
            return smp
    return samples[-1]


def ror(samples, t, key="bt_true", span=30.0):
    """Centered difference of a channel over +-span/2 s, degC/min."""
    a = sample_at(samples, t - span / 2.0)
    b = sample_at(samples, t + span / 2.0)
    return (b[key] - a[key]) / (b["t"] - a["t"]) * 60.0 if b["t"] > a["t"] else 0.0


def roast_metrics(res):
    """TP / FCs / DROP numbers the way a consumer of the stream would read them (noisy BT)."""
    smp = res["samples"]
    ev = res["events"]
    t_fcs = ev.get("FCs")
    t_drop = ev.get("DROP")
    t_end = t_fcs if t_fcs is not None else t_drop
    roast = [x for x in smp if 0.0 <= x["t"] <= t_end + 1e-9]
    tp = min(roast, key=lambda x: x["bt"])
    tp_true = min(roast, key=lambda x: x["bt_true"])
    charge = sample_at(smp, 0.0)
    m = {"charge_bt": charge["bt"], "charge_et": charge["et"], "tp_time": tp["t"], "tp_bt": tp["bt"],
         "tp_time_true": tp_true["t"], "tp_bt_true": tp_true["bt_true"],
         "fcs_time": t_fcs, "drop_time": t_drop, "ror_150": ror(smp, 150.0)}
    if t_fcs is not None:
        fs = sample_at(smp, t_fcs)
        m.update(fcs_bt=fs["bt"], fcs_et=fs["et"], fcs_tb=fs["tb"], ror_fcs=ror(smp, t_fcs))
    if t_drop is not None:
        ds = sample_at(smp, t_drop)
        m.update(drop_bt=ds["bt"], drop_et=ds["et"])
        if t_fcs is not None:
            m["dtr"] = (t_drop - t_fcs) / t_drop
        m["bt_drop_plus_45"] = sample_at(smp, t_drop + 45.0)["bt"]
    m["final_moisture"] = res["final_moisture"]
    return m


def fmt_mmss(t):
    if t is None:
        return "  --  "
    return "%d:%04.1f" % (int(t // 60), t - 60 * int(t // 60))


def results_table(masses, seeds, out=sys.stdout):
    out.write("mass  seed preheat chargeBT  TP time  TP BT  (noise-free) FCs time FCs BT  (Tb)   DROP time "
              "DROP BT DTR%  RoR@150s RoR@FCs water@DROP\n")
    for mass in masses:
        for seed in seeds:
            res = simulate_roast(mass_g=mass, seed=seed)
            m = roast_metrics(res)
            out.write("%4d  %4d  %5.1f   %6.1f   %7s  %6.1f (%3.0f s %5.1f) %7s  %6.1f (%5.1f) %7s   %6.1f  %4.1f  %6.1f  %6.1f   %5.3f\n" % (
                mass, seed, res["preheat_temp"], m["charge_bt"], fmt_mmss(m["tp_time"]), m["tp_bt"],
                m["tp_time_true"], m["tp_bt_true"],
                fmt_mmss(m.get("fcs_time")), m.get("fcs_bt", float("nan")), m.get("fcs_tb", float("nan")),
                fmt_mmss(m.get("drop_time")), m.get("drop_bt", float("nan")), 100.0 * m.get("dtr", float("nan")),
                m["ror_150"], m.get("ror_fcs", float("nan")), m["final_moisture"]))


def write_csv(res, out=sys.stdout):
    for name, t in sorted(res["events"].items(), key=lambda kv: kv[1]):
        out.write("# event %s %.2f\n" % (name, t))
    out.write("t,bt,et,heater,fan,drum,state,bt_true,et_true,tb,td\n")
    for x in res["samples"]:
        out.write("%.1f,%.2f,%.2f,%g,%g,%g,%d,%.3f,%.3f,%.3f,%.3f\n" % (
            x["t"], x["bt"], x["et"], x["heater"], x["fan"], x["drum"], x["state"],
            x["bt_true"], x["et_true"], x["tb"], x["td"]))


# ----------------------------------------------------------------------------------------------
# Fixture comparison: drive the model with a real log's own heater/fan/drum and charge weight
# ----------------------------------------------------------------------------------------------
def load_alog(path):
    with open(path) as fh:
        return ast.literal_eval(fh.read())


def alog_schedule(d):
    """Per-sample (charge, t, heater, fan, drum) steps from the R1 extra channels.

    Artisan's R1 device 84 carries heater (extratemp1[0]) and fan (extratemp2[0]), device 85 the
    drum speed (extratemp2[1]); the values are level * 10.
    """
    tx = d["timex"]
    ci = max(d["timeindex"][0], 0)
    heater = d["extratemp1"][0]
    fan = d["extratemp2"][0]
    drum = d["extratemp2"][1]
    steps = []
    prev = None
    for i in range(ci, len(tx)):
        v = (heater[i] / 10.0, max(fan[i] / 10.0, 1.0), max(drum[i] / 10.0, 1.0))
        if v != prev:
            steps.append(("charge", round(tx[i] - tx[ci], 1)) + v)
            prev = v
    return steps


def compare_fixture(path, params=None):
    d = load_alog(path)
    c = d["computed"]
    ci = max(d["timeindex"][0], 0)
    tx = d["timex"]
    mass_g = float(d["weight"][0])
    unit = d["weight"][2]
    if unit == "Kg":
        mass_g *= 1000.0
    elif unit == "lb":
        mass_g *= 453.59237
    et_pre = d["temp1"][ci - 1] if ci > 0 else -1.0
    preheat = et_pre if et_pre > 100.0 else 235.0  # no pre-charge ET in the log: assume 235
    res = simulate_roast(mass_g=mass_g, seed=1, schedule=alog_schedule(d), preheat_temp=preheat,
                         drop_time=c["DROP_time"], params=params)
    m = roast_metrics(res)
    smp = res["samples"]
    # BT/ET errors against the log, 1 s samples, CHARGE..DROP (ET from 150 s: the R1 resets its
    # DT reading to 25 degC at CHARGE and it takes ~2 min to recover)
    e_bt, e_et = [], []
    for i in range(ci, len(tx)):
        t = tx[i] - tx[ci]
        if t > c["DROP_time"]:
            break
        x = sample_at(smp, t)
        e_bt.append(x["bt_true"] - d["temp2"][i])
        if t >= 150.0:
            e_et.append(x["et_true"] - d["temp1"][i])
    fcs_log = c.get("FCs_time")
    at_log_fcs = sample_at(smp, fcs_log) if fcs_log else None
    return {"file": os.path.basename(path), "mass_g": mass_g, "preheat": preheat, "log": c, "model": m,
            "bt_at_log_fcs": at_log_fcs["bt_true"] if at_log_fcs else None,
            "tb_at_log_fcs": at_log_fcs["tb"] if at_log_fcs else None,
            "rmse_bt": math.sqrt(sum(e * e for e in e_bt) / len(e_bt)),
            "bias_bt": sum(e_bt) / len(e_bt),
            "rmse_et": math.sqrt(sum(e * e for e in e_et) / len(e_et)) if e_et else float("nan")}


def fixtures_table(paths, out=sys.stdout):
    out.write("log                          preheat | chargeBT log/model | TP time log/model | TP BT log/model |"
              " FCs time log/model | FCs BT log/model | BT@logFCs Tb@logFCs | DROP BT log/model | RMSE BT  ET\n")
    for path in paths:
        r = compare_fixture(path)
        c, m = r["log"], r["model"]
        out.write("%-28s %5.1f  |  %5.1f / %5.1f     |   %4.0f / %4.0f     |  %5.1f / %5.1f  |"
                  "    %4.0f / %5.1f    |  %5.1f / %5.1f   |  %5.1f    %5.1f   |   %5.1f / %5.1f   | %4.1f  %4.1f\n" % (
                      r["file"][:28], r["preheat"], c["CHARGE_BT"], m["charge_bt"], c["TP_time"], m["tp_time"],
                      c["TP_BT"], m["tp_bt"], c["FCs_time"], m["fcs_time"] if m["fcs_time"] else float("nan"),
                      c["FCs_BT"], m.get("fcs_bt", float("nan")), r["bt_at_log_fcs"], r["tb_at_log_fcs"],
                      c["DROP_BT"], m.get("drop_bt", float("nan")), r["rmse_bt"], r["rmse_et"]))


def golden(out=sys.stdout):
    """Values a port must reproduce (bit for bit with the same libm and no FMA contraction)."""
    r = SplitMix64(1)
    out.write("splitmix64(seed=1) first outputs: %s\n" % " ".join("0x%016x" % r.next_u64() for _ in range(3)))
    r = SplitMix64(1)
    out.write("normal(seed=1) first values: %s\n" % " ".join(repr(r.normal()) for _ in range(4)))
    res = simulate_roast(mass_g=500.0, seed=1)
    out.write("default roast 500 g seed 1: events %s\n" % {k: repr(v) for k, v in res["events"].items()})
    for t in (-10.0, 0.0, 1.0, 60.0, 300.0, 476.0, 595.0, 714.0):
        x = sample_at(res["samples"], t)
        out.write("  t=%6.1f bt=%r et=%r heater=%g fan=%g drum=%g state=%d\n" % (
            x["t"], x["bt"], x["et"], x["heater"], x["fan"], x["drum"], x["state"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    t = sub.add_parser("table", help="results table")
    t.add_argument("--masses", default="350,500,750")
    t.add_argument("--seeds", default="1,2,3")
    c = sub.add_parser("csv", help="dump one roast as CSV")
    c.add_argument("--mass", type=float, default=500.0)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--interval", type=float, default=1.0)
    c.add_argument("--preheat", choices=["steady", "cold"], default="steady")
    c.add_argument("--preheat-temp", type=float, default=None)
    c.add_argument("--dtr", type=float, default=0.20)
    c.add_argument("--dev-s", type=float, default=None, help="development time after FCs (overrides --dtr)")
    c.add_argument("--drop-bt", type=float, default=None)
    sub.add_parser("golden", help="check values for a C++ port (PRNG and one roast, full precision)")
    f = sub.add_parser("fixtures", help="compare with real .alog files")
    here = os.path.dirname(os.path.abspath(__file__))
    default_dir = os.path.normpath(os.path.join(here, "../../../../shared/fixtures/artisan-alog"))
    f.add_argument("paths", nargs="*")
    a = ap.parse_args(argv)
    if a.cmd in (None, "table"):
        masses = [float(x) for x in (a.masses if a.cmd else "350,500,750").split(",")]
        seeds = [int(x) for x in (a.seeds if a.cmd else "1,2,3").split(",")]
        results_table(masses, seeds)
    elif a.cmd == "csv":
        res = simulate_roast(mass_g=a.mass, seed=a.seed, interval=a.interval, preheat_mode=a.preheat,
                             preheat_temp=a.preheat_temp, dtr=a.dtr, dev_s=a.dev_s, drop_bt=a.drop_bt)
        write_csv(res)
    elif a.cmd == "golden":
        golden()
    elif a.cmd == "fixtures":
        paths = a.paths or sorted(glob.glob(os.path.join(default_dir, "*.alog")))
        fixtures_table(paths)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into head
        sys.exit(0)
