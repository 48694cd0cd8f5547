#include "pyliteral.hpp"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include <boost/json.hpp>

namespace kiln::roast {

namespace json = boost::json;

namespace {

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  json::value document() {
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
    std::string found = i_ < s_.size() ? "'" + std::string(1, s_[i_]) + "'" : "the end of the text";
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

  void append_code_point(std::string& out, std::uint32_t cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) fail("a lone surrogate escape cannot be UTF-8 text");
    append_utf8(out, cp);
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
        out += c;
        ++i_;
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
        case 'u':
          append_utf8(out, hex(4));
          break;
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
