#include "telemetry/recorder.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <deque>

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
  thread_ = std::thread([this] {
    try {
      run();
    } catch (const std::exception& e) {  // not the server's end: it keeps serving, and says so
      spdlog::error("recorder: stopped: {}; restart kiln serve to record again", e.what());
    } catch (...) {
      spdlog::error("recorder: stopped by an unknown error; restart kiln serve to record again");
    }
  });
}

void Recorder::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

bool Recorder::connect(const std::function<void()>& while_waiting) {
  // A roaster switched off is the normal state when the machine boots: wait for it, saying so
  // once per reason, every 1, 2, 4 ... up to 30 s.
  std::string said;
  int wait_s = 1;
  while (!stop_) {
    auto r = driver_->open();
    if (r.ok()) {
      info_ = r.value();
      spdlog::info("recorder: {} ({}) every {} s as device {} of tenant {}", info_.model,
                   info_.serial, info_.interval_s, cred_.device, cred_.tenant);
      return true;
    }
    const std::string why = r.error().code + ": " + r.error().message;
    if (why != said)
      spdlog::warn("recorder: waiting for the roaster: {} (trying again, every 30 s at most)", why);
    said = why;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
    while (!stop_ && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (while_waiting) while_waiting();
    }
    wait_s = std::min(wait_s * 2, 30);
  }
  return false;
}

void Recorder::run() {
  if (!connect()) return;
  // A new boot per start, in milliseconds: a restart within a second is still a new boot.
  const auto boot = static_cast<std::uint64_t>(now_s() * 1000);
  std::uint64_t seq = 0;
  std::vector<Sample> pending;
  // Signed batches the storage could not take yet (its disk full, the database locked or failing):
  // kept in order and offered again with every later batch and every second (also while the
  // roaster is waited for), so a storage outage loses no readings while memory holds them.
  std::deque<std::pair<std::uint64_t, std::string>> held;
  std::string storage_said;  // the storage's last error, logged once until it changes
  auto deliver = [&](bool last) {
    while (!held.empty() && (last || !stop_)) {
      IngestResult res;
      try {
        res = ingestor_.ingest(cred_.tenant, cred_.device, held.front().second, now_s());
      } catch (const std::exception& e) {
        if (storage_said != e.what())
          spdlog::error(
              "recorder: the storage cannot take batch {}: {}; holding {} batch(es) in memory "
              "and trying again (at most {})",
              held.front().first, e.what(), held.size(), kMaxHeldBatches);
        storage_said = e.what();
        return;
      }
      if (!storage_said.empty())
        spdlog::info("recorder: the storage takes batches again; sending the {} held", held.size());
      storage_said.clear();
      const std::uint64_t batch_seq = held.front().first;
      held.pop_front();
      if (res.accepted) {
        ++batches_;
        continue;
      }
      spdlog::error("recorder: batch {} refused: {}: {}", batch_seq, res.reason, res.message);
      // Refused for the key itself: every later batch would be, and its readings lost.
      if (reject::about_the_key(res.reason)) {
        spdlog::error(
            "recorder: stopped: every batch signed with key {} of device {} (tenant {}) would "
            "be refused the same way; register or rotate the device's key (`kiln devices "
            "add|rotate`), point recorder.key_file at it and restart",
            cred_.key.kid, cred_.device, cred_.tenant);
        stopped_for_key_ = true;
        stop_ = true;
      }
    }
  };
  auto last_retry = std::chrono::steady_clock::now();
  // Every second while batches are held: between readings, and while the roaster is waited for.
  auto retry_held = [&] {
    if (!held.empty() && std::chrono::steady_clock::now() - last_retry >= std::chrono::seconds(1)) {
      last_retry = std::chrono::steady_clock::now();
      deliver(false);
    }
  };
  // The readings so far, signed as the next batch and offered to the storage.
  auto seal = [&] {
    Batch b;
    b.device = {cred_.device, boot};
    b.seq = ++seq;
    b.sent_at = now_s();
    b.samples = std::move(pending);
    pending.clear();
    if (held.size() >= kMaxHeldBatches) {
      spdlog::error("recorder: batch {} lost: {} batches wait for the storage already",
                    held.front().first, held.size());
      held.pop_front();
    }
    held.emplace_back(b.seq, sign_envelope(b, cred_.key, cred_.tenant, cred_.device));
    last_retry = std::chrono::steady_clock::now();
  };
  auto started = std::chrono::steady_clock::now();
  std::int64_t reads = 0;
  while (!stop_) {
    retry_held();
    auto r = driver_->read();
    if (!r.ok()) {
      if (r.error().code == nodes::driver_error::kEnded) break;
      if (r.error().retryable) {
        spdlog::warn("recorder: {}: {}", r.error().code, r.error().message);
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
      // Unplugged, switched off: wait for it again rather than stop recording for good.
      spdlog::warn("recorder: {}: {}; reconnecting", r.error().code, r.error().message);
      driver_->close();
      if (!connect(retry_held)) break;
      started = std::chrono::steady_clock::now();
      reads = 0;
      continue;
    }
    ++reads;
    pending.push_back(r.value());
    if (pending.size() >= batch_) {
      seal();
      deliver(false);
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
  // Stopping (or the readings ended): the readings of a batch not yet full are sent as one (the
  // last seconds of a roast were lost at every stop), then each batch the storage has not taken
  // gets one last try.
  if (!pending.empty() && !stopped_for_key_) seal();
  if (!held.empty() && !stopped_for_key_) {
    deliver(true);
    if (!held.empty())
      spdlog::error(
          "recorder: {} batch(es) (from seq {}) never stored: the storage refused them "
          "until the recorder stopped ({})",
          held.size(), held.front().first, storage_said);
  }
}

}  // namespace kiln::telemetry
