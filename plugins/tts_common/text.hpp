// Text handling shared by the TTS plugins: input checks, markup, sentence splitting and English
// normalization (times, units, symbols, abbreviations). Pure functions, no engine dependency.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::tts {

// Why a text cannot be spoken, or nullopt. Checks, in order: valid UTF-8 (names the byte
// offset), no control characters other than tab, CR and LF (names the offset and code), and
// at least one letter or digit.
std::optional<std::string> check_text(std::string_view text);

// How many characters (Unicode code points of UTF-8) `text` holds: what tts_engine.max_chars
// limits, as OpenAI's 4,096 does ("café" is 4, not 5 bytes).
std::size_t characters(std::string_view text);

// Removes SSML-like markup: every `<...>` tag is dropped (its text content is spoken); the
// entities &amp; &lt; &gt; &quot; &apos; are decoded. Tags are not interpreted.
std::string strip_markup(std::string_view text);

// Splits into sentences at . ? ! ; followed by space (not after a known abbreviation or an
// initial) and at blank lines; a sentence longer than max_chars is further split at commas, then
// at spaces. Whitespace is collapsed; empty pieces are dropped.
std::vector<std::string> split_sentences(std::string_view text, std::size_t max_chars = 300);

// Rewrites what English engines read badly into words: temperatures (205 °C, 400°F), units after
// numbers (g, kg, s, min, ms, h, %), clock times (9:00 → "9 o'clock"), abbreviations (e.g., i.e.,
// approx., etc., vs., No. 5), number ranges (7–9 → 7 to 9), and typographic quotes and dashes.
// Numbers themselves stay digits: the engines' own front ends read them.
std::string normalize_english(std::string_view sentence);

}  // namespace kiln::tts
