// Indented JSON for people reading a terminal (Boost.JSON serializes compactly only).
#pragma once

#include <string>

#include <boost/json/value.hpp>

namespace kiln::cli {

// Two-space indentation, one member per line, trailing newline.
std::string pretty(const boost::json::value& v);
// One line: a number as written (604800.0, not 6.048E5), anything else as compact JSON.
std::string one_line(const boost::json::value& v);
// Seconds as a roaster reads a roast's times, "m:ss" (rounded); "-" when `v` is no number.
std::string mmss(const boost::json::value& v);

}  // namespace kiln::cli
