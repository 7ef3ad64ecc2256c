#pragma once

#include <string>
#include <string_view>

namespace floodgate::prefect {

// Every request floodgate sends names a path relative to the API root ("/flow_runs/filter"),
// never "/api/...": the root is the whole of --prefect-api-url, which for Prefect Cloud is
// "https://api.prefect.cloud/api/accounts/{account}/workspaces/{workspace}". The HTTP client
// appends the path to that root (cpprestsdk's base URI, service/http/cpprest_client.cpp).

/// The URL a request path reaches under an API root: the root without trailing slashes, then
/// the path (which starts with "/"). "" when the path is not relative to the root (empty, no
/// leading "/", or a full URL).
std::string join_api_url(std::string_view api_root, std::string_view path);

}  // namespace floodgate::prefect
