#include "http/metrics.hpp"

#include <cstdio>

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
    if (i == routes_.size()) return std::string("method=\"\",route=\"unmatched\"");
    if (i > routes_.size())
      return "method=\"other\",route=\"" + prom_label(routes_[i - routes_.size() - 1].second) +
             "\"";
    return "method=\"" + routes_[i].first + "\",route=\"" + prom_label(routes_[i].second) + "\"";
  };
  out +=
      "# HELP kiln_http_requests_total HTTP requests answered, by route and status (method "
      "\"other\": a method the route's path does not answer).\n";
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
}

}  // namespace kiln::http
