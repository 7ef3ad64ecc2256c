#pragma once

#include <functional>
#include <map>
#include <string>

namespace floodgate::api {

/// A request received by floodgate's own listener. Header names are lower case.
struct ServerRequest {
  std::string method;
  std::string path;   // decoded path, no query
  std::string query;  // raw query string without '?'
  std::map<std::string, std::string> headers;
  std::string body;
};

struct ServerResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
};

/// Sends the response; call exactly once, from any thread.
using Responder = std::function<void(ServerResponse)>;
using Handler = std::function<void(ServerRequest, Responder)>;

/// floodgate's HTTP listener.
class HttpServer {
 public:
  virtual ~HttpServer() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
};

}  // namespace floodgate::api
