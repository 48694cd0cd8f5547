// The tool_strategy contract suite (kiln/testkit) on every in-tree node, and on nodes broken on
// purpose, so the suite is shown to catch what it promises to catch.
#define BOOST_TEST_MODULE tool_strategy_contract
#include <boost/test/unit_test.hpp>

#include "kiln/testkit/boost_test.hpp"
#include "kiln/testkit/tool_strategy.hpp"
#include "runtime/kernel.hpp"
#include "support/strategy_nodes.hpp"

using namespace kiln;

namespace {

std::unique_ptr<runtime::Kernel> boot() {
  return test::boot_strategy_kernel();
}

testkit::ToolStrategyFactory factory(runtime::Kernel& k, const std::string& node) {
  return test::strategy_factory(k, node);
}

const testkit::CheckResult* find(const testkit::SuiteReport& r, const std::string& name) {
  for (const auto& c : r.checks)
    if (c.name == name) return &c;
  return nullptr;
}

}  // namespace

BOOST_AUTO_TEST_CASE(static_default_node_meets_the_contract) {
  auto k = boot();
  KILN_CHECK_SUITE(testkit::run_tool_strategy_contract(factory(*k, "static")));
}

BOOST_AUTO_TEST_CASE(rules_node_meets_the_contract) {
  auto k = boot();
  KILN_CHECK_SUITE(testkit::run_tool_strategy_contract(factory(*k, "rules")));
}

BOOST_AUTO_TEST_CASE(a_nondeterministic_node_fails_the_contract) {
  auto k = boot();
  auto report = testkit::run_tool_strategy_contract(factory(*k, "flipper"));
  BOOST_TEST(!report.passed());
  auto* det = find(report, "deterministic");
  BOOST_REQUIRE(det);
  BOOST_TEST(!det->passed);
}

BOOST_AUTO_TEST_CASE(a_factory_that_throws_fails_the_contract_instead_of_crashing) {
  auto report = testkit::run_tool_strategy_contract(
      [](const boost::json::object&) -> std::shared_ptr<nodes::ToolStrategy> {
        throw std::runtime_error("cannot build");
      });
  BOOST_TEST(!report.passed());
  BOOST_TEST(report.checks.at(0).detail.find("cannot build") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_gate_records_a_failing_contract_as_fail) {
  auto k = boot();
  auto rec = k->run_gate("tool_strategy", "flipper");
  BOOST_TEST(!rec.passed);
  auto state = k->gates().check(*k->registry().find_node("tool_strategy", "flipper"), false, 1);
  BOOST_TEST(state.state == gates::GateState::kFailed);
}
