// test_tools: a well-formed plugin whose tools misbehave on purpose, for executor tests.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <boost/json.hpp>

#include "fn_tool.hpp"
#include "kiln/kiln.hpp"

namespace {
namespace json = boost::json;
using namespace kiln;

using test::FnTool;

template <class F>
ToolDecl tool(std::string name, bool nonblocking, json::value input_schema, F f) {
  ToolDecl d;
  d.name = std::move(name);
  d.description = "test tool " + d.name;
  d.nonblocking = nonblocking;
  d.input_schema = std::move(input_schema);
  d.output_schema = json::object{{"type", "object"}};
  d.factory = [f](HostServices&) { return std::make_shared<FnTool<F>>(f); };
  return d;
}

Manifest manifest() {
  Manifest m;
  m.name = "test_tools";
  m.version = "1.2.3";
  m.description = "tools that misbehave on purpose";
  m.license = "Apache-2.0";
  m.tools.push_back(tool("test.echo", true, json::parse(R"({"type":"object","required":["text"],
                             "properties":{"text":{"type":"string"}}})"),
                         [](const json::value& in, const ToolContext& ctx) -> ToolOutcome {
                           json::object o = in.as_object();
                           o["provider"] = "test_tools";
                           o["tenant"] = ctx.tenant;
                           return ToolResult{o, {}};
                         }));
  m.tools.push_back(tool("test.flaky", true, json::value(),
                         [](const json::value&, const ToolContext&) -> ToolOutcome {
                           return tool_error(error_code::kUnavailable, "test_tools is down", true);
                         }));
  // Fails with a retryable error twice, then succeeds: the executor's retries must get there.
  auto calls = std::make_shared<std::atomic<int>>(0);
  m.tools.push_back(tool("test.third_time", true, json::value(),
                         [calls](const json::value&, const ToolContext&) -> ToolOutcome {
                           int n = ++*calls;
                           if (n % 3 != 0)
                             return tool_error(error_code::kUnavailable, "not yet", true);
                           return ToolResult{json::object{{"calls", n}}, {}};
                         }));
  m.tools.push_back(tool("test.fatal", true, json::value(),
                         [](const json::value&, const ToolContext&) -> ToolOutcome {
                           return tool_error("bad_request", "test_tools refuses", false);
                         }));
  m.tools.push_back(tool("test.throw", true, json::value(),
                         [](const json::value&, const ToolContext&) -> ToolOutcome {
                           throw std::runtime_error("deliberate failure");
                         }));
  m.tools.push_back(tool("test.bad_output", true, json::value(),
                         [](const json::value&, const ToolContext&) -> ToolOutcome {
                           return ToolResult{json::value("not an object"), {}};
                         }));
  // Ignores its stop token: the executor must stop waiting anyway.
  m.tools.push_back(tool("test.hang", false, json::value(),
                         [](const json::value&, const ToolContext&) -> ToolOutcome {
                           std::this_thread::sleep_for(std::chrono::seconds(3));
                           return ToolResult{json::object{}, {}};
                         }));
  // Fails with a retryable error the first input.times calls for input.key, then succeeds:
  // mission-level retries (RETRY with back-off) must get there.
  auto failures = std::make_shared<std::pair<std::mutex, std::map<std::string, int>>>();
  m.tools.push_back(tool(
      "test.fail_times", true, json::value(),
      [failures](const json::value& in, const ToolContext&) -> ToolOutcome {
        const auto& o = in.as_object();
        std::string key(o.at("key").as_string());
        auto times = o.at("times").to_number<int>();
        std::lock_guard lock(failures->first);
        int n = ++failures->second[key];
        if (n <= times)
          return tool_error(error_code::kUnavailable,
                            "failure " + std::to_string(n) + " of " + std::to_string(times), true);
        return ToolResult{json::object{{"calls", n}}, {}};
      }));
  // Keeps a file beside its output (as tts.synthesize keeps speech.wav): retention releases it.
  m.tools.push_back(tool("test.file", true, json::value(),
                         [](const json::value& in, const ToolContext&) -> ToolOutcome {
                           const auto& o = in.as_object();
                           Artifact a{std::string(o.at("name").as_string()), "text/plain",
                                      std::string(o.at("text").as_string())};
                           return ToolResult{json::object{{"kept", a.name}}, {std::move(a)}};
                         }));
  // A setting and its level, each setting with its own range (as roaster.command).
  m.tools.push_back(tool("test.levels", true, json::parse(R"({"type": "object",
    "required": ["setting", "value"],
    "properties": {"setting": {"enum": ["heater", "fan"]}, "value": {"type": "integer"}},
    "allOf": [{"if": {"properties": {"setting": {"const": "heater"}}},
               "then": {"properties": {"value": {"maximum": 9}},
                        "description": "heater levels are 0-9"}}]})"),
                         [](const json::value& in, const ToolContext&) -> ToolOutcome {
                           return ToolResult{json::object{{"set", in}}, {}};
                         }));
  // Changes the physical world (pretend): policy must gate it.
  auto actuate = tool("test.actuate", true, json::value(),
                      [](const json::value& in, const ToolContext&) -> ToolOutcome {
                        return ToolResult{json::object{{"actuated", in}}, {}};
                      });
  actuate.actuates = true;
  m.tools.push_back(std::move(actuate));
  // Counts its calls through the host (HostServices::count → /metrics).
  ToolDecl counted = tool("test.counted", true, json::value(),
                          [](const json::value&, const ToolContext&) -> ToolOutcome {
                            return ToolResult{json::object{}, {}};
                          });
  counted.factory = [](HostServices& host) {
    auto f = [&host](const json::value&, const ToolContext&) -> ToolOutcome {
      host.count("test_calls.counted");
      return ToolResult{json::object{}, {}};
    };
    return std::make_shared<FnTool<decltype(f)>>(f);
  };
  m.tools.push_back(std::move(counted));
  m.config_keys.push_back({"greeting", "string", "hello", "a setting for config tests"});
  m.config_keys.push_back({"level", "integer", 3, "another setting"});
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
