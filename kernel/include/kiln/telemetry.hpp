// kiln/telemetry.hpp — what a roaster telemetry driver produces and what travels to the server.
// Plain types; the signed form (COSE_Sign1 over CBOR, Ed25519) is the kernel's business
// (docs/architecture/telemetry.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::telemetry {

// One reading of a roaster. Temperatures in °C; settings as the machine reports them.
struct Sample {
  double t = 0;    // device time, seconds since the Unix epoch
  double bt = 0;   // bean temperature
  double et = 0;   // environment / drum temperature
  double ror = 0;  // bean rate of rise, °C/min (as the device computes it; 0 if none)
  int heater = 0;  // heater power level
  int fan = 0;     // fan level
  int drum = 0;    // drum speed level
  int state = 0;   // machine state (Bullet R1: 6 roasting, 8 cooling, ...)
  bool operator==(const Sample&) const = default;
};

// Who sent it: a device and a boot of it. Sequence numbers restart at every boot.
struct DeviceIdentity {
  std::string device;      // stable id, e.g. "r1-2048"
  std::uint64_t boot = 0;  // boot epoch (kiln's recorders: milliseconds) — distinguishes sequence
                           // runs; a later boot is a larger number
  bool operator==(const DeviceIdentity&) const = default;
};

// A batch of samples as signed: identity, a sequence number per batch, the device's send time.
struct Batch {
  DeviceIdentity device;
  std::uint64_t seq = 0;
  double sent_at = 0;  // device time of sending, seconds since the Unix epoch
  std::vector<Sample> samples;
  bool operator==(const Batch&) const = default;
};

}  // namespace kiln::telemetry
