// kiln/testkit/boost_test.hpp — Boost.Test adapters for the testkit suites.
// Each check of a SuiteReport becomes one Boost.Test assertion with the check's name and detail,
// so a failing contract reads like any other failing test.
#pragma once

#include <boost/test/unit_test.hpp>

#include "kiln/testkit/report.hpp"

namespace kiln::testkit {

inline void require_suite(const SuiteReport& report) {
  BOOST_TEST_CONTEXT("kiln " << report.suite << " suite") {
    BOOST_TEST(!report.checks.empty(), "the suite ran no check");
    for (const auto& c : report.checks) {
      if (c.intended) {
        BOOST_TEST_MESSAGE("intended difference: " << c.name << ": " << c.detail);
        continue;
      }
      BOOST_TEST(c.passed, c.name << ": " << c.detail);
    }
  }
}

}  // namespace kiln::testkit

// Runs a suite and checks every result: KILN_CHECK_SUITE(run_tool_strategy_contract(factory));
#define KILN_CHECK_SUITE(expr) ::kiln::testkit::require_suite(expr)
