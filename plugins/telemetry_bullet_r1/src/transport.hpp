// How the Bullet R1 driver reaches the roaster: USB (libusb), a replay file of recorded
// exchanges, or the simulated roaster encoded into R1 frames (for gates and tests). Each takes
// only a ReadCommand: no transport can send a write command.
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "protocol.hpp"

namespace kiln::r1 {

struct TransportError : std::runtime_error {
  TransportError(std::string c, const std::string& message, bool retry)
      : std::runtime_error(message), code(std::move(c)), retryable(retry) {}
  std::string code;  // a kiln::nodes::driver_error code
  bool retryable;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Sends the command and returns the reply. Throws TransportError.
  virtual std::vector<unsigned char> exchange(ReadCommand command) = 0;
  // Whether reads are paced by the device (USB) or computed at once (replay, sim).
  virtual bool live() const = 0;
};

// Which of the Bullet R1s found to open, by their USB port paths as Linux names them ("1-2.3":
// bus 1, port 2, then port 3 of a hub; /sys/bus/usb/devices, `lsusb -t`): the one at `wanted`,
// else the only one. Throws TransportError device_not_found — none, none at `wanted` (naming
// the ports found), or several and none wanted (a roastery with two roasters runs a recorder
// per roaster, each with its usb_port).
std::size_t choose_usb(const std::vector<std::string>& ports, const std::string& wanted);

// libusb: finds VID 0x0483 with PID 0x5741 or 0xa27e (at USB port path `port` when given; see
// choose_usb), detaches a kernel driver, claims interface 1. Errors: device_not_found,
// no_permission (with the udev rule to add), device_busy, disconnected.
std::unique_ptr<Transport> open_usb(const std::string& port = "");

// `inner`, with every exchange it completes appended to `file` in the replay format
// (plugin_config record_raw, for any transport: a roaster's session, or the simulated roaster's
// frames as a sample replay file).
std::unique_ptr<Transport> recording(std::unique_ptr<Transport> inner,
                                     const std::filesystem::path& file);

// A replay file (docs/architecture/telemetry.md): lines "REQUEST_HEX REPLY_HEX", '#' comments.
// Replies are served in file order; a request out of step with the file is an error; at the end
// of the file: `ended`.
std::unique_ptr<Transport> open_replay(const std::filesystem::path& file);

// The simulated roaster (telemetry_sim's model, default settings) encoded into R1 frames.
std::unique_ptr<Transport> open_sim(double interval_s, double mass_g, std::uint64_t seed);

// A gate's readings file (kiln/nodes/telemetry_driver.hpp) encoded into R1 frames; at its end:
// `ended`. An unreadable or malformed file: device_not_found naming the file and line.
std::unique_ptr<Transport> open_readings(const std::filesystem::path& file);

// Writes exchanges in the replay format.
class ReplayWriter {
 public:
  explicit ReplayWriter(const std::filesystem::path& file);
  void write(ReadCommand c, const std::vector<unsigned char>& reply);

 private:
  std::ofstream out_;
};

}  // namespace kiln::r1
