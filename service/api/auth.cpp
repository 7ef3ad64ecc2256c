#include "api/auth.h"

#include <cctype>
#include <set>
#include <stdexcept>

namespace floodgate::api {

namespace {

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        c != '@') {
      return false;
    }
  }
  return true;
}

bool valid_secret(const std::string& s) {
  if (s.size() < 16 || s.size() > 512) return false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  return true;
}

/// Equal in time that depends only on the lengths, not on where the first difference is.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned diff = a.size() == b.size() ? 0U : 1U;
  const size_t n = b.size();
  for (size_t i = 0; i < n; ++i) {
    const auto x = a.empty() ? 0U : static_cast<unsigned char>(a[i % a.size()]);
    diff |= x ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

}  // namespace

std::vector<ApiToken> parse_api_tokens(const std::string& text, const std::string& source) {
  std::vector<ApiToken> out;
  std::set<std::string> names;
  std::set<std::string> secrets;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::vector<std::string> words;
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
      size_t j = i;
      while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
      if (j > i) words.push_back(line.substr(i, j - i));
      i = j;
    }
    if (words.empty()) continue;
    const std::string where = source + " line " + std::to_string(line_no);
    if (words.size() != 3) {
      throw std::invalid_argument(where + ": expected 'SCOPE NAME TOKEN' (3 words, got " +
                                  std::to_string(words.size()) + ")");
    }
    ApiToken t;
    if (words[0] == "read") {
      t.scope = Scope::kRead;
    } else if (words[0] == "write") {
      t.scope = Scope::kWrite;
    } else {
      throw std::invalid_argument(where + ": the scope must be read or write");
    }
    if (!valid_name(words[1])) {
      throw std::invalid_argument(where + ": the name must be 1 to 64 letters, digits or -_.@");
    }
    if (!valid_secret(words[2])) {
      throw std::invalid_argument(
          where + ": the token must be 16 to 512 printable characters without blanks");
    }
    if (!names.insert(words[1]).second) {
      throw std::invalid_argument(where + ": the name " + words[1] + " is used twice");
    }
    if (!secrets.insert(words[2]).second) {
      throw std::invalid_argument(where + ": this token repeats an earlier line's token");
    }
    t.name = words[1];
    t.secret = words[2];
    out.push_back(std::move(t));
  }
  return out;
}

void Authenticator::set_tokens(std::vector<ApiToken> tokens) {
  auto next = std::make_shared<const std::vector<ApiToken>>(std::move(tokens));
  std::lock_guard lock(mutex_);
  tokens_ = std::move(next);
}

bool Authenticator::enabled() const { return size() > 0; }

size_t Authenticator::size() const {
  std::lock_guard lock(mutex_);
  return tokens_->size();
}

Caller Authenticator::identify(const std::string* authorization) const {
  std::shared_ptr<const std::vector<ApiToken>> tokens;
  {
    std::lock_guard lock(mutex_);
    tokens = tokens_;
  }
  Caller caller;
  if (tokens->empty()) return caller;  // authentication is off
  if (authorization == nullptr) {
    caller.result = Caller::Result::kMissing;
    return caller;
  }
  // "Bearer" is case-insensitive (RFC 6750 / 9110); blanks around the token are ignored.
  const std::string& h = *authorization;
  size_t i = 0;
  while (i < h.size() && h[i] == ' ') ++i;
  static constexpr char kBearer[] = "bearer";
  bool bearer = h.size() >= i + 6;
  for (size_t k = 0; bearer && k < 6; ++k) {
    bearer = std::tolower(static_cast<unsigned char>(h[i + k])) == kBearer[k];
  }
  if (!bearer || h.size() == i + 6 || h[i + 6] != ' ') {
    caller.result = Caller::Result::kInvalid;
    return caller;
  }
  std::string presented = h.substr(i + 7);
  while (!presented.empty() && presented.front() == ' ') presented.erase(0, 1);
  while (!presented.empty() && presented.back() == ' ') presented.pop_back();
  const ApiToken* match = nullptr;
  for (const auto& t : *tokens) {
    // Every token is compared: the time does not tell which one (if any) matched.
    if (same_secret(presented, t.secret) && match == nullptr) match = &t;
  }
  if (match == nullptr) {
    caller.result = Caller::Result::kInvalid;
    return caller;
  }
  caller.result = Caller::Result::kOk;
  caller.name = match->name;
  caller.scope = match->scope;
  return caller;
}

}  // namespace floodgate::api
