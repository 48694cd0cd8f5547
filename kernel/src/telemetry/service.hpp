// Telemetry in one place for the kernel: the device key registry, the profile library,
// ingestion and the sessionizer, wired so that every stored batch reaches the sessionizer.
#pragma once

#include <memory>

#include "telemetry/devices.hpp"
#include "telemetry/ingest.hpp"
#include "telemetry/profiles.hpp"
#include "telemetry/sessions.hpp"

namespace kiln::telemetry {

class TelemetryService {
 public:
  TelemetryService(ledger::SqliteLedger& ledger, IngestOptions ingest, SessionOptions sessions,
                   Sessionizer::DetectorFn detector, Sessionizer::ClosedFn on_closed)
      : devices_(ledger, ledger.path()),
        profiles_(ledger, ledger.path()),
        sessionizer_(ledger, std::move(detector), std::move(on_closed), sessions),
        ingestor_(ledger, devices_, ingest, [this](const std::string& tenant, const Batch& b) {
          sessionizer_.add(tenant, b.device.device, static_cast<std::int64_t>(b.device.boot),
                           b.samples, b.seq);
        }) {}

  DeviceRegistry& devices() { return devices_; }
  ProfileStore& profiles() { return profiles_; }
  Ingestor& ingestor() { return ingestor_; }
  Sessionizer& sessions() { return sessionizer_; }

 private:
  DeviceRegistry devices_;
  ProfileStore profiles_;
  Sessionizer sessionizer_;
  Ingestor ingestor_;
};

}  // namespace kiln::telemetry
