// kiln/nodes/telemetry_driver.hpp — the `telemetry_driver` node kind: a roaster's readings.
// The default node `sim` (plugins/telemetry_sim) is a drum-roaster heat model; `bullet_r1`
// (plugins/telemetry_bullet_r1) reads an Aillio Bullet R1 over USB, read-only. `kiln record`
// reads whichever node `nodes.telemetry_driver` selects.
#pragma once

#include <optional>
#include <string>

#include <boost/json.hpp>

#include "kiln/result.hpp"
#include "kiln/telemetry.hpp"
#include "kiln/tool.hpp"

namespace kiln::nodes {

// Error codes of the kind, besides error_code::kInvalidInput and error_code::kInternal.
namespace driver_error {
inline constexpr const char* kNotFound = "device_not_found";
inline constexpr const char* kNoPermission = "no_permission";  // message names the udev fix
inline constexpr const char* kBusy = "device_busy";            // another program holds it
inline constexpr const char* kDisconnected = "disconnected";   // retryable: reconnect
inline constexpr const char* kBadFrame = "bad_frame";          // retryable: one reading lost
inline constexpr const char* kReadOnly = "read_only";          // commands are impossible
inline constexpr const char* kNotOpen = "not_open";
inline constexpr const char* kEnded = "ended";  // a replay (or a finished simulation) is over
}  // namespace driver_error

struct DriverInfo {
  std::string model;            // e.g. "kiln heat model", "Aillio Bullet R1"
  std::string serial;           // the device's serial, or a stable id
  std::string firmware;         // or the model version
  double interval_s = 1.0;      // seconds between readings
  bool paced_by_device = true;  // read() waits for the next reading; false: the caller paces
  bool can_actuate = false;     // command() may change the machine
  boost::json::object to_json() const {
    return {{"model", model},
            {"serial", serial},
            {"firmware", firmware},
            {"interval_s", interval_s},
            {"paced_by_device", paced_by_device},
            {"can_actuate", can_actuate}};
  }
};

// A setting change: heater 0..9, fan 1..12, drum 1..9 (Bullet R1 ranges).
struct DriverCommand {
  std::string setting;  // "heater" | "fan" | "drum"
  int value = 0;
};

// Gates build every driver with the kind config {"replay": "sim"}: a hardware driver then reads
// the simulated roaster encoded into its own frames, so contract and parity need no device.
class TelemetryDriver {
 public:
  static constexpr const char* kKind = "telemetry_driver";
  static constexpr const char* kDefaultNode = "sim";
  static constexpr unsigned kContractVersion = 1;

  virtual ~TelemetryDriver() = default;

  // Connects (or starts); errors by driver_error code with a message that says what to do.
  virtual Result<DriverInfo, ToolError> open() = 0;
  // The next reading: Sample::t is device time in seconds since the Unix epoch, strictly
  // increasing. A device-paced driver waits for it; otherwise it is computed at once.
  virtual Result<telemetry::Sample, ToolError> read() = 0;
  // Changes a setting; a read-only driver answers driver_error::kReadOnly, always. Only the
  // kernel's approval-gated command path calls this (docs/architecture/telemetry.md).
  virtual std::optional<ToolError> command(const DriverCommand& c) = 0;
  virtual void close() = 0;
};

}  // namespace kiln::nodes
