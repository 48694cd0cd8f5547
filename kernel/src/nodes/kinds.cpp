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
  d.contract = [](const NodeMaker& candidate, const boost::json::object&) {
    return testkit::run_tool_strategy_contract(as_strategy(candidate));
  };
  d.parity = [](const NodeMaker& control, const NodeMaker& candidate,
                const std::vector<std::string>& intended, const boost::json::object&) {
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
  d.contract = [](const NodeMaker& candidate, const boost::json::object&) {
    return testkit::run_tts_engine_contract(as_tts(candidate));
  };
  d.parity = [](const NodeMaker& control, const NodeMaker& candidate,
                const std::vector<std::string>& intended, const boost::json::object&) {
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
  d.contract = [](const NodeMaker& candidate, const boost::json::object&) {
    return testkit::run_event_detector_contract(as_detector(candidate));
  };
  d.parity = [](const NodeMaker& control, const NodeMaker& candidate,
                const std::vector<std::string>& intended, const boost::json::object&) {
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
      "the simulated roaster's readings (device drivers read them through their own frames: "
      "telemetry_driver.readings.jsonl in the gates directory)";
  // Gates run without hardware: the control's readings go to a file that a device driver,
  // built with {"replay": "sim", "readings": FILE}, encodes into its own frames and reads back
  // (kiln/nodes/telemetry_driver.hpp); the simulated roaster ignores both keys.
  d.prepare = [](const NodeMaker& control, const std::filesystem::path& dir) {
    constexpr std::size_t kReadings = 720;  // the parity suite's 600 and some
    auto sim = std::static_pointer_cast<TelemetryDriver>(control(boost::json::object{}));
    if (auto opened = sim->open(); !opened.ok())
      throw std::runtime_error("the control " + std::string(TelemetryDriver::kDefaultNode) +
                               " did not open: " + opened.error().message);
    std::vector<telemetry::Sample> readings;
    while (readings.size() < kReadings) {
      auto r = sim->read();
      if (!r.ok()) break;
      readings.push_back(r.value());
    }
    sim->close();
    std::filesystem::create_directories(dir);
    const auto file = dir / "telemetry_driver.readings.jsonl";
    write_gate_readings(file, readings);
    return boost::json::object{{"replay", "sim"},
                               {kGateReadingsKey, std::filesystem::absolute(file).string()}};
  };
  d.contract = [](const NodeMaker& candidate, const boost::json::object& kind_config) {
    return testkit::run_telemetry_driver_contract(as_driver(candidate), kind_config);
  };
  d.parity = [](const NodeMaker& control, const NodeMaker& candidate,
                const std::vector<std::string>& intended, const boost::json::object& kind_config) {
    auto report =
        testkit::run_telemetry_driver_parity(as_driver(control), as_driver(candidate), kind_config);
    // A driver reads what the roaster reads: nothing it could declare as meant to differ.
    if (!intended.empty())
      report.add("no intended differences", false,
                 "telemetry_driver parity takes none (a driver reads what the roaster reads); "
                 "remove intended_differences from the node's declaration");
    return report;
  };
  return d;
}

}  // namespace

std::vector<KindDescriptor> builtin_kinds() {
  return {tool_strategy_kind(), tts_engine_kind(), event_detector_kind(), telemetry_driver_kind()};
}

}  // namespace kiln::nodes
