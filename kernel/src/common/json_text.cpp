#include "common/json_text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include <boost/json.hpp>

namespace kiln::common {

namespace json = boost::json;

namespace {

void append_number(double d, std::string& out);

void append_string(std::string_view s, std::string& out) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

// An integer or double, written into `out` without a temporary string (sample arrays are long).
template <typename T>
void append_integer(T n, std::string& out) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, n).ptr);
}

void append(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::null:
      out += "null";
      return;
    case json::kind::bool_:
      out += v.get_bool() ? "true" : "false";
      return;
    case json::kind::int64:
      append_integer(v.get_int64(), out);
      return;
    case json::kind::uint64:
      append_integer(v.get_uint64(), out);
      return;
    case json::kind::double_:
      append_number(v.get_double(), out);
      return;
    case json::kind::string:
      append_string(v.get_string(), out);
      return;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& item : v.get_array()) {
        if (!first) out += ',';
        first = false;
        append(item, out);
      }
      out += ']';
      return;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.get_object()) {
        if (!first) out += ',';
        first = false;
        append_string(kv.key(), out);
        out += ':';
        append(kv.value(), out);
      }
      out += '}';
      return;
    }
  }
}

void append_number(double d, std::string& out) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  char buf[40];
  const auto end = std::to_chars(buf, buf + sizeof buf, d).ptr;
  out.append(buf, end);
  if (std::find_if(buf, end, [](char c) { return c == '.' || c == 'e'; }) == end) out += ".0";
}

}  // namespace

std::string number_text(double d) {
  std::string text;
  append_number(d, text);
  return text;
}

std::string json_text(const json::value& v) {
  std::string out;
  append(v, out);
  return out;
}

}  // namespace kiln::common
