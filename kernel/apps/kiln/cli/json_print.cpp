#include "cli/json_print.hpp"

#include <boost/json.hpp>

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
  } else {
    out += json::serialize(v);
  }
}

}  // namespace

std::string pretty(const json::value& v) {
  std::string out;
  emit(v, out, 0);
  out += "\n";
  return out;
}

}  // namespace kiln::cli
