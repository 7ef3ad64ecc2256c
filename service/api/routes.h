#pragma once

#include <string>
#include <vector>

namespace floodgate::api {

/// Which endpoint a path names and the methods it declares.
struct Route {
  std::string name = "other";  // the metrics label: the path's template
  std::string allow;           // declared methods, as an Allow header lists them
  bool found = false;
};

/// The endpoint that the path segments name (not found: name "other").
Route route_of(const std::vector<std::string>& parts);

/// Whether the route declares `method` (HEAD wherever GET is).
bool allows(const Route& route, const std::string& method);

/// Whether a request with this method may change something (and so needs a write token and an
/// acceptable Origin).
bool changes_state(const std::string& method);

/// Whether the route is answered without a token: probes and the status page's assets always,
/// the status page and /metrics when `public_status`.
bool is_open_route(const Route& route, bool public_status);

}  // namespace floodgate::api
