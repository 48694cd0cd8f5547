// Counters shared by the kernel and plugin hosts; exposed later on /metrics.
#pragma once

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

}  // namespace kiln::runtime
