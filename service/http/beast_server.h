#pragma once

#include <chrono>
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
  uint16_t port = 0;  // 0 picks a free port (see HttpListener::port)
  size_t max_body_bytes = 16 * 1024 * 1024;
  /// Memory all requests being read and parsed may hold at once; each body counts
  /// kParseMemoryFactor times its size. Beyond it: 503 with Retry-After.
  size_t max_parse_memory = 256 * 1024 * 1024;
  /// PEM certificate chain and private key: serve https instead of http when both are set.
  std::string tls_cert_file = {};
  std::string tls_key_file = {};
  /// A request's head (request line and headers) must arrive within this time of its first
  /// byte; on a new connection the clock starts at accept and covers the TLS handshake.
  std::chrono::milliseconds header_timeout = std::chrono::seconds(10);
  /// A request's whole body must arrive within this time of the end of its head; an answer
  /// must be taken by the client within it too.
  std::chrono::milliseconds body_timeout = std::chrono::seconds(60);
  /// A kept-alive connection is closed when no next request starts within this time.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(60);
  /// Connections open at once; one more is answered 503 (TLS: closed) and closed at once.
  size_t max_connections = 1000;
  /// Threads that run the listener's I/O and the handler.
  size_t threads = 2;
};

/// How many times its own size a request body is counted against max_parse_memory: the body,
/// the runs' compact copies and the largest parse tree (measured in docs/benchmarks.md).
constexpr size_t kParseMemoryFactor = 3;

/// Largest request head (request line and headers) accepted; beyond it 431.
constexpr size_t kMaxHeaderBytes = 64 * 1024;

/// Headers on every answer, unless the handler's response sets the same name itself.
inline const std::map<std::string, std::string>& default_response_headers() {
  static const std::map<std::string, std::string> kHeaders = {
      {"X-Content-Type-Options", "nosniff"}};
  return kHeaders;
}

/// floodgate's listener: an HttpServer that also says which port it is bound to.
class HttpListener : public api::HttpServer {
 public:
  /// The bound port while started (the chosen one when ServerOptions::port is 0), else 0.
  virtual uint16_t port() const = 0;
};

/// An HttpListener over Boost.Beast (HTTP/1.1, optional TLS). The handler runs on the listener's
/// threads and must not block; its Responder may be called from any thread, once. Every method
/// (OPTIONS and TRACE included) reaches the handler. Bodies over the limit get 413 without
/// reaching the handler, a malformed or repeated Content-Length 400, a body beyond the
/// parse-memory budget 503, a head over kMaxHeaderBytes 431; a handler that throws gets 500, one
/// that drops its Responder unanswered gets 500. Connections that exceed a timeout are closed.
/// start() throws std::runtime_error when the address cannot be bound or the TLS files cannot be
/// read; start() and stop() belong to a thread outside the listener's.
std::unique_ptr<HttpListener> make_http_server(const ServerOptions& options, api::Handler handler);

}  // namespace floodgate::http
