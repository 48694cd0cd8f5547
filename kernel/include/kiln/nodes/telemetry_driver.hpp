// kiln/nodes/telemetry_driver.hpp — the `telemetry_driver` node kind: a roaster's readings.
// The default node `sim` (plugins/telemetry_sim) is a drum-roaster heat model; `bullet_r1`
// (plugins/telemetry_bullet_r1) reads an Aillio Bullet R1 over USB, read-only. `kiln record`
// reads whichever node `nodes.telemetry_driver` selects.
#pragma once

#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

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

// Gates run without a device. They build every driver with the kind config
//   {"replay": "sim", "readings": FILE}
// where FILE holds the control's (the simulated roaster's) readings, one JSON object a line:
//   {"t": 1796290000.0, "bt": 151.2, "et": 230.4, "ror": 0, "heater": 7, "fan": 3, "drum": 6,
//    "state": 6}
// A driver for a device encodes each reading into the device's own frames (or lines, or
// registers) and reads them back through the code that parses the device — so the gate checks
// that code, and parity compares what it reads with the control. Read the file with
// read_gate_readings(); after its last reading answer driver_error::kEnded. The simulated
// roaster ignores the key. `kiln gate run telemetry_driver/NODE` keeps the file it used in the
// gates directory (telemetry_driver.readings.jsonl), for a plugin's own tests.
inline constexpr const char* kGateReadingsKey = "readings";

// The readings of a gate readings file (above). Throws std::runtime_error naming the file and
// the line that is not a reading.
inline std::vector<telemetry::Sample> read_gate_readings(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read the gate readings file " + file.string());
  std::vector<telemetry::Sample> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    try {
      const auto o = boost::json::parse(line).as_object();
      telemetry::Sample s;
      s.t = o.at("t").to_number<double>();
      s.bt = o.at("bt").to_number<double>();
      s.et = o.at("et").to_number<double>();
      s.ror = o.contains("ror") ? o.at("ror").to_number<double>() : 0.0;
      s.heater = static_cast<int>(o.at("heater").to_number<std::int64_t>());
      s.fan = static_cast<int>(o.at("fan").to_number<std::int64_t>());
      s.drum = static_cast<int>(o.at("drum").to_number<std::int64_t>());
      s.state = static_cast<int>(o.at("state").to_number<std::int64_t>());
      out.push_back(s);
    } catch (const std::exception& e) {
      throw std::runtime_error(
          file.string() + ":" + std::to_string(n) +
          ": not a reading {t, bt, et, ror, heater, fan, drum, state}: " + e.what());
    }
  }
  return out;
}

// Writes readings in that format (the gate writes the control's; a plugin may write its own).
// The file appears whole or not at all: it is written beside and renamed, so two gates run at
// once in one gates directory never read each other's half-written file.
inline void write_gate_readings(const std::filesystem::path& file,
                                const std::vector<telemetry::Sample>& readings) {
  auto partial = file;
  partial += ".partial-" + std::to_string(std::random_device{}());
  std::ofstream out(partial, std::ios::trunc);
  for (const auto& s : readings)
    out << boost::json::serialize(boost::json::object{{"t", s.t},
                                                      {"bt", s.bt},
                                                      {"et", s.et},
                                                      {"ror", s.ror},
                                                      {"heater", s.heater},
                                                      {"fan", s.fan},
                                                      {"drum", s.drum},
                                                      {"state", s.state}})
        << "\n";
  out.close();
  std::error_code ec;
  if (out) std::filesystem::rename(partial, file, ec);
  if (!out || ec) {
    std::filesystem::remove(partial, ec);
    throw std::runtime_error("cannot write the gate readings file " + file.string() +
                             " (check that its directory is writable and has space)");
  }
}

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
