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

// What a gate is running now — a suite's check (set by guarded()), and within or beside one the
// node's factory or destructor, or the kind's preparation — for a watchdog: `kiln gate run` fails
// what does not finish (gates.check_timeout_s) instead of hanging with the node. Nested: the
// outermost step's time counts, the innermost names where it stands. One stack for the process:
// the suites run their steps on one thread, in order (a node made or destroyed on another thread
// while a check runs would pop the check's entry).
class RunningCheck {
 public:
  static RunningCheck& instance() {
    static RunningCheck c;
    return c;
  }
  void begin(const std::string& name) {
    std::lock_guard lock(mu_);
    running_.push_back({name, std::chrono::steady_clock::now()});
  }
  void end() {
    std::lock_guard lock(mu_);
    if (!running_.empty()) running_.pop_back();
  }
  // What has run for longer than `limit`, if anything has: "check" or "check (while inner)".
  std::optional<std::string> overdue(std::chrono::steady_clock::duration limit) const {
    std::lock_guard lock(mu_);
    if (running_.empty() || std::chrono::steady_clock::now() - running_.front().since <= limit)
      return std::nullopt;
    if (running_.size() == 1) return running_.front().name;
    return running_.front().name + " (while " + running_.back().name + ")";
  }
  // begin() for its lifetime.
  class Scope {
   public:
    explicit Scope(const std::string& name) { RunningCheck::instance().begin(name); }
    ~Scope() { RunningCheck::instance().end(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };

 private:
  struct Step {
    std::string name;
    std::chrono::steady_clock::time_point since;
  };
  mutable std::mutex mu_;
  std::vector<Step> running_;
};

// Runs one check of a suite, turning an escaped exception into a failed check named `name`.
template <class F>
void guarded(SuiteReport& report, const std::string& name, F&& fn) {
  RunningCheck::Scope running(name);
  try {
    fn();
  } catch (const std::exception& e) {
    report.add(name, false, std::string("threw: ") + e.what());
  } catch (...) {
    report.add(name, false, "threw a non-standard exception");
  }
}

}  // namespace kiln::testkit
