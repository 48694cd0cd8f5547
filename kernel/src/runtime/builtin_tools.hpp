// Tools the kernel itself provides (provider "kiln"): kiln.noop, kiln.echo, kiln.sleep.
// They exercise the whole tool path without any plugin: benchmarks, smoke tests, timeouts.
#pragma once

#include <vector>

#include "kiln/plugin.hpp"

namespace kiln::runtime {

std::vector<ToolDecl> builtin_tools();

}  // namespace kiln::runtime
