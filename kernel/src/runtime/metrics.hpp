// Counters shared by the kernel and plugin hosts; exposed later on /metrics.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace kiln::runtime {

class Metrics {
 public:
  void add(std::string_view name, std::string_view label, double delta) {
    std::lock_guard lock(mu_);
    counters_[std::string(name) + "{" + std::string(label) + "}"] += delta;
  }
  std::map<std::string, double> snapshot() const {
    std::lock_guard lock(mu_);
    return counters_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, double> counters_;
};

// Tool calls by tool and result ("ok" or the error code), for /metrics.
class ToolMetrics {
 public:
  void record(const std::string& tool, const std::string& result, double seconds) {
    std::lock_guard lock(mu_);
    auto& c = calls_[{tool, result}];
    ++c.first;
    c.second += seconds;
  }
  void expose(std::string& out) const {
    std::lock_guard lock(mu_);
    out += "# HELP kiln_tool_calls_total Tool calls through the executor, by tool and result.\n";
    out += "# TYPE kiln_tool_calls_total counter\n";
    for (const auto& [k, v] : calls_)
      out += "kiln_tool_calls_total{tool=\"" + k.first + "\",result=\"" + k.second + "\"} " +
             std::to_string(v.first) + "\n";
    out += "# HELP kiln_tool_call_seconds_total Time spent in tool calls, by tool and result.\n";
    out += "# TYPE kiln_tool_call_seconds_total counter\n";
    for (const auto& [k, v] : calls_)
      out += "kiln_tool_call_seconds_total{tool=\"" + k.first + "\",result=\"" + k.second + "\"} " +
             std::to_string(v.second) + "\n";
  }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::pair<std::uint64_t, double>> calls_;
};

}  // namespace kiln::runtime
