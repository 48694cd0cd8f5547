#include "pyliteral.hpp"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include <boost/json.hpp>

namespace kiln::roast {

namespace json = boost::json;

namespace {

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  json::value document() {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") i_ = 3;  // a UTF-8 byte order mark (an editor's)
    skip();
    json::value v = value(0);
    skip();
    if (i_ != s_.size()) fail("unexpected text after the literal");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;

  [[noreturn]] void fail(const std::string& what) const {
    int line = 1, col = 1;
    for (std::size_t k = 0; k < i_ && k < s_.size(); ++k) {
      if (s_[k] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    // The byte as text a terminal shows as it is: printable ASCII, else its value.
    std::string found = "the end of the text";
    if (i_ < s_.size()) {
      const auto b = static_cast<unsigned char>(s_[i_]);
      char hex[16];
      std::snprintf(hex, sizeof hex, "byte 0x%02X", b);
      found = b >= 0x20 && b < 0x7F ? "'" + std::string(1, s_[i_]) + "'" : std::string(hex);
    }
    throw PyLiteralError("line " + std::to_string(line) + ", column " + std::to_string(col) + ": " +
                             what + " (found " + found + ")",
                         line, col);
  }

  // Whitespace, comments and backslash-newline continuations.
  void skip() {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
        ++i_;
      } else if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else if (c == '\\' && i_ + 1 < s_.size() && (s_[i_ + 1] == '\n' || s_[i_ + 1] == '\r')) {
        i_ += 2;
      } else {
        break;
      }
    }
  }

  bool eat(char c) {
    skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  bool word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    const std::size_t after = i_ + w.size();
    if (after < s_.size() &&
        (std::isalnum(static_cast<unsigned char>(s_[after])) || s_[after] == '_'))
      return false;
    i_ = after;
    return true;
  }

  json::value value(int depth) {
    if (depth > kMaxDepth) fail("literal nested more than 64 deep");
    skip();
    if (i_ >= s_.size()) fail("expected a value");
    const char c = s_[i_];
    if (c == '{') return dict_or_set(depth);
    if (c == '[') return sequence(']', depth);
    if (c == '(') return sequence(')', depth);
    if (c == '\'' || c == '"') return string_value();
    if ((c == 'r' || c == 'R' || c == 'u' || c == 'U') && i_ + 1 < s_.size() &&
        (s_[i_ + 1] == '\'' || s_[i_ + 1] == '"'))
      return string_value();
    if ((c == 'b' || c == 'B') && i_ + 1 < s_.size() && (s_[i_ + 1] == '\'' || s_[i_ + 1] == '"'))
      fail("bytes literals are not supported");
    if (word("True")) return true;
    if (word("False")) return false;
    if (word("None")) return nullptr;
    if (c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9')) return number();
    // Words a file that is not an .alog holds: said as what they are, not as a letter found.
    for (const char* json_word : {"true", "false", "null"})
      if (word(json_word))
        fail(std::string("expected a value, found JSON's '") + json_word +
             "': an Artisan .alog is a Python literal (True, False, None); is this a JSON file?");
    for (const char* not_a_number : {"nan", "inf"})
      if (word(not_a_number))
        fail(std::string("expected a value, found '") + not_a_number +
             "', which a Python literal cannot hold (Artisan writes a missing reading as -1)");
    fail("expected a value (dict, list, tuple, string, number, True, False or None)");
  }

  json::value dict_or_set(int depth) {
    ++i_;  // '{'
    if (eat('}')) return json::object{};
    json::value first = value(depth + 1);
    if (eat(':')) {
      json::object o;
      json::value v = value(depth + 1);
      o[key_of(first)] = std::move(v);
      while (eat(',')) {
        if (eat('}')) return o;
        json::value k = value(depth + 1);
        if (!eat(':')) fail("expected ':' after a dict key");
        o[key_of(k)] = value(depth + 1);
      }
      if (!eat('}')) fail("expected ',' or '}' in a dict");
      return o;
    }
    json::array set{std::move(first)};
    while (eat(',')) {
      if (eat('}')) return set;
      set.push_back(value(depth + 1));
    }
    if (!eat('}')) fail("expected ',' or '}' in a set");
    return set;
  }

  std::string key_of(const json::value& k) {
    if (k.is_string()) return std::string(k.as_string());
    if (k.is_null() || k.is_bool() || k.is_number()) return json::serialize(k);
    fail("a dict key must be a string, number, bool or None");
  }

  json::value sequence(char close, int depth) {
    ++i_;  // '[' or '('
    json::array a;
    if (eat(close)) return a;
    a.push_back(value(depth + 1));
    while (eat(',')) {
      if (eat(close)) return a;
      a.push_back(value(depth + 1));
    }
    if (!eat(close)) fail(std::string("expected ',' or '") + close + "'");
    return a;
  }

  // A surrogate escape alone (Python keeps it in a str; UTF-8 cannot hold it) becomes U+FFFD.
  static void append_code_point(std::string& out, std::uint32_t cp) {
    append_utf8(out, cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp);
  }

  // The length of the valid UTF-8 sequence at s[i], or 0 when the byte there does not start one.
  static std::size_t utf8_length(std::string_view s, std::size_t i) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = b < 0x80           ? 1
                    : (b >> 5) == 0x6  ? 2
                    : (b >> 4) == 0xE  ? 3
                    : (b >> 3) == 0x1E ? 4
                                       : 0;
    if (n == 0 || i + n > s.size()) return 0;
    std::uint32_t cp = n == 1 ? b : n == 2 ? b & 0x1F : n == 3 ? b & 0x0F : b & 0x07;
    for (std::size_t k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c >> 6) != 0x2) return 0;
      cp = (cp << 6) | (c & 0x3F);
    }
    const bool overlong =
        (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::uint32_t hex(int digits) {
    std::uint32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_])))
        fail("expected " + std::to_string(digits) + " hex digits in an escape");
      const char h = s_[i_++];
      v = v * 16 + static_cast<std::uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return v;
  }

  // One string token; adjacent tokens concatenate ('a' 'b' == 'ab').
  json::value string_value() {
    std::string out;
    do {
      one_string(out);
      skip();
    } while (i_ < s_.size() &&
             (s_[i_] == '\'' || s_[i_] == '"' ||
              ((s_[i_] == 'r' || s_[i_] == 'u' || s_[i_] == 'R' || s_[i_] == 'U') &&
               i_ + 1 < s_.size() && (s_[i_ + 1] == '\'' || s_[i_ + 1] == '"'))));
    return json::value(json::string(out));
  }

  void one_string(std::string& out) {
    bool raw = false;
    if (s_[i_] == 'r' || s_[i_] == 'R') {
      raw = true;
      ++i_;
    } else if (s_[i_] == 'u' || s_[i_] == 'U') {
      ++i_;
    }
    const char q = s_[i_];
    const bool triple = s_.substr(i_, 3) == std::string(3, q);
    i_ += triple ? 3 : 1;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_];
      if (triple ? s_.substr(i_, 3) == std::string(3, q) : c == q) {
        i_ += triple ? 3 : 1;
        return;
      }
      if (!triple && (c == '\n' || c == '\r')) fail("newline inside a string");
      if (c != '\\' || raw) {
        // Text that is not UTF-8 (an .alog is) is kept as U+FFFD, byte by byte.
        if (const std::size_t n = utf8_length(s_, i_); n > 0) {
          out.append(s_.substr(i_, n));
          i_ += n;
        } else {
          append_utf8(out, 0xFFFD);
          ++i_;
        }
        continue;
      }
      ++i_;
      if (i_ >= s_.size()) fail("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '\n':
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'v':
          out += '\v';
          break;
        case 'x':
          append_utf8(out, hex(2));
          break;
        case 'u': {
          std::uint32_t cp = hex(4);
          // A surrogate pair written as two escapes is one character.
          if (cp >= 0xD800 && cp <= 0xDBFF && s_.substr(i_, 2) == "\\u") {
            const std::size_t at = i_;
            i_ += 2;
            const std::uint32_t low = hex(4);
            if (low >= 0xDC00 && low <= 0xDFFF)
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            else
              i_ = at;  // not a pair: the next escape stands alone
          }
          append_code_point(out, cp);
          break;
        }
        case 'U': {
          const std::uint32_t cp = hex(8);
          if (cp > 0x10FFFF) fail("\\U escape beyond U+10FFFF");
          append_code_point(out, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            std::uint32_t v = static_cast<std::uint32_t>(e - '0');
            for (int k = 0; k < 2 && i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '7'; ++k)
              v = v * 8 + static_cast<std::uint32_t>(s_[i_++] - '0');
            append_utf8(out, v);
          } else {
            out += '\\';  // Python keeps unknown escapes as they are
            out += e;
          }
      }
    }
  }

  json::value number() {
    bool negative = false;
    while (i_ < s_.size() && (s_[i_] == '-' || s_[i_] == '+')) {
      if (s_[i_] == '-') negative = !negative;
      ++i_;
      skip();
    }
    const std::size_t start = i_;
    bool is_float = false;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (std::isdigit(static_cast<unsigned char>(c)) || c == '_') {
        ++i_;
      } else if (c == '.' || c == 'e' || c == 'E') {
        is_float = true;
        ++i_;
        if ((c == 'e' || c == 'E') && i_ < s_.size() && (s_[i_] == '-' || s_[i_] == '+')) ++i_;
      } else {
        break;
      }
    }
    std::string digits;
    for (std::size_t k = start; k < i_; ++k)
      if (s_[k] != '_') digits += s_[k];
    if (digits.empty() || digits == ".") fail("expected a number");
    if (i_ < s_.size() && (std::isalpha(static_cast<unsigned char>(s_[i_])))) {
      if (s_.substr(i_, 1) == "j" || s_.substr(i_, 1) == "J")
        fail("complex numbers are not supported");
      fail("expected a number");
    }
    errno = 0;
    char* end = nullptr;
    if (!is_float) {
      const long long v = std::strtoll(digits.c_str(), &end, 10);
      if (errno == 0 && end && *end == '\0') return json::value(negative ? -v : v);
      errno = 0;  // beyond 64 bits: keep it as a double
    }
    const double d = std::strtod(digits.c_str(), &end);
    if (!end || *end != '\0') fail("malformed number '" + digits + "'");
    if (!std::isfinite(d)) fail("number out of range '" + digits + "'");
    return json::value(negative ? -d : d);
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

json::value parse_python_literal(std::string_view text) {
  return Parser(text).document();
}

}  // namespace kiln::roast
