// A JSON Schema validator for the subset tool schemas use: type, properties, required,
// additionalProperties (boolean), items, enum, const, minimum, maximum, minLength, maxLength,
// minItems, maxItems, prefixItems, pattern. Unknown keywords are ignored, as JSON Schema says.
#pragma once

#include <functional>
#include <optional>
#include <string>

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

}  // namespace kiln::runtime
