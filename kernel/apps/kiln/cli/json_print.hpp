// Indented JSON for people reading a terminal (Boost.JSON serializes compactly only).
#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

namespace kiln::cli {

// Two-space indentation, one member per line, trailing newline.
std::string pretty(const boost::json::value& v);
// One line: a number as written (604800.0, not 6.048E5), anything else as compact JSON.
std::string one_line(const boost::json::value& v);
// The string at `key` of `o`; empty when it is missing or not a string.
std::string string_at(const boost::json::object& o, std::string_view key);
// Seconds as a roaster reads a roast's times, "m:ss" (rounded); "-" when `v` is no number.
std::string mmss(const boost::json::value& v);
// 14.04 → "14.0": one decimal, as weights, temperatures and percentages are printed.
std::string one_decimal(double v);
// "2026-12-03", "2026-12-03T06:30" or "2026-12-03T06:30:00Z" (UTC) as epoch seconds. Throws
// std::invalid_argument naming `flag` for anything else.
double utc_seconds(const std::string& text, const std::string& flag);
// `s` on one line: line breaks, tabs and other control characters become spaces.
std::string flat(std::string s);
// Rows as columns as wide as their widest cell (in characters of UTF-8, two spaces apart, no
// trailing blanks); a line break or tab inside a cell (a title, a reason) becomes a space, so one
// row stays one line.
void print_table(const std::vector<std::vector<std::string>>& rows, std::ostream& out);
// After a full page of a list (missions, sessions): how to ask for the next one.
void print_next_page(const boost::json::array& shown, std::ostream& out);

}  // namespace kiln::cli
