#pragma once

#include <map>
#include <string>

namespace floodgate::http {

/// The proxy URL for `target_url` under the curl/Python environment conventions; empty = direct.
///
/// `https_proxy` serves https targets, `http_proxy` http targets, `all_proxy` is the fallback;
/// each name is looked up lower case first, then upper case, and a lower-case variable that is
/// set but empty disables that proxy (as in Python's urllib). `no_proxy` (or `NO_PROXY`) lists
/// hosts to reach directly; see `bypasses_proxy`. A proxy given without a scheme gets `http://`.
std::string select_proxy(const std::string& target_url,
                         const std::map<std::string, std::string>& env);

/// Whether a `no_proxy` list excludes `target_url` from proxying.
///
/// The list is comma separated, case-insensitive, blanks ignored. An entry is `*` (every host),
/// a domain (`example.com`, `.example.com` or `*.example.com`: the domain and its subdomains,
/// matched on label boundaries), an exact host or IP, `host:port` (only that port; the target's
/// port counts even when implied by its scheme) or an IPv4 CIDR block (`10.0.0.0/8`). IP targets
/// match only exact IPs and CIDR blocks. Loopback is not excluded unless listed, as in Python
/// requests and curl.
bool bypasses_proxy(const std::string& target_url, const std::string& no_proxy);

/// The proxy variables of the process environment, ready for `select_proxy`.
std::map<std::string, std::string> proxy_environment();

}  // namespace floodgate::http
