#include "text.hpp"

#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <utility>

namespace kiln::tts {

namespace {

// Decodes one UTF-8 sequence at s[i]; returns its length, or 0 when it is invalid.
std::size_t utf8_length(std::string_view s, std::size_t i, std::uint32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  std::uint32_t c = 0;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    n = 2;
    c = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3;
    c = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4;
    c = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    c = (c << 6) | (b & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are invalid.
  static constexpr std::array<std::uint32_t, 5> kMin{0, 0, 0x80, 0x800, 0x10000};
  if (c < kMin[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  *cp = c;
  return n;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Words after which a period does not end a sentence.
bool is_abbreviation(std::string_view word) {
  static constexpr std::array<std::string_view, 24> kAbbrev{
      "dr",     "mr", "mrs", "ms",  "st",  "prof", "sr",  "jr", "vs", "etc", "e.g", "i.e",
      "approx", "no", "fig", "min", "sec", "max",  "avg", "ca", "cf", "inc", "ltd", "co"};
  const std::string w = lower(word);
  if (w.size() == 1 && is_alpha(w[0])) return true;  // an initial: "J. Smith"
  for (auto a : kAbbrev)
    if (w == a) return true;
  return false;
}

void collapse_append(std::string& out, std::string_view piece) {
  for (char c : piece) {
    if (is_space(c)) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
}

std::string trim(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

void push_limited(std::vector<std::string>& out, std::string sentence, std::size_t max_chars) {
  sentence = trim(std::move(sentence));
  if (sentence.empty()) return;
  while (sentence.size() > max_chars) {
    // Cut at the last comma, else the last space, before the limit; else hard at the limit
    // (keeping UTF-8 sequences whole).
    std::size_t cut = sentence.rfind(',', max_chars);
    if (cut == std::string::npos || cut < max_chars / 3) cut = sentence.rfind(' ', max_chars);
    if (cut == std::string::npos || cut == 0) {
      cut = max_chars;
      while (cut > 0 && (static_cast<unsigned char>(sentence[cut]) & 0xC0) == 0x80) --cut;
      if (cut == 0) cut = max_chars;  // not UTF-8 at all: cut anyway, never loop
    } else {
      ++cut;  // keep the comma with the first part
    }
    auto head = trim(sentence.substr(0, cut));
    if (!head.empty()) out.push_back(std::move(head));
    sentence = trim(sentence.substr(cut));
  }
  if (!sentence.empty()) out.push_back(std::move(sentence));
}

bool has_word_char(std::string_view s) {
  for (char c : s)
    if (is_alpha(c) || is_digit(c) || (static_cast<unsigned char>(c) >= 0x80)) return true;
  return false;
}

}  // namespace

std::size_t characters(std::string_view text) {
  std::size_t n = 0;
  for (const char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

std::optional<std::string> check_text(std::string_view text) {
  bool speakable = false;
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp = 0;
    const std::size_t n = utf8_length(text, i, &cp);
    if (n == 0) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned char>(text[i]));
      return "text is not valid UTF-8: byte " + std::to_string(i) + " (" + buf +
             ") does not start a valid sequence; send UTF-8 text";
    }
    const bool control = (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0x7F ||
                         (cp >= 0x80 && cp < 0xA0);
    if (control) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
      return "text contains the control character " + std::string(buf) + " at byte " +
             std::to_string(i) + "; remove it (tab and newlines are allowed)";
    }
    if (cp >= 0x80 || std::isalnum(static_cast<int>(cp))) speakable = true;
    i += n;
  }
  if (!speakable) return std::string("text has nothing to speak (no letters or digits)");
  return std::nullopt;
}

std::string strip_markup(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '<') {
      // A tag is '<' followed by a letter, '/', '?' or '!' and ending at the next '>'.
      if (i + 1 < text.size() && (is_alpha(text[i + 1]) || text[i + 1] == '/' ||
                                  text[i + 1] == '?' || text[i + 1] == '!')) {
        const std::size_t end = text.find('>', i + 1);
        if (end != std::string_view::npos) {
          out += ' ';
          i = end;
          continue;
        }
      }
      out += c;
    } else if (c == '&') {
      static constexpr std::array<std::pair<std::string_view, char>, 5> kEntities{
          {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}}};
      bool done = false;
      for (const auto& [name, ch] : kEntities) {
        if (text.substr(i, name.size()) == name) {
          out += ch;
          i += name.size() - 1;
          done = true;
          break;
        }
      }
      if (!done) out += c;
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<std::string> split_sentences(std::string_view text, std::size_t max_chars) {
  std::vector<std::string> out;
  if (max_chars < 16) max_chars = 16;
  std::string cur;
  std::size_t newlines = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      if (++newlines >= 2) {  // a blank line ends a paragraph
        push_limited(out, std::move(cur), max_chars);
        cur.clear();
        newlines = 0;
        continue;
      }
    } else if (c != '\r' && c != ' ' && c != '\t') {
      newlines = 0;
    }
    collapse_append(cur, std::string_view(&c, 1));
    const bool terminal = c == '.' || c == '?' || c == '!' || c == ';';
    const bool followed_by_space =
        i + 1 >= text.size() || is_space(text[i + 1]) || text[i + 1] == '"' || text[i + 1] == ')';
    if (!terminal || !followed_by_space) continue;
    if (c == '.') {
      // The word before the period: an abbreviation or an initial does not end the sentence,
      // unless the next word starts in lower case... which it would not; keep it simple.
      std::size_t end = cur.size() - 1, start = end;
      while (start > 0 && cur[start - 1] != ' ') --start;
      const std::string_view word(cur.data() + start, end - start);
      if (is_abbreviation(word)) continue;
    }
    // Closing quotes or brackets stay with their sentence.
    while (i + 1 < text.size() && (text[i + 1] == '"' || text[i + 1] == ')')) cur += text[++i];
    push_limited(out, std::move(cur), max_chars);
    cur.clear();
  }
  push_limited(out, std::move(cur), max_chars);
  std::vector<std::string> speakable;
  for (auto& s : out)
    if (has_word_char(s)) speakable.push_back(std::move(s));
  return speakable;
}

namespace {

// Replaces every occurrence of `from` by `to`.
void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
}

// Is s[i..] the unit `unit` as a whole word (followed by a non-letter)?
bool unit_at(const std::string& s, std::size_t i, std::string_view unit) {
  if (s.compare(i, unit.size(), unit) != 0) return false;
  const std::size_t after = i + unit.size();
  return after >= s.size() || !is_alpha(s[after]);
}

}  // namespace

std::string normalize_english(std::string_view sentence) {
  std::string s(sentence);
  // Typography first: quotes, dashes, the degree sign's spellings.
  replace_all(s, "\xE2\x80\x9C", "\"");  // “
  replace_all(s, "\xE2\x80\x9D", "\"");  // ”
  replace_all(s, "\xE2\x80\x98", "'");   // ‘
  replace_all(s, "\xE2\x80\x99", "'");   // ’
  replace_all(s, "\xE2\x80\xA6", "...");
  replace_all(s, "\xE2\x84\x83",
              "\xC2\xB0"
              "C");  // ℃
  replace_all(s, "\xE2\x84\x89",
              "\xC2\xB0"
              "F");                 // ℉
  replace_all(s, "\xC2\xA0", " ");  // no-break space

  std::string out;
  out.reserve(s.size() + 32);
  auto last_is_digit = [&] {
    std::size_t k = out.size();
    while (k > 0 && out[k - 1] == ' ') --k;
    return k > 0 && is_digit(out[k - 1]);
  };
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    // Degrees: "°C", "° C", "°F", bare "°".
    if (s.compare(i, 2, "\xC2\xB0") == 0) {
      std::size_t j = i + 2;
      while (j < s.size() && s[j] == ' ') ++j;
      out += " degrees";
      if (j < s.size() && (s[j] == 'C' || s[j] == 'F') &&
          (j + 1 >= s.size() || !is_alpha(s[j + 1]))) {
        out += s[j] == 'C' ? " Celsius" : " Fahrenheit";
        i = j + 1;
      } else {
        i += 2;
      }
      continue;
    }
    // En and em dashes: a range between numbers reads "to", anything else is a pause.
    if (s.compare(i, 3, "\xE2\x80\x93") == 0 || s.compare(i, 3, "\xE2\x80\x94") == 0) {
      const bool range = last_is_digit() && i + 3 < s.size() && is_digit(s[i + 3]);
      out += range ? " to " : ", ";
      i += 3;
      continue;
    }
    if (c == '-' && last_is_digit() && !out.empty() && is_digit(out.back()) && i + 1 < s.size() &&
        is_digit(s[i + 1])) {
      out += " to ";
      ++i;
      continue;
    }
    // Clock times on the hour: 9:00 → 9 o'clock (flite and espeak read 9:05 well already).
    if (c == ':' && !out.empty() && is_digit(out.back()) && s.compare(i, 3, ":00") == 0 &&
        (i + 3 >= s.size() || !is_digit(s[i + 3]))) {
      out += " o'clock";
      i += 3;
      continue;
    }
    if (c == '%') {
      out += " percent";
      ++i;
      continue;
    }
    // Units directly after a number ("250g", "250 g", "90 s", "5 min").
    if (is_alpha(c) && last_is_digit() && (out.back() == ' ' || is_digit(out.back()))) {
      static constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kUnits{{
          {"kg", "kilograms"},
          {"mg", "milligrams"},
          {"g", "grams"},
          {"ms", "milliseconds"},
          {"min", "minutes"},
          {"s", "seconds"},
          {"sec", "seconds"},
          {"h", "hours"},
          {"hz", "hertz"},
          {"kHz", "kilohertz"},
      }};
      bool done = false;
      for (const auto& [unit, word] : kUnits) {
        if (unit_at(s, i, unit) && !(i + unit.size() < s.size() && s[i + unit.size()] == '\'')) {
          if (out.back() != ' ') out += ' ';
          out += word;
          i += unit.size();
          if (i < s.size() && s[i] == '.' && unit == "min") ++i;  // "5 min." mid-sentence
          done = true;
          break;
        }
      }
      if (done) continue;
    }
    // Abbreviations at a word start.
    if (is_alpha(c) && (out.empty() || !is_alpha(out.back()))) {
      static constexpr std::array<std::pair<std::string_view, std::string_view>, 8> kAbbrev{{
          {"e.g.", "for example"},
          {"i.e.", "that is"},
          {"etc.", "et cetera"},
          {"approx.", "approximately"},
          {"vs.", "versus"},
          {"No.", "number"},
          {"Fig.", "figure"},
          {"avg.", "average"},
      }};
      bool done = false;
      for (const auto& [abbr, word] : kAbbrev) {
        if (s.compare(i, abbr.size(), abbr) == 0) {
          if (abbr == "No." &&
              !(i + 3 < s.size() && (is_digit(s[i + 3]) ||
                                     (s[i + 3] == ' ' && i + 4 < s.size() && is_digit(s[i + 4])))))
            break;  // "No." only before a number
          out += word;
          i += abbr.size();
          if (i < s.size() && (is_alpha(s[i]) || is_digit(s[i]))) out += ' ';  // "No.5"
          // The abbreviation's period may also end the sentence.
          if (i >= s.size()) out += '.';
          done = true;
          break;
        }
      }
      if (done) continue;
    }
    out += c;
    ++i;
  }
  std::string collapsed;
  collapse_append(collapsed, out);
  return trim(collapsed);
}

}  // namespace kiln::tts
