#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace floodgate::store {

/// The database URL for logs and error messages: the password of "scheme://user:password@host"
/// and the value of a "password=" query parameter (libpq takes both) become "***". Header-only
/// so that the configuration, which does not link the store, shares it.
inline std::string redact_database_url(std::string_view url) {
  std::string out(url);
  const size_t authority = out.find("://");
  if (authority != std::string::npos) {
    const size_t start = authority + 3;
    const size_t end = std::min(out.find_first_of("/?#", start), out.size());
    const size_t at = out.rfind('@', end == 0 ? 0 : end - 1);
    if (at != std::string::npos && at >= start) {
      const size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  const size_t query = out.find('?');
  if (query == std::string::npos) return out;
  for (size_t at = query; at < out.size();) {
    const size_t key = at + 1;
    const size_t next = std::min(out.find('&', key), out.size());
    const size_t equals = out.find('=', key);
    if (equals != std::string::npos && equals < next) {
      std::string name = out.substr(key, equals - key);
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (name == "password") {
        out.replace(equals + 1, next - equals - 1, "***");
        at = equals + 4;
        continue;
      }
    }
    at = next;
  }
  return out;
}

}  // namespace floodgate::store
