// The JSON Schema subset tool schemas use.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include "runtime/json_schema.hpp"

namespace json = boost::json;
using kiln::runtime::validate_json;

BOOST_AUTO_TEST_CASE(schema_keywords) {
  auto schema = json::parse(R"({
    "type": "object", "required": ["name"], "additionalProperties": false,
    "properties": {
      "name": {"type": "string", "minLength": 1, "maxLength": 5},
      "speed": {"type": "number", "minimum": 0.25, "maximum": 4},
      "format": {"enum": ["wav", "pcm"]},
      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
      "n": {"type": ["integer", "null"]}
    }})");
  auto ok = [&](const char* text) { return !validate_json(schema, json::parse(text)); };
  auto why = [&](const char* text) {
    return validate_json(schema, json::parse(text)).value_or("");
  };
  BOOST_TEST(ok(R"({"name": "a", "speed": 1, "format": "wav", "tags": ["x"], "n": null})"));
  BOOST_TEST(ok(R"({"name": "a", "n": 3})"));
  BOOST_TEST(why(R"({})") == "input.name: required field is missing");
  BOOST_TEST(why(R"({"name": ""})") == "input.name: must not be empty");
  BOOST_TEST(why(R"({"name": "toolong"})") == "input.name: must have at most 5 characters");
  BOOST_TEST(why(R"({"name": "a", "speed": 9})") == "input.speed: must be <= 4");
  // A number out of range is said with what it means, where the schema says (its unit).
  {
    auto weighed = json::parse(R"({"type": "object", "properties": {
      "green_g": {"type": "number", "minimum": 10, "maximum": 100000, "description": "grams"}}})");
    BOOST_TEST(validate_json(weighed, json::parse(R"({"green_g": 0.5})")).value_or("") ==
               "input.green_g: must be >= 10 (grams)");
    BOOST_TEST(validate_json(weighed, json::parse(R"({"green_g": 200000})")).value_or("") ==
               "input.green_g: must be <= 100000 (grams)");
  }
  // A pattern is checked (ECMAScript, searched as JSON Schema says), not ignored.
  {
    auto keyed = json::parse(R"({"type": "object", "properties": {
      "key": {"type": "string", "pattern": "^[0-9a-f]{4}$"},
      "broken": {"type": "string", "pattern": "(unclosed"}}})");
    BOOST_TEST(!validate_json(keyed, json::parse(R"({"key": "09af"})")));
    BOOST_TEST(validate_json(keyed, json::parse(R"({"key": "09afx"})")).value_or("") ==
               "input.key: '09afx' does not match the pattern ^[0-9a-f]{4}$");
    // With the value and, where the schema says it, what the pattern means.
    auto described = json::parse(R"({"type": "object", "properties": {
      "name": {"type": "string", "pattern": "^[a-z]+$", "description": "lower-case letters"}}})");
    BOOST_TEST(validate_json(described, json::parse(R"({"name": "Upper Case"})")).value_or("") ==
               "input.name: 'Upper Case' does not match the pattern ^[a-z]+$ (lower-case "
               "letters)");
    BOOST_TEST(validate_json(keyed, json::parse(R"({"broken": "x"})"))
                   .value_or("")
                   .find("is not a valid regular expression") != std::string::npos);
  }
  // Bounds as written (not 2.5E-1).
  BOOST_TEST(why(R"({"name": "a", "speed": 0.1})") == "input.speed: must be >= 0.25");
  BOOST_TEST(why(R"({"name": "a", "format": "mp3"})") ==
             R"(input.format: "mp3" is not one of ["wav","pcm"])");
  BOOST_TEST(why(R"({"name": "a", "tags": ["x", 1]})") ==
             "input.tags[1]: expected string, got integer");
  BOOST_TEST(why(R"({"name": "a", "tags": ["x", "y", "z"]})") ==
             "input.tags: must have at most 2 items");
  BOOST_TEST(why(R"({"name": "a", "n": 1.5})") == "input.n: expected integer or null, got number");
  BOOST_TEST(why(R"({"name": "a", "x": 1})") ==
             "input.x: unknown field (the schema has name, speed, format, tags, n)");
  // A value not known yet (a template's ${...}) conforms; what is around it is checked.
  const auto pending = [](const json::value& v) {
    return v.is_string() && v.as_string().starts_with("${");
  };
  auto later = [&](const char* text) {
    return validate_json(schema, json::parse(text), "input", pending).value_or("");
  };
  BOOST_TEST(later(R"({"name": "${inputs.who}", "speed": "${inputs.speed}"})") == "");
  BOOST_TEST(later(R"({"speed": "${inputs.speed}"})") == "input.name: required field is missing");
  BOOST_TEST(later(R"({"name": "${x}", "tags": ["${y}", 2]})") ==
             "input.tags[1]: expected string, got integer");
  BOOST_TEST(later(R"({"name": "${x}", "speed": 9})") == "input.speed: must be <= 4");
  BOOST_TEST(why(R"([1])") == "input: expected object, got array");
  // prefixItems: a schema per leading position (a row of columns), items for the rest.
  {
    auto row = json::parse(R"({"type": "array", "prefixItems": [{"type": "number"},
                                {"type": "integer"}], "items": {"type": "string"}})");
    BOOST_TEST(!validate_json(row, json::parse(R"([1.5, 2, "x"])")));
    BOOST_TEST(validate_json(row, json::parse(R"([1.5, 2.5])")).value_or("") ==
               "input[1]: expected integer, got number");
    BOOST_TEST(validate_json(row, json::parse(R"([1.5, 2, 3])")).value_or("") ==
               "input[2]: expected string, got integer");
  }
  BOOST_TEST(!validate_json(json::value(), json::parse("[1]")));  // no schema: anything goes
}

// What is wrong with a schema someone wrote: said, not ignored (an unknown keyword checks
// nothing, as JSON Schema says — so a typo in one passes everything).
// Conditions between fields: each allOf schema holds; `then` where `if` holds, `else` where not,
// a failing branch naming what it is about (roaster.command's per-setting ranges).
BOOST_AUTO_TEST_CASE(conditions_between_fields) {
  auto schema = json::parse(R"({
    "type": "object", "properties": {"setting": {"enum": ["heater", "fan", "drum"]},
                                     "value": {"type": "integer", "minimum": 0, "maximum": 12}},
    "allOf": [
      {"if": {"properties": {"setting": {"const": "heater"}}},
       "then": {"properties": {"value": {"maximum": 9}}, "description": "heater levels are 0-9"}},
      {"if": {"properties": {"setting": {"const": "fan"}}},
       "then": {"properties": {"value": {"minimum": 1}}, "description": "fan levels are 1-12"},
       "else": {"properties": {"value": {"maximum": 10}}, "description": "others end at 10"}}]})");
  auto why = [&](const char* text) {
    return validate_json(schema, json::parse(text)).value_or("");
  };
  BOOST_TEST(why(R"({"setting": "heater", "value": 9})") == "");
  BOOST_TEST(why(R"({"setting": "heater", "value": 12})") ==
             "input.value: must be <= 9 (heater levels are 0-9)");
  BOOST_TEST(why(R"({"setting": "fan", "value": 12})") == "");
  BOOST_TEST(why(R"({"setting": "fan", "value": 0})") ==
             "input.value: must be >= 1 (fan levels are 1-12)");
  BOOST_TEST(why(R"({"setting": "drum", "value": 11})") ==
             "input.value: must be <= 10 (others end at 10)");
  BOOST_TEST(why(R"({"value": 3})") == "");  // `if` holds where the field it names is absent
  // A value known only later (a template's placeholder) leaves the condition open: no branch is
  // judged, so a setting from the mission's inputs with a literal 12 is not refused at load.
  const auto later = [](const json::value& v) { return v.is_string() && v.as_string() == "?"; };
  BOOST_TEST(
      !validate_json(schema, json::parse(R"({"setting": "?", "value": 12})"), "input", later));
  BOOST_TEST(
      validate_json(schema, json::parse(R"({"setting": "heater", "value": 12})"), "input", later)
          .has_value());
  BOOST_TEST(kiln::runtime::schema_problems(schema, "schema").empty());
  const auto lone = kiln::runtime::schema_problems(json::parse(R"({"then": {"maximum": 1}})"), "s");
  BOOST_REQUIRE_EQUAL(lone.size(), 1u);
  BOOST_TEST(lone[0] == "s: 'then' and 'else' need an 'if' (without it they check nothing)");
}

BOOST_AUTO_TEST_CASE(schema_mistakes_are_named) {
  using kiln::runtime::schema_problems;
  auto all = [](const char* text) {
    std::string joined;
    for (const auto& p : schema_problems(json::parse(text), "inputs.x")) joined += p + "\n";
    return joined;
  };
  BOOST_TEST(all(R"({"type": "string", "minLength": 1, "default": "a", "description": "d"})") ==
             "");
  BOOST_TEST(all(R"({"type": "strng"})") ==
             "inputs.x.type: \"strng\" is not a JSON type (object, array, string, boolean, null, "
             "integer, number); did you mean 'string'?\n");
  BOOST_TEST(all(R"({"type": "string", "minLenght": 3})") ==
             "inputs.x: 'minLenght' is not a schema keyword kiln checks; did you mean "
             "'minLength'? (it would check nothing)\n");
  BOOST_TEST(all(R"({"type": "integer", "minimum": 10, "maximum": 5})") ==
             "inputs.x: minimum 10 is above maximum 5; nothing could pass\n");
  BOOST_TEST(all(R"({"type": "string", "maxLength": "ten"})") ==
             "inputs.x.maxLength must be a whole number\n");
  BOOST_TEST(all(R"({"type": "string", "pattern": "(open"})") ==
             "inputs.x.pattern: not a valid regular expression (ECMAScript)\n");
  BOOST_TEST(all(R"({"type": "object", "properties": {"a": {"type": ["integer", "nul"]}}})") ==
             "inputs.x.properties.a.type: \"nul\" is not a JSON type (object, array, string, "
             "boolean, null, integer, number); did you mean 'null'?\n");
  BOOST_TEST(all(R"({"type": "array", "items": {"typ": "string"}})") ==
             "inputs.x.items: 'typ' is not a schema keyword kiln checks; did you mean 'type'? (it "
             "would check nothing)\n");
  // Lists of schemas: each one checked, named by its place; a list that is not one, said.
  BOOST_TEST(all(R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "nmber"}]})") ==
             "inputs.x.prefixItems[1].type: \"nmber\" is not a JSON type (object, array, string, "
             "boolean, null, integer, number); did you mean 'number'?\n");
  BOOST_TEST(all(R"({"allOf": [{"minimum": 1}, {"maxLenght": 2}]})") ==
             "inputs.x.allOf[1]: 'maxLenght' is not a schema keyword kiln checks; did you mean "
             "'maxLength'? (it would check nothing)\n");
  BOOST_TEST(all(R"({"type": "array", "prefixItems": {"type": "string"}})") ==
             "inputs.x.prefixItems: a list of schemas, one for each leading item\n");
  BOOST_TEST(all(R"({"allOf": {"minimum": 1}})") ==
             "inputs.x.allOf: a list of schemas, each of which must hold\n");
}

BOOST_AUTO_TEST_CASE(schema_mistakes_the_validator_would_pass_over) {
  using kiln::runtime::schema_problems;
  auto all = [](const char* text) {
    std::string joined;
    for (const auto& p : schema_problems(json::parse(text), "s")) joined += p + "\n";
    return joined;
  };
  BOOST_TEST(all(R"({"type": "string", "format": "date"})") ==
             "s: 'format' is not a schema keyword kiln checks (it would check nothing)\n");
  BOOST_TEST(all(R"({"type": "string", "maxLength": 1e3})") ==
             "s.maxLength must be a whole number\n");
  BOOST_TEST(all(R"({"type": "number", "minimum": 0.5, "maximum": 1e3})") == "");
  BOOST_TEST(all(R"({"type": "array", "prefixItems": [{"type": "strng"}]})") ==
             "s.prefixItems[0].type: \"strng\" is not a JSON type (object, array, string, "
             "boolean, null, integer, number); did you mean 'string'?\n");
  BOOST_TEST(all(R"({"type": "object", "additionalProperties": {"type": "string"}})") ==
             "s.additionalProperties: true or false (a schema there is not checked)\n");
}
