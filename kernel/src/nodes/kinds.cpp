#include "nodes/kinds.hpp"

#include "common/embedded.hpp"
#include "kiln/nodes/event_detector.hpp"
#include "kiln/nodes/telemetry_driver.hpp"
#include "kiln/nodes/tool_strategy.hpp"
#include "kiln/nodes/tts_engine.hpp"
#include "kiln/testkit/event_detector.hpp"
#include "kiln/testkit/telemetry_driver.hpp"
#include "kiln/testkit/tool_strategy.hpp"
#include "kiln/testkit/tts_engine.hpp"

namespace kiln::nodes {

std::vector<std::pair<std::string, std::string_view>> embedded_parity_cases(std::string_view kind) {
  std::vector<std::pair<std::string, std::string_view>> out;
  const std::string prefix = "tests/parity/" + std::string(kind) + "/cases/";
  for (const auto& f : common::embedded_files())
    if (f.name.rfind(prefix, 0) == 0) out.emplace_back(std::string(f.name), f.content);
  return out;
}

namespace {

testkit::ToolStrategyFactory as_strategy(const NodeMaker& make) {
  return [make](const boost::json::object& kind_config) {
    return std::static_pointer_cast<ToolStrategy>(make(kind_config));
  };
}

KindDescriptor tool_strategy_kind() {
  KindDescriptor d;
  d.kind = ToolStrategy::kKind;
  d.default_node = ToolStrategy::kDefaultNode;
  d.contract_version = ToolStrategy::kContractVersion;
  d.parity_cases_origin = "tests/parity/tool_strategy/cases (embedded)";
  d.contract = [](const NodeMaker& candidate) {
    return testkit::run_tool_strategy_contract(as_strategy(candidate));
  };
  d.parity = [](const NodeMaker& control, const NodeMaker& candidate,
                const std::vector<std::string>& intended) {
    std::vector<testkit::ToolStrategyCase> cases;
    for (const auto& [name, text] : embedded_parity_cases(ToolStrategy::kKind)) {
      auto more = testkit::parse_tool_strategy_cases(text, name);
      cases.insert(cases.end(), more.begin(), more.end());
    }
    return testkit::run_tool_strategy_parity(as_strategy(control), as_strategy(candidate), cases,
                                             intended);
  };
  return d;
}

testkit::TtsEngineFactory as_tts(const NodeMaker& make) {
  return [make](const boost::json::object& kind_config) {
    return std::static_pointer_cast<TtsEngine>(make(kind_config));
  };
}

KindDescriptor tts_engine_kind() {
  KindDescriptor d;
  d.kind = TtsEngine::kKind;
  d.default_node = TtsEngine::kDefaultNode;
  d.contract_version = TtsEngine::kContractVersion;
  d.parity_cases_origin = "tests/parity/tts_engine/cases (embedded)";
  d.contract = [](const NodeMaker& candidate) {
    return testkit::run_tts_engine_contract(as_tts(candidate));
  };
  d.parity = [](const NodeMaker& control, const NodeMaker& candidate,
                const std::vector<std::string>& intended) {
    std::vector<testkit::TtsCase> cases;
    for (const auto& [name, text] : embedded_parity_cases(TtsEngine::kKind)) {
      auto more = testkit::parse_tts_cases(text, name);
      cases.insert(cases.end(), more.begin(), more.end());
    }
    return testkit::run_tts_engine_parity(as_tts(control), as_tts(candidate), cases, intended);
  };
  return d;
}

testkit::EventDetectorFactory as_detector(const NodeMaker& make) {
  return [make](const boost::json::object& kind_config) {
    return std::static_pointer_cast<EventDetector>(make(kind_config));
  };
}

KindDescriptor event_detector_kind() {
  KindDescriptor d;
  d.kind = EventDetector::kKind;
  d.default_node = EventDetector::kDefaultNode;
  d.contract_version = EventDetector::kContractVersion;
  d.parity_cases_origin = "tests/parity/event_detector/cases (embedded)";
  d.contract = [](const NodeMaker& candidate) {
    return testkit::run_event_detector_contract(as_detector(candidate));
  };
  d.parity = [](const NodeMaker& control, const NodeMaker& candidate,
                const std::vector<std::string>& intended) {
    std::vector<testkit::EventDetectorCase> cases;
    for (const auto& [name, text] : embedded_parity_cases(EventDetector::kKind)) {
      auto more = testkit::parse_event_detector_cases(text, name);
      cases.insert(cases.end(), more.begin(), more.end());
    }
    return testkit::run_event_detector_parity(as_detector(control), as_detector(candidate), cases,
                                              intended);
  };
  return d;
}

testkit::TelemetryDriverFactory as_driver(const NodeMaker& make) {
  return [make](const boost::json::object& kind_config) {
    return std::static_pointer_cast<TelemetryDriver>(make(kind_config));
  };
}

KindDescriptor telemetry_driver_kind() {
  KindDescriptor d;
  d.kind = TelemetryDriver::kKind;
  d.default_node = TelemetryDriver::kDefaultNode;
  d.contract_version = TelemetryDriver::kContractVersion;
  d.parity_cases_origin =
      "the simulated roaster's readings (hardware drivers read them through their own frames)";
  // Gates run without hardware: a hardware driver built with {"replay": "sim"} reads the
  // simulated roaster encoded into its own frames; the sim ignores the key.
  const boost::json::object gate_config{{"replay", "sim"}};
  d.contract = [gate_config](const NodeMaker& candidate) {
    return testkit::run_telemetry_driver_contract(as_driver(candidate), gate_config);
  };
  d.parity = [gate_config](const NodeMaker& control, const NodeMaker& candidate,
                           const std::vector<std::string>&) {
    return testkit::run_telemetry_driver_parity(as_driver(control), as_driver(candidate),
                                                gate_config);
  };
  return d;
}

}  // namespace

std::vector<KindDescriptor> builtin_kinds() {
  return {tool_strategy_kind(), tts_engine_kind(), event_detector_kind(), telemetry_driver_kind()};
}

}  // namespace kiln::nodes
