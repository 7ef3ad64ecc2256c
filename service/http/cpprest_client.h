#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "prefect/http_client.h"

namespace floodgate::http {

/// How the client adapter reaches the Prefect API.
struct ClientOptions {
  std::string base_url;  // e.g. http://127.0.0.1:4200/api; request paths are appended
  // Kept for the transport that can time the connect phase apart; cpprest cannot, so there the
  // whole-request deadline bounds connecting too.
  std::chrono::milliseconds connect_timeout{10000};
  // The deadline for requests whose own timeout is zero or negative.
  std::chrono::milliseconds request_timeout{30000};
  bool verify_tls = true;
  std::string ca_file;    // optional PEM bundle, trusted in addition to the system store
  std::string proxy_url;  // already resolved (see select_proxy); empty = direct
  // The largest answer body read from Prefect; a larger one ends the request with a transport
  // error (retried like any other) instead of growing memory without bound. 0 = no limit.
  size_t max_response_bytes = 16 * 1024 * 1024;
};

/// An HttpClient over cpprestsdk. Each request gets a whole-request deadline (its own timeout);
/// `done` runs on the HTTP thread pool, never inside send(), and must not block. Requests still
/// in flight when the client is destroyed complete normally. Throws std::invalid_argument for a
/// bad base URL, proxy URL or CA file.
std::unique_ptr<prefect::HttpClient> make_cpprest_client(const ClientOptions& options);

}  // namespace floodgate::http
