// The roast plugin: the `event_detector/artisan` node (the kind's default) and the tool
// `roast.analyze` (an Artisan .alog → events, phases, DTR, AUC, rate of rise), which detects
// through whichever event_detector node the deployment selected.
#include <memory>
#include <stdexcept>
#include <string>

#include "analysis.hpp"
#include "artisan_detector.hpp"
#include "kiln/plugin.hpp"
#include "pyliteral.hpp"

namespace {

namespace json = boost::json;

class AnalyzeTool final : public kiln::Tool {
 public:
  explicit AnalyzeTool(kiln::HostServices& host) : host_(host) {}

  kiln::ToolOutcome invoke(const json::value& input, const kiln::ToolContext&) override {
    const auto& in = input.as_object();
    kiln::roast::AnalysisOptions opt;
    if (const auto* d = in.if_contains("detect")) opt.detect = d->as_bool();
    if (const auto* s = in.if_contains("ror_series")) opt.ror_series = s->as_bool();
    if (const auto* s = in.if_contains("ror_span_s")) opt.ror_span_s = s->to_number<double>();
    const auto& text = in.at("alog").as_string();
    try {
      auto log = kiln::roast::parse_alog(std::string_view(text.data(), text.size()));
      std::shared_ptr<kiln::nodes::EventDetector> detector;
      if (opt.detect) {
        detector = host_.node<kiln::nodes::EventDetector>();
        if (!detector)
          return kiln::tool_error(
              kiln::error_code::kProviderUnavailable,
              "detect=true needs the event_detector kind, and no event_detector node is "
              "resolved here (the kind is off, or this tool runs isolated in a node-host); "
              "analyse the marked events (detect=false) or run the roast plugin in-process");
      }
      auto a = kiln::roast::analyze(log, opt, detector.get());
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

 private:
  kiln::HostServices& host_;
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
  analyze.factory = [](kiln::HostServices& host) { return std::make_shared<AnalyzeTool>(host); };
  analyze.nonblocking = true;  // pure computation on one file
  m.tools.push_back(std::move(analyze));
  m.nodes.push_back(kiln::NodeDecl::make<kiln::nodes::EventDetector>(
      "artisan",
      "Artisan's rules: CHARGE/DROP from the roaster's state channel or a BT break, TP as the "
      "lowest BT after CHARGE, DRY END and FCs from the phase temperatures",
      [](const kiln::NodeContext& ctx) {
        double lag = kiln::roast::ArtisanDetector::kDefaultProbeLag;
        if (const auto* v = ctx.kind_config.if_contains("probe_lag_s"); v && v->is_number())
          lag = v->to_number<double>();
        if (!(lag >= 0 && lag <= 60))
          throw std::invalid_argument("event_detector.probe_lag_s is " + std::to_string(lag) +
                                      "; it must be between 0 and 60 seconds");
        return std::make_shared<kiln::roast::ArtisanDetector>(lag);
      }));
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
