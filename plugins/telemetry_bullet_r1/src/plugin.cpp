// The telemetry_bullet_r1 plugin: node `telemetry_driver/bullet_r1`, a read-only driver of the
// Aillio Bullet R1 (DOMAIN §1). Transports: USB (libusb), a replay file, or the simulated roaster
// encoded into R1 frames — the last is what gates use (kind config {"replay": "sim"}), so the
// whole decoding path is compared with telemetry_driver/sim without hardware.
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "kiln/nodes/telemetry_driver.hpp"
#include "kiln/plugin.hpp"
#include "protocol.hpp"
#include "transport.hpp"

namespace {

namespace json = boost::json;
using kiln::nodes::DriverInfo;
namespace derr = kiln::nodes::driver_error;

std::string text(const json::object& o, const char* key, const std::string& fallback) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : fallback;
}

double wall() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Settings {
  std::string transport = "usb";  // usb | replay | sim | readings (a gate's)
  std::string replay;
  std::string readings;
  std::string record_raw;
  std::string device;
  std::string usb_port;  // "" = the only one plugged in
  double interval_s = 1.0;
};

class R1Driver final : public kiln::nodes::TelemetryDriver {
 public:
  R1Driver(Settings s, kiln::HostServices& host) : s_(std::move(s)), host_(host) {}

  kiln::Result<DriverInfo, kiln::ToolError> open() override {
    std::lock_guard lock(mu_);
    try {
      connect();
      auto i1 = transport_->exchange(kiln::r1::ReadCommand::kInfo1);
      auto i2 = transport_->exchange(kiln::r1::ReadCommand::kInfo2);
      std::string why;
      auto info = kiln::r1::decode_info(i1, i2, &why);
      if (!info) return kiln::tool_error(derr::kBadFrame, "Bullet R1 info: " + why, true);
      DriverInfo d;
      d.model = "Aillio Bullet R1 (" + s_.transport + ")";
      d.serial = s_.device.empty() ? "r1-" + std::to_string(info->serial) : s_.device;
      d.firmware =
          std::to_string(info->firmware) + " (" + std::to_string(info->roasts) + " roasts)";
      d.interval_s = s_.interval_s;
      d.paced_by_device = transport_->live();
      d.can_actuate = false;
      epoch_ = std::floor(wall());
      n_ = 0;
      next_poll_ = std::chrono::steady_clock::now();
      return d;
    } catch (const kiln::r1::TransportError& e) {
      transport_.reset();
      return kiln::tool_error(e.code, e.what(), e.retryable);
    }
  }

  kiln::Result<kiln::telemetry::Sample, kiln::ToolError> read() override {
    std::lock_guard lock(mu_);
    if (!opened_)
      return kiln::tool_error(derr::kNotOpen, "the Bullet R1 driver is not open; call open()");
    try {
      if (!transport_) {
        // Reconnect with backoff after a disconnect: 1, 2, 4, 8 s.
        if (std::chrono::steady_clock::now() < retry_at_)
          return kiln::tool_error(derr::kDisconnected, "the Bullet R1 is disconnected; retrying",
                                  true);
        connect();
      }
      if (transport_->live()) {
        const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(s_.interval_s));
        // Behind by more than a reading (after a reconnect, or a caller that paused): the pace
        // starts again from now — catching up polled back to back, a burst of readings stamped
        // milliseconds apart.
        if (std::chrono::steady_clock::now() - next_poll_ > interval)
          next_poll_ = std::chrono::steady_clock::now();
        std::this_thread::sleep_until(next_poll_);
        next_poll_ += interval;
      }
      auto f1 = transport_->exchange(kiln::r1::ReadCommand::kPoll1);
      auto f2 = transport_->exchange(kiln::r1::ReadCommand::kPoll2);
      std::string why;
      auto a = kiln::r1::decode_frame1(f1, &why);
      auto b = a ? kiln::r1::decode_frame2(f2, &why) : std::nullopt;
      ++n_;
      if (!a || !b) {
        ++rejected_;
        host_.count("r1_frames_rejected");
        return kiln::tool_error(derr::kBadFrame, "Bullet R1 frame refused: " + why, true);
      }
      backoff_ = std::chrono::seconds(1);
      kiln::telemetry::Sample s;
      s.t = transport_->live() ? wall() : epoch_ + static_cast<double>(n_ - 1) * s_.interval_s;
      s.bt = a->bt;
      s.et = a->drum_temp;
      s.ror = a->bt_ror;
      s.heater = a->heater;
      s.fan = a->fan;
      s.drum = a->drum;
      s.state = a->state;
      return s;
    } catch (const kiln::r1::TransportError& e) {
      if (e.code == derr::kDisconnected) {
        transport_.reset();
        retry_at_ = std::chrono::steady_clock::now() + backoff_;
        backoff_ = std::min(backoff_ * 2, std::chrono::seconds(8));
      }
      return kiln::tool_error(e.code, e.what(), e.retryable);
    }
  }

  // Read-only by construction: there is no write path to call.
  std::optional<kiln::ToolError> command(const kiln::nodes::DriverCommand& c) override {
    return kiln::ToolError{
        derr::kReadOnly,
        "the Bullet R1 driver is read-only: '" + c.setting + "' cannot be changed from kiln",
        false,
        {}};
  }

  void close() override {
    std::lock_guard lock(mu_);
    transport_.reset();
    opened_ = false;
  }

 private:
  void connect() {
    if (s_.transport == "sim")
      transport_ = kiln::r1::open_sim(s_.interval_s, 500, 1);
    else if (s_.transport == "readings")
      transport_ = kiln::r1::open_readings(s_.readings);
    else if (s_.transport == "replay")
      transport_ = kiln::r1::open_replay(s_.replay);
    else
      transport_ = kiln::r1::open_usb(s_.usb_port);
    // A gate's readings are not a session of the roaster's: nothing to record.
    if (!s_.record_raw.empty() && s_.transport != "readings")
      transport_ = kiln::r1::recording(std::move(transport_), s_.record_raw);
    opened_ = true;
  }

  Settings s_;
  kiln::HostServices& host_;
  std::mutex mu_;
  std::unique_ptr<kiln::r1::Transport> transport_;
  bool opened_ = false;
  double epoch_ = 0;
  long n_ = 0;
  long rejected_ = 0;
  std::chrono::steady_clock::time_point next_poll_, retry_at_;
  std::chrono::seconds backoff_{1};
};

kiln::Manifest manifest() {
  kiln::Manifest m;
  m.name = "telemetry_bullet_r1";
  m.version = "0.1.0";
  m.description = "Read-only driver of the Aillio Bullet R1 (USB), with replay";
  m.license = "Apache-2.0";
  m.config_keys = {
      {"transport", "string", "usb", "usb | replay (a file of recorded exchanges) | sim"},
      {"replay", "string", "", "the replay file when transport is replay"},
      {"record_raw", "string", "",
       "append every exchange to this file (the replay format), with any transport: a roaster's "
       "session, or sim's frames as a sample replay file"},
      {"device", "string", "", "the device id to report; empty: r1-<serial>"},
      {"usb_port", "string", "",
       "the USB port path of the roaster to read (\"1-2.3\", as `lsusb -t` and "
       "/sys/bus/usb/devices name it): required when more than one Bullet R1 is plugged in"},
  };
  m.nodes.push_back(kiln::NodeDecl::make<kiln::nodes::TelemetryDriver>(
      "bullet_r1", "Aillio Bullet R1 over USB, read-only (info and poll commands only)",
      [](const kiln::NodeContext& ctx) {
        Settings s;
        s.transport = text(ctx.plugin_config, "transport", "usb");
        s.replay = text(ctx.plugin_config, "replay", "");
        s.record_raw = text(ctx.plugin_config, "record_raw", "");
        s.device = text(ctx.plugin_config, "device", "");
        s.usb_port = text(ctx.plugin_config, "usb_port", "");
        if (!s.usb_port.empty() &&
            s.usb_port.find_first_not_of("0123456789-.") != std::string::npos)
          throw std::invalid_argument("plugin_config.telemetry_bullet_r1.usb_port is '" +
                                      s.usb_port +
                                      "'; give a USB port path like 1-2 or 1-2.3 (`lsusb -t`)");
        if (s.transport != "usb" && s.transport != "replay" && s.transport != "sim")
          throw std::invalid_argument("plugin_config.telemetry_bullet_r1.transport is '" +
                                      s.transport + "'; use usb, replay or sim");
        if (s.transport == "replay" && s.replay.empty())
          throw std::invalid_argument(
              "plugin_config.telemetry_bullet_r1.replay names no file (transport: replay)");
        if (s.transport == "replay" && !s.record_raw.empty() &&
            std::filesystem::weakly_canonical(s.record_raw) ==
                std::filesystem::weakly_canonical(s.replay))
          throw std::invalid_argument(
              "plugin_config.telemetry_bullet_r1.record_raw is the replay file itself (" +
              s.replay + "); name another file to record to");
        // Gates give the control's readings ({"replay": "sim", "readings": FILE}): read through
        // the R1 frames. {"replay": "sim"} alone: the simulated roaster itself, encoded.
        if (text(ctx.kind_config, "replay", "") == "sim") {
          s.readings = text(ctx.kind_config, kiln::nodes::kGateReadingsKey, "");
          s.transport = s.readings.empty() ? "sim" : "readings";
        }
        if (const auto* v = ctx.kind_config.if_contains("interval_s"); v && v->is_number())
          s.interval_s = v->to_number<double>();
        return std::make_shared<R1Driver>(s, ctx.host);
      }));
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
