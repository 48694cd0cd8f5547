// Shared by the benchmark programs: the date that names their result files.
#pragma once

#include <chrono>
#include <ctime>
#include <string>

namespace kiln::bench {

// Today's UTC date as YYYY-MM-DD (bench/results/<date>_<name>.json).
inline std::string today() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace kiln::bench
