#include "api/json_scan.h"

#include <charconv>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <system_error>
#include <vector>

namespace floodgate::api {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// A number's decimal value as sign, significant digits and exponent (digits × 10^exponent),
/// so that two spellings of one value compare equal ("1.50e1" and "15.0").
struct Decimal {
  bool negative = false;
  std::string digits;  // no leading or trailing zeros; empty for zero
  int64_t exponent = 0;
  bool exponent_overflow = false;

  bool operator==(const Decimal& o) const {
    if (exponent_overflow || o.exponent_overflow) return false;
    if (digits.empty() || o.digits.empty()) return digits.empty() && o.digits.empty();
    return negative == o.negative && digits == o.digits && exponent == o.exponent;
  }
};

Decimal decimal_of(std::string_view s) {
  Decimal d;
  size_t i = 0;
  if (i < s.size() && s[i] == '-') {
    d.negative = true;
    ++i;
  }
  int64_t frac_digits = 0;
  bool in_frac = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      in_frac = true;
    } else if (is_digit(c)) {
      if (!(d.digits.empty() && c == '0')) d.digits += c;
      if (in_frac) ++frac_digits;
    } else {
      break;
    }
  }
  int64_t exp = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    for (; i < s.size(); ++i) {
      if (exp > 1'000'000'000'000LL) {
        d.exponent_overflow = true;
        break;
      }
      exp = exp * 10 + (s[i] - '0');
    }
    if (neg) exp = -exp;
  }
  d.exponent = exp - frac_digits;
  while (!d.digits.empty() && d.digits.back() == '0') {
    d.digits.pop_back();
    ++d.exponent;
  }
  return d;
}

std::string shorten(std::string_view s) {
  if (s.size() <= 40) return std::string(s);
  return std::string(s.substr(0, 20)) + "..." + std::string(s.substr(s.size() - 10));
}

/// Checks that a number's value survives floodgate's JSON library unchanged; the reason if not.
std::optional<std::string> number_problem(std::string_view token, bool integral) {
  if (integral) {
    if (token[0] == '-') {
      int64_t v = 0;
      auto [p, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
      if (ec == std::errc() && p == token.data() + token.size()) return std::nullopt;
    } else {
      uint64_t v = 0;
      auto [p, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
      if (ec == std::errc() && p == token.data() + token.size()) return std::nullopt;
    }
    return "the integer " + shorten(token) +
           " does not fit in 64 bits and would not reach Prefect as sent; send it as a string";
  }
  double v = 0;
  auto [p, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
  if (ec == std::errc::result_out_of_range) {
    return "the number " + shorten(token) + " is out of range for a 64-bit float";
  }
  if (ec != std::errc() || p != token.data() + token.size()) {
    return "the number " + shorten(token) + " cannot be read";
  }
  // The text floodgate will send is what its JSON library writes for this double.
  const std::string sent = nlohmann::json(v).dump();
  // Its Grisu2 output is not always the shortest text for the double (2.552812738932589e+16 is
  // written 2.5528127389325888e+16): both read back as the same double, so a token equal to the
  // shortest round-trip text also reaches Prefect unchanged.
  char shortest[64];
  auto sr = std::to_chars(shortest, shortest + sizeof shortest, v, std::chars_format::scientific);
  const auto want = decimal_of(token);
  if (!(want == decimal_of(sent)) &&
      !(sr.ec == std::errc() && want == decimal_of(std::string_view(shortest, sr.ptr)))) {
    return "the number " + shorten(token) +
           " has more precision than a 64-bit float carries and would reach Prefect as " + sent +
           "; send it as a string";
  }
  return std::nullopt;
}

struct Frame {
  bool array = false;
  size_t index = 0;
  std::string_view key;  // raw text of the current member's key, without quotes
};

class Scanner {
 public:
  Scanner(std::string_view text, int max_depth, const std::string& prefix)
      : s_(text), max_depth_(max_depth), prefix_(prefix) {}

  std::optional<JsonProblem> run() {
    skip_blank();
    while (true) {
      // A value starts here.
      if (pos_ >= s_.size()) return fail_syntax("unexpected end of the text");
      const char c = s_[pos_];
      if (c == '{' || c == '[') {
        if (static_cast<int>(stack_.size()) >= max_depth_) {
          return JsonProblem{field(), "nests deeper than " + std::to_string(max_depth_) +
                                          " levels of objects and lists (--max-json-depth)"};
        }
        stack_.push_back(Frame{c == '[', 0, {}});
        ++pos_;
        skip_blank();
        if (pos_ < s_.size() && s_[pos_] == (c == '[' ? ']' : '}')) {
          stack_.pop_back();
          ++pos_;
        } else if (c == '{') {
          if (auto bad = member_key()) return bad;
          continue;
        } else {
          continue;
        }
      } else if (c == '"') {
        std::string_view ignored;
        if (auto bad = string(ignored)) return bad;
      } else if (c == '-' || is_digit(c)) {
        if (auto bad = number()) return bad;
      } else if (!literal("true") && !literal("false") && !literal("null")) {
        return fail_syntax("unexpected character");
      }
      // After a value: close containers, or move to the next element or member.
      while (true) {
        skip_blank();
        if (stack_.empty()) {
          if (pos_ != s_.size()) return fail_syntax("unexpected text after the JSON value");
          return std::nullopt;
        }
        if (pos_ >= s_.size()) return fail_syntax("unexpected end of the text");
        Frame& top = stack_.back();
        const char d = s_[pos_];
        if (d == ',') {
          ++pos_;
          skip_blank();
          if (top.array) {
            ++top.index;
          } else if (auto bad = member_key()) {
            return bad;
          }
          break;
        }
        if (d == (top.array ? ']' : '}')) {
          stack_.pop_back();
          ++pos_;
          continue;
        }
        return fail_syntax(top.array ? "expected ',' or ']'" : "expected ',' or '}'");
      }
    }
  }

 private:
  void skip_blank() {
    while (pos_ < s_.size() && is_blank(s_[pos_])) ++pos_;
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  std::optional<JsonProblem> member_key() {
    if (pos_ >= s_.size() || s_[pos_] != '"') return fail_syntax("expected a member name");
    std::string_view key;
    if (auto bad = string(key)) return bad;
    stack_.back().key = key;
    skip_blank();
    if (pos_ >= s_.size() || s_[pos_] != ':') return fail_syntax("expected ':'");
    ++pos_;
    skip_blank();
    return std::nullopt;
  }

  // A string at pos_ (on its opening quote); `raw` gets its text between the quotes.
  std::optional<JsonProblem> string(std::string_view& raw) {
    const size_t start = ++pos_;
    while (true) {
      if (pos_ >= s_.size()) return fail_syntax("unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') break;
      if (c < 0x20) return fail_syntax("control character in a string (escape it)");
      if (c == '\\') {
        if (auto bad = escape()) return bad;
        continue;
      }
      if (c < 0x80) {
        ++pos_;
        continue;
      }
      if (!utf8_sequence()) return fail_syntax("invalid UTF-8 in a string");
    }
    raw = s_.substr(start, pos_ - start);
    ++pos_;
    return std::nullopt;
  }

  std::optional<JsonProblem> escape() {
    if (pos_ + 1 >= s_.size()) return fail_syntax("unterminated string");
    const char e = s_[pos_ + 1];
    if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
        e == 't') {
      pos_ += 2;
      return std::nullopt;
    }
    if (e != 'u') return fail_syntax("invalid escape in a string");
    int unit = hex4(pos_ + 2);
    if (unit < 0) return fail_syntax("invalid \\u escape in a string");
    pos_ += 6;
    if (unit >= 0xDC00 && unit <= 0xDFFF) return fail_syntax("lone surrogate in a string");
    if (unit >= 0xD800 && unit <= 0xDBFF) {
      // A high surrogate must be followed by an escaped low one.
      if (pos_ + 1 >= s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') {
        return fail_syntax("lone surrogate in a string");
      }
      int low = hex4(pos_ + 2);
      if (low < 0xDC00 || low > 0xDFFF) return fail_syntax("lone surrogate in a string");
      pos_ += 6;
    }
    return std::nullopt;
  }

  int hex4(size_t at) const {
    if (at + 4 > s_.size()) return -1;
    int v = 0;
    for (size_t i = at; i < at + 4; ++i) {
      int h = hex_digit(s_[i]);
      if (h < 0) return -1;
      v = v * 16 + h;
    }
    return v;
  }

  // One multi-byte UTF-8 sequence at pos_: shortest form, no surrogates, at most U+10FFFF.
  bool utf8_sequence() {
    const auto b0 = static_cast<unsigned char>(s_[pos_]);
    size_t n = 0;
    uint32_t cp = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      n = 2;
      cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      n = 3;
      cp = b0 & 0x0F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      n = 4;
      cp = b0 & 0x07;
    } else {
      return false;
    }
    if (pos_ + n > s_.size()) return false;
    for (size_t i = 1; i < n; ++i) {
      const auto b = static_cast<unsigned char>(s_[pos_ + i]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    pos_ += n;
    return true;
  }

  std::optional<JsonProblem> number() {
    const size_t start = pos_;
    bool integral = true;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || !is_digit(s_[pos_])) return fail_syntax("invalid number");
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) return fail_syntax("invalid number");
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) return fail_syntax("invalid number");
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (auto why = number_problem(s_.substr(start, pos_ - start), integral)) {
      return JsonProblem{field(), *why};
    }
    return std::nullopt;
  }

  // The path to the value being read, e.g. "runs[0].parameters.a"; long paths are cut short.
  std::string field() const {
    std::string out = prefix_;
    size_t shown = 0;
    for (const auto& f : stack_) {
      if (++shown > 6) {
        out += "...";
        break;
      }
      if (f.array) {
        out += "[" + std::to_string(f.index) + "]";
      } else {
        if (!out.empty()) out += '.';
        out += shorten(f.key);
      }
    }
    return out.empty() ? "body" : out;
  }

  JsonProblem fail_syntax(const std::string& what) const {
    return JsonProblem{prefix_.empty() ? "body" : prefix_,
                       "is not valid JSON: " + what + " at byte " + std::to_string(pos_)};
  }

  std::string_view s_;
  int max_depth_;
  const std::string& prefix_;
  size_t pos_ = 0;
  std::vector<Frame> stack_;
};

// Skips one value of checked text at `pos`, returning the position after it. Strings are the
// only place where brackets do not count.
size_t skip_value(std::string_view s, size_t pos) {
  size_t depth = 0;
  while (pos < s.size()) {
    const char c = s[pos];
    if (c == '"') {
      ++pos;
      while (pos < s.size() && s[pos] != '"') pos += s[pos] == '\\' ? 2 : 1;
      ++pos;
      if (depth == 0) return pos;
      continue;
    }
    if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return pos;  // the end of the enclosing container
      if (--depth == 0) return pos + 1;
    } else if (depth == 0 && (c == ',' || is_blank(c))) {
      return pos;
    }
    ++pos;
  }
  return pos;
}

size_t skip_blank_at(std::string_view s, size_t pos) {
  while (pos < s.size() && is_blank(s[pos])) ++pos;
  return pos;
}

}  // namespace

std::optional<JsonProblem> check_json(std::string_view text, int max_depth,
                                      const std::string& field_prefix) {
  return Scanner(text, max_depth, field_prefix).run();
}

char json_kind(std::string_view text) {
  size_t pos = skip_blank_at(text, 0);
  return pos < text.size() ? text[pos] : '\0';
}

bool for_each_member(std::string_view text,
                     const std::function<bool(const std::string&, std::string_view)>& visit) {
  size_t pos = skip_blank_at(text, 0);
  if (pos >= text.size() || text[pos] != '{') return false;
  pos = skip_blank_at(text, pos + 1);
  while (pos < text.size() && text[pos] == '"') {
    const size_t key_end = skip_value(text, pos);
    // Keys are short and checked already; the library decodes their escapes.
    const std::string key =
        nlohmann::json::parse(text.substr(pos, key_end - pos)).get<std::string>();
    pos = skip_blank_at(text, key_end);
    pos = skip_blank_at(text, pos + 1);  // past ':'
    const size_t value_end = skip_value(text, pos);
    if (!visit(key, text.substr(pos, value_end - pos))) return true;
    pos = skip_blank_at(text, value_end);
    if (pos < text.size() && text[pos] == ',') pos = skip_blank_at(text, pos + 1);
  }
  return true;
}

bool for_each_element(std::string_view text, const std::function<bool(std::string_view)>& visit) {
  size_t pos = skip_blank_at(text, 0);
  if (pos >= text.size() || text[pos] != '[') return false;
  pos = skip_blank_at(text, pos + 1);
  while (pos < text.size() && text[pos] != ']') {
    const size_t end = skip_value(text, pos);
    if (!visit(text.substr(pos, end - pos))) return true;
    pos = skip_blank_at(text, end);
    if (pos < text.size() && text[pos] == ',') pos = skip_blank_at(text, pos + 1);
  }
  return true;
}

}  // namespace floodgate::api
