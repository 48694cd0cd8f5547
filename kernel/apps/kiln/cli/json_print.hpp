// Indented JSON for people reading a terminal (Boost.JSON serializes compactly only).
#pragma once

#include <string>

#include <boost/json/value.hpp>

namespace kiln::cli {

// Two-space indentation, one member per line, trailing newline.
std::string pretty(const boost::json::value& v);

}  // namespace kiln::cli
