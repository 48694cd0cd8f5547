// Small string helpers shared by the kernel: edit distance for "did you mean", joining lists.
#pragma once

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

std::string to_lower(std::string_view s);
std::string to_upper(std::string_view s);

}  // namespace kiln::common
