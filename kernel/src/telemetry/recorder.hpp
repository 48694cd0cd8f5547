// The recorder inside `kiln serve` (recorder.enabled): reads the selected telemetry_driver node,
// signs batches with a device key and ingests them locally — so the server's own driver is the
// one the approval-gated `roaster.command` tool reaches. `kiln record` is the same loop as a
// separate process that sends over HTTP.
#pragma once

#include <atomic>
#include <functional>
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
  // Starts reading on its own thread. A driver that does not open (the roaster is off or
  // unplugged) is tried again with a backoff up to 30 s, logged once per reason, as is one that
  // stops answering; the server keeps serving meanwhile. Batches refused for the device key
  // (unknown, revoked, expired, another device's, a bad signature) stop the recorder, logged.
  // Batches the storage fails to take (a full disk, a locked or failing database) are held in
  // memory, in order, up to kMaxHeldBatches, and offered again with each later batch and every
  // second; the server keeps serving meanwhile. Any other error stops the recorder, logged.
  void start();
  void stop();
  std::int64_t batches() const { return batches_.load(); }
  bool stopped_for_key() const { return stopped_for_key_.load(); }
  // Whether stop() was asked (or the key refused): the recorder ends after its current reading.
  bool stopping() const { return stop_.load(); }
  static constexpr std::size_t kMaxHeldBatches = 20000;  // ≈ 55 h of 10-reading batches at 1 Hz

 private:
  // Opens the driver, waiting for it (calling `while_waiting` every 100 ms meanwhile); false once
  // stopped.
  bool connect(const std::function<void()>& while_waiting = {});
  void run();
  std::shared_ptr<nodes::TelemetryDriver> driver_;
  DeviceCredentials cred_;
  Ingestor& ingestor_;
  double speed_;
  std::size_t batch_;
  nodes::DriverInfo info_;
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> batches_{0};
  std::atomic<bool> stopped_for_key_{false};
  std::thread thread_;
};

}  // namespace kiln::telemetry
