#include "cli/json_print.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <stdexcept>

#include <boost/json.hpp>

#include "common/json_text.hpp"

namespace kiln::cli {
namespace json = boost::json;

namespace {

void emit(const json::value& v, std::string& out, int depth) {
  const std::string ind(static_cast<std::size_t>(depth + 1) * 2, ' ');
  const std::string close(static_cast<std::size_t>(depth) * 2, ' ');
  if (v.is_object() && !v.as_object().empty()) {
    out += "{\n";
    bool first = true;
    for (const auto& kv : v.as_object()) {
      if (!first) out += ",\n";
      first = false;
      out += ind + json::serialize(json::value(kv.key())) + ": ";
      emit(kv.value(), out, depth + 1);
    }
    out += "\n" + close + "}";
  } else if (v.is_array() && !v.as_array().empty()) {
    out += "[\n";
    bool first = true;
    for (const auto& item : v.as_array()) {
      if (!first) out += ",\n";
      first = false;
      out += ind;
      emit(item, out, depth + 1);
    }
    out += "\n" + close + "]";
  } else if (v.is_double() && std::isfinite(v.get_double())) {
    out += common::number_text(v.get_double());
  } else {
    out += json::serialize(v);
  }
}

}  // namespace

std::string string_at(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::string one_line(const json::value& v) {
  return common::json_text(v);
}

std::string one_decimal(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string mmss(const json::value& v) {
  if (!v.is_number() || !(std::abs(v.to_number<double>()) < 366 * 86400.0)) return "-";
  const long t = std::lround(v.to_number<double>());
  char buf[24];
  std::snprintf(buf, sizeof buf, "%s%ld:%02ld", t < 0 ? "-" : "", std::labs(t) / 60,
                std::labs(t) % 60);
  return buf;
}

double utc_seconds(const std::string& text, const std::string& flag) {
  std::tm tm{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  char tail[8] = {};
  const int n = std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%7s", &year, &month, &day, &hour,
                            &minute, &second, tail);
  const bool shape = (n == 3 && text.size() == 10) || (n == 5 && text.size() == 16) ||
                     (n == 6 && text.size() == 19) || (n == 7 && std::string(tail) == "Z");
  if (!shape || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 ||
      second > 60)
    throw std::invalid_argument(flag + " takes a UTC date or time: 2026-12-03, 2026-12-03T06:30 " +
                                "or 2026-12-03T06:30:00Z, not '" + text + "'");
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<double>(timegm(&tm));
}

void print_next_page(const boost::json::array& shown, std::ostream& out) {
  if (shown.empty() || !shown.back().is_object()) return;
  out << "more: the next page with --starting-after " << string_at(shown.back().as_object(), "id")
      << "\n";
}

std::string flat(std::string s) {
  for (auto& ch : s)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = ' ';
  return s;
}

void print_table(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  const auto cell = flat;
  auto chars = [](const std::string& s) {
    std::size_t n = 0;
    for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;  // not a UTF-8 continuation byte
    return n;
  };
  std::vector<std::size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size());
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], chars(cell(r[c])));
  }
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t c = 0; c < r.size(); ++c) {
      const std::string text = cell(r[c]);
      line += text;
      if (c + 1 < r.size()) line += std::string(width[c] - chars(text) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
}

std::string pretty(const json::value& v) {
  std::string out;
  emit(v, out, 0);
  out += "\n";
  return out;
}

}  // namespace kiln::cli
