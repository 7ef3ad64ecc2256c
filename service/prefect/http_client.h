#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace floodgate::prefect {

using Headers = std::vector<std::pair<std::string, std::string>>;

/// One HTTP request to the Prefect API; the path is relative to the API root.
struct HttpRequest {
  std::string method;
  std::string path;  // e.g. "/deployments/name/f/d", query included
  Headers headers;
  std::string body;
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
};

/// Why no HTTP answer arrived, as the HTTP client (service/http) sorts it, so nothing above it
/// reads a library's error text.
enum class TransportError {
  kNone,             // an HTTP answer arrived
  kOther,            // refused, reset, DNS, TLS, ...
  kStaleConnection,  // the request could not be written on a pooled connection the peer closed
};

/// The answer, or a transport failure (status 0 with `error` set).
struct HttpResponse {
  int status = 0;
  std::string body;
  Headers headers;
  std::string error;                                 // set when no HTTP answer arrived
  bool timed_out = false;                            // the whole-request timeout expired
  TransportError transport = TransportError::kNone;  // set with `error` when not timed out

  /// Case-insensitive header lookup; empty when absent.
  std::string header(const std::string& name) const;
};

/// Asynchronous HTTP client. `done` runs exactly once, on any thread.
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  virtual void send(HttpRequest request, std::function<void(HttpResponse)> done) = 0;
};

}  // namespace floodgate::prefect
