#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "api/http_server.h"

namespace floodgate::http {

/// Where and how floodgate's own listener accepts requests.
struct ServerOptions {
  std::string host;   // e.g. 0.0.0.0 or 127.0.0.1
  uint16_t port = 0;  // a real port: cpprest cannot pick a free one
  size_t max_body_bytes = 16 * 1024 * 1024;
};

/// An HttpServer over cpprestsdk's listener. The handler runs on the HTTP thread pool and must
/// not block; its Responder may be called from any thread, once. Bodies over the limit get 413
/// without reaching the handler, a handler that throws gets 500, one that drops its Responder
/// unanswered gets 500. start() throws std::runtime_error when the address cannot be bound;
/// start() and stop() belong to a thread outside the HTTP pool.
std::unique_ptr<api::HttpServer> make_cpprest_server(const ServerOptions& options,
                                                     api::Handler handler);

}  // namespace floodgate::http
