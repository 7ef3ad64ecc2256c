#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace floodgate::api {

/// What a token may do: read (GET) or write (everything).
enum class Scope { kRead, kWrite };

/// One API token from --api-tokens-file or FLOODGATE_API_TOKENS.
struct ApiToken {
  Scope scope = Scope::kRead;
  std::string name;  // shown in logs and batches; never the secret
  std::string secret;
};

/// Parses token lines "SCOPE NAME TOKEN" ('#' starts a comment). Throws std::invalid_argument
/// naming the line (never its secret) when one is malformed.
std::vector<ApiToken> parse_api_tokens(const std::string& text, const std::string& source);

/// Who a request is, by its Authorization header.
struct Caller {
  enum class Result { kAnonymous, kMissing, kInvalid, kOk } result = Result::kAnonymous;
  std::string name;  // the token's name when kOk
  Scope scope = Scope::kRead;
};

/// The current token set, replaceable at any time (SIGHUP) from any thread.
class Authenticator {
 public:
  /// Replaces the tokens; an empty set turns authentication off.
  void set_tokens(std::vector<ApiToken> tokens);
  bool enabled() const;
  size_t size() const;
  /// Checks an Authorization header value (nullptr when absent). Compares in constant time in
  /// the secret's length and never stops at the first token that differs.
  Caller identify(const std::string* authorization) const;

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const std::vector<ApiToken>> tokens_ = std::make_shared<std::vector<ApiToken>>();
};

}  // namespace floodgate::api
