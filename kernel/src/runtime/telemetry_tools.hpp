// The kernel's telemetry tools: `telemetry.session` hands a stored roast session (its info and
// its curve) to mission steps, e.g. the roast_report mission's analysis.
#pragma once

#include <filesystem>
#include <functional>
#include <vector>

#include "kiln/plugin.hpp"

namespace kiln::runtime {

std::vector<ToolDecl> telemetry_tools(std::function<std::filesystem::path()> storage_path);

}  // namespace kiln::runtime
