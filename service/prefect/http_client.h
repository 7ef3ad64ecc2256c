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

/// The answer, or a transport failure (status 0 with `error` set).
struct HttpResponse {
  int status = 0;
  std::string body;
  Headers headers;
  std::string error;       // set when no HTTP answer arrived
  bool timed_out = false;  // the whole-request timeout expired
  std::chrono::nanoseconds latency{0};

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
