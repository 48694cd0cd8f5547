// kiln/nodes/event_detector.hpp — the `event_detector` node kind: a roast curve in, the roast
// events (CHARGE, TP, DRY END, FCs, DROP) out as reading indices.
// The default node `artisan` (plugins/roast) follows Artisan's detection rules (DOMAIN §1). The
// tool `roast.analyze` with detect=true, `kiln analyze --detect` and the live sessionizer all
// detect through whichever node `nodes.event_detector` selects.
#pragma once

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kiln::nodes {

// One roast recording as the detector sees it. Temperatures in the curve's unit.
struct RoastCurve {
  std::vector<double> time;   // seconds, increasing (any origin)
  std::vector<double> bt;     // bean temperature, one per time
  std::vector<double> et;     // environment temperature, one per time (may be empty)
  std::vector<double> state;  // the roaster's own state channel (Bullet R1: 6 roasting, 8
                              // cooling, ...), one per time, or empty when not recorded
  char unit = 'C';            // 'C' or 'F'
  // Artisan's phase temperatures, in the curve's unit like every temperature here: drying end,
  // drying end (upper), FCs, SCs. The defaults are °C; a caller with a curve in °F sets them in
  // °F (Artisan's 302, 302, 392, 446).
  std::array<double, 4> phases{150, 150, 200, 230};

  // Throws std::invalid_argument naming the channel when the sizes disagree or time decreases.
  void validate() const {
    if (!et.empty() && et.size() != time.size())
      throw std::invalid_argument("roast curve: et has " + std::to_string(et.size()) +
                                  " readings, time has " + std::to_string(time.size()));
    if (bt.size() != time.size())
      throw std::invalid_argument("roast curve: bt has " + std::to_string(bt.size()) +
                                  " readings, time has " + std::to_string(time.size()));
    if (!state.empty() && state.size() != time.size())
      throw std::invalid_argument("roast curve: state has " + std::to_string(state.size()) +
                                  " readings, time has " + std::to_string(time.size()));
    if (unit != 'C' && unit != 'F')
      throw std::invalid_argument(std::string("roast curve: unit must be 'C' or 'F', not '") +
                                  unit + "'");
    for (std::size_t i = 1; i < time.size(); ++i)
      if (time[i] < time[i - 1])
        throw std::invalid_argument("roast curve: time decreases at reading " + std::to_string(i));
  }
};

// Detected events as indices into the curve; -1 = not detected. `*_source` says how (for
// example "roaster state", "BT break", "phases", "TP").
struct RoastEvents {
  int charge = -1, tp = -1, dry_end = -1, fcs = -1, drop = -1;
  std::string charge_source, drop_source, dry_end_source, fcs_source;

  // Throws std::logic_error naming the first event that is neither -1 nor a reading of `curve`:
  // the kernel checks every node's answer so before it reads the curve at an event.
  void validate(const RoastCurve& curve) const {
    const auto n = static_cast<long long>(curve.time.size());
    const std::pair<const char*, int> events[] = {
        {"CHARGE", charge}, {"TP", tp}, {"DRY END", dry_end}, {"FCs", fcs}, {"DROP", drop}};
    for (const auto& [name, i] : events)
      if (i < -1 || i >= n)
        throw std::logic_error(std::string("the event_detector node returned ") + name +
                               " at reading " + std::to_string(i) + ", not a reading of the " +
                               std::to_string(n) + "-reading curve (0 to " + std::to_string(n - 1) +
                               ", or -1 for none): the node is broken; `kiln gate run "
                               "event_detector/NODE` shows what its contract finds");
  }
};

class EventDetector {
 public:
  static constexpr const char* kKind = "event_detector";
  static constexpr const char* kDefaultNode = "artisan";
  static constexpr unsigned kContractVersion = 1;

  virtual ~EventDetector() = default;

  // Detects the events of a (possibly still growing) recording. Deterministic; never throws for
  // a curve that passes validate() (an event it cannot find is -1); throws std::invalid_argument
  // for one that does not. Events are ordered: CHARGE < TP <= DRY END <= FCs < DROP where set.
  // Must be cheap enough to call after every batch of a live recording (O(n)).
  virtual RoastEvents detect(const RoastCurve& curve) const = 0;
};

}  // namespace kiln::nodes
