#include "telemetry/recorder.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

namespace kiln::telemetry {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

Recorder::Recorder(std::shared_ptr<nodes::TelemetryDriver> driver, DeviceCredentials credentials,
                   Ingestor& ingestor, double speed, std::size_t batch)
    : driver_(std::move(driver)),
      cred_(std::move(credentials)),
      ingestor_(ingestor),
      speed_(speed),
      batch_(batch) {}

Recorder::~Recorder() {
  stop();
}

void Recorder::start() {
  auto r = driver_->open();
  if (!r.ok())
    throw std::runtime_error("recorder: the telemetry driver did not open: " + r.error().code +
                             ": " + r.error().message);
  info_ = r.value();
  spdlog::info("recorder: {} ({}) every {} s as device {} of tenant {}", info_.model, info_.serial,
               info_.interval_s, cred_.device, cred_.tenant);
  thread_ = std::thread([this] { run(); });
}

void Recorder::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void Recorder::run() {
  // A new boot per start, in milliseconds: a restart within a second is still a new boot.
  const auto boot = static_cast<std::uint64_t>(now_s() * 1000);
  std::uint64_t seq = 0;
  std::vector<Sample> pending;
  const auto started = std::chrono::steady_clock::now();
  std::int64_t reads = 0;
  while (!stop_) {
    auto r = driver_->read();
    if (!r.ok()) {
      if (r.error().code == nodes::driver_error::kEnded) break;
      spdlog::warn("recorder: {}: {}", r.error().code, r.error().message);
      if (!r.error().retryable) break;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    ++reads;
    pending.push_back(r.value());
    if (pending.size() >= batch_) {
      Batch b;
      b.device = {cred_.device, boot};
      b.seq = ++seq;
      b.sent_at = now_s();
      b.samples = std::move(pending);
      pending.clear();
      auto res = ingestor_.ingest(cred_.tenant, cred_.device,
                                  sign_envelope(b, cred_.key, cred_.tenant, cred_.device), now_s());
      if (res.accepted)
        ++batches_;
      else
        spdlog::error("recorder: batch {} refused: {}: {}", b.seq, res.reason, res.message);
    }
    if (!info_.paced_by_device) {
      const auto due = started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(static_cast<double>(reads) *
                                                                   info_.interval_s / speed_));
      while (!stop_ && std::chrono::steady_clock::now() < due)
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            due - std::chrono::steady_clock::now(), std::chrono::milliseconds(100)));
    }
  }
  driver_->close();
}

}  // namespace kiln::telemetry
