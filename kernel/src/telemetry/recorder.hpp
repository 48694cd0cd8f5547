// The recorder inside `kiln serve` (recorder.enabled): reads the selected telemetry_driver node,
// signs batches with a device key and ingests them locally — so the server's own driver is the
// one the approval-gated `roaster.command` tool reaches. `kiln record` is the same loop as a
// separate process that sends over HTTP.
#pragma once

#include <atomic>
#include <memory>
#include <thread>

#include "kiln/nodes/telemetry_driver.hpp"
#include "telemetry/devices.hpp"
#include "telemetry/ingest.hpp"

namespace kiln::telemetry {

class Recorder {
 public:
  Recorder(std::shared_ptr<nodes::TelemetryDriver> driver, DeviceCredentials credentials,
           Ingestor& ingestor, double speed, std::size_t batch);
  ~Recorder();
  // Opens the driver (throws std::runtime_error with the driver's message when it cannot) and
  // starts reading on its own thread.
  void start();
  void stop();
  std::int64_t batches() const { return batches_.load(); }

 private:
  void run();
  std::shared_ptr<nodes::TelemetryDriver> driver_;
  DeviceCredentials cred_;
  Ingestor& ingestor_;
  double speed_;
  std::size_t batch_;
  nodes::DriverInfo info_;
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> batches_{0};
  std::thread thread_;
};

}  // namespace kiln::telemetry
