#include "http/proxy.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

namespace floodgate::http {
namespace {

struct Target {
  std::string scheme;
  std::string host;  // lower case, IPv6 without brackets
  int port = 0;      // explicit or implied by the scheme; 0 when unknown
};

std::string to_lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string to_upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::optional<int> parse_port(std::string_view s) {
  int port = 0;
  const auto* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, port);
  if (s.empty() || ec != std::errc() || ptr != end || port < 0 || port > 65535) {
    return std::nullopt;
  }
  return port;
}

int default_port(std::string_view scheme) {
  if (scheme == "http") return 80;
  if (scheme == "https") return 443;
  return 0;
}

// Splits "host", "host:port", "[v6]" or "[v6]:port"; a bare IPv6 address has no port.
struct HostPort {
  std::string host;
  std::optional<int> port;
  bool valid = true;
};

HostPort split_host_port(std::string_view s) {
  HostPort out;
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos) {
      out.valid = false;
      return out;
    }
    out.host = to_lower(s.substr(1, close - 1));
    const auto rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        out.valid = false;
        return out;
      }
      out.port = parse_port(rest.substr(1));
      out.valid = out.port.has_value();
    }
    return out;
  }
  const auto colon = s.find(':');
  if (colon != std::string_view::npos && s.find(':', colon + 1) == std::string_view::npos) {
    out.host = to_lower(s.substr(0, colon));
    out.port = parse_port(s.substr(colon + 1));
    out.valid = out.port.has_value();
    return out;
  }
  out.host = to_lower(s);
  return out;
}

std::optional<Target> parse_target(std::string_view url) {
  url = trim(url);
  const auto sep = url.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  Target t;
  t.scheme = to_lower(url.substr(0, sep));
  auto authority = url.substr(sep + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }
  auto hp = split_host_port(authority);
  if (!hp.valid || hp.host.empty()) return std::nullopt;
  if (hp.host.size() > 1 && hp.host.back() == '.') hp.host.pop_back();
  t.host = std::move(hp.host);
  t.port = hp.port.value_or(default_port(t.scheme));
  return t;
}

std::optional<std::uint32_t> parse_ipv4(std::string_view s) {
  std::uint32_t value = 0;
  int parts = 0;
  while (true) {
    const auto dot = s.find('.');
    const auto part = s.substr(0, dot);
    unsigned octet = 0;
    const auto* end = part.data() + part.size();
    auto [ptr, ec] = std::from_chars(part.data(), end, octet);
    if (part.empty() || part.size() > 3 || ec != std::errc() || ptr != end || octet > 255) {
      return std::nullopt;
    }
    value = (value << 8) | octet;
    ++parts;
    if (dot == std::string_view::npos) break;
    s.remove_prefix(dot + 1);
  }
  if (parts != 4) return std::nullopt;
  return value;
}

bool is_ip_literal(const std::string& host) {
  return parse_ipv4(host).has_value() || host.find(':') != std::string::npos;
}

bool in_cidr(std::uint32_t address, std::string_view cidr) {
  const auto slash = cidr.find('/');
  const auto network = parse_ipv4(cidr.substr(0, slash));
  const auto bits = parse_port(cidr.substr(slash + 1));
  if (!network || !bits || *bits > 32) return false;
  const std::uint32_t mask = *bits == 0 ? 0 : ~std::uint32_t{0} << (32 - *bits);
  return (address & mask) == (*network & mask);
}

bool entry_matches(const Target& target, std::string_view raw_entry) {
  const std::string entry = to_lower(trim(raw_entry));
  if (entry.empty()) return false;
  if (entry == "*") return true;

  const auto target_v4 = parse_ipv4(target.host);
  if (entry.find('/') != std::string::npos) {
    return target_v4 && in_cidr(*target_v4, entry);
  }

  auto hp = split_host_port(entry);
  if (!hp.valid) return false;
  if (hp.port && *hp.port != target.port) return false;

  if (is_ip_literal(target.host)) return hp.host == target.host;

  std::string_view name = hp.host;
  if (name.starts_with("*.")) name.remove_prefix(1);
  while (name.starts_with('.')) name.remove_prefix(1);
  if (name.ends_with('.')) name.remove_suffix(1);
  if (name.empty()) return false;
  if (target.host == name) return true;
  return target.host.size() > name.size() && target.host.ends_with(name) &&
         target.host[target.host.size() - name.size() - 1] == '.';
}

// Lower case wins over upper case, and a lower-case variable set to "" switches the proxy off.
std::string proxy_variable(const std::map<std::string, std::string>& env, std::string_view lower) {
  if (const auto it = env.find(std::string(lower)); it != env.end()) {
    return std::string(trim(it->second));
  }
  if (const auto it = env.find(to_upper(lower)); it != env.end()) {
    return std::string(trim(it->second));
  }
  return {};
}

std::string with_scheme(std::string proxy) {
  if (!proxy.empty() && proxy.find("://") == std::string::npos) proxy.insert(0, "http://");
  return proxy;
}

}  // namespace

bool bypasses_proxy(const std::string& target_url, const std::string& no_proxy) {
  const auto target = parse_target(target_url);
  if (!target) return true;
  std::string_view list = no_proxy;
  while (true) {
    const auto comma = list.find(',');
    if (entry_matches(*target, list.substr(0, comma))) return true;
    if (comma == std::string_view::npos) return false;
    list.remove_prefix(comma + 1);
  }
}

std::string select_proxy(const std::string& target_url,
                         const std::map<std::string, std::string>& env) {
  const auto target = parse_target(target_url);
  if (!target) return {};

  std::string proxy;
  if (target->scheme == "https" || target->scheme == "http") {
    proxy = proxy_variable(env, target->scheme + "_proxy");
  }
  if (proxy.empty()) proxy = proxy_variable(env, "all_proxy");
  if (proxy.empty()) return {};

  // As in Python requests: a non-empty lower-case no_proxy wins, else the upper-case one.
  std::string no_proxy;
  if (const auto it = env.find("no_proxy"); it != env.end() && !trim(it->second).empty()) {
    no_proxy = it->second;
  } else if (const auto upper = env.find("NO_PROXY"); upper != env.end()) {
    no_proxy = upper->second;
  }
  if (bypasses_proxy(target_url, no_proxy)) return {};
  return with_scheme(std::move(proxy));
}

std::map<std::string, std::string> proxy_environment() {
  static constexpr std::array<const char*, 8> kNames = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                                        "HTTPS_PROXY", "all_proxy",  "ALL_PROXY",
                                                        "no_proxy",    "NO_PROXY"};
  std::map<std::string, std::string> env;
  for (const char* name : kNames) {
    if (const char* value = std::getenv(name)) env.emplace(name, value);
  }
  return env;
}

}  // namespace floodgate::http
