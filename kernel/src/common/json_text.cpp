#include "common/json_text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>
#include <vector>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

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

namespace {

// A boost::json::basic_parser handler that builds the value (as boost::json::parser does, on a
// value_stack) and keeps each open object's keys, and where it is, to name a duplicate.
struct StrictBuilder {
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  struct Open {
    bool object = true;
    std::set<std::string, std::less<>> keys;  // an object's keys so far
    std::string key;                          // an object's current key
    std::size_t index = 0;                    // an array's current item
  };
  json::value_stack stack;
  std::vector<Open> open;
  std::string key;
  std::optional<std::string> duplicate;  // its path: inputs.who, steps[2].id

  // A value ended: the next one in an array is the next item.
  bool value() {
    if (!open.empty() && !open.back().object) ++open.back().index;
    return true;
  }
  std::string path() const {
    std::string p;
    for (const auto& o : open) {
      if (o.object)
        p += (p.empty() ? "" : ".") + o.key;
      else
        p += "[" + std::to_string(o.index) + "]";
    }
    return p;
  }

  bool on_document_begin(json::error_code&) {
    stack.reset();
    return true;
  }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    open.push_back({});
    return true;
  }
  bool on_object_end(std::size_t n, json::error_code&) {
    stack.push_object(n);
    open.pop_back();
    return value();
  }
  bool on_array_begin(json::error_code&) {
    open.emplace_back().object = false;
    return true;
  }
  bool on_array_end(std::size_t n, json::error_code&) {
    stack.push_array(n);
    open.pop_back();
    return value();
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    key.append(s.data(), s.size());
    stack.push_key(key);
    open.back().key = key;
    // The first is named; the parse goes on, so that text which is not JSON says so first.
    if (!open.back().keys.insert(std::move(key)).second && !duplicate) duplicate = path();
    key.clear();
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    stack.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    stack.push_string(s);
    return value();
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
    stack.push_int64(i);
    return value();
  }
  bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
    stack.push_uint64(u);
    return value();
  }
  bool on_double(double d, json::string_view, json::error_code&) {
    stack.push_double(d);
    return value();
  }
  bool on_bool(bool b, json::error_code&) {
    stack.push_bool(b);
    return value();
  }
  bool on_null(json::error_code&) {
    stack.push_null();
    return value();
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

}  // namespace

StrictJson parse_strict(std::string_view text) {
  json::basic_parser<StrictBuilder> p(json::parse_options{});
  StrictJson out;
  const std::size_t used = p.write_some(false, text.data(), text.size(), out.ec);
  if (!out.ec && used < text.size()) out.ec = json::error::extra_data;
  if (out.ec) return out;
  out.value = p.handler().stack.release();
  out.duplicate = std::move(p.handler().duplicate);
  return out;
}

}  // namespace kiln::common
