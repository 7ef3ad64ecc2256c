#pragma once

#include <optional>
#include <string>
#include <vector>

#include "api/http_server.h"

namespace floodgate::api {

/// One answer of the status page (the page, its script or its style sheet) and the route
/// template it is counted under.
struct StatusPageAsset {
  std::string route;
  ServerResponse response;
};

/// The status page served at GET / (batches with progress bars, rates, ETAs and the limiter's
/// state, refreshed from the REST API), its script at /status.js and style at /status.css; none
/// for other paths. Every answer carries a strict Content-Security-Policy: no inline script or
/// style, no framing. `prefect_ui_url` (may be empty) is where run links point.
std::optional<StatusPageAsset> status_page_response(const std::vector<std::string>& path_parts,
                                                    const std::string& prefect_ui_url);

/// The Content-Security-Policy the status page is served with.
const std::string& status_page_csp();

}  // namespace floodgate::api
