// Node kinds known to the kernel: for each, its default node, contract version and the suites
// that gate a non-default node. Adding a kind = one descriptor here + its SDK header + testkit.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "kiln/testkit/report.hpp"

namespace kiln::nodes {

// Builds an instance of one node for a given kind config; the pointer points at the kind's
// interface (see NodeDecl::make).
using NodeMaker = std::function<std::shared_ptr<void>(const boost::json::object& kind_config)>;

struct KindDescriptor {
  std::string kind;
  std::string default_node;
  unsigned contract_version = 0;
  std::string parity_cases_origin;  // where the golden cases come from, for the record
  std::function<testkit::SuiteReport(const NodeMaker& candidate)> contract;
  std::function<testkit::SuiteReport(const NodeMaker& control, const NodeMaker& candidate,
                                     const std::vector<std::string>& intended)>
      parity;
};

// The kinds this kernel knows, in display order.
std::vector<KindDescriptor> builtin_kinds();

// Golden cases embedded at build time from tests/parity/<kind>/cases/*.json: (file, text).
std::vector<std::pair<std::string, std::string_view>> embedded_parity_cases(std::string_view kind);

}  // namespace kiln::nodes
