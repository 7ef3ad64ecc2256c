#include "prefect/api_url.h"

namespace floodgate::prefect {

std::string join_api_url(std::string_view api_root, std::string_view path) {
  if (path.empty() || path.front() != '/' || path.substr(0, 2) == "//") return {};
  while (!api_root.empty() && api_root.back() == '/') api_root.remove_suffix(1);
  std::string out(api_root);
  out += path;
  return out;
}

}  // namespace floodgate::prefect
