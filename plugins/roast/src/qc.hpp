// Quality control of one roast: the analysis (roast.analyze's output) against targets with
// tolerances, as a roast profile holds them → pass / warn / fail with a reason per check.
// See docs/architecture/roast.md.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

namespace kiln::roast {

// Targets: {"<metric>": {"target": X, "tolerance": T} | {"min": A, "max": B},
// optionally "warn_margin": M (default: half the tolerance, or a tenth of max - min)}.
// Metrics: tp_time, tp_bt, dry_time, fcs_time, fcs_bt, drop_time, drop_bt, development_time,
// dtr, auc, ror_fcs, ror_drop. Unknown metrics are an error (std::invalid_argument naming it).
// A value inside its range passes; outside by at most the warn margin warns; further fails.
// Missing CHARGE, FCs or DROP fails; a RoR crash or flick warns.
boost::json::object run_qc(const boost::json::object& analysis, const boost::json::object& targets);

// Ends the reason of a check that rests on an FCs the detector estimated (not marked).
inline constexpr std::string_view kFcsEstimatedNote =
    " (FCs estimated from the temperature, not marked)";

// The targets as a roaster reads them, one line each: "FCs at 7:00–8:00", "DTR 18.0–22.0 %";
// `unit` ('C' or 'F') is the targets' temperature unit. Throws as run_qc does on a bad target.
std::vector<std::string> describe_targets(const boost::json::object& targets, char unit);

// The targets used when a session has no profile: DTR 15-25 %, FCs 6-10 min, DROP 7.5-13 min.
boost::json::object default_targets();

}  // namespace kiln::roast
