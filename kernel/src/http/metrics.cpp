#include "http/metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/version.hpp>

#include "common/json_text.hpp"
#include "kiln/abi.hpp"

namespace kiln::http {

HttpMetrics::HttpMetrics(std::vector<std::pair<std::string, std::string>> routes)
    : routes_(std::move(routes)) {
  for (std::size_t i = 0; i <= 2 * routes_.size(); ++i)
    shards_.push_back(std::make_unique<Shard>());
}

void HttpMetrics::record(std::size_t slot, int status, double seconds) {
  Shard& s = *shards_[std::min(slot, shards_.size() - 1)];
  std::size_t b = 0;
  while (b < kBuckets.size() && seconds > kBuckets[b]) ++b;
  if (status >= 100 && status < 600)
    s.by_status[static_cast<std::size_t>(status - 100)].fetch_add(1, std::memory_order_relaxed);
  s.buckets[b].fetch_add(1, std::memory_order_relaxed);
  s.sum_ns.fetch_add(static_cast<std::uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  s.count.fetch_add(1, std::memory_order_relaxed);
}

std::string prom_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\', out += c;
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void HttpMetrics::expose(std::string& out) const {
  char num[64];
  // HEAD is counted with its route's GET (the same answer without the body).
  auto route_labels = [&](std::size_t i) {
    if (i == routes_.size()) return std::string("method=\"other\",route=\"unmatched\"");
    if (i > routes_.size())
      return "method=\"other\",route=\"" + prom_label(routes_[i - routes_.size() - 1].second) +
             "\"";
    return "method=\"" + routes_[i].first + "\",route=\"" + prom_label(routes_[i].second) + "\"";
  };
  out +=
      "# HELP kiln_http_requests_total HTTP requests answered, by route and status (method "
      "\"other\": OPTIONS (a CORS preflight) or a method the route's path does not answer; route "
      "\"unmatched\": a path no "
      "route answers, or a request too malformed to route).\n";
  out += "# TYPE kiln_http_requests_total counter\n";
  for (std::size_t i = 0; i < shards_.size(); ++i)
    for (std::size_t code = 0; code < shards_[i]->by_status.size(); ++code)
      if (auto n = shards_[i]->by_status[code].load(std::memory_order_relaxed))
        out += "kiln_http_requests_total{" + route_labels(i) + ",status=\"" +
               std::to_string(code + 100) + "\"} " + std::to_string(n) + "\n";
  out += "# HELP kiln_http_request_duration_seconds Time from a full request to its response.\n";
  out += "# TYPE kiln_http_request_duration_seconds histogram\n";
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    const Shard& s = *shards_[i];
    const auto count = s.count.load(std::memory_order_relaxed);
    if (count == 0) continue;
    const std::string labels = route_labels(i);
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b <= kBuckets.size(); ++b) {
      cumulative += s.buckets[b].load(std::memory_order_relaxed);
      std::string le = "+Inf";
      if (b < kBuckets.size()) {
        std::snprintf(num, sizeof num, "%g", kBuckets[b]);
        le = num;
      }
      out += "kiln_http_request_duration_seconds_bucket{" + labels + ",le=\"" + le + "\"} " +
             std::to_string(cumulative) + "\n";
    }
    std::snprintf(num, sizeof num, "%.9g",
                  static_cast<double>(s.sum_ns.load(std::memory_order_relaxed)) / 1e9);
    out += "kiln_http_request_duration_seconds_sum{" + labels + "} " + num + "\n";
    out += "kiln_http_request_duration_seconds_count{" + labels + "} " + std::to_string(s.count) +
           "\n";
  }
  out +=
      "# HELP kiln_http_connections_open Client connections open now.\n"
      "# TYPE kiln_http_connections_open gauge\n"
      "kiln_http_connections_open " +
      std::to_string(open_connections_.load(std::memory_order_relaxed)) +
      "\n# HELP kiln_http_connections_refused_total Connections answered 503 and closed unread: "
      "server.max_connections were open, or server.max_connections_per_client from its address.\n"
      "# TYPE kiln_http_connections_refused_total counter\n"
      "kiln_http_connections_refused_total " +
      std::to_string(refused_connections_.load(std::memory_order_relaxed)) + "\n";
}

void expose_process(std::string& out) {
  auto family = [&](const char* name, const char* type, const char* help, double value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + common::number_text(value) + "\n";
  };
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    family("process_cpu_seconds_total", "counter",
           "Total user and system CPU time spent in seconds.",
           static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  if (std::ifstream statm("/proc/self/statm"); statm) {
    double size = 0, resident = 0;
    if (statm >> size >> resident) {
      family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", size * page);
      family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
             resident * page);
    }
  }
  std::error_code ec;
  double fds = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec))
    ++fds;
  if (!ec) family("process_open_fds", "gauge", "Number of open file descriptors.", fds);
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    family("process_max_fds", "gauge", "Maximum number of open file descriptors.",
           static_cast<double>(rl.rlim_cur));
  // The start: the process's start in clock ticks after boot (field 22 of /proc/self/stat, after
  // the command name in parentheses) plus the boot time (/proc/stat btime).
  std::ifstream stat("/proc/self/stat"), sys("/proc/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  double btime = -1;
  for (std::string key; sys >> key;)
    if (key == "btime") {
      sys >> btime;
      break;
    }
  if (const auto close = text.rfind(')'); close != std::string::npos && btime >= 0) {
    std::istringstream fields(text.substr(close + 2));
    std::string f;
    for (int i = 3; i <= 22 && fields >> f; ++i)
      if (i == 22)
        family("process_start_time_seconds", "gauge",
               "Start time of the process since unix epoch in seconds.",
               btime + std::stod(f) / static_cast<double>(sysconf(_SC_CLK_TCK)));
  }
  out += std::string("# HELP kiln_build_info This kiln's version, plugin ABI and Boost.\n") +
         "# TYPE kiln_build_info gauge\nkiln_build_info{version=\"" + prom_label(kVersion) +
         "\",abi=\"" + std::to_string(kAbiVersion) + "\",boost=\"" + prom_label(BOOST_LIB_VERSION) +
         "\"} 1\n";
}

}  // namespace kiln::http
