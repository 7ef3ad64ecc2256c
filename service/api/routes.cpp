#include "api/routes.h"

namespace floodgate::api {

Route route_of(const std::vector<std::string>& parts) {
  auto make = [](std::string name, std::string allow) {
    return Route{std::move(name), std::move(allow), true};
  };
  if (parts.empty()) return make("/", "GET");
  if (parts.size() == 1 && (parts[0] == "status.js" || parts[0] == "status.css")) {
    return make("/" + parts[0], "GET");
  }
  if (parts.size() == 1 &&
      (parts[0] == "healthz" || parts[0] == "readyz" || parts[0] == "metrics")) {
    return make("/" + parts[0], "GET");
  }
  if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "batches") {
    if (parts.size() == 2) return make("/v1/batches", "GET, POST");
    if (parts.size() == 3) return make("/v1/batches/{id}", "GET, PATCH");
    if (parts.size() == 4 && parts[3] == "runs") {
      return make("/v1/batches/{id}/runs", "GET, POST");
    }
    if (parts.size() == 4 && (parts[3] == "cancel" || parts[3] == "pause" || parts[3] == "resume" ||
                              parts[3] == "redrive" || parts[3] == "seal")) {
      return make("/v1/batches/{id}/" + parts[3], "POST");
    }
  }
  return Route{};
}

bool allows(const Route& route, const std::string& method) {
  if (method == "HEAD") return route.allow.find("GET") != std::string::npos;
  size_t pos = 0;
  while (pos < route.allow.size()) {
    size_t end = route.allow.find(',', pos);
    if (end == std::string::npos) end = route.allow.size();
    if (route.allow.compare(pos, end - pos, method) == 0) return true;
    pos = end + 2;
  }
  return false;
}

bool changes_state(const std::string& method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

bool is_open_route(const Route& route, bool public_status) {
  return route.name == "/healthz" || route.name == "/readyz" || route.name == "/status.js" ||
         route.name == "/status.css" ||
         (public_status && (route.name == "/" || route.name == "/metrics"));
}

}  // namespace floodgate::api
