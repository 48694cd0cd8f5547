// The tool_strategy parity suite: golden cases (tests/parity/tool_strategy/cases) routed by the
// default node and by each candidate; the kind's comparator is exact.
#define BOOST_TEST_MODULE tool_strategy_parity
#include <fstream>
#include <sstream>

#include <boost/test/unit_test.hpp>

#include "kiln/testkit/boost_test.hpp"
#include "kiln/testkit/tool_strategy.hpp"
#include "nodes/kinds.hpp"
#include "runtime/kernel.hpp"
#include "support/strategy_nodes.hpp"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

std::vector<testkit::ToolStrategyCase> cases_from_source_tree() {
  std::vector<testkit::ToolStrategyCase> out;
  for (const auto& e :
       fs::directory_iterator(fs::path(KILN_SOURCE_DIR) / "tests/parity/tool_strategy/cases")) {
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    auto more = testkit::parse_tool_strategy_cases(ss.str(), e.path().string());
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

std::unique_ptr<runtime::Kernel> boot() {
  return test::boot_strategy_kernel();
}

testkit::ToolStrategyFactory factory(runtime::Kernel& k, const std::string& node) {
  return test::strategy_factory(k, node);
}

}  // namespace

BOOST_AUTO_TEST_CASE(golden_cases_are_present_and_embedded_identically) {
  auto cases = cases_from_source_tree();
  BOOST_TEST(cases.size() >= 7u);
  // `kiln gate run` uses the copy embedded in the binary: it must be the same data.
  std::size_t embedded = 0;
  for (const auto& [name, text] : nodes::embedded_parity_cases("tool_strategy")) {
    std::ifstream in(fs::path(KILN_SOURCE_DIR) / name);
    std::stringstream ss;
    ss << in.rdbuf();
    BOOST_TEST(ss.str() == std::string(text), name);
    ++embedded;
  }
  BOOST_TEST(embedded >= 1u);
}

BOOST_AUTO_TEST_CASE(rules_without_rules_routes_exactly_as_static) {
  auto k = boot();
  KILN_CHECK_SUITE(testkit::run_tool_strategy_parity(factory(*k, "static"), factory(*k, "rules"),
                                                     cases_from_source_tree()));
}

BOOST_AUTO_TEST_CASE(a_node_that_routes_differently_fails_parity) {
  auto k = boot();
  auto report = testkit::run_tool_strategy_parity(factory(*k, "static"), factory(*k, "last"),
                                                  cases_from_source_tree());
  BOOST_TEST(!report.passed());
  int failed = 0;
  for (const auto& c : report.checks) failed += c.passed ? 0 : 1;
  BOOST_TEST(failed >= 2);
}

BOOST_AUTO_TEST_CASE(declared_intended_differences_are_listed_not_failed) {
  auto k = boot();
  auto cases = cases_from_source_tree();
  std::vector<std::string> failing;
  for (const auto& c :
       testkit::run_tool_strategy_parity(factory(*k, "static"), factory(*k, "last"), cases).checks)
    if (!c.passed) failing.push_back(c.name);
  BOOST_TEST(failing.size() >= 2u);  // differences to declare, or the test shows nothing
  auto report =
      testkit::run_tool_strategy_parity(factory(*k, "static"), factory(*k, "last"), cases, failing);
  BOOST_TEST(report.passed());
  std::size_t listed = 0;
  for (const auto& c : report.checks)
    if (!c.passed) {
      BOOST_TEST(c.intended);
      ++listed;
    }
  BOOST_TEST(listed == failing.size());  // still there, listed as intended
}

BOOST_AUTO_TEST_CASE(the_gate_of_a_node_that_fails_parity_is_fail) {
  auto k = boot();
  auto rec = k->run_gate("tool_strategy", "last");
  BOOST_TEST(rec.contract.at("passed").as_bool());
  BOOST_TEST(!rec.parity.at("passed").as_bool());
  BOOST_TEST(!rec.passed);
}

BOOST_AUTO_TEST_CASE(malformed_cases_are_rejected_with_a_location) {
  BOOST_CHECK_EXCEPTION(
      testkit::parse_tool_strategy_cases(R"([{"name": "x", "providers": {}}])", "f.json"),
      std::invalid_argument, [](const auto& e) {
        return std::string(e.what()).find("f.json[0].requests") != std::string::npos;
      });
}
