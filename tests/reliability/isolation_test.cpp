// Isolated execution: tools that segfault, abort, throw or hang run in a child node-host; the
// parent stays up, each call fails with a typed error, and the child restarts with backoff.
#define BOOST_TEST_MODULE isolation
#include <thread>

#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include "runtime/kernel.hpp"
#include "support/process.hpp"

namespace json = boost::json;
using namespace kiln;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<runtime::Kernel> boot(bool isolated, std::vector<std::string> extra = {}) {
  static test::TempDir storage;
  runtime::BootOptions o;
  o.environment = {};
  o.setup_logging = false;
  o.sets = {std::string("plugins.search_paths=[") + KILN_TEST_PLUGIN_DIR + "/test_crash]",
            std::string("runtime.node_host_exe=") + KILN_TEST_BIN,
            "storage.path=" + (storage.path() / "kiln.db").string(),
            "tool_strategy.timeout_ms=1000"};
  if (isolated) o.sets.push_back("runtime.isolated_plugins=[test_crash]");
  for (auto& e : extra) o.sets.push_back(std::move(e));
  return runtime::Kernel::boot(o);
}

std::string why(const ToolOutcome& r) {
  return r.ok() ? "ok" : r.error().message;
}

ToolOutcome call(runtime::Kernel& k, const std::string& tool) {
  return k.executor().invoke(runtime::ToolCall{tool, "default", json::object{}, "r", {}, {}});
}

// Waits out the restart backoff, then expects a new child to answer again — in a child still, not
// in this process.
void expect_recovery(runtime::Kernel& k, std::chrono::milliseconds backoff) {
  auto early = call(k, "crash.pid");
  BOOST_REQUIRE(!early.ok());
  BOOST_TEST(early.error().code == "unavailable");
  BOOST_TEST(early.error().retryable);
  BOOST_TEST(early.error().message.find("restarting in") != std::string::npos);
  std::this_thread::sleep_for(backoff + 100ms);
  auto later = call(k, "crash.pid");
  BOOST_REQUIRE_MESSAGE(later.ok(), why(later));
  BOOST_TEST(later.value().output.at("pid").as_int64() != static_cast<std::int64_t>(::getpid()));
}

}  // namespace

BOOST_AUTO_TEST_CASE(tools_run_in_a_child_process_with_the_plugin_config) {
  auto k = boot(true, {"plugin_config.test_crash.marker=from-parent"});
  auto r = call(*k, "crash.pid");
  BOOST_REQUIRE_MESSAGE(r.ok(), why(r));
  BOOST_TEST(r.value().output.at("pid").as_int64() != static_cast<std::int64_t>(::getpid()));
  BOOST_TEST(r.value().output.at("marker").as_string() == "from-parent");
}

// A tool's files come back from the child whole (they were dropped: a report tool run isolated
// listed no files), and the child goes on serving calls after them.
BOOST_AUTO_TEST_CASE(an_isolated_tools_files_come_back_whole) {
  auto k = boot(true);
  for (int round = 0; round < 2; ++round) {
    auto r = call(*k, "crash.files");
    BOOST_REQUIRE_MESSAGE(r.ok(), why(r));
    BOOST_TEST(r.value().output.at("pid").as_int64() != static_cast<std::int64_t>(::getpid()));
    const auto& files = r.value().artifacts;
    BOOST_REQUIRE_EQUAL(files.size(), 2u);
    BOOST_TEST(files[0].name == "all.bin");
    BOOST_TEST(files[0].media_type == "application/octet-stream");
    BOOST_REQUIRE_EQUAL(files[0].data.size(), 768u);
    for (std::size_t i = 0; i < files[0].data.size(); ++i)
      BOOST_REQUIRE_EQUAL(static_cast<unsigned char>(files[0].data[i]), i % 256);
    BOOST_TEST(files[1].name == "empty.txt");
    BOOST_TEST(files[1].data.empty());
    auto next = call(*k, "crash.pid");
    BOOST_REQUIRE_MESSAGE(next.ok(), why(next));
  }
}

BOOST_AUTO_TEST_CASE(a_segfault_fails_the_call_and_the_child_restarts_with_backoff) {
  auto k = boot(true);
  BOOST_REQUIRE(call(*k, "crash.pid").ok());
  auto r = call(*k, "crash.segfault");
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "crashed");
  BOOST_TEST(r.error().message.find("SEGV") != std::string::npos, r.error().message);
  expect_recovery(*k, 1000ms);
}

BOOST_AUTO_TEST_CASE(failures_in_a_row_double_the_backoff) {
  auto k = boot(true);
  BOOST_REQUIRE(!call(*k, "crash.segfault").ok());  // failure 1: restart in 1 s
  std::this_thread::sleep_for(1100ms);
  const auto aborted = call(*k, "crash.abort");  // the restarted child fails too: 2 s
  BOOST_REQUIRE(!aborted.ok());
  BOOST_TEST(aborted.error().code == "crashed", aborted.error().code);
  auto early = call(*k, "crash.pid");
  BOOST_REQUIRE(!early.ok());
  const auto& msg = early.error().message;
  auto pos = msg.find("restarting in ");
  BOOST_REQUIRE_MESSAGE(pos != std::string::npos, msg);
  long ms = std::stol(msg.substr(pos + 14));
  BOOST_TEST(ms > 1000, msg);
  BOOST_TEST(ms <= 2000, msg);
}

BOOST_AUTO_TEST_CASE(an_abort_fails_the_call) {
  auto k = boot(true);
  auto r = call(*k, "crash.abort");
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "crashed");
  BOOST_TEST(r.error().message.find("ABRT") != std::string::npos, r.error().message);
}

BOOST_AUTO_TEST_CASE(a_hang_is_killed_at_the_deadline) {
  auto k = boot(true);
  auto start = std::chrono::steady_clock::now();
  auto r = call(*k, "crash.hang");
  auto waited = std::chrono::steady_clock::now() - start;
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "timeout");
  BOOST_TEST(r.error().message.find("the child was killed") != std::string::npos);
  BOOST_TEST(waited < 3s);
  expect_recovery(*k, 1000ms);
}

BOOST_AUTO_TEST_CASE(a_throw_is_a_typed_error_and_keeps_the_child) {
  auto k = boot(true);
  auto before = call(*k, "crash.pid");
  BOOST_REQUIRE(before.ok());
  auto r = call(*k, "crash.throw");
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "internal");
  BOOST_TEST(r.error().message.find("thrown on purpose") != std::string::npos);
  auto after = call(*k, "crash.pid");
  BOOST_REQUIRE(after.ok());
  BOOST_TEST(after.value().output.at("pid") == before.value().output.at("pid"));
}

BOOST_AUTO_TEST_CASE(in_process_throws_are_contained) {
  auto k = boot(false);
  auto r = call(*k, "crash.throw");
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "internal");
  BOOST_TEST(call(*k, "crash.pid").value().output.at("pid").as_int64() ==
             static_cast<std::int64_t>(::getpid()));
}

BOOST_AUTO_TEST_CASE(unknown_isolated_plugin_is_a_config_error) {
  runtime::BootOptions o;
  o.environment = {};
  o.setup_logging = false;
  o.sets = {std::string("plugins.search_paths=[") + KILN_TEST_PLUGIN_DIR + "/test_crash]",
            "runtime.isolated_plugins=[test_crsh]"};
  try {
    runtime::Kernel::boot(o);
    BOOST_FAIL("expected a BootError");
  } catch (const runtime::BootError& e) {
    BOOST_TEST(e.exit_code() == runtime::kExitConfig);
    BOOST_TEST(std::string(e.what()).find("did you mean 'test_crash'") != std::string::npos);
  }
}
