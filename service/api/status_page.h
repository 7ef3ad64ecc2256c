#pragma once

#include <string>

namespace floodgate::api {

/// The status page served at GET /: batches with progress bars, refreshed from the REST API.
const std::string& status_page_html();

}  // namespace floodgate::api
