// kiln/testkit/report.hpp — the result of a contract or parity suite.
// Both `kiln gate run` and plugin authors' Boost.Test suites consume this one type.
#pragma once

#include <exception>
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

// Runs one check of a suite, turning an escaped exception into a failed check named `name`.
template <class F>
void guarded(SuiteReport& report, const std::string& name, F&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    report.add(name, false, std::string("threw: ") + e.what());
  } catch (...) {
    report.add(name, false, "threw a non-standard exception");
  }
}

}  // namespace kiln::testkit
