#pragma once

#include <string>

namespace floodgate::http {

/// The URL with any user:password@ between the scheme and the host replaced by "***@", for
/// logs and error messages (header-only so that config and the client share it).
inline std::string redact_url(const std::string& url) {
  const auto scheme = url.find("://");
  const size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  const auto end = url.find_first_of("/?#", start);
  const std::string authority = url.substr(start, end == std::string::npos ? end : end - start);
  const auto at = authority.rfind('@');
  if (at == std::string::npos) return url;
  return url.substr(0, start) + "***@" + url.substr(start + at + 1);
}

}  // namespace floodgate::http
