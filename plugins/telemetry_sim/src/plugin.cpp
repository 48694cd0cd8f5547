// The telemetry_sim plugin: node `telemetry_driver/sim` (the kind's default), a simulated drum
// roaster (src/model.cpp) that runs one roast — CHARGE wait, roast on a default schedule, DROP at
// the configured development ratio, cooling — then stays OFF. Settings can be changed through
// command(); only the kernel's approval-gated command path calls it.
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "kiln/nodes/telemetry_driver.hpp"
#include "kiln/plugin.hpp"
#include "model.hpp"

namespace {

namespace json = boost::json;
using kiln::nodes::DriverCommand;
using kiln::nodes::DriverInfo;

double number(const json::object& o, const char* key, double fallback) {
  const auto* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : fallback;
}

class SimDriver final : public kiln::nodes::TelemetryDriver {
 public:
  SimDriver(kiln::sim::Options options, std::string device)
      : options_(options), device_(std::move(device)) {}

  kiln::Result<DriverInfo, kiln::ToolError> open() override {
    std::lock_guard lock(mu_);
    try {
      roaster_.emplace(options_);
    } catch (const std::invalid_argument& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput, e.what());
    }
    // Device time starts at the wall clock's current second.
    epoch_ = std::floor(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
    DriverInfo info;
    info.model = "kiln heat model (drum roaster)";
    info.serial = device_;
    info.firmware = "model 1 (" + std::to_string(static_cast<int>(options_.mass_g)) + " g, seed " +
                    std::to_string(options_.seed) + ")";
    info.interval_s = options_.interval_s;
    info.paced_by_device = false;
    info.can_actuate = true;
    return info;
  }

  kiln::Result<kiln::telemetry::Sample, kiln::ToolError> read() override {
    std::lock_guard lock(mu_);
    if (!roaster_)
      return kiln::tool_error(kiln::nodes::driver_error::kNotOpen,
                              "the simulated roaster is not open; call open() first");
    auto s = roaster_->next();
    s.t += epoch_;
    return s;
  }

  std::optional<kiln::ToolError> command(const DriverCommand& c) override {
    std::lock_guard lock(mu_);
    auto range = [&](int lo, int hi) -> std::optional<kiln::ToolError> {
      if (c.value < lo || c.value > hi)
        return kiln::ToolError{kiln::error_code::kInvalidInput,
                               c.setting + " must be " + std::to_string(lo) + ".." +
                                   std::to_string(hi) + ", not " + std::to_string(c.value),
                               false,
                               {}};
      return std::nullopt;
    };
    std::optional<kiln::ToolError> bad;
    if (c.setting == "heater")
      bad = range(0, 9);
    else if (c.setting == "fan")
      bad = range(1, 12);
    else if (c.setting == "drum")
      bad = range(1, 9);
    else
      return kiln::ToolError{kiln::error_code::kInvalidInput,
                             "unknown setting '" + c.setting + "'; settings: heater, fan, drum",
                             false,
                             {}};
    if (bad) return bad;
    if (!roaster_)
      return kiln::ToolError{
          kiln::nodes::driver_error::kNotOpen, "the simulated roaster is not open", false, {}};
    auto& o = roaster_->overrides();
    (c.setting == "heater" ? o.heater : c.setting == "fan" ? o.fan : o.drum) = c.value;
    return std::nullopt;
  }

  void close() override {
    std::lock_guard lock(mu_);
    roaster_.reset();
  }

 private:
  std::mutex mu_;
  kiln::sim::Options options_;
  std::string device_;
  std::optional<kiln::sim::Roaster> roaster_;
  double epoch_ = 0;
};

kiln::Manifest manifest() {
  kiln::Manifest m;
  m.name = "telemetry_sim";
  m.version = "0.1.0";
  m.description = "A simulated drum roaster (heat model calibrated on Bullet R1 logs)";
  m.license = "Apache-2.0";
  m.config_keys = {
      {"mass_g", "number", 500.0, "charge mass in grams (100-1500)"},
      {"seed", "integer", 1, "seed of the measurement noise"},
      {"dtr", "number", 0.20, "development time ratio at which the simulated roaster drops"},
      {"charge_wait_s", "number", 10.0, "seconds in the CHARGE state before the beans go in"},
      {"cool_s", "number", 120.0, "seconds of cooling after DROP"},
      {"between_s", "number", 60.0,
       "seconds OFF after cooling before the roaster preheats for the next roast (back to back); "
       "negative: one roast, then OFF"},
      {"preheat_c", "number", 0.0, "drum air temperature at CHARGE; 0: chosen by mass"},
      {"device", "string", "sim-1", "the device id the simulated roaster reports"},
  };
  m.nodes.push_back(kiln::NodeDecl::make<kiln::nodes::TelemetryDriver>(
      "sim",
      "a simulated drum roaster (heat model); roasts back to back (preheat, CHARGE, roast, DROP, "
      "cooling, OFF), faster than real time if asked",
      [](const kiln::NodeContext& ctx) {
        const auto& pc = ctx.plugin_config;
        kiln::sim::Options o;
        o.mass_g = number(pc, "mass_g", 500);
        o.seed = static_cast<std::uint64_t>(number(pc, "seed", 1));
        o.dtr = number(pc, "dtr", 0.2);
        o.charge_wait_s = number(pc, "charge_wait_s", 10);
        o.cool_s = number(pc, "cool_s", 120);
        if (const double b = number(pc, "between_s", 60); b >= 0) o.between_s = b;
        if (const double p = number(pc, "preheat_c", 0); p > 0) o.preheat_temp = p;
        o.interval_s = number(ctx.kind_config, "interval_s", 1.0);
        if (!(o.dtr > 0 && o.dtr < 0.5))
          throw std::invalid_argument("plugin_config.telemetry_sim.dtr must be in (0, 0.5)");
        std::string device = "sim-1";
        if (const auto* d = pc.if_contains("device"); d && d->is_string())
          device = std::string(d->as_string());
        kiln::sim::Roaster probe(o);  // refuses a bad mass or interval now, not at open()
        return std::make_shared<SimDriver>(o, device);
      }));
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
