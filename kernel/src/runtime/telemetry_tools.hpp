// The kernel's telemetry tools: `telemetry.session` hands a stored roast session (its info and
// its curve) to mission steps, e.g. the roast_report mission's analysis.
#pragma once

#include <filesystem>
#include <functional>
#include <vector>

#include "kiln/nodes/telemetry_driver.hpp"
#include "kiln/plugin.hpp"

namespace kiln::runtime {

// `telemetry.session`, and `roaster.command` (actuates: policy decides whether it runs at all
// and whether each call needs an approver) reaching the selected telemetry_driver node.
std::vector<ToolDecl> telemetry_tools(
    std::function<std::filesystem::path()> storage_path,
    std::function<std::shared_ptr<nodes::TelemetryDriver>()> driver);

}  // namespace kiln::runtime
