// libFuzzer target: a request target ("/v1/batches/ID/runs?limit=...&after=..."), split the way
// the router splits it into path segments and query parameters.
#include <cstddef>
#include <cstdint>
#include <string>

#include "api/request_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string target(reinterpret_cast<const char*>(data), size);
  size_t q = target.find('?');
  std::string path = target.substr(0, q);
  std::string query = q == std::string::npos ? "" : target.substr(q + 1);
  auto parts = floodgate::api::split_path(path);
  for (const auto& p : parts) {
    if (p.empty() || p.find('/') != std::string::npos) __builtin_trap();  // segments only
  }
  auto params = floodgate::api::parse_query(query);
  if (params.size() > query.size() + 1) __builtin_trap();
  return 0;
}
