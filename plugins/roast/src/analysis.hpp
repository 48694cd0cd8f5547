// Roast analysis: an Artisan .alog read into a RoastLog, events (marked in the file, or detected),
// phases, DTR, AUC and rate of rise, as Artisan's `computed` block counts them (times in seconds
// after CHARGE). See docs/architecture/roast.md.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "kiln/nodes/event_detector.hpp"

namespace kiln::roast {

struct AlogError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RoastLog {
  std::string title;
  // What Artisan records of the roast besides its title, "" / 0 when the log has none: the
  // beans, the machine (roastertype), the roast's date (roastdate) and batch number.
  std::string beans, roaster, date;
  std::int64_t batch = 0;
  char mode = 'C';  // 'C' or 'F'
  double interval = 1.0;
  std::vector<double> time;  // seconds since the recording started
  std::vector<double> et;    // environment / drum temperature
  std::vector<double> bt;    // bean temperature
  // Indices of CHARGE, DRY END, FCs, FCe, SCs, SCe, DROP, COOL END (CHARGE -1 = unset, others 0).
  std::array<int, 8> timeindex{-1, 0, 0, 0, 0, 0, 0, 0};
  std::array<double, 4> phases{150, 150, 200, 230};  // Artisan's phase temperatures
  std::vector<double> roaster_state;     // the Bullet R1's state channel, when the log has one
  boost::json::object computed;          // Artisan's own results, when present
  double weight_in = 0, weight_out = 0;  // 0: not weighed
  std::string weight_unit = "g";
  // The settings the roast was run with: Artisan's "special events", each a control (its event
  // type's name: the log's `etypes`, "Fan", "Drum", "Damper", "Heater" for a Bullet R1) set to a
  // value at a reading, in the order Artisan keeps them.
  struct Control {
    int index = 0;      // the reading it was set at
    std::string name;   // the event type's name; "Event" for an untyped event
    double value = 0;   // as Artisan shows it (its 0-100 scale)
    std::string label;  // Artisan's description ("" when none)
  };
  std::vector<Control> controls;
  // Readings Artisan recorded as missing (-1, a probe that did not answer), filled in by linear
  // interpolation between their neighbours in time.
  std::size_t filled_bt = 0, filled_et = 0;
};

// The roast's name for people: its title, unless that is empty or Artisan's default title
// ("Roaster Scope"); then the beans; else machine, batch and date ("Aillio Bullet R1 IBTS batch
// 41, Sun Apr 12 2026").
std::string display_title(const RoastLog& log);

// Parses the text of an .alog (a Python literal dict). Throws PyLiteralError for a malformed
// literal and AlogError naming the field for a well-formed one that is not a usable roast.
RoastLog parse_alog(std::string_view text);

// Seconds as a roast clock shows them: 488.2 → "8:08", -30 → "-0:30"; "-" for a time no clock
// shows (not finite, or a year and more).
std::string clock_text(double seconds);
// A number in a message: 1e+308, not 309 digits.
std::string shown(double x);

struct EventPoint {
  int index = -1;
  double time = 0;  // seconds after CHARGE
  double bt = 0;
};

struct AnalysisOptions {
  bool detect = false;      // ignore the events marked in the file and detect them
  double ror_span_s = 20;   // delta span of the rate of rise
  bool ror_series = false;  // include the RoR curve
  // With detect: the events marked in the log (a recorded session's roaster marks) take
  // precedence over the detector's; TP follows from a marked CHARGE and FCs.
  bool keep_marks = false;
};

struct Analysis {
  std::optional<EventPoint> charge, tp, dry_end, fcs, drop;
  std::string dry_end_source;  // "marked", "phases" (first BT >= phases[1] after TP), "TP"
  std::string charge_source, drop_source;  // "marked", "roaster state", "BT break"
  // "marked" (a roaster's mark, by ear), or "phases": estimated where BT reached the FCs phase
  // temperature (the detector's; roasters mark FCs by ear, a curve only suggests it).
  std::string fcs_source;
  std::optional<double> drying, maillard, development, dtr_percent, total;
  std::optional<double> auc;  // °C·min (°F·min) above the base from TP to DROP
  double auc_base = 100;
  // Green and roasted weight as the log holds them; the loss in percent of the green weight
  // (null unless both were weighed: Artisan writes 100 % for an unweighed roast).
  std::optional<double> weight_in, weight_out, weight_loss_percent;
  std::string weight_unit = "g";
  boost::json::object ror;
  std::vector<std::string> warnings;
};

// The log's channels as an event detector reads them.
nodes::RoastCurve curve_of(const RoastLog& log);

// Never throws for a parsed log: missing events make the dependent values null, with a warning.
// With options.detect the events come from `detector` (required then: std::invalid_argument
// without one); otherwise from the marks in the file, with TP and DRY END derived by Artisan's
// rules.
Analysis analyze(const RoastLog& log, const AnalysisOptions& options,
                 const nodes::EventDetector* detector = nullptr);

// {"events": {...}, "phases": {...}, "auc", "ror", ...} — the shape `kiln analyze --json` prints.
boost::json::object to_json(const Analysis& a);

}  // namespace kiln::roast
