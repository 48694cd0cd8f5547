// Roast profiles: what a roaster aims a roast at — a reference curve with its events, phase
// temperatures and the QC targets derived from it — made from an Artisan .alog (or a profile's
// JSON, e.g. one exported, edited and imported again) and written back as an .alog that Artisan
// opens. The kernel stores them (versions, archive; ProfileStore); this is their content.
// See docs/architecture/roast.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

namespace kiln::roast {

// The format tag of a profile body.
inline constexpr const char* kProfileFormat = "kiln.roast-profile/1";

// A profile from the text of an .alog: the curve, the events marked in the file (TP and DRY END
// by Artisan's rules), phases, AUC, and targets around the reference roast (FCs and DROP time
// ±30 s, DROP BT ±3 °C, DTR ±2 points). Throws PyLiteralError / AlogError.
boost::json::object profile_from_alog(std::string_view text);

// A profile from its JSON (e.g. `kiln profiles export --format json`, edited): the curve and
// event indices are checked by writing the .alog and reading it back; events, phases and AUC are
// computed again; the targets given are kept (checked: std::invalid_argument names a bad one),
// or derived when absent. Throws AlogError naming what is wrong.
boost::json::object profile_from_json(const boost::json::object& profile);

// The profile as an Artisan .alog (a Python literal dict: timex, temp1 = ET, temp2 = BT,
// timeindex, phases, mode, title, weight, computed). Throws AlogError for a body without a
// usable curve.
std::string alog_of_profile(const boost::json::object& profile);

// A profile's curve as a roast is compared with it: seconds after its CHARGE, to its DROP, BT and
// ET in °C (a °F profile converted), and where its FCs and DROP were. Throws AlogError for a body
// without a usable curve or CHARGE.
struct ReferenceCurve {
  std::vector<double> time, bt, et;
  std::optional<double> fcs_time, fcs_bt, drop_time, drop_bt;
};
ReferenceCurve reference_curve(const boost::json::object& profile);

// Python literal text of a JSON value (str with repr's escapes, floats that stay floats,
// True/False/None), as `ast.literal_eval` and Artisan read it.
std::string python_literal(const boost::json::value& v);

}  // namespace kiln::roast
