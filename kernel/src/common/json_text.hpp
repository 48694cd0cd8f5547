// JSON text as people and clients read it: numbers in their shortest form that reads back as the
// same double (1796290541.0, 176.47576253808563), not Boost.JSON's exponent form (1.796290541E9).
// The HTTP answers and the CLI's printing use it; the ledger keeps json::serialize (its hashes
// are over that text).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/json/error.hpp>
#include <boost/json/value.hpp>

namespace kiln::common {

// A double's shortest round-trip text; an integral value keeps ".0" so that it reads back as a
// double, not an integer. Not finite: "null" (JSON has no NaN or infinity).
std::string number_text(double d);

// `v` as compact JSON text (no spaces), numbers as number_text writes them.
std::string json_text(const boost::json::value& v);

// JSON `text` parsed in one pass, refusing a key given twice in one object: Boost.JSON keeps the
// last of the two, where another reader may take the first — which one a request meant is a
// guess. Limits as boost::json::parse's defaults (depth 32).
struct StrictJson {
  boost::json::value value;
  boost::json::error_code ec;            // not JSON: then nothing else is set
  std::optional<std::string> duplicate;  // the first key given twice: its path (`steps[2].id`)
};
StrictJson parse_strict(std::string_view text);

}  // namespace kiln::common
