#include "cli/service_notify.hpp"

#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace kiln::cli {

ServiceNotifier::ServiceNotifier() {
  if (const char* s = std::getenv("NOTIFY_SOCKET"); s && *s) socket_ = s;
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  // WATCHDOG_PID names the process the manager watches: another one's variables were inherited.
  const bool ours = !pid || !*pid || std::strtol(pid, nullptr, 10) == ::getpid();
  if (active() && usec && *usec && ours) {
    char* end = nullptr;
    const long long v = std::strtoll(usec, &end, 10);
    if (end && *end == '\0' && v > 0)
      watchdog_ = std::chrono::microseconds(v);
    else
      spdlog::warn("WATCHDOG_USEC='{}' is not a number of microseconds: no watchdog pings", usec);
  }
}

ServiceNotifier::~ServiceNotifier() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool ServiceNotifier::notify(const std::string& state) {
  if (!active()) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // '@' stands for the abstract namespace: a leading NUL byte.
  if (socket_.size() >= sizeof addr.sun_path || (socket_[0] != '/' && socket_[0] != '@')) {
    if (!warned_)
      spdlog::warn(
          "NOTIFY_SOCKET='{}' is not a socket path or an @abstract name: the service "
          "manager is not told of readiness",
          socket_);
    warned_ = true;
    return false;
  }
  std::memcpy(addr.sun_path, socket_.data(), socket_.size());
  if (socket_[0] == '@') addr.sun_path[0] = '\0';
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  bool sent = false;
  int err = 0;
  if (fd >= 0) {
    sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&addr),
                    len) == static_cast<ssize_t>(state.size());
    err = errno;
    ::close(fd);
  } else {
    err = errno;
  }
  if (!sent && !warned_) {
    spdlog::warn("cannot notify the service manager at NOTIFY_SOCKET={}: {}", socket_,
                 std::strerror(err));
    warned_ = true;
  }
  return sent;
}

void ServiceNotifier::start_watchdog(std::function<bool()> alive) {
  if (!watchdog_ || thread_.joinable()) return;
  const auto every = *watchdog_ / 2;
  spdlog::info("watchdog: telling the service manager every {} ms that the server answers",
               std::chrono::duration_cast<std::chrono::milliseconds>(every).count());
  thread_ = std::thread([this, every, alive = std::move(alive)] {
    bool was_alive = true;
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, every, [this] { return stop_; })) {
      lock.unlock();
      const bool ok = alive();
      if (ok) notify("WATCHDOG=1");
      if (ok != was_alive)
        ok ? spdlog::info("watchdog: the server answers again")
           : spdlog::error(
                 "watchdog: the server did not answer GET /health; the service "
                 "manager is not told it is alive");
      was_alive = ok;
      lock.lock();
    }
  });
}

}  // namespace kiln::cli
