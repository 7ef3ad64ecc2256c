#include "prefect/http_client.h"

#include <algorithm>
#include <cctype>

namespace floodgate::prefect {

std::string HttpResponse::header(const std::string& name) const {
  const auto same = [&name](const std::string& candidate) {
    return std::equal(
        candidate.begin(), candidate.end(), name.begin(), name.end(),
        [](unsigned char a, unsigned char b) { return std::tolower(a) == std::tolower(b); });
  };
  for (const auto& [key, value] : headers) {
    if (same(key)) return value;
  }
  return {};
}

}  // namespace floodgate::prefect
