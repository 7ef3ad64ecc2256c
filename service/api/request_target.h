#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/http_server.h"

namespace floodgate::api {

/// Parses a query string into decoded key/value pairs.
std::map<std::string, std::string> parse_query(const std::string& query);

/// Splits a request path into its non-empty segments (public for the fuzz target).
std::vector<std::string> split_path(const std::string& path);

/// Reads the paging parameters `limit` (1 to 1000) and `after` (at least `min_after`) into
/// `limit` and `after` when present; the 400 to send when one is bad.
std::optional<ServerResponse> read_page(const std::map<std::string, std::string>& query,
                                        int64_t min_after, int& limit, int64_t& after);

}  // namespace floodgate::api
