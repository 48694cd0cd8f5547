// ToolRuntimeExecutor: the single seam through which every tool call runs.
// It asks the tool strategy node for a provider chain and a policy, validates the input against
// the provider's schema, runs the call under its timeout, falls back along the chain on
// retryable errors, and returns a ToolResult or a typed ToolError — never an exception.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/json.hpp>

#include "kiln/nodes/tool_strategy.hpp"
#include "kiln/tool.hpp"
#include "plugins/registry.hpp"

namespace kiln::runtime {

struct ToolCall {
  std::string tool;
  std::string tenant = "default";
  boost::json::value input;
  std::string request_id;
};

class ToolRuntimeExecutor {
 public:
  ToolRuntimeExecutor(const std::vector<plugins::ToolEntry>& tools,
                      std::shared_ptr<const nodes::ToolStrategy> strategy);

  ToolOutcome invoke(const ToolCall& call) const;

 private:
  struct Provider {
    std::string name;
    std::shared_ptr<Tool> tool;
    boost::json::value input_schema;
    boost::json::value output_schema;
    bool nonblocking = false;
  };
  struct Entry {
    std::vector<std::string> provider_names;  // registration order, as the strategy sees them
    std::vector<Provider> providers;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  ToolOutcome run_one(const Provider& p, const ToolCall& call,
                      const nodes::ExecutionPolicy& policy) const;

  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> index_;
  std::shared_ptr<const nodes::ToolStrategy> strategy_;
};

}  // namespace kiln::runtime
