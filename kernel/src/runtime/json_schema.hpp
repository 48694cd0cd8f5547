// A JSON Schema validator for the subset tool schemas use: type, properties, required,
// additionalProperties (boolean), items, enum, const, minimum, maximum, minLength, maxLength,
// minItems, maxItems, prefixItems, pattern. Unknown keywords are ignored, as JSON Schema says.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

namespace kiln::runtime {

// Returns the first violation as "<path>: <what>" (path like "input.voice" or "input[2]"),
// or nullopt when `value` conforms. A null schema accepts everything.
std::optional<std::string> validate_json(const boost::json::value& schema,
                                         const boost::json::value& value,
                                         const std::string& path = "input");
// As above, but a value `pending` says is not known yet (a mission template's `${...}`, rendered
// when the step runs) conforms to any schema; everything around it is checked.
std::optional<std::string> validate_json(
    const boost::json::value& schema, const boost::json::value& value, const std::string& path,
    const std::function<bool(const boost::json::value&)>& pending);

// What is wrong with `schema` itself, as this validator reads it, each "<path>: <what>": a keyword
// it does not know (minLenght: ignored, as JSON Schema says — so a typo silently checks nothing),
// a type that is no JSON type, a bound that is not a number or lies above its counterpart, a
// pattern that does not compile. For schemas people write (a mission template's inputs).
std::vector<std::string> schema_problems(const boost::json::value& schema, const std::string& path);

}  // namespace kiln::runtime
