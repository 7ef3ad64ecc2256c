#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace floodgate::api {

/// Which Host and Origin headers floodgate answers: the defence against DNS rebinding and
/// against web pages on other origins that post to it.
struct OriginPolicy {
  /// Host names accepted beside IP literals and "localhost" ("*" accepts any, ".example.com"
  /// a domain and its subdomains). Compared without the port.
  std::vector<std::string> allowed_hosts;
  /// Origins ("https://ui.example.com") that may call state-changing endpoints beside the
  /// service's own.
  std::vector<std::string> allowed_origins;
  bool tls = false;  // the service's own origin is https://HOST, not http://HOST
};

/// Why the Host header is refused (nullopt if accepted). `headers` have lower-case names.
std::optional<std::string> host_problem(const std::map<std::string, std::string>& headers,
                                        const OriginPolicy& policy);

/// Why a state-changing request is refused for where it comes from (nullopt if accepted): an
/// Origin that is neither the service's own nor allowed, or a browser's Sec-Fetch-Site saying
/// "cross-site" without an Origin.
std::optional<std::string> origin_problem(const std::map<std::string, std::string>& headers,
                                          const OriginPolicy& policy);

/// True for "application/json" with at most a "charset=utf-8" parameter.
bool is_json_media_type(std::string_view content_type);

/// A plain decimal number ("12", "0.5"): no sign, exponent, blanks, hex, nan or inf.
std::optional<double> parse_decimal(std::string_view text);

/// A plain whole number of at most 18 digits: no sign, blanks or hex.
std::optional<int64_t> parse_whole(std::string_view text);

}  // namespace floodgate::api
