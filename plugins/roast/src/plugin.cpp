// The roast plugin: roast analysis tools. This first part brings `roast.analyze` (an Artisan
// .alog → events, phases, DTR, AUC, rate of rise); sessions, QC, reports, profiles and the
// event_detector kind follow (ROADMAP M5).
#include <memory>
#include <string>

#include "analysis.hpp"
#include "kiln/plugin.hpp"
#include "pyliteral.hpp"

namespace {

namespace json = boost::json;

class AnalyzeTool final : public kiln::Tool {
 public:
  kiln::ToolOutcome invoke(const json::value& input, const kiln::ToolContext&) override {
    const auto& in = input.as_object();
    kiln::roast::AnalysisOptions opt;
    if (const auto* d = in.if_contains("detect")) opt.detect = d->as_bool();
    if (const auto* s = in.if_contains("ror_series")) opt.ror_series = s->as_bool();
    if (const auto* s = in.if_contains("ror_span_s")) opt.ror_span_s = s->to_number<double>();
    const auto& text = in.at("alog").as_string();
    try {
      auto log = kiln::roast::parse_alog(std::string_view(text.data(), text.size()));
      auto a = kiln::roast::analyze(log, opt);
      json::object out = kiln::roast::to_json(a);
      out["title"] = log.title;
      out["mode"] = std::string(1, log.mode);
      out["readings"] = log.time.size();
      return kiln::ToolResult{std::move(out), {}};
    } catch (const kiln::roast::PyLiteralError& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              std::string("the .alog is not a Python literal: ") + e.what());
    } catch (const kiln::roast::AlogError& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              std::string("the .alog is not a usable roast log: ") + e.what());
    }
  }
};

kiln::Manifest manifest() {
  kiln::Manifest m;
  m.name = "roast";
  m.version = "0.1.0";
  m.description = "Coffee roast analysis: Artisan .alog import, events, phases, AUC, rate of rise";
  m.license = "Apache-2.0";
  kiln::ToolDecl analyze;
  analyze.name = "roast.analyze";
  analyze.description =
      "Analyse an Artisan .alog: events (marked, or detected with detect=true), phases, DTR, AUC "
      "and rate of rise, times in seconds after CHARGE";
  analyze.input_schema = json::parse(R"({
    "type": "object", "required": ["alog"], "additionalProperties": false,
    "properties": {
      "alog": {"type": "string", "minLength": 1, "description": "the text of the .alog file"},
      "detect": {"type": "boolean"},
      "ror_series": {"type": "boolean"},
      "ror_span_s": {"type": "number", "minimum": 2, "maximum": 120}}})");
  analyze.output_schema = json::parse(R"({
    "type": "object", "required": ["events", "phases", "auc", "ror"]})");
  analyze.factory = [](kiln::HostServices&) { return std::make_shared<AnalyzeTool>(); };
  analyze.nonblocking = true;  // pure computation on one file
  m.tools.push_back(std::move(analyze));
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
