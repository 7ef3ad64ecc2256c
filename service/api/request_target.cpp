#include "api/request_target.h"

#include <string_view>

#include "api/problem.h"
#include "api/request_guard.h"

namespace floodgate::api {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> parse_query(const std::string& query) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  while (i <= query.size()) {
    size_t j = query.find('&', i);
    if (j == std::string::npos) j = query.size();
    std::string_view part(query.data() + i, j - i);
    if (!part.empty()) {
      size_t eq = part.find('=');
      if (eq == std::string_view::npos) {
        out[url_decode(part)] = "";
      } else {
        out[url_decode(part.substr(0, eq))] = url_decode(part.substr(eq + 1));
      }
    }
    i = j + 1;
  }
  return out;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

std::optional<ServerResponse> read_page(const std::map<std::string, std::string>& query,
                                        int64_t min_after, int& limit, int64_t& after) {
  if (auto it = query.find("limit"); it != query.end()) {
    auto v = parse_whole(it->second);
    if (!v || *v < 1 || *v > 1000) {
      return problem(400, "limit must be a whole number from 1 to 1000", "limit");
    }
    limit = static_cast<int>(*v);
  }
  if (auto it = query.find("after"); it != query.end() && !it->second.empty()) {
    auto v = parse_whole(it->second);
    if (!v || *v < min_after) return problem(400, "after must be a cursor from \"next\"", "after");
    after = *v;
  }
  return std::nullopt;
}

}  // namespace floodgate::api
