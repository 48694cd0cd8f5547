// kiln's HTTP API: the route table over the kernel (health, readiness, metrics, OpenAPI,
// plugins, nodes, gates, tools, missions, ledger). Routes and handlers compile without Beast.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "auth/keys.hpp"
#include "http/metrics.hpp"
#include "http/router.hpp"
#include "runtime/kernel.hpp"

namespace kiln::missions {
class WorkerPool;
}

namespace kiln::http {

struct ApiContext {
  runtime::Kernel* kernel = nullptr;
  auth::KeyStore* keys = nullptr;
  // Woken when a mission is created; null until the pool runs (set while requests are served).
  std::atomic<missions::WorkerPool*> workers{nullptr};
  std::shared_ptr<HttpMetrics> metrics;  // set after the table is built
  std::atomic<bool> ready{false};
  // The newest ledger events checked at start (kiln_ledger_intact): 1 intact, 0 broken, -1 not
  // checked.
  std::atomic<int> ledger_intact{-1};
  std::vector<std::string> public_paths;  // routes that need no key (server.public_routes)
  const Router* router = nullptr;         // set by the caller once the table is in place
  std::once_flag openapi_once;
  std::string openapi;
};

// Builds the route table. `ctx` must outlive the router.
Router build_api(ApiContext& ctx);

// The JSON of `kiln plugins list`, `nodes` and `gate status` with --json, and of their routes.
boost::json::array plugins_json(const runtime::Kernel& k);
boost::json::array nodes_json(const runtime::Kernel& k);
boost::json::array gates_json(const runtime::Kernel& k);
boost::json::array tools_json(const runtime::Kernel& k);

// The HTTP status for a tool error code (invalid_input 422, unknown_tool 404, rate_limited 429,
// forbidden 403, timeout 504, unavailable and provider_unavailable 503, others 502/500).
int tool_error_status(const std::string& code);

}  // namespace kiln::http
