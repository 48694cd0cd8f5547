#include "runtime/builtin_tools.hpp"

#include <condition_variable>
#include <mutex>

#include <boost/json/parse.hpp>

namespace kiln::runtime {
namespace json = boost::json;

namespace {

class NoopTool final : public Tool {
 public:
  ToolOutcome invoke(const json::value&, const ToolContext&) override {
    return ToolResult{json::object{}, {}};
  }
};

class EchoTool final : public Tool {
 public:
  ToolOutcome invoke(const json::value& input, const ToolContext&) override {
    return ToolResult{input, {}};
  }
};

// Sleeps `ms` milliseconds, or until the caller stops waiting.
class SleepTool final : public Tool {
 public:
  ToolOutcome invoke(const json::value& input, const ToolContext& ctx) override {
    auto ms = input.as_object().at("ms").to_number<std::int64_t>();
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    bool stopped = cv.wait_for(lock, ctx.stop, std::chrono::milliseconds(ms), [] { return false; });
    if (stopped)
      return tool_error(error_code::kUnavailable, "kiln.sleep: stopped by the caller", true);
    return ToolResult{json::object{{"slept_ms", ms}}, {}};
  }
};

}  // namespace

std::vector<ToolDecl> builtin_tools() {
  std::vector<ToolDecl> out;
  ToolDecl noop;
  noop.name = "kiln.noop";
  noop.description = "Does nothing and returns {}: measures the cost of the tool path itself.";
  noop.input_schema = json::object{{"type", "object"}};
  noop.output_schema = json::object{{"type", "object"}};
  noop.factory = [](HostServices&) { return std::make_shared<NoopTool>(); };
  noop.nonblocking = true;
  out.push_back(std::move(noop));

  ToolDecl echo;
  echo.name = "kiln.echo";
  echo.description = "Returns its input unchanged.";
  echo.factory = [](HostServices&) { return std::make_shared<EchoTool>(); };
  echo.nonblocking = true;
  out.push_back(std::move(echo));

  ToolDecl sleep;
  sleep.name = "kiln.sleep";
  sleep.description =
      "Sleeps for input.ms milliseconds (at most 60000); stops early when the "
      "caller stops waiting.";
  sleep.input_schema = json::parse(R"({"type":"object","required":["ms"],
      "properties":{"ms":{"type":"integer","minimum":0,"maximum":60000}},
      "additionalProperties":false})");
  sleep.output_schema = json::parse(R"({"type":"object","required":["slept_ms"]})");
  sleep.factory = [](HostServices&) { return std::make_shared<SleepTool>(); };
  out.push_back(std::move(sleep));
  return out;
}

}  // namespace kiln::runtime
