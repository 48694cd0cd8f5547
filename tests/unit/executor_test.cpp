// ToolRuntimeExecutor: the one seam every tool call runs through.
#define BOOST_TEST_MODULE runtime
#include <chrono>

#include <boost/test/unit_test.hpp>

#include "runtime/kernel.hpp"
#include "support/process.hpp"

namespace json = boost::json;
using namespace kiln;

namespace {

std::unique_ptr<runtime::Kernel> boot(std::vector<std::string> sets = {},
                                      std::map<std::string, std::string> env = {}) {
  static test::TempDir storage;
  static int n = 0;
  sets.insert(sets.begin(),
              "storage.path=" + (storage.path() / ("kiln" + std::to_string(++n) + ".db")).string());
  runtime::BootOptions o;
  o.environment = std::move(env);
  o.setup_logging = false;
  o.sets = {std::string("plugins.search_paths=[") + KILN_TEST_PLUGIN_DIR + "/test_tools," +
            KILN_TEST_PLUGIN_DIR + "/test_alt," + KILN_PLUGIN_DIR + "]"};
  for (auto& s : sets) o.sets.push_back(std::move(s));
  return runtime::Kernel::boot(o);
}

ToolOutcome call(const runtime::Kernel& k, const std::string& tool, json::value input,
                 const std::string& tenant = "default") {
  return k.executor().invoke(runtime::ToolCall{tool, tenant, std::move(input), "req-1", {}, {}});
}

}  // namespace

BOOST_AUTO_TEST_CASE(builtin_tools_run) {
  auto k = boot();
  auto noop = call(*k, "kiln.noop", json::object{});
  BOOST_REQUIRE(noop.ok());
  BOOST_TEST(noop.value().output.as_object().empty());
  auto echo = call(*k, "kiln.echo", json::array{1, "two"});
  BOOST_REQUIRE(echo.ok());
  BOOST_TEST(echo.value().output == (json::value(json::array{1, "two"})));
}

BOOST_AUTO_TEST_CASE(the_first_registered_provider_serves_by_default) {
  auto k = boot();
  auto r = call(*k, "test.echo", json::object{{"text", "hi"}}, "acme");
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r.value().output.at("provider").as_string() == "test_tools");
  BOOST_TEST(r.value().output.at("tenant").as_string() == "acme");
}

BOOST_AUTO_TEST_CASE(the_provider_map_routes_a_tool) {
  auto k = boot({"tool_strategy.providers={test.echo: test_alt}"});
  auto r = call(*k, "test.echo", json::object{{"text", "hi"}});
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r.value().output.at("provider").as_string() == "test_alt");
}

BOOST_AUTO_TEST_CASE(unknown_tool_is_a_typed_error) {
  auto k = boot();
  auto r = call(*k, "no.such.tool", json::object{});
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "unknown_tool");
  BOOST_TEST(!r.error().retryable);
}

// A third-party strategy that throws, or names a provider that does not provide the tool: a typed
// error naming what it did, not a crash or a call to nobody; a chain goes on to the next.
BOOST_AUTO_TEST_CASE(a_strategy_that_misbehaves_is_a_typed_error) {
  auto k = boot();
  struct Throws : nodes::ToolStrategy {
    Result<nodes::RouteDecision, ToolError> route(const nodes::RouteRequest&) const override {
      throw std::runtime_error("boom");
    }
  };
  struct Names : nodes::ToolStrategy {
    explicit Names(std::vector<std::string> p) : providers(std::move(p)) {}
    std::vector<std::string> providers;
    Result<nodes::RouteDecision, ToolError> route(const nodes::RouteRequest&) const override {
      nodes::RouteDecision d;
      d.providers = providers;
      d.reason = "test";
      return d;
    }
  };
  const runtime::ToolCall echo{"test.echo", "default", json::object{{"text", "hi"}}, "r", {}, {}};
  auto thrown =
      runtime::ToolRuntimeExecutor(k->registry().tools(), std::make_shared<Throws>()).invoke(echo);
  BOOST_REQUIRE(!thrown.ok());
  BOOST_TEST(thrown.error().code == "internal");
  BOOST_TEST(thrown.error().message == "the tool strategy node threw while routing: boom");
  auto nobody =
      runtime::ToolRuntimeExecutor(k->registry().tools(),
                                   std::make_shared<Names>(std::vector<std::string>{"nobody"}))
          .invoke(echo);
  BOOST_REQUIRE(!nobody.ok());
  BOOST_TEST(nobody.error().code == "provider_unavailable");
  BOOST_TEST(!nobody.error().retryable);
  BOOST_TEST(nobody.error().message.find("chose provider 'nobody' for tool 'test.echo'") !=
                 std::string::npos,
             nobody.error().message);
  auto next = runtime::ToolRuntimeExecutor(
                  k->registry().tools(),
                  std::make_shared<Names>(std::vector<std::string>{"nobody", "test_tools"}))
                  .invoke(echo);
  BOOST_TEST(next.ok(), (next.ok() ? "" : next.error().message));
}

BOOST_AUTO_TEST_CASE(input_is_validated_against_the_schema) {
  auto k = boot();
  auto missing = call(*k, "test.echo", json::object{});
  BOOST_REQUIRE(!missing.ok());
  BOOST_TEST(missing.error().code == "invalid_input");
  BOOST_TEST(
      missing.error().message.find("input.text: required field is missing") != std::string::npos,
      missing.error().message);
  auto wrong = call(*k, "test.echo", json::object{{"text", 5}});
  BOOST_REQUIRE(!wrong.ok());
  BOOST_TEST(
      wrong.error().message.find("input.text: expected string, got integer") != std::string::npos,
      wrong.error().message);
  auto sleep_extra = call(*k, "kiln.sleep", json::object{{"ms", 1}, {"extra", true}});
  BOOST_REQUIRE(!sleep_extra.ok());
  BOOST_TEST(sleep_extra.error().message.find("input.extra: unknown field") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_throwing_tool_is_contained) {
  auto k = boot();
  auto r = call(*k, "test.throw", json::object{});
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "internal");
  BOOST_TEST(r.error().message.find("deliberate failure") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_broken_output_is_an_internal_error) {
  auto k = boot();
  auto r = call(*k, "test.bad_output", json::object{});
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "internal");
  BOOST_TEST(r.error().message.find("broke its output schema") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(timeouts_really_stop_waiting) {
  auto k = boot({"tool_strategy.timeout_ms=200"});
  auto start = std::chrono::steady_clock::now();
  auto r = call(*k, "test.hang", json::object{});  // sleeps 3 s, ignores its stop token
  auto waited = std::chrono::steady_clock::now() - start;
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "timeout");
  BOOST_TEST(r.error().retryable);
  BOOST_TEST(waited < std::chrono::milliseconds(2500));
  // A cooperative tool sees its stop token and the executor still answers on time.
  start = std::chrono::steady_clock::now();
  auto s = call(*k, "kiln.sleep", json::object{{"ms", 5000}});
  BOOST_TEST((std::chrono::steady_clock::now() - start < std::chrono::milliseconds(2500)));
  BOOST_REQUIRE(!s.ok());
  BOOST_TEST(s.error().code == "timeout");
  BOOST_TEST(s.error().message.find("raise tool_strategy.timeout_ms") != std::string::npos,
             s.error().message);
  // A call's own timeout (a mission step's timeout_ms) is the one to raise, not the strategy's.
  runtime::ToolCall own;
  own.tool = "kiln.sleep";
  own.input = json::object{{"ms", 5000}};
  own.timeout = std::chrono::milliseconds(100);
  start = std::chrono::steady_clock::now();
  auto o = k->executor().invoke(own);
  // Its own 100 ms, not the strategy's 200 (nor the sleep's 5 s).
  BOOST_TEST((std::chrono::steady_clock::now() - start < std::chrono::milliseconds(2500)));
  BOOST_REQUIRE(!o.ok());
  BOOST_TEST(o.error().message.find("within 100 ms; raise the call's timeout (a mission step's "
                                    "timeout_ms)") != std::string::npos,
             o.error().message);
}

BOOST_AUTO_TEST_CASE(a_blocking_tool_within_its_timeout_answers) {
  auto k = boot();
  auto r = call(*k, "kiln.sleep", json::object{{"ms", 20}});
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r.value().output.at("slept_ms").as_int64() == 20);
}

BOOST_AUTO_TEST_CASE(retryable_errors_fall_back_along_the_chain) {
  // rules: test.flaky goes to test_tools first (always unavailable), then test_alt.
  const std::string rules =
      "plugin_config.strategy_rules.rules=[{name: flaky-fallback, match: {tool: 'test.*'}, "
      "providers: [test_tools, test_alt]}]";
  auto k = boot({rules, "gates.enforce=warn"}, {{"KILN_TOOL_STRATEGY_NODE", "rules"}});
  auto r = call(*k, "test.flaky", json::object{});
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r.value().output.at("provider").as_string() == "test_alt");
  // A non-retryable error stops the chain.
  auto fatal = call(*k, "test.fatal", json::object{});
  BOOST_REQUIRE(!fatal.ok());
  BOOST_TEST(fatal.error().code == "bad_request");
}

BOOST_AUTO_TEST_CASE(without_a_fallback_the_retryable_error_is_returned) {
  auto k =
      boot({"tool_strategy.providers={test.flaky: test_tools}", "tool_strategy.max_attempts=3"});
  auto r = call(*k, "test.flaky", json::object{});
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "unavailable");
  BOOST_TEST(r.error().retryable);
}

BOOST_AUTO_TEST_CASE(backoff_doubles_with_jitter_and_a_cap) {
  runtime::ExecutorOptions o;
  o.backoff_initial = std::chrono::milliseconds(100);
  o.backoff_max = std::chrono::milliseconds(1000);
  BOOST_TEST(runtime::backoff_delay(o, 1, 0.0).count() == 50);
  BOOST_TEST(runtime::backoff_delay(o, 1, 0.999).count() == 99);
  BOOST_TEST(runtime::backoff_delay(o, 3, 0.0).count() == 200);
  BOOST_TEST(runtime::backoff_delay(o, 3, 0.999).count() == 399);
  BOOST_TEST(runtime::backoff_delay(o, 10, 0.999).count() == 999);  // capped at max
  BOOST_TEST(runtime::backoff_delay(o, 60, 0.0).count() == 500);    // no overflow
}

BOOST_AUTO_TEST_CASE(retryable_errors_are_retried_with_backoff) {
  auto k = boot({"tool_strategy.max_attempts=3", "runtime.backoff_initial_ms=40"});
  auto start = std::chrono::steady_clock::now();
  auto r = call(*k, "test.third_time", json::object{});
  auto waited = std::chrono::steady_clock::now() - start;
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r.value().output.at("calls").as_int64() == 3);
  // Two backoffs: at least 20 ms + 40 ms (the lower halves of 40 and 80).
  BOOST_TEST(waited >= std::chrono::milliseconds(60));
  // With one attempt the same tool fails.
  auto once = boot({"tool_strategy.max_attempts=1"});
  BOOST_TEST(!call(*once, "test.third_time", json::object{}).ok());
}

BOOST_AUTO_TEST_CASE(every_call_is_audited_in_the_ledger) {
  auto k = boot();
  BOOST_REQUIRE(call(*k, "kiln.echo", json::object{{"x", 1}}, "acme").ok());
  BOOST_REQUIRE(!call(*k, "test.fatal", json::object{}, "acme").ok());
  BOOST_REQUIRE(call(*k, "kiln.sleep", json::object{{"ms", 1}}, "acme").ok());
  k->ledger().flush();
  std::vector<std::string> seen;
  ledger::ExportFilter tools;
  tools.tenant = "acme";
  tools.stream = "tools";
  k->ledger().for_each(tools, [&](const ledger::Event& e) {
    auto p = json::parse(e.payload);
    std::string line = e.kind + " " + std::string(p.at("tool").as_string());
    if (e.kind == "tool.failed") line += " " + std::string(p.at("code").as_string());
    if (e.kind == "tool.completed")
      line += " " + std::string(p.at("provider").as_string()) + " " +
              std::to_string(p.at("attempts").as_int64());
    seen.push_back(line);
  });
  // Non-blocking tools: one event with the outcome. Blocking ones: marked as called first.
  BOOST_TEST(seen == (std::vector<std::string>{
                         "tool.completed kiln.echo kiln 1", "tool.failed test.fatal bad_request",
                         "tool.called kiln.sleep", "tool.completed kiln.sleep kiln 1"}),
             boost::test_tools::per_element());
  BOOST_TEST(k->ledger().verify().ok);
  auto quiet = boot({"runtime.audit_tool_calls=false"});
  BOOST_REQUIRE(call(*quiet, "kiln.noop", json::object{}).ok());
  BOOST_TEST(!std::filesystem::exists(quiet->storage_path()));  // nothing opened, nothing written
}
