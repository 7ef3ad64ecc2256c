#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "api/http_server.h"

namespace floodgate::http {

/// Where and how floodgate's own listener accepts requests.
struct ServerOptions {
  std::string host;   // e.g. 0.0.0.0 or 127.0.0.1
  uint16_t port = 0;  // a real port: cpprest cannot pick a free one
  size_t max_body_bytes = 16 * 1024 * 1024;
  /// Memory all requests being read and parsed may hold at once; each body counts
  /// kParseMemoryFactor times its size. Beyond it: 503 with Retry-After.
  size_t max_parse_memory = 256 * 1024 * 1024;
  /// PEM certificate chain and private key: serve https instead of http when both are set.
  std::string tls_cert_file = {};
  std::string tls_key_file = {};
};

/// How many times its own size a request body is counted against max_parse_memory: the body,
/// the runs' compact copies and the largest parse tree (measured in docs/benchmarks.md).
constexpr size_t kParseMemoryFactor = 3;

/// Headers on every answer, unless the handler's response sets the same name itself.
inline const std::map<std::string, std::string>& default_response_headers() {
  static const std::map<std::string, std::string> kHeaders = {
      {"X-Content-Type-Options", "nosniff"}};
  return kHeaders;
}

/// An HttpServer over cpprestsdk's listener. The handler runs on the HTTP thread pool and must
/// not block; its Responder may be called from any thread, once. Every method (OPTIONS and
/// TRACE included) reaches the handler. Bodies over the limit get 413 without reaching the
/// handler, a malformed or repeated Content-Length 400, a body beyond the parse-memory budget
/// 503; a handler that throws gets 500, one that drops its Responder unanswered gets 500. start()
/// throws std::runtime_error when the address cannot be bound; start() and stop() belong to a
/// thread outside the HTTP pool.
std::unique_ptr<api::HttpServer> make_cpprest_server(const ServerOptions& options,
                                                     api::Handler handler);

}  // namespace floodgate::http
