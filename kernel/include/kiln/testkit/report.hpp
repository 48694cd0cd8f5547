// kiln/testkit/report.hpp — the result of a contract or parity suite.
// Both `kiln gate run` and plugin authors' Boost.Test suites consume this one type.
#pragma once

#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

namespace kiln::testkit {

struct CheckResult {
  std::string name;
  bool passed = false;
  std::string detail;     // why it failed, or what was checked
  bool intended = false;  // a parity difference the candidate declares as intended
};

struct SuiteReport {
  std::string suite;  // "contract" | "parity"
  std::vector<CheckResult> checks;

  bool passed() const {
    for (const auto& c : checks)
      if (!c.passed && !c.intended) return false;
    return !checks.empty();
  }
  void add(std::string name, bool ok, std::string detail = {}) {
    checks.push_back({std::move(name), ok, std::move(detail), false});
  }

  boost::json::object to_json() const {
    boost::json::array arr;
    for (const auto& c : checks) {
      boost::json::object o{{"name", c.name}, {"passed", c.passed}};
      if (!c.detail.empty()) o["detail"] = c.detail;
      if (c.intended) o["intended"] = true;
      arr.push_back(std::move(o));
    }
    return {{"suite", suite}, {"passed", passed()}, {"checks", std::move(arr)}};
  }
};

// The check a suite is running now (set by guarded()), for a watchdog: `kiln gate run` fails a
// check that does not finish (gates.check_timeout_s) instead of hanging with the node.
class RunningCheck {
 public:
  static RunningCheck& instance() {
    static RunningCheck c;
    return c;
  }
  void begin(const std::string& name) {
    std::lock_guard lock(mu_);
    name_ = name;
    since_ = std::chrono::steady_clock::now();
    running_ = true;
  }
  void end() {
    std::lock_guard lock(mu_);
    running_ = false;
  }
  // The check that has run for longer than `limit`, if one has.
  std::optional<std::string> overdue(std::chrono::steady_clock::duration limit) const {
    std::lock_guard lock(mu_);
    if (running_ && std::chrono::steady_clock::now() - since_ > limit) return name_;
    return std::nullopt;
  }

 private:
  mutable std::mutex mu_;
  std::string name_;
  std::chrono::steady_clock::time_point since_;
  bool running_ = false;
};

// Runs one check of a suite, turning an escaped exception into a failed check named `name`.
template <class F>
void guarded(SuiteReport& report, const std::string& name, F&& fn) {
  struct Running {
    explicit Running(const std::string& n) { RunningCheck::instance().begin(n); }
    ~Running() { RunningCheck::instance().end(); }
  } running(name);
  try {
    fn();
  } catch (const std::exception& e) {
    report.add(name, false, std::string("threw: ") + e.what());
  } catch (...) {
    report.add(name, false, "threw a non-standard exception");
  }
}

}  // namespace kiln::testkit
