// Logging setup: spdlog to stderr, as text or as JSON lines.
// The logger is spdlog's default logger — the one piece of process-wide state the kernel keeps,
// because every thread and every plugin host logs through it.
#pragma once

#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace kiln::common {

// level: trace|debug|info|warn|error|critical|off; format: text|json.
// Throws std::invalid_argument naming the bad value.
void setup_logging(const std::string& level, const std::string& format);

// Whether the lines are JSON (log.format: json). The access log then writes each line's fields
// as a JSON object, whose members the line carries beside ts, level and logger.
bool json_logs();

// The HTTP access log, in the same format on stderr: each thread buffers its lines and writes
// them in one piece past 16 KiB or on flush() (the server flushes every 200 ms and at stop).
std::shared_ptr<spdlog::logger> access_logger();

}  // namespace kiln::common
