#include "runtime/json_schema.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <regex>

#include "common/strings.hpp"

namespace kiln::runtime {
namespace json = boost::json;

namespace {

// A schema's bound as a person writes it: 4, 0.25 (not 4E0, 2.5E-1).
std::string bound(const json::value& v) {
  if (v.is_int64()) return std::to_string(v.get_int64());
  if (v.is_uint64()) return std::to_string(v.get_uint64());
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v.to_number<double>());
  return buf;
}

// A schema's `pattern`, compiled once per process (ECMAScript syntax, as JSON Schema says);
// nullptr for one that does not compile.
std::shared_ptr<const std::regex> compiled(const std::string& pattern) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const std::regex>> cache;
  std::lock_guard lock(mu);
  auto it = cache.find(pattern);
  if (it != cache.end()) return it->second;
  std::shared_ptr<const std::regex> re;
  try {
    re = std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error&) {
  }
  if (cache.size() < 1024) cache.emplace(pattern, re);
  return re;
}

const char* kind_of(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "boolean";
    case json::kind::int64:
    case json::kind::uint64:
      return "integer";
    case json::kind::double_:
      return "number";
    case json::kind::string:
      return "string";
    case json::kind::array:
      return "array";
    case json::kind::object:
      return "object";
  }
  return "?";
}

bool is_type(std::string_view t, const json::value& v) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "boolean") return v.is_bool();
  if (t == "null") return v.is_null();
  if (t == "integer") {
    if (v.is_int64() || v.is_uint64()) return true;
    return v.is_double() && std::floor(v.as_double()) == v.as_double();
  }
  if (t == "number") return v.is_number();
  return false;
}

double num(const json::value& v) {
  return v.to_number<double>();
}

// Whether any part of `v` is a value known only later (`pending`).
bool has_pending(const json::value& v, const std::function<bool(const json::value&)>& pending) {
  if (!pending) return false;
  if (pending(v)) return true;
  if (v.is_array())
    for (const auto& x : v.as_array())
      if (has_pending(x, pending)) return true;
  if (v.is_object())
    for (const auto& kv : v.as_object())
      if (has_pending(kv.value(), pending)) return true;
  return false;
}

}  // namespace

std::optional<std::string> validate_json(const json::value& schema_v, const json::value& value,
                                         const std::string& path) {
  return validate_json(schema_v, value, path, {});
}

std::optional<std::string> validate_json(const json::value& schema_v, const json::value& value,
                                         const std::string& path,
                                         const std::function<bool(const json::value&)>& pending) {
  if (!schema_v.is_object()) return std::nullopt;
  if (pending && pending(value)) return std::nullopt;
  const auto& schema = schema_v.as_object();

  if (auto* t = schema.if_contains("type")) {
    bool ok = false;
    std::string expected;
    if (t->is_string()) {
      ok = is_type(t->as_string(), value);
      expected = t->as_string();
    } else if (t->is_array()) {
      for (const auto& one : t->as_array()) {
        if (!one.is_string()) continue;
        ok = ok || is_type(one.as_string(), value);
        expected += (expected.empty() ? "" : " or ") + std::string(one.as_string());
      }
    } else {
      ok = true;
    }
    if (!ok) return path + ": expected " + expected + ", got " + kind_of(value);
  }
  if (auto* e = schema.if_contains("enum"); e && e->is_array()) {
    bool found = false;
    for (const auto& option : e->as_array()) found = found || option == value;
    if (!found)
      return path + ": " + json::serialize(value) + " is not one of " + json::serialize(*e);
  }
  if (auto* c = schema.if_contains("const"); c && *c != value)
    return path + ": must be " + json::serialize(*c);
  if (value.is_number()) {
    // What the number means, where the schema says (grams, not kilograms).
    auto meaning = [&] {
      const auto* d = schema.if_contains("description");
      return d && d->is_string() ? " (" + std::string(d->as_string()) + ")" : std::string();
    };
    if (auto* m = schema.if_contains("minimum"); m && m->is_number() && num(value) < num(*m))
      return path + ": must be >= " + bound(*m) + meaning();
    if (auto* m = schema.if_contains("maximum"); m && m->is_number() && num(value) > num(*m))
      return path + ": must be <= " + bound(*m) + meaning();
  }
  if (value.is_string()) {
    auto len = static_cast<std::int64_t>(value.as_string().size());
    if (auto* m = schema.if_contains("minLength"); m && m->is_int64() && len < m->as_int64())
      return path + (m->as_int64() == 1 ? std::string(": must not be empty")
                                        : ": must have at least " + bound(*m) + " characters");
    if (auto* m = schema.if_contains("maxLength"); m && m->is_int64() && len > m->as_int64())
      return path + ": must have at most " + bound(*m) + " characters";
    if (auto* p = schema.if_contains("pattern"); p && p->is_string()) {
      const std::string pattern(p->as_string());
      auto re = compiled(pattern);
      if (!re)
        return path + ": the schema's pattern " + pattern +
               " is not a valid regular expression (a defect of the schema, not the input)";
      if (!std::regex_search(value.as_string().begin(), value.as_string().end(), *re)) {
        // The value (its start) and what the pattern means, where the schema says.
        const std::string_view text(value.as_string());
        std::string shown(text.substr(0, 40));
        if (text.size() > 40) shown += "...";
        std::string msg = path + ": '" + shown + "' does not match the pattern " + pattern;
        if (auto* d = schema.if_contains("description"); d && d->is_string())
          msg += " (" + std::string(d->as_string()) + ")";
        return msg;
      }
    }
  }
  if (value.is_array()) {
    const auto& arr = value.as_array();
    auto n = static_cast<std::int64_t>(arr.size());
    if (auto* m = schema.if_contains("minItems"); m && m->is_int64() && n < m->as_int64())
      return path + ": must have at least " + bound(*m) + " items";
    if (auto* m = schema.if_contains("maxItems"); m && m->is_int64() && n > m->as_int64())
      return path + ": must have at most " + bound(*m) + " items";
    // prefixItems: a schema for each leading position (a row of columns); items: the rest.
    std::size_t prefix = 0;
    if (auto* p = schema.if_contains("prefixItems"); p && p->is_array()) {
      prefix = p->as_array().size();
      for (std::size_t i = 0; i < arr.size() && i < prefix; ++i)
        if (auto err = validate_json(p->as_array()[i], arr[i], path + "[" + std::to_string(i) + "]",
                                     pending))
          return err;
    }
    if (auto* items = schema.if_contains("items"); items && items->is_object()) {
      for (std::size_t i = prefix; i < arr.size(); ++i)
        if (auto err = validate_json(*items, arr[i], path + "[" + std::to_string(i) + "]", pending))
          return err;
    }
  }
  if (value.is_object()) {
    const auto& obj = value.as_object();
    if (auto* req = schema.if_contains("required"); req && req->is_array())
      for (const auto& r : req->as_array())
        if (r.is_string() && !obj.contains(r.as_string()))
          return path + "." + std::string(r.as_string()) + ": required field is missing";
    const json::object* props = nullptr;
    if (auto* p = schema.if_contains("properties"); p && p->is_object()) props = &p->as_object();
    bool closed = false;
    if (auto* a = schema.if_contains("additionalProperties"); a && a->is_bool())
      closed = !a->as_bool();
    for (const auto& kv : obj) {
      const json::value* sub = props ? props->if_contains(kv.key()) : nullptr;
      if (sub) {
        if (auto err = validate_json(*sub, kv.value(), path + "." + std::string(kv.key()), pending))
          return err;
      } else if (closed) {
        std::string known;
        if (props)
          for (const auto& p : *props) known += (known.empty() ? "" : ", ") + std::string(p.key());
        return path + "." + std::string(kv.key()) + ": unknown field (" +
               (known.empty() ? std::string("the schema takes none") : "the schema has " + known) +
               ")";
      }
    }
  }
  // Conditions between fields (a setting's own range): every allOf schema holds, and `then`
  // where `if` holds, `else` where it does not. A failing branch says what it is about (its
  // description).
  if (auto* all = schema.if_contains("allOf"); all && all->is_array())
    for (const auto& sub : all->as_array())
      if (auto err = validate_json(sub, value, path, pending)) return err;
  // (Not while a value it may test is known only later: a template's `${inputs.setting}` could
  // make either branch the one.)
  if (auto* cond = schema.if_contains("if"); cond && !has_pending(value, pending)) {
    const bool holds = !validate_json(*cond, value, path, pending);
    if (const auto* branch = schema.if_contains(holds ? "then" : "else"))
      if (auto err = validate_json(*branch, value, path, pending)) {
        if (const auto* d =
                branch->is_object() ? branch->as_object().if_contains("description") : nullptr;
            d && d->is_string())
          *err += " (" + std::string(d->as_string()) + ")";
        return err;
      }
  }
  return std::nullopt;
}

std::vector<std::string> schema_problems(const json::value& schema_v, const std::string& path) {
  std::vector<std::string> out;
  if (!schema_v.is_object()) {
    out.push_back(path + ": a schema is a mapping (e.g. {type: string})");
    return out;
  }
  const auto& schema = schema_v.as_object();
  // What validate_json checks, and the annotations it passes over on purpose. (`format` is not
  // among them: it would look like a check and be none.)
  static const std::vector<std::string> kKeywords = {
      "type",     "properties",  "required",  "additionalProperties",
      "items",    "enum",        "const",     "minimum",
      "maximum",  "minLength",   "maxLength", "minItems",
      "maxItems", "prefixItems", "pattern",   "description",
      "default",  "title",       "examples",  "allOf",
      "if",       "then",        "else"};
  static const std::vector<std::string> kTypes = {"object", "array",   "string", "boolean",
                                                  "null",   "integer", "number"};
  for (const auto& kv : schema)
    if (std::find(kKeywords.begin(), kKeywords.end(), kv.key()) == kKeywords.end())
      out.push_back(path + ": '" + std::string(kv.key()) + "' is not a schema keyword kiln checks" +
                    common::did_you_mean(kv.key(), kKeywords) + " (it would check nothing)");
  if (const auto* t = schema.if_contains("type")) {
    std::vector<const json::value*> names;
    if (t->is_array())
      for (const auto& one : t->as_array()) names.push_back(&one);
    else
      names.push_back(t);
    for (const auto* n : names)
      if (!n->is_string() ||
          std::find(kTypes.begin(), kTypes.end(), std::string(n->as_string())) == kTypes.end())
        out.push_back(path + ".type: " + json::serialize(*n) + " is not a JSON type (" +
                      common::join(kTypes) + ")" +
                      (n->is_string() ? common::did_you_mean(n->as_string(), kTypes) : ""));
  }
  // Bounds: numbers, and the lower not above the upper.
  for (const auto& [low, high] : std::vector<std::pair<const char*, const char*>>{
           {"minimum", "maximum"}, {"minLength", "maxLength"}, {"minItems", "maxItems"}}) {
    const auto* lo = schema.if_contains(low);
    const auto* hi = schema.if_contains(high);
    // Lengths and counts are whole numbers (validate_json passes over any other).
    const bool whole = std::string_view(low) != "minimum";
    for (const auto& [b, name] : {std::pair<const json::value*, const char*>{lo, low}, {hi, high}})
      if (b && (whole ? !b->is_int64() : !b->is_number()))
        out.push_back(path + "." + name +
                      (whole ? " must be a whole number" : " must be a number"));
    if (lo && hi && lo->is_number() && hi->is_number() && num(*lo) > num(*hi))
      out.push_back(path + ": " + low + " " + bound(*lo) + " is above " + high + " " + bound(*hi) +
                    "; nothing could pass");
  }
  if (const auto* p = schema.if_contains("pattern")) {
    if (!p->is_string() || !compiled(std::string(p->as_string())))
      out.push_back(path + ".pattern: not a valid regular expression (ECMAScript)");
  }
  if (const auto* r = schema.if_contains("required"); r && !r->is_array())
    out.push_back(path + ".required: a list of property names");
  if (const auto* e = schema.if_contains("enum"); e && !e->is_array())
    out.push_back(path + ".enum: a list of the values allowed");
  const auto nested = [&](const json::value& sub, const std::string& at) {
    auto found = schema_problems(sub, at);
    out.insert(out.end(), found.begin(), found.end());
  };
  if (const auto* props = schema.if_contains("properties")) {
    if (!props->is_object())
      out.push_back(path + ".properties: a mapping of property names to schemas");
    else
      for (const auto& kv : props->as_object())
        nested(kv.value(), path + ".properties." + std::string(kv.key()));
  }
  if (const auto* items = schema.if_contains("items"); items && !items->is_bool())
    nested(*items, path + ".items");
  // Keywords that hold a list of schemas, and what the list is.
  for (const auto& [key, what] :
       {std::pair{"prefixItems", "a list of schemas, one for each leading item"},
        std::pair{"allOf", "a list of schemas, each of which must hold"}})
    if (const auto* list = schema.if_contains(key)) {
      if (!list->is_array())
        out.push_back(path + "." + key + ": " + what);
      else
        for (std::size_t i = 0; i < list->as_array().size(); ++i)
          nested(list->as_array()[i], path + "." + key + "[" + std::to_string(i) + "]");
    }
  for (const char* branch : {"if", "then", "else"})
    if (const auto* sub = schema.if_contains(branch)) nested(*sub, path + "." + branch);
  if ((schema.contains("then") || schema.contains("else")) && !schema.contains("if"))
    out.push_back(path + ": 'then' and 'else' need an 'if' (without it they check nothing)");
  if (const auto* extra = schema.if_contains("additionalProperties"); extra && !extra->is_bool())
    out.push_back(path + ".additionalProperties: true or false (a schema there is not checked)");
  return out;
}

}  // namespace kiln::runtime
