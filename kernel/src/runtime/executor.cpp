#include "runtime/executor.hpp"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <system_error>
#include <thread>

#include <spdlog/spdlog.h>

#include "runtime/json_schema.hpp"

namespace kiln::runtime {
namespace json = boost::json;

namespace {

const std::vector<std::string> kNoProviders;

// Calls the tool, converting escaped exceptions into ToolError: a plugin's throw never
// crosses the executor.
ToolOutcome call_guarded(Tool& tool, const json::value& input, const ToolContext& ctx,
                         const std::string& provider) {
  try {
    return tool.invoke(input, ctx);
  } catch (const std::exception& e) {
    return tool_error(error_code::kInternal,
                      "tool '" + ctx.tool + "' (provider " + provider + ") threw: " + e.what());
  } catch (...) {
    return tool_error(error_code::kInternal, "tool '" + ctx.tool + "' (provider " + provider +
                                                 ") threw a non-standard exception");
  }
}

// State shared between a caller waiting with a deadline and the worker running the call. The
// worker owns a reference, so a caller that stops waiting leaves nothing dangling.
struct PendingCall {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<ToolOutcome> outcome;
  std::stop_source stop;
};

}  // namespace

std::chrono::milliseconds backoff_delay(const ExecutorOptions& o, int retry, double unit) {
  double full = static_cast<double>(o.backoff_initial.count());
  for (int i = 1; i < retry && full < static_cast<double>(o.backoff_max.count()); ++i) full *= 2;
  full = std::min(full, static_cast<double>(o.backoff_max.count()));
  return std::chrono::milliseconds(static_cast<std::int64_t>(full / 2 + unit * full / 2));
}

ToolRuntimeExecutor::ToolRuntimeExecutor(const std::vector<plugins::ToolEntry>& tools,
                                         std::shared_ptr<const nodes::ToolStrategy> strategy,
                                         ExecutorOptions options)
    : strategy_(std::move(strategy)), options_(std::move(options)) {
  for (const auto& t : tools) {
    if (!t.tool) continue;
    auto& e = index_[t.name];
    e.actuates = e.actuates || t.actuates;
    e.provider_names.push_back(t.provider);
    e.providers.push_back(
        Provider{t.provider, t.tool, t.input_schema, t.output_schema, t.nonblocking});
  }
}

ToolOutcome ToolRuntimeExecutor::run_one(const Provider& p, const ToolCall& call,
                                         const nodes::ExecutionPolicy& policy) const {
  const auto deadline = std::chrono::steady_clock::now() + policy.timeout;
  if (p.nonblocking) {
    ToolContext ctx{call.tool, call.tenant, call.request_id, deadline, {}, call.approved_by};
    return call_guarded(*p.tool, call.input, ctx, p.name);
  }
  // A blocking tool runs on its own thread so the caller can stop waiting at the deadline. A
  // tool that ignores its stop token keeps its thread until it returns; isolated execution (a
  // child process) is the remedy for tools that may hang.
  auto pending = std::make_shared<PendingCall>();
  ToolContext ctx{
      call.tool,       call.tenant, call.request_id, deadline, pending->stop.get_token(),
      call.approved_by};
  try {
    std::thread([pending, tool = p.tool, input = call.input, ctx, provider = p.name] {
      auto outcome = call_guarded(*tool, input, ctx, provider);
      std::lock_guard lock(pending->mu);
      pending->outcome.emplace(std::move(outcome));
      pending->cv.notify_all();
    }).detach();
  } catch (const std::system_error& e) {
    return tool_error(error_code::kUnavailable,
                      "cannot start a worker thread for tool '" + call.tool + "': " + e.what(),
                      true);
  }
  std::unique_lock lock(pending->mu);
  if (!pending->cv.wait_until(lock, deadline, [&] { return pending->outcome.has_value(); })) {
    pending->stop.request_stop();
    return tool_error(error_code::kTimeout,
                      "tool '" + call.tool + "' (provider " + p.name + ") did not answer within " +
                          std::to_string(policy.timeout.count()) + " ms; raise " +
                          (call.timeout ? std::string("the call's timeout (a mission step's "
                                                      "timeout_ms)")
                                        : std::string("tool_strategy.timeout_ms")) +
                          " if it needs longer",
                      /*retryable=*/true);
  }
  return std::move(*pending->outcome);
}

void ToolRuntimeExecutor::audit(std::vector<ledger::NewEvent> events) const {
  // The audit trail must not turn a tool call into an exception: a storage problem is logged
  // (and counted by the ledger for failures after queueing).
  try {
    options_.audit(std::move(events));
  } catch (const std::exception& e) {
    spdlog::error("tool-call audit event not recorded: {}", e.what());
  }
}

ToolOutcome ToolRuntimeExecutor::invoke(const ToolCall& call) const {
  if (!options_.observe) return invoke_audited(call);
  const auto start = std::chrono::steady_clock::now();
  ToolOutcome outcome = invoke_audited(call);
  options_.observe(call, outcome,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return outcome;
}

ToolOutcome ToolRuntimeExecutor::invoke_audited(const ToolCall& call) const {
  if (!options_.audit || !call.audited) {
    int attempts = 0;
    std::string provider;
    return invoke_routed(call, &attempts, &provider);
  }
  const auto start = std::chrono::steady_clock::now();
  // A call that may take long (or hang) is marked as started at once (tool.called). A
  // non-blocking one (bounded by contract) records only its outcome: a tool.called committed in
  // the same group as the outcome would say nothing more.
  const bool blocking = !nonblocking(call.tool);
  // One event each, moved into the vector (a braced list would copy the payload).
  auto one = [](ledger::NewEvent e) {
    std::vector<ledger::NewEvent> v;
    v.push_back(std::move(e));
    return v;
  };
  if (blocking)
    audit(one({call.tenant, "tools", "tool.called",
               json::object{{"tool", call.tool}, {"request_id", call.request_id}}}));
  int attempts = 0;
  std::string provider;
  ToolOutcome outcome = invoke_routed(call, &attempts, &provider);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  json::object done{{"tool", call.tool},
                    {"request_id", call.request_id},
                    {"provider", provider},
                    {"attempts", attempts},
                    {"duration_us", us}};
  if (!outcome.ok()) {
    done["code"] = outcome.error().code;
    done["message"] = outcome.error().message;
    done["retryable"] = outcome.error().retryable;
  }
  // A command to a machine is in the ledger with what it asked and who approved it, carried out
  // or refused (roaster.command: setting and value).
  if (auto it = index_.find(call.tool); it != index_.end() && it->second.actuates) {
    done["input"] = call.input;
    if (!call.approved_by.empty()) done["approved_by"] = call.approved_by;
  }
  audit(one(
      {call.tenant, "tools", outcome.ok() ? "tool.completed" : "tool.failed", std::move(done)}));
  return outcome;
}

bool ToolRuntimeExecutor::nonblocking(std::string_view tool) const {
  auto it = index_.find(tool);
  if (it == index_.end()) return true;  // fails at once: unknown tool
  for (const auto& p : it->second.providers)
    if (!p.nonblocking) return false;
  return true;
}

ToolOutcome ToolRuntimeExecutor::invoke_routed(const ToolCall& call, int* attempts,
                                               std::string* provider_used) const {
  if (options_.admit)
    if (auto refused = options_.admit(call)) return Unexpected<ToolError>{std::move(*refused)};
  auto it = index_.find(call.tool);
  const Entry* entry = it == index_.end() ? nullptr : &it->second;
  const auto& names = entry ? entry->provider_names : kNoProviders;

  auto decision = [&]() -> Result<nodes::RouteDecision, ToolError> {
    try {
      return strategy_->route(nodes::RouteRequest{call.tool, call.tenant, call.input, names});
    } catch (const std::exception& e) {
      return tool_error(error_code::kInternal,
                        std::string("the tool strategy node threw while routing: ") + e.what());
    }
  }();
  if (!decision.ok()) return Unexpected<ToolError>{std::move(decision.error())};
  auto route = std::move(decision.value());
  if (call.timeout) route.policy.timeout = *call.timeout;

  std::optional<ToolError> last;
  for (const auto& provider_name : route.providers) {
    const Provider* p = nullptr;
    if (entry)
      for (const auto& candidate : entry->providers)
        if (candidate.name == provider_name) p = &candidate;
    if (!p) {
      last = ToolError{error_code::kProviderUnavailable,
                       "the tool strategy chose provider '" + provider_name + "' for tool '" +
                           call.tool + "', which does not provide it",
                       false,
                       {}};
      continue;
    }
    if (auto err = validate_json(p->input_schema, call.input)) {
      auto refused = tool_error(error_code::kInvalidInput, "tool '" + call.tool + "': " + *err);
      refused.error.details = json::object{{"field", err->substr(0, err->find(':'))}};
      return refused;
    }

    *provider_used = p->name;
    for (int attempt = 0; attempt < std::max(1, route.policy.max_attempts); ++attempt) {
      if (attempt > 0) {
        thread_local std::minstd_rand rng{std::random_device{}()};
        std::uniform_real_distribution<double> unit(0.0, 1.0);
        std::this_thread::sleep_for(backoff_delay(options_, attempt, unit(rng)));
      }
      ++*attempts;
      ToolOutcome outcome = run_one(*p, call, route.policy);
      if (outcome.ok()) {
        if (auto err = validate_json(p->output_schema, outcome.value().output, "output"))
          return tool_error(error_code::kInternal, "tool '" + call.tool + "' (provider " + p->name +
                                                       ") broke its output schema: " + *err);
        return outcome;
      }
      last = std::move(outcome.error());
      if (!last->retryable) return Unexpected<ToolError>{std::move(*last)};
    }
  }
  if (!last) return tool_error(error_code::kInternal, "the tool strategy returned no provider");
  return Unexpected<ToolError>{std::move(*last)};
}

}  // namespace kiln::runtime
