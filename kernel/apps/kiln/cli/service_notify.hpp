// `kiln serve` under a service manager: systemd's notification protocol (sd_notify(3)), spoken
// directly over the datagram socket in NOTIFY_SOCKET rather than through libsystemd. Without
// NOTIFY_SOCKET (a terminal, a container without systemd) every call does nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace kiln::cli {

class ServiceNotifier {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID.
  ServiceNotifier();
  ~ServiceNotifier();  // stops the watchdog
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  bool active() const { return !socket_.empty(); }
  // Sends newline-separated assignments ("READY=1\nSTATUS=…"). False, with a warning logged
  // once, when the manager's socket cannot be reached.
  bool notify(const std::string& state);
  // The watchdog interval the manager asked for (WATCHDOG_USEC, for this process), if any.
  std::optional<std::chrono::microseconds> watchdog() const { return watchdog_; }
  // Every half watchdog interval, sends WATCHDOG=1 when `alive()` answers true; a false answer
  // sends nothing, so the manager restarts a server that stopped answering. No-op without a
  // watchdog.
  void start_watchdog(std::function<bool()> alive);

 private:
  std::string socket_;
  std::optional<std::chrono::microseconds> watchdog_;
  std::atomic<bool> warned_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kiln::cli
