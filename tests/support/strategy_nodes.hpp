// Test support: a kernel with the first-party plugins and the deliberately bad strategies
// loaded (nodes not resolved, gates and database in a temp dir), and factories for its
// tool_strategy nodes in the testkit's shape.
#pragma once

#include <memory>
#include <string>

#include <boost/test/unit_test.hpp>

#include "kiln/testkit/tool_strategy.hpp"
#include "runtime/kernel.hpp"
#include "support/process.hpp"

namespace kiln::test {

inline std::unique_ptr<runtime::Kernel> boot_strategy_kernel() {
  static TempDir gates;
  runtime::BootOptions o;
  o.environment = {};
  o.setup_logging = false;
  o.resolve_nodes = false;
  o.sets = {std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "," + KILN_TEST_PLUGIN_DIR +
                "/bad_strategies]",
            "gates.dir=" + gates.path().string(),
            "storage.path=" + (gates.path() / "kiln.db").string()};
  return runtime::Kernel::boot(o);
}

inline testkit::ToolStrategyFactory strategy_factory(runtime::Kernel& k, const std::string& node) {
  auto* entry = k.registry().find_node("tool_strategy", node);
  BOOST_REQUIRE_MESSAGE(entry, "node tool_strategy/" << node << " is not loaded");
  auto make = k.node_maker(*entry, false);
  return [make](const boost::json::object& cfg) {
    return std::static_pointer_cast<nodes::ToolStrategy>(make(cfg));
  };
}

}  // namespace kiln::test
