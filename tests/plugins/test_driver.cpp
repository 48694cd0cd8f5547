// test_driver: telemetry drivers of a made-up device that speaks text lines ("BT,ET,HEATER,...")
// — the shape of an out-of-tree driver for a serial roaster. At a gate each encodes the control's
// readings (kind config {"replay": "sim", "readings": FILE}) into its lines and parses them back,
// as it would parse the device. Nodes:
//   lines          parses correctly: passes the gate;
//   lines_swapped  mixes up BT and ET in its parser: fails parity;
//   lines_intended parses correctly but declares an intended difference: refused by the gate.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "kiln/kiln.hpp"
#include "kiln/nodes/telemetry_driver.hpp"

namespace {
namespace json = boost::json;
using namespace kiln;

class LinesDriver final : public nodes::TelemetryDriver {
 public:
  LinesDriver(std::vector<std::string> lines, bool swapped)
      : lines_(std::move(lines)), swapped_(swapped) {}
  Result<nodes::DriverInfo, ToolError> open() override {
    open_ = true;
    next_ = 0;
    nodes::DriverInfo info;
    info.model = "test lines device";
    info.serial = "lines-1";
    info.paced_by_device = false;
    return info;
  }
  Result<telemetry::Sample, ToolError> read() override {
    if (!open_) return tool_error(nodes::driver_error::kNotOpen, "read before open");
    if (next_ >= lines_.size()) return tool_error(nodes::driver_error::kEnded, "no more lines");
    // The device's line: "t,bt,et,ror,heater,fan,drum,state".
    telemetry::Sample s;
    if (std::sscanf(lines_[next_++].c_str(), "%lf,%lf,%lf,%lf,%d,%d,%d,%d", &s.t, &s.bt, &s.et,
                    &s.ror, &s.heater, &s.fan, &s.drum, &s.state) != 8)
      return tool_error(nodes::driver_error::kBadFrame, "a line that is not a reading", true);
    if (swapped_) std::swap(s.bt, s.et);
    return s;
  }
  std::optional<ToolError> command(const nodes::DriverCommand&) override {
    return ToolError{nodes::driver_error::kReadOnly, "read-only", false, {}};
  }
  void close() override { open_ = false; }

 private:
  std::vector<std::string> lines_;
  bool swapped_;
  std::size_t next_ = 0;
  bool open_ = false;
};

// The device's lines: at a gate the control's readings encoded; else the lines of
// plugin_config.test_driver.file (a captured session of the device).
std::vector<std::string> lines_of(const NodeContext& ctx) {
  std::vector<std::string> out;
  const auto* file = ctx.kind_config.if_contains(nodes::kGateReadingsKey);
  if (!file || !file->is_string()) {
    const auto* captured = ctx.plugin_config.if_contains("file");
    if (!captured || !captured->is_string() || captured->as_string().empty())
      throw std::invalid_argument("plugin_config.test_driver.file names no file of lines");
    std::ifstream in(std::string(captured->as_string()));
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  for (const auto& s : nodes::read_gate_readings(std::string(file->as_string()))) {
    char line[160];
    std::snprintf(line, sizeof line, "%.3f,%.3f,%.3f,%.3f,%d,%d,%d,%d", s.t, s.bt, s.et, s.ror,
                  s.heater, s.fan, s.drum, s.state);
    out.emplace_back(line);
  }
  return out;
}

Manifest manifest() {
  Manifest m;
  m.name = "test_driver";
  m.version = "0.0.1";
  m.description = "line-protocol telemetry drivers for gate tests";
  m.license = "Apache-2.0";
  m.config_keys = {{"file", "string", "", "a file of the device's lines, read in order"}};
  for (const char* name : {"lines", "lines_swapped", "lines_intended"}) {
    const bool swapped = std::string(name) == "lines_swapped";
    auto decl = NodeDecl::make<nodes::TelemetryDriver>(
        name, "a text-line device", [swapped](const NodeContext& ctx) {
          return std::make_shared<LinesDriver>(lines_of(ctx), swapped);
        });
    if (std::string(name) == "lines_intended")
      decl.intended_differences = {"the candidate reads what the control reads"};
    m.nodes.push_back(std::move(decl));
  }
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
