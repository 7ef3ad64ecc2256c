#include "api/request_guard.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

namespace floodgate::api {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

const std::string* header(const std::map<std::string, std::string>& headers, const char* name) {
  auto it = headers.find(name);
  return it == headers.end() ? nullptr : &it->second;
}

/// Splits a Host header into its host (lower case, brackets kept for IPv6) and checks the
/// port's form. Nullopt when malformed.
std::optional<std::string> host_name(std::string_view value) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  std::string_view host = value;
  std::string_view port;
  if (value.front() == '[') {
    auto close = value.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = value.substr(0, close + 1);
    auto rest = value.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      if (!all_digits(port)) return std::nullopt;
    }
  } else if (auto colon = value.find(':'); colon != std::string_view::npos) {
    host = value.substr(0, colon);
    port = value.substr(colon + 1);
    if (!all_digits(port)) return std::nullopt;
  }
  if (!port.empty() && (port.size() > 5 || std::stoi(std::string(port)) > 65535)) {
    return std::nullopt;
  }
  if (host.empty()) return std::nullopt;
  for (char c : host) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '/' || c == '@' || c == '\\') return std::nullopt;
  }
  return lower(host);
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    return inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) == 1;
  }
  return inet_pton(AF_INET, host.c_str(), buf) == 1;
}

}  // namespace

std::optional<std::string> host_problem(const std::map<std::string, std::string>& headers,
                                        const OriginPolicy& policy) {
  const std::string* value = header(headers, "host");
  if (value == nullptr) return "the request has no Host header";
  if (value->find(',') != std::string::npos) return "the request has more than one Host header";
  auto host = host_name(*value);
  if (!host) return "the Host header '" + value->substr(0, 100) + "' is malformed";
  std::string name = *host;
  if (!name.empty() && name.back() == '.') name.pop_back();  // "localhost." is localhost
  // An IP literal cannot be a rebound DNS name, and localhost never leaves the machine.
  if (is_ip_literal(name) || name == "localhost") return std::nullopt;
  for (const auto& allowed : policy.allowed_hosts) {
    const std::string a = lower(allowed);
    if (a == "*" || a == name) return std::nullopt;
    if (a.size() > 1 && a.front() == '.' &&
        (name == a.substr(1) ||
         (name.size() > a.size() && name.compare(name.size() - a.size(), a.size(), a) == 0))) {
      return std::nullopt;
    }
  }
  return "the Host header names '" + name.substr(0, 100) +
         "', which is not one of this service's names (add it to --allowed-hosts)";
}

std::optional<std::string> origin_problem(const std::map<std::string, std::string>& headers,
                                          const OriginPolicy& policy) {
  const std::string* origin = header(headers, "origin");
  if (origin == nullptr) {
    // Browsers that send no Origin still say where a request comes from.
    const std::string* site = header(headers, "sec-fetch-site");
    if (site != nullptr) {
      const std::string s = lower(trim(*site));
      if (s == "cross-site" || s == "same-site") {
        return "requests from other web sites may not change anything here";
      }
    }
    return std::nullopt;
  }
  std::string o = lower(trim(*origin));
  while (!o.empty() && o.back() == '/') o.pop_back();
  const std::string* host = header(headers, "host");
  if (host != nullptr && o != "null") {
    const std::string own = std::string(policy.tls ? "https://" : "http://") + lower(trim(*host));
    if (o == own) return std::nullopt;
  }
  for (const auto& allowed : policy.allowed_origins) {
    std::string a = lower(trim(allowed));
    while (!a.empty() && a.back() == '/') a.pop_back();
    if (!a.empty() && a == o) return std::nullopt;
  }
  return "the Origin '" + origin->substr(0, 200) +
         "' is not this service's own and not in --allowed-origins";
}

bool is_json_media_type(std::string_view content_type) {
  auto semi = content_type.find(';');
  if (lower(trim(content_type.substr(0, semi))) != "application/json") return false;
  while (semi != std::string_view::npos) {
    auto rest = content_type.substr(semi + 1);
    auto next = rest.find(';');
    auto param = trim(rest.substr(0, next));
    semi = next == std::string_view::npos ? next : semi + 1 + next;
    if (param.empty()) continue;
    auto eq = param.find('=');
    if (eq == std::string_view::npos) return false;
    if (lower(trim(param.substr(0, eq))) != "charset") return false;
    auto value = trim(param.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    if (lower(value) != "utf-8") return false;
  }
  return true;
}

std::optional<double> parse_decimal(std::string_view text) {
  if (text.empty() || text.size() > 32) return std::nullopt;
  auto dot = text.find('.');
  auto whole = text.substr(0, dot);
  if (!all_digits(whole)) return std::nullopt;
  if (dot != std::string_view::npos && !all_digits(text.substr(dot + 1))) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

std::optional<int64_t> parse_whole(std::string_view text) {
  if (!all_digits(text) || text.size() > 18) return std::nullopt;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return v;
}

}  // namespace floodgate::api
