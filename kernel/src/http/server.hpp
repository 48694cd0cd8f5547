// The HTTP server: Boost.Beast on an Asio thread pool, dispatching on a Router. This header does
// not include Beast; only server.cpp does.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "http/metrics.hpp"
#include "http/router.hpp"

namespace kiln::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: an ephemeral port (the chosen one is logged and returned by start())
  int threads = 0;  // 0: one per core
  std::size_t header_limit = 16 * 1024;
  std::size_t body_limit = 1024 * 1024;              // routes may set their own
  std::chrono::milliseconds request_timeout{30000};  // reading one request, headers to body
  std::chrono::milliseconds idle_timeout{60000};     // a kept-alive connection without a request
  std::chrono::milliseconds drain_timeout{10000};
  // Connections open at once; one more is answered 503 (Retry-After) and closed unread. The
  // process's open-file limit is raised (up to its hard limit) to hold this many.
  std::size_t max_connections = 1024;
  // Connections open at once from one client address; one more is answered 503 the same way.
  // 0: no cap per client (the default: a server on loopback, or behind a reverse proxy, sees
  // every client at one address).
  std::size_t max_connections_per_client = 0;
  bool access_log = true;
  // Paths whose answers below 400 the access log leaves out (monitoring probes: "/health",
  // "/ready", "/metrics"); their errors are logged as any other.
  std::vector<std::string> access_log_skip;
  // Browser origins allowed to call the API from their pages (CORS), e.g.
  // "https://dash.example:8443"; "*" allows any. Empty: no CORS headers, as for any non-browser
  // client. Preflights (OPTIONS) need no key; the requests they clear still do.
  std::vector<std::string> cors_origins;
};

class Server {
 public:
  Server(ServerOptions options, const Router& router, Authenticator auth,
         std::shared_ptr<HttpMetrics> metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts the I/O threads; returns the bound port. Throws std::runtime_error naming
  // the address when it cannot bind.
  std::uint16_t start();
  // Graceful drain: new requests get 503 (Connection: close), requests in flight finish (up to
  // drain_timeout), then the threads stop. Idempotent.
  void drain_and_stop();
  std::int64_t in_flight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::http
