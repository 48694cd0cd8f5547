// Counters shared by the kernel and plugin hosts, for /metrics.
#pragma once

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace kiln::runtime {

// A label value in Prometheus text: backslash, quote and line break escaped.
inline std::string prometheus_label(std::string_view v) {
  std::string o;
  for (char c : v) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

// Plugins' own counters (HostServices::count): `kiln_plugin_<name>_total{plugin="..."}`.
class Metrics {
 public:
  void add(std::string_view name, std::string_view plugin, double delta) {
    std::lock_guard lock(mu_);
    counters_[std::string(name)][std::string(plugin)] += delta;
  }
  // Prometheus text: a plugin's name may hold what a metric name cannot ('-', '.'), which
  // becomes '_'.
  void expose(std::string& out) const {
    std::lock_guard lock(mu_);
    for (const auto& [name, by_plugin] : counters_) {
      std::string metric = "kiln_plugin_";
      for (char c : name)
        metric += std::isalnum(static_cast<unsigned char>(c)) || c == '_' ? c : '_';
      metric += "_total";
      out += "# HELP " + metric + " A plugin's own counter (HostServices::count).\n";
      out += "# TYPE " + metric + " counter\n";
      for (const auto& [plugin, v] : by_plugin) {
        char number[32];
        std::snprintf(number, sizeof number, "%.17g", v);
        out += metric + "{plugin=\"" + prometheus_label(plugin) + "\"} " + number + "\n";
      }
    }
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, double, std::less<>>, std::less<>> counters_;
};

// Tool calls by tool and result ("ok" or the error code), for /metrics. Lookups of known
// (tool, result) pairs allocate nothing.
class ToolMetrics {
 public:
  void record(std::string_view tool, std::string_view result, double seconds) {
    std::lock_guard lock(mu_);
    auto t = calls_.find(tool);
    if (t == calls_.end()) t = calls_.emplace(std::string(tool), ByResult{}).first;
    auto r = t->second.find(result);
    if (r == t->second.end()) r = t->second.emplace(std::string(result), Count{}).first;
    ++r->second.calls;
    r->second.seconds += seconds;
  }
  void expose(std::string& out) const {
    std::lock_guard lock(mu_);
    out += "# HELP kiln_tool_calls_total Tool calls through the executor, by tool and result.\n";
    out += "# TYPE kiln_tool_calls_total counter\n";
    for (const auto& [tool, by] : calls_)
      for (const auto& [result, c] : by)
        out += "kiln_tool_calls_total{tool=\"" + tool + "\",result=\"" + result + "\"} " +
               std::to_string(c.calls) + "\n";
    out += "# HELP kiln_tool_call_seconds_total Time spent in tool calls, by tool and result.\n";
    out += "# TYPE kiln_tool_call_seconds_total counter\n";
    for (const auto& [tool, by] : calls_)
      for (const auto& [result, c] : by)
        out += "kiln_tool_call_seconds_total{tool=\"" + tool + "\",result=\"" + result + "\"} " +
               std::to_string(c.seconds) + "\n";
  }

 private:
  struct Count {
    std::uint64_t calls = 0;
    double seconds = 0;
  };
  using ByResult = std::map<std::string, Count, std::less<>>;
  mutable std::mutex mu_;
  std::map<std::string, ByResult, std::less<>> calls_;
};

}  // namespace kiln::runtime
