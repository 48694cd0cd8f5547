// Logging setup: spdlog to stderr, as text or as JSON lines.
// The logger is spdlog's default logger — the one piece of process-wide state the kernel keeps,
// because every thread and every plugin host logs through it.
#pragma once

#include <string>

namespace kiln::common {

// level: trace|debug|info|warn|error|critical|off; format: text|json.
// Throws std::invalid_argument naming the bad value.
void setup_logging(const std::string& level, const std::string& format);

}  // namespace kiln::common
