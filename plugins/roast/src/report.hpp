// A roast report: one self-contained HTML page (inline SVG chart of BT, ET and rate of rise with
// the events and phases, the phase table, QC results) that opens offline, and a one-paragraph
// summary for people and for speech. See docs/architecture/roast.md.
#pragma once

#include <string>

#include <boost/json.hpp>

namespace kiln::roast {

struct ReportInput {
  std::string title;             // e.g. the session id
  boost::json::object session;   // telemetry session (device, charge_t, ...) or {}
  boost::json::object curve;     // {"time": [...], "bt": [...], "et": [...]} (seconds)
  boost::json::object analysis;  // roast.analyze output, with ror.series
  boost::json::object qc;        // roast.qc output or {}
  // The profile the roast aimed at, drawn behind it and compared: {"name", "version", "title",
  // "profile": body} (telemetry.session's "reference"), or {}.
  boost::json::object reference;
};

// Throws std::invalid_argument naming the field when the curve (times not finite or going
// back, spanning over a day, a temperature beyond ±1000 °C) or an event of the analysis (not
// {time, bt} numbers within those bounds) cannot be shown.
void check_report_input(const ReportInput& in);
// Throws std::invalid_argument naming the field when the curve, analysis or reference is
// unusable (check_report_input first).
std::string render_report_html(const ReportInput& in);
// The report's numbers as JSON ("format": "kiln.roast-report/1"): the session, events (FCs with
// "estimated"), phases, AUC, RoR at FCs and DROP with crash/flick, QC verdict and checks, the
// comparison with the profile (deltas in seconds and °C; null without one) and the summary text.
boost::json::object report_summary(const ReportInput& in);
// "Roast s-r1-… is done. First crack at 8 minutes 2 seconds at 195 degrees. ..." (of an open
// session: "... is still under way; this is its report so far. ...")
std::string spoken_summary(const ReportInput& in);

// The same summary written for the report page: times as m:ss, °C, %.
std::string written_summary(const ReportInput& in);

}  // namespace kiln::roast
