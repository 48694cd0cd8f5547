// HTTP metrics for /metrics: requests by route, method and status, and a latency histogram per
// route. Recording takes one short lock on a per-route shard.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace kiln::http {

class HttpMetrics {
 public:
  // `routes`: the route patterns, indexed as the router's table; one more slot for "unmatched"
  // (no route's path), then one per route for a request to its path with a method no route of
  // that path answers (405: method="other").
  explicit HttpMetrics(std::vector<std::pair<std::string, std::string>> routes);
  void record(std::size_t slot, int status, double seconds);
  std::size_t unmatched() const { return routes_.size(); }
  std::size_t other_method(std::size_t route) const { return routes_.size() + 1 + route; }
  // Connections refused for server.max_connections (or max_connections_per_client), and those
  // open (set by the server).
  void count_refused_connection() { refused_connections_.fetch_add(1, std::memory_order_relaxed); }
  void add_open_connections(std::int64_t n) {
    open_connections_.fetch_add(n, std::memory_order_relaxed);
  }
  // Prometheus text exposition (version 0.0.4) of the HTTP families.
  void expose(std::string& out) const;

  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

 private:
  // Lock-free: one counter per status code (100-599) and per bucket.
  struct Shard {
    std::array<std::atomic<std::uint64_t>, 500> by_status{};
    std::array<std::atomic<std::uint64_t>, kBuckets.size() + 1> buckets{};  // last: +Inf
    std::atomic<std::uint64_t> sum_ns{0};
    std::atomic<std::uint64_t> count{0};
  };
  std::vector<std::pair<std::string, std::string>> routes_;  // (method, pattern)
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<std::uint64_t> refused_connections_{0};
  std::atomic<std::int64_t> open_connections_{0};
};

// Escapes a label value for the text exposition format.
std::string prom_label(const std::string& v);

// The families every Prometheus client library exports for its process, as Prometheus names them
// (process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds, process_start_time_seconds; from /proc and getrusage), and
// kiln_build_info{version, abi, boost} 1.
void expose_process(std::string& out);

}  // namespace kiln::http
