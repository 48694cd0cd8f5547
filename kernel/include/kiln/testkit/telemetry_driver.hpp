// kiln/testkit/telemetry_driver.hpp — the contract and parity suites of the `telemetry_driver`
// kind. `kiln gate run telemetry_driver/NODE` runs them with the kind config
// {"replay": "sim", "readings": FILE} (kiln/nodes/telemetry_driver.hpp): a device driver reads
// the control's readings encoded into its own frames, so the suites run without a device.
// Plugin authors run the same in their own tests (see kiln/testkit/boost_test.hpp), with the
// readings file a gate run left in the gates directory or one of their own, and
// readings_driver(FILE) as the parity control.
#pragma once

#include <cmath>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "kiln/nodes/telemetry_driver.hpp"
#include "kiln/testkit/report.hpp"

namespace kiln::testkit {

using TelemetryDriverFactory =
    std::function<std::shared_ptr<nodes::TelemetryDriver>(const boost::json::object& kind_config)>;

namespace driver_detail {

inline std::string describe(const telemetry::Sample& s) {
  return "t=" + std::to_string(s.t) + " bt=" + std::to_string(s.bt) +
         " et=" + std::to_string(s.et) + " state=" + std::to_string(s.state);
}

inline bool plausible(const telemetry::Sample& s) {
  return std::isfinite(s.t) && std::isfinite(s.bt) && std::isfinite(s.et) && std::isfinite(s.ror) &&
         s.bt > -40 && s.bt < 500 && s.et > -40 && s.et < 600 && s.heater >= 0 && s.heater <= 9 &&
         s.fan >= 0 && s.fan <= 12 && s.drum >= 0 && s.drum <= 9 && s.state >= 0 && s.state <= 9;
}

// A driver that reads a gate readings file as it is: the control for a plugin's own parity
// test (the gate's control is the simulated roaster, whose readings the file holds).
class ReadingsDriver final : public nodes::TelemetryDriver {
 public:
  explicit ReadingsDriver(std::filesystem::path file) : file_(std::move(file)) {}
  Result<nodes::DriverInfo, ToolError> open() override {
    try {
      readings_ = nodes::read_gate_readings(file_);
    } catch (const std::exception& e) {
      return kiln::tool_error(nodes::driver_error::kNotFound, e.what());
    }
    next_ = 0;
    open_ = true;
    nodes::DriverInfo info;
    info.model = "gate readings " + file_.filename().string();
    info.serial = "readings";
    if (readings_.size() > 1) info.interval_s = readings_[1].t - readings_[0].t;
    info.paced_by_device = false;
    return info;
  }
  Result<telemetry::Sample, ToolError> read() override {
    if (!open_) return kiln::tool_error(nodes::driver_error::kNotOpen, "read before open");
    if (next_ >= readings_.size())
      return kiln::tool_error(nodes::driver_error::kEnded, file_.string() + " is over");
    return readings_[next_++];
  }
  std::optional<ToolError> command(const nodes::DriverCommand&) override {
    return ToolError{nodes::driver_error::kReadOnly, "a readings file is read-only", false, {}};
  }
  void close() override { open_ = false; }

 private:
  std::filesystem::path file_;
  std::vector<telemetry::Sample> readings_;
  std::size_t next_ = 0;
  bool open_ = false;
};

}  // namespace driver_detail

// The parity control for a plugin's own test: reads FILE (a gate readings file) as it is.
inline TelemetryDriverFactory readings_driver(const std::filesystem::path& file) {
  return [file](const boost::json::object&) {
    return std::make_shared<driver_detail::ReadingsDriver>(file);
  };
}

// The kind's contract, version nodes::TelemetryDriver::kContractVersion. `kind_config` is what
// the driver is built with: for a device driver {"replay": "sim", "readings": FILE}, as a gate
// builds it (an empty one would make it look for its device).
inline SuiteReport run_telemetry_driver_contract(const TelemetryDriverFactory& make,
                                                 const boost::json::object& kind_config = {},
                                                 std::size_t readings = 120) {
  using namespace driver_detail;
  SuiteReport report;
  report.suite = "contract";
  std::shared_ptr<nodes::TelemetryDriver> a, b;
  guarded(report, "constructs", [&] {
    a = make(kind_config);
    b = make(kind_config);
    report.add("constructs", a && b, a && b ? "" : "factory returned null");
  });
  if (!a || !b) return report;

  guarded(report, "read before open is an error, not a crash", [&] {
    auto r = a->read();
    report.add("read before open is an error, not a crash",
               !r.ok() && r.error().code == nodes::driver_error::kNotOpen,
               r.ok() ? "read() answered a sample before open()" : r.error().code);
  });

  nodes::DriverInfo info;
  bool opened = false;
  guarded(report, "opens and describes itself", [&] {
    auto ia = a->open();
    auto ib = b->open();
    opened = ia.ok() && ib.ok();
    if (ia.ok()) info = ia.value();
    report.add("opens and describes itself", opened && info.interval_s > 0 && !info.model.empty(),
               ia.ok() ? info.model + ", every " + std::to_string(info.interval_s) + " s"
                       : ia.error().code + ": " + ia.error().message);
  });
  if (!opened) return report;

  std::vector<telemetry::Sample> xs, ys;
  guarded(report, "readings are plausible and their time increases by the interval", [&] {
    std::string why;
    for (std::size_t i = 0; i < readings && why.empty(); ++i) {
      auto r = a->read();
      if (!r.ok()) {
        why = "read " + std::to_string(i) + ": " + r.error().code + ": " + r.error().message;
        break;
      }
      const auto& s = r.value();
      if (!plausible(s)) why = "reading " + std::to_string(i) + " is implausible: " + describe(s);
      if (!xs.empty()) {
        const double step = s.t - xs.back().t;
        if (!(step > 0.5 * info.interval_s && step < 1.5 * info.interval_s))
          why = "reading " + std::to_string(i) + " comes " + std::to_string(step) +
                " s after the one before; the interval is " + std::to_string(info.interval_s);
      }
      xs.push_back(s);
    }
    report.add("readings are plausible and their time increases by the interval", why.empty(),
               why.empty() ? std::to_string(xs.size()) + " readings" : why);
  });

  guarded(report, "two drivers built alike read alike", [&] {
    std::string why;
    for (std::size_t i = 0; i < xs.size() && why.empty(); ++i) {
      auto r = b->read();
      if (!r.ok()) {
        why = r.error().code + ": " + r.error().message;
        break;
      }
      auto s = r.value();
      ys.push_back(s);
      // Device time may start elsewhere; the readings themselves must agree.
      if (s.bt != xs[i].bt || s.et != xs[i].et || s.state != xs[i].state ||
          s.heater != xs[i].heater || s.fan != xs[i].fan)
        why = "reading " + std::to_string(i) + ": " + describe(s) + " vs " + describe(xs[i]);
    }
    report.add("two drivers built alike read alike", why.empty(), why);
  });

  guarded(report, "an unknown setting is refused", [&] {
    auto e = a->command(nodes::DriverCommand{"afterburner", 1});
    const bool ok =
        e && (e->code == nodes::driver_error::kReadOnly || e->code == error_code::kInvalidInput);
    report.add("an unknown setting is refused", ok,
               e ? e->code + ": " + e->message : "command() accepted 'afterburner'");
  });

  guarded(report, "a read-only driver refuses every command", [&] {
    auto e = a->command(nodes::DriverCommand{"heater", 5});
    const bool ok = info.can_actuate ? !e || e->code != nodes::driver_error::kReadOnly
                                     : e && e->code == nodes::driver_error::kReadOnly;
    report.add("a read-only driver refuses every command", ok,
               std::string(info.can_actuate ? "actuating driver: " : "read-only driver: ") +
                   (e ? e->code : "accepted"));
  });

  guarded(report, "read after close is an error, not a crash", [&] {
    a->close();
    b->close();
    auto r = a->read();
    report.add("read after close is an error, not a crash",
               !r.ok() && r.error().code == nodes::driver_error::kNotOpen,
               r.ok() ? "read() answered after close()" : r.error().code);
  });
  return report;
}

// Parity: the candidate, built with `kind_config`, reads what the control reads — BT and ET
// within `tolerance` °C, the same settings and state — over `readings` readings. For a device
// driver the kind config names the control's readings (above), which it reads through its own
// frames, so the whole decoding path is compared.
inline SuiteReport run_telemetry_driver_parity(const TelemetryDriverFactory& control,
                                               const TelemetryDriverFactory& candidate,
                                               const boost::json::object& kind_config = {},
                                               std::size_t readings = 600,
                                               double tolerance = 0.05) {
  using namespace driver_detail;
  SuiteReport report;
  report.suite = "parity";
  std::shared_ptr<nodes::TelemetryDriver> a, b;
  guarded(report, "both drivers open", [&] {
    a = control(kind_config);
    b = candidate(kind_config);
    auto ia = a ? a->open() : kiln::tool_error("null", "control factory returned null");
    auto ib = b ? b->open() : kiln::tool_error("null", "candidate factory returned null");
    report.add("both drivers open", ia.ok() && ib.ok(),
               (ia.ok() ? std::string("control ok") : "control: " + ia.error().message) + "; " +
                   (ib.ok() ? std::string("candidate ok") : "candidate: " + ib.error().message));
  });
  if (!report.passed()) return report;
  guarded(report, "the candidate reads what the control reads", [&] {
    std::string why;
    std::size_t n = 0;
    for (; n < readings && why.empty(); ++n) {
      auto x = a->read();
      auto y = b->read();
      if (!x.ok() || !y.ok()) {
        if (!x.ok() && !y.ok() && x.error().code == nodes::driver_error::kEnded &&
            y.error().code == nodes::driver_error::kEnded)
          break;
        why = "reading " + std::to_string(n) + ": " +
              (x.ok() ? std::string("control ok") : "control " + x.error().code) + ", " +
              (y.ok() ? std::string("candidate ok") : "candidate " + y.error().code);
        break;
      }
      const auto &p = x.value(), &q = y.value();
      if (std::abs(p.bt - q.bt) > tolerance || std::abs(p.et - q.et) > tolerance ||
          p.state != q.state || p.heater != q.heater || p.fan != q.fan || p.drum != q.drum)
        why = "reading " + std::to_string(n) + ": candidate " + describe(q) + ", control " +
              describe(p);
    }
    report.add("the candidate reads what the control reads", why.empty() && n > 0,
               why.empty() ? std::to_string(n) + " readings agree" : why);
  });
  a->close();
  b->close();
  return report;
}

}  // namespace kiln::testkit
