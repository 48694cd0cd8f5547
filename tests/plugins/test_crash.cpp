// test_crash: tools that kill their process, for isolated-execution tests. Never load it
// in-process except to show that throws are contained.
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include <unistd.h>

#include <boost/json.hpp>

#include "fn_tool.hpp"
#include "kiln/kiln.hpp"

namespace {
namespace json = boost::json;
using namespace kiln;

using test::FnTool;

template <class F>
ToolDecl tool(std::string name, F f) {
  ToolDecl d;
  d.name = std::move(name);
  d.nonblocking = true;
  d.factory = [f](HostServices&) { return std::make_shared<FnTool<F>>(f); };
  return d;
}

Manifest manifest() {
  Manifest m;
  m.name = "test_crash";
  m.version = "1.0.0";
  m.description = "tools that crash, abort, throw or hang";
  m.license = "Apache-2.0";
  m.tools.push_back(
      tool("crash.segfault", [](const json::value&, const ToolContext&) -> ToolOutcome {
        std::raise(SIGSEGV);
        return ToolResult{};
      }));
  m.tools.push_back(tool(
      "crash.abort", [](const json::value&, const ToolContext&) -> ToolOutcome { std::abort(); }));
  m.tools.push_back(tool("crash.throw", [](const json::value&, const ToolContext&) -> ToolOutcome {
    throw std::runtime_error("thrown on purpose");
  }));
  m.tools.push_back(tool("crash.hang", [](const json::value&, const ToolContext&) -> ToolOutcome {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }));
  // Two files as a report tool makes them: binary bytes (a NUL, every byte value) and an empty one.
  m.tools.push_back(tool("crash.files", [](const json::value&, const ToolContext&) -> ToolOutcome {
    std::string bytes;
    for (int i = 0; i < 256 * 3; ++i) bytes.push_back(static_cast<char>(i % 256));
    return ToolResult{json::object{{"pid", static_cast<std::int64_t>(::getpid())}},
                      {Artifact{"all.bin", "application/octet-stream", bytes},
                       Artifact{"empty.txt", "text/plain", ""}}};
  }));
  ToolDecl pid;
  pid.name = "crash.pid";
  pid.nonblocking = true;
  pid.factory = [](HostServices& host) {
    std::string marker(host.config().at("marker").as_string());
    auto f = [marker](const json::value&, const ToolContext&) -> ToolOutcome {
      return ToolResult{
          json::object{{"pid", static_cast<std::int64_t>(::getpid())}, {"marker", marker}}, {}};
    };
    return std::make_shared<FnTool<decltype(f)>>(f);
  };
  m.tools.push_back(std::move(pid));
  m.config_keys.push_back(
      {"marker", "string", "default", "echoed to prove config reaches the child"});
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
