#include "common/yaml.hpp"

namespace kiln::common {
namespace json = boost::json;

std::string mark_of(const std::string& file, const YAML::Mark& m) {
  if (m.line < 0) return file;
  return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

json::value yaml_to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Sequence: {
      json::array a;
      for (const auto& item : n) a.push_back(yaml_to_json(item));
      return a;
    }
    case YAML::NodeType::Map: {
      json::object o;
      for (const auto& kv : n) o[kv.first.Scalar()] = yaml_to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return json::value(s);  // quoted
      if (s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
      try {
        std::size_t used = 0;
        long long v = std::stoll(s, &used, 10);
        if (used == s.size()) return json::value(static_cast<std::int64_t>(v));
      } catch (...) {
      }
      try {
        std::size_t used = 0;
        double d = std::stod(s, &used);
        if (used == s.size()) return json::value(d);
      } catch (...) {
      }
      return json::value(s);
    }
  }
  return nullptr;
}

}  // namespace kiln::common
