// Small string helpers shared by the kernel: edit distance for "did you mean", joining lists.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::common {

std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word`, or "" when none is close enough to be a likely typo.
std::string closest(std::string_view word, const std::vector<std::string>& candidates);

// ", did you mean 'x'?" or "" — ready to append to an error message.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

std::string join(const std::vector<std::string>& items, std::string_view sep = ", ");

// `s` with every byte that is not part of well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF) replaced by U+FFFD. JSON text must be UTF-8; Boost.JSON
// writes strings byte for byte, so text that came from outside goes through this before it
// reaches an answer or the ledger.
std::string to_valid_utf8(std::string s);

// An age or interval as people write one: a whole number with a unit, s m h d or w ("90d",
// "12h", "0s"); nullopt for anything else (no unit, a fraction, a sign, past 100 years).
std::optional<std::chrono::seconds> parse_age(std::string_view s);
// What parse_age reads, for error messages.
inline constexpr std::string_view kAgeForm =
    "a whole number and s, m, h, d or w, up to 100 years (e.g. 90d)";

std::string to_lower(std::string_view s);
std::string to_upper(std::string_view s);

}  // namespace kiln::common
