// A parser for Python literals (what `repr()` of a dict writes and `ast.literal_eval` reads),
// into Boost.JSON values: dicts (string, number, bool and None keys become JSON keys), lists,
// tuples and sets (arrays), str with every escape Python writes, int (beyond 64 bits: a double),
// float (1e-05, inf/nan are not literals and are refused), True, False, None, unary minus and
// plus, implicit concatenation of adjacent strings, comments and line continuations.
// Artisan's .alog files are such literals. Not eval, not regular expressions.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

namespace kiln::roast {

struct PyLiteralError : std::runtime_error {
  PyLiteralError(const std::string& what, int line, int column)
      : std::runtime_error(what), line(line), column(column) {}
  int line, column;
};

// Throws PyLiteralError ("line L, column C: what was expected, what was found").
boost::json::value parse_python_literal(std::string_view text);

}  // namespace kiln::roast
