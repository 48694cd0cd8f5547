// Node kinds known to the kernel: for each, its default node, contract version and the suites
// that gate a non-default node. Adding a kind = one descriptor here + its SDK header + testkit.
#pragma once

#include <filesystem>
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
  // Run before the suites, with the control at hand: the kind config the suites build nodes
  // with (telemetry_driver writes the control's readings into `dir`, the gates directory, for
  // device drivers to read through their own frames). Unset: {}.
  std::function<boost::json::object(const NodeMaker& control, const std::filesystem::path& dir)>
      prepare;
  std::function<testkit::SuiteReport(const NodeMaker& candidate,
                                     const boost::json::object& kind_config)>
      contract;
  std::function<testkit::SuiteReport(const NodeMaker& control, const NodeMaker& candidate,
                                     const std::vector<std::string>& intended,
                                     const boost::json::object& kind_config)>
      parity;
};

// The kinds this kernel knows, in display order.
std::vector<KindDescriptor> builtin_kinds();

// Golden cases embedded at build time from tests/parity/<kind>/cases/*.json: (file, text).
std::vector<std::pair<std::string, std::string_view>> embedded_parity_cases(std::string_view kind);

}  // namespace kiln::nodes
