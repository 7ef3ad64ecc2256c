#pragma once
/// The pieces floodgate's Boost.Beast listener (beast_server.cpp) is made of besides its
/// sessions: canned early answers, the path decoder, the parse-memory budget, what connections
/// share, and one request awaiting its answer. Internal to service/http.

#include <malloc.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/error.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "api/http_server.h"
#include "http/beast_server.h"

namespace floodgate::http::beast_detail {

namespace asio = boost::asio;

/// A problem+json answer (RFC 9457).
api::ServerResponse problem(int status, const std::string& title, const std::string& detail);
/// An early answer after which the connection ends: what such a client sends next (the rest of
/// a refused body, a badly framed request) cannot be trusted, as nginx does too.
api::ServerResponse closing(api::ServerResponse response);
api::ServerResponse too_large(size_t limit);
/// Over the parse-memory budget: 503 with Retry-After.
api::ServerResponse busy();
api::ServerResponse bad_request(const std::string& detail);
/// A Content-Length that is not one decimal number.
api::ServerResponse bad_length();
/// The early answer to a request head that could not be read, or nothing when the connection
/// should just close (timeouts, the client gone).
std::optional<api::ServerResponse> answer_for_head_error(const boost::beast::error_code& ec);
std::string lower(std::string s);
/// Percent-decodes a path; throws std::invalid_argument on a broken escape.
std::string decode_path(std::string_view in);

/// Memory that requests being read and parsed may hold at once.
class ParseBudget {
 public:
  explicit ParseBudget(size_t limit) : limit_(limit) {}

  bool take(size_t bytes) {
    size_t used = used_.load();
    do {
      if (bytes > limit_ || used > limit_ - bytes) return false;
    } while (!used_.compare_exchange_weak(used, used + bytes));
    return true;
  }
  void give(size_t bytes) { used_.fetch_sub(bytes); }

 private:
  size_t limit_;
  std::atomic<size_t> used_{0};
};

class Connection;

/// What every connection of one start() shares. Connections hold it, so the io_context outlives
/// every socket even when a Responder keeps a connection alive past stop().
struct Shared {
  Shared(ServerOptions o, std::shared_ptr<const api::Handler> h)
      : options(std::move(o)), handler(std::move(h)), budget(options.max_parse_memory) {}

  ServerOptions options;
  std::shared_ptr<const api::Handler> handler;
  ParseBudget budget;
  asio::io_context io;
  std::optional<asio::ssl::context> tls;

  /// Open while the listener runs; answers are not sent once stop() has closed it.
  std::shared_mutex gate_mutex;
  bool open = true;

  std::atomic<size_t> connections{0};
  std::mutex registry_mutex;
  std::map<const Connection*, std::weak_ptr<Connection>> registry;
};

/// One accepted connection, plain or TLS; everything it does runs on its strand.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  virtual ~Connection() = default;
  virtual void start() = 0;
  /// Closes the socket; posted to the connection's strand.
  virtual void close() = 0;
  /// Sends an answer; posted to the connection's strand.
  virtual void answer(api::ServerResponse response) = 0;
  virtual asio::any_io_executor executor() = 0;
};

/// One request awaiting its answer; answers 500 if the handler drops it unanswered, and holds
/// the request's share of the parse-memory budget until then.
class Exchange {
 public:
  Exchange(std::shared_ptr<Shared> shared, std::shared_ptr<Connection> connection)
      : shared_(std::move(shared)), connection_(std::move(connection)) {}
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  ~Exchange() {
    if (!answered_.load()) {
      try {
        answer(problem(500, "Internal Server Error", "the request was not answered"));
      } catch (...) {
      }
    }
    if (reserved_ > 0) {
      shared_->budget.give(reserved_);
      // Everything this request parsed is freed by now; hand large blocks back to the system
      // rather than let one burst of submissions keep the process's peak for good.
      if (reserved_ >= kTrimAbove) malloc_trim(0);
    }
  }

  /// Counts a body of `body_bytes` against the parse-memory budget; false when over it.
  bool reserve_for(size_t body_bytes) {
    const size_t needed = body_bytes * kParseMemoryFactor;
    if (needed <= reserved_) return true;
    if (!shared_->budget.take(needed - reserved_)) return false;
    reserved_ = needed;
    return true;
  }

  /// The connection is gone: nothing is sent for this request any more.
  void abandon() { answered_.store(true); }

  void answer(api::ServerResponse response) {
    if (answered_.exchange(true)) return;
    std::shared_lock lock(shared_->gate_mutex);
    if (!shared_->open) return;
    asio::post(connection_->executor(),
               [connection = connection_, response = std::move(response)]() mutable {
                 connection->answer(std::move(response));
               });
  }

 private:
  static constexpr size_t kTrimAbove = 1024 * 1024;

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<Connection> connection_;
  std::atomic<bool> answered_{false};
  size_t reserved_ = 0;  // touched on the connection's strand, then by the destructor
};

}  // namespace floodgate::http::beast_detail
