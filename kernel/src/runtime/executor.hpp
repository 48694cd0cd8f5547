// ToolRuntimeExecutor: the single seam through which every tool call runs.
// It asks the tool strategy node for a provider chain and a policy, validates the input against
// the provider's schema, runs the call under its timeout, falls back along the chain on
// retryable errors, and returns a ToolResult or a typed ToolError — never an exception.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/json.hpp>

#include "kiln/nodes/tool_strategy.hpp"
#include "kiln/tool.hpp"
#include "ledger/ledger.hpp"
#include "plugins/registry.hpp"

namespace kiln::runtime {

struct ToolCall;

struct ExecutorOptions {
  // Between attempts of a retryable error: initial * 2^(attempt-1), capped at max, with jitter
  // (a uniform draw from the upper half), so retrying callers spread out.
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  // Admission before routing: rate limits and actuation policy. A returned error fails the call
  // (with code rate_limited or forbidden) without running the tool.
  std::function<std::optional<ToolError>(const ToolCall&)> admit;
  // Sees every finished call (metrics).
  std::function<void(const ToolCall&, const ToolOutcome&, double seconds)> observe;
  // Receives tool.called / tool.completed / tool.failed events; empty = no audit.
  std::function<void(std::vector<ledger::NewEvent>)> audit;
};

// The delay before retry number `retry` (1 = the first retry), jitter drawn from `unit` in [0,1).
std::chrono::milliseconds backoff_delay(const ExecutorOptions& o, int retry, double unit);

struct ToolCall {
  std::string tool;
  std::string tenant = "default";
  boost::json::value input;
  std::string request_id;
  std::optional<std::chrono::milliseconds> timeout;  // overrides the strategy's policy timeout
  std::string approved_by;  // set for mission steps a person approved (actuation policy)
  // False for the tools behind a read (a GET route's session report or prediction, which a
  // dashboard polls): not an act, so not in the ledger; /metrics still counts the call.
  bool audited = true;
};

class ToolRuntimeExecutor {
 public:
  ToolRuntimeExecutor(const std::vector<plugins::ToolEntry>& tools,
                      std::shared_ptr<const nodes::ToolStrategy> strategy,
                      ExecutorOptions options = {});

  ToolOutcome invoke(const ToolCall& call) const;
  // True when every provider of `tool` is non-blocking (runs on the caller's thread, bounded).
  bool nonblocking(std::string_view tool) const;

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
    bool actuates = false;  // a provider changes the physical world: its calls name their input
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  void audit(std::vector<ledger::NewEvent> events) const;
  ToolOutcome invoke_audited(const ToolCall& call) const;
  ToolOutcome invoke_routed(const ToolCall& call, int* attempts, std::string* provider) const;
  ToolOutcome run_one(const Provider& p, const ToolCall& call,
                      const nodes::ExecutionPolicy& policy) const;

  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> index_;
  std::shared_ptr<const nodes::ToolStrategy> strategy_;
  ExecutorOptions options_;
};

}  // namespace kiln::runtime
