#include "http/cpprest_server.h"

#include <cpprest/http_listener.h>
#include <malloc.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/ssl.hpp>
#include <cctype>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace floodgate::http {
namespace {

using web::http::http_request;
using web::http::http_response;
using web::http::experimental::listener::http_listener;

constexpr const char* kProblemType = "application/problem+json";

api::ServerResponse problem(int status, const std::string& title, const std::string& detail) {
  api::ServerResponse response;
  response.status = status;
  response.content_type = kProblemType;
  nlohmann::ordered_json body;
  body["type"] = "about:blank";
  body["title"] = title;
  body["status"] = status;
  body["detail"] = detail;
  response.body = body.dump();
  return response;
}

api::ServerResponse too_large(size_t limit) {
  auto response = problem(413, "Payload Too Large",
                          "request body exceeds the limit of " + std::to_string(limit) + " bytes");
  // cpprest drains and drops the rest of the body before this goes out; like nginx, floodgate
  // then ends the connection rather than trust what such a client sends next.
  response.headers["Connection"] = "close";
  return response;
}

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

api::ServerResponse busy() {
  auto response = problem(503, "Service Unavailable",
                          "floodgate is parsing as much as its memory budget allows "
                          "(--max-parse-memory); send the request again shortly");
  response.headers["Retry-After"] = "1";
  response.headers["Connection"] = "close";
  return response;
}

api::ServerResponse bad_framing(const std::string& detail) {
  auto response = problem(400, "Bad Request", detail);
  // A client that frames its body ambiguously cannot be trusted to frame the next request.
  response.headers["Connection"] = "close";
  return response;
}

/// Open while the server runs; replies are refused once stop() has closed it.
struct Gate {
  std::shared_mutex mutex;
  bool open = true;

  bool is_open() {
    std::shared_lock lock(mutex);
    return open;
  }
};

void observe(const pplx::task<void>& task) {
  task.then([](pplx::task<void> done) {
    try {
      done.get();
    } catch (...) {
      // Client gone or stream closed: nothing left to tell anyone.
    }
  });
}

void reply(Gate& gate, const http_request& request, const api::ServerResponse& answer) {
  std::shared_lock lock(gate.mutex);
  if (!gate.open) return;
  try {
    http_response response(static_cast<web::http::status_code>(answer.status));
    for (const auto& [name, value] : answer.headers) response.headers().add(name, value);
    for (const auto& [name, value] : default_response_headers()) {
      if (!response.headers().has(name)) response.headers().add(name, value);
    }
    if (!answer.body.empty()) {
      response.set_body(answer.body, answer.content_type.empty() ? "application/octet-stream"
                                                                 : answer.content_type);
    } else if (!answer.content_type.empty() && answer.status != 204 && answer.status != 304 &&
               !response.headers().has(web::http::header_names::content_type)) {
      response.headers().add(web::http::header_names::content_type, answer.content_type);
    }
    observe(request.reply(response));
  } catch (...) {
    // Already answered (e.g. by cpprest while stopping) or the connection is gone.
  }
}

/// One request awaiting its answer; answers 500 if the handler drops it unanswered.
class Exchange {
 public:
  Exchange(std::shared_ptr<Gate> gate, std::shared_ptr<ParseBudget> budget, http_request request)
      : gate_(std::move(gate)), budget_(std::move(budget)), request_(std::move(request)) {}
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  ~Exchange() {
    if (!answered_.load()) {
      try {
        reply(*gate_, request_,
              problem(500, "Internal Server Error", "the request was not answered"));
      } catch (...) {
      }
    }
    if (reserved_ > 0) {
      budget_->give(reserved_);
      // Everything this request parsed is freed by now; hand large blocks back to the system
      // rather than let one burst of submissions keep the process's peak for good.
      if (reserved_ >= kTrimAbove) malloc_trim(0);
    }
  }

  /// Counts a body of `body_bytes` against the parse-memory budget; false when over it.
  bool reserve_for(size_t body_bytes) {
    const size_t needed = body_bytes * kParseMemoryFactor;
    if (needed <= reserved_) return true;
    if (!budget_->take(needed - reserved_)) return false;
    reserved_ = needed;
    return true;
  }

  void answer(const api::ServerResponse& response) {
    if (answered_.exchange(true)) return;
    reply(*gate_, request_, response);
  }

  const http_request& request() const { return request_; }
  Gate& gate() { return *gate_; }

 private:
  static constexpr size_t kTrimAbove = 1024 * 1024;

  std::shared_ptr<Gate> gate_;
  std::shared_ptr<ParseBudget> budget_;
  http_request request_;
  std::atomic<bool> answered_{false};
  size_t reserved_ = 0;  // touched by one reader at a time, then by the destructor
};

/// Reads a request body chunk by chunk, stopping at the limit instead of buffering it all.
class BodyReader : public std::enable_shared_from_this<BodyReader> {
 public:
  enum class Outcome { kComplete, kTooLarge, kBusy, kFailed };
  using Done = std::function<void(Outcome, std::string body, std::string error)>;
  /// Asked before the body grows to the given size; false refuses it (over the budget).
  using Grow = std::function<bool(size_t)>;

  static void start(concurrency::streams::streambuf<uint8_t> source, size_t limit, size_t expected,
                    Grow grow, Done done) {
    auto reader = std::shared_ptr<BodyReader>(
        new BodyReader(std::move(source), limit, std::move(grow), std::move(done)));
    // The declared size is known and within the limit: one allocation, no doubling.
    reader->body_.reserve(std::min(expected, limit));
    reader->read_next();
  }

 private:
  BodyReader(concurrency::streams::streambuf<uint8_t> source, size_t limit, Grow grow, Done done)
      : source_(std::move(source)), limit_(limit), grow_(std::move(grow)), done_(std::move(done)) {}

  void read_next() {
    pplx::task<size_t> read;
    try {
      read = source_.getn(chunk_.data(), chunk_.size());
    } catch (const std::exception& e) {
      done_(Outcome::kFailed, {}, e.what());
      return;
    }
    read.then([self = shared_from_this()](pplx::task<size_t> got) {
      size_t size = 0;
      try {
        size = got.get();
      } catch (const std::exception& e) {
        self->done_(Outcome::kFailed, {}, e.what());
        return;
      } catch (...) {
        self->done_(Outcome::kFailed, {}, "unknown error");
        return;
      }
      if (size == 0) {
        self->done_(Outcome::kComplete, std::move(self->body_), {});
        return;
      }
      if (self->body_.size() + size > self->limit_) {
        self->done_(Outcome::kTooLarge, {}, {});
        return;
      }
      if (!self->grow_(self->body_.size() + size)) {
        self->done_(Outcome::kBusy, {}, {});
        return;
      }
      self->body_.append(reinterpret_cast<const char*>(self->chunk_.data()), size);
      self->read_next();
    });
  }

  concurrency::streams::streambuf<uint8_t> source_;
  size_t limit_;
  Grow grow_;
  Done done_;
  std::string body_;
  std::array<uint8_t, 16 * 1024> chunk_{};
};

// Closing the read side makes cpprest drain the rest of the body without storing it.
void discard_body(const http_request& request) {
  try {
    observe(request.body().close());
  } catch (...) {
  }
}

/// Addresses this process listens on. cpprest shares one acceptor per host:port, and a second
/// listener on the same one fails by tearing down the first (http_linux_server::register_listener
/// erases the shared entry on error), so a clash must be refused before cpprest sees it.
class AddressRegistry {
 public:
  static bool claim(const std::string& key) {
    std::lock_guard lock(mutex());
    return keys().insert(key).second;
  }
  static void release(const std::string& key) {
    std::lock_guard lock(mutex());
    keys().erase(key);
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::set<std::string>& keys() {
    static std::set<std::string> k;
    return k;
  }
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class CpprestServer final : public api::HttpServer {
 public:
  CpprestServer(ServerOptions options, api::Handler handler)
      : options_(std::move(options)),
        handler_(std::make_shared<const api::Handler>(std::move(handler))),
        budget_(std::make_shared<ParseBudget>(options_.max_parse_memory)) {}

  ~CpprestServer() override { stop(); }

  void start() override {
    if (listener_) return;
    const auto where = options_.host + ":" + std::to_string(options_.port);
    const bool v6 = options_.host.find(':') != std::string::npos;
    const bool tls = !options_.tls_cert_file.empty();
    const auto address = std::string(tls ? "https://" : "http://") +
                         (v6 ? "[" + options_.host + "]" : options_.host) + ":" +
                         std::to_string(options_.port) + "/";
    const auto key = lower(options_.host) + ":" + std::to_string(options_.port);
    if (!AddressRegistry::claim(key)) {
      throw std::runtime_error("cannot listen on " + where +
                               ": already listening there in this process");
    }
    gate_ = std::make_shared<Gate>();
    try {
      web::http::experimental::listener::http_listener_config config;
      if (tls) {
        // Read once here so that a bad file stops the start with a clear message.
        boost::asio::ssl::context check(boost::asio::ssl::context::tls_server);
        check.use_certificate_chain_file(options_.tls_cert_file);
        check.use_private_key_file(options_.tls_key_file, boost::asio::ssl::context::pem);
        config.set_ssl_context_callback([cert = options_.tls_cert_file,
                                         key = options_.tls_key_file](
                                            boost::asio::ssl::context& ctx) {
          // TLS 1.2 and later only.
          ctx.set_options(
              boost::asio::ssl::context::default_workarounds | boost::asio::ssl::context::no_sslv2 |
              boost::asio::ssl::context::no_sslv3 | boost::asio::ssl::context::no_tlsv1 |
              boost::asio::ssl::context::no_tlsv1_1 | boost::asio::ssl::context::single_dh_use);
          ctx.use_certificate_chain_file(cert);
          ctx.use_private_key_file(key, boost::asio::ssl::context::pem);
        });
      }
      auto listener = std::make_unique<http_listener>(web::uri(address), config);
      auto on_request = [gate = gate_, budget = budget_, handler = handler_,
                         limit = options_.max_body_bytes](http_request request) {
        dispatch(gate, budget, handler, limit, std::move(request));
      };
      listener->support(on_request);
      // cpprest answers these two itself (TRACE echoing the request's headers) unless they have
      // handlers of their own; floodgate's router answers them like every other method.
      listener->support(web::http::methods::OPTIONS, on_request);
      listener->support(web::http::methods::TRCE, on_request);
      listener->open().wait();
      listener_ = std::move(listener);
      key_ = key;
    } catch (const std::exception& e) {
      AddressRegistry::release(key);
      throw std::runtime_error("cannot listen on " + where + ": " + e.what());
    }
  }

  void stop() override {
    if (!listener_) return;
    {
      // Not held across close(): close() waits for handlers that may be replying right now.
      std::unique_lock lock(gate_->mutex);
      gate_->open = false;
    }
    try {
      listener_->close().wait();
    } catch (...) {
    }
    listener_.reset();
    AddressRegistry::release(key_);
  }

 private:
  static void dispatch(const std::shared_ptr<Gate>& gate,
                       const std::shared_ptr<ParseBudget>& budget,
                       const std::shared_ptr<const api::Handler>& handler, size_t limit,
                       http_request request) {
    auto exchange = std::make_shared<Exchange>(gate, budget, request);
    const auto& headers = request.headers();
    size_t declared = 0;
    if (auto it = headers.find(web::http::header_names::content_length); it != headers.end()) {
      // cpprest joins repeated headers with ", ", so two Content-Lengths are no longer digits.
      const std::string& value = it->second;
      const bool digits = !value.empty() && value.size() <= 19 &&
                          value.find_first_not_of("0123456789") == std::string::npos;
      if (!digits) {
        discard_body(request);
        exchange->answer(bad_framing(
            "Content-Length must be one decimal number (repeated or conflicting headers are "
            "refused)"));
        return;
      }
      if (headers.has(web::http::header_names::transfer_encoding)) {
        discard_body(request);
        exchange->answer(bad_framing("Content-Length and Transfer-Encoding may not both be sent"));
        return;
      }
      declared = static_cast<size_t>(std::stoull(value));
      if (declared > limit) {
        discard_body(request);
        exchange->answer(too_large(limit));
        return;
      }
      if (!exchange->reserve_for(declared)) {
        discard_body(request);
        exchange->answer(busy());
        return;
      }
    }

    BodyReader::start(
        request.body().streambuf(), limit, declared,
        [exchange](size_t size) { return exchange->reserve_for(size); },
        [exchange, handler, limit](BodyReader::Outcome outcome, std::string body,
                                   std::string error) {
          if (outcome == BodyReader::Outcome::kTooLarge) {
            discard_body(exchange->request());
            exchange->answer(too_large(limit));
          } else if (outcome == BodyReader::Outcome::kBusy) {
            discard_body(exchange->request());
            exchange->answer(busy());
          } else if (outcome == BodyReader::Outcome::kFailed) {
            exchange->answer(problem(400, "Bad Request", "cannot read the request body: " + error));
          } else {
            handle(exchange, *handler, std::move(body));
          }
        });
  }

  static void handle(const std::shared_ptr<Exchange>& exchange, const api::Handler& handler,
                     std::string body) {
    if (!exchange->gate().is_open()) return;
    const auto& request = exchange->request();
    api::ServerRequest incoming;
    try {
      incoming.method = request.method();
      const auto& target = request.request_uri();
      incoming.path = web::uri::decode(target.path());
      incoming.query = target.query();
      for (const auto& [name, value] : request.headers()) {
        incoming.headers.emplace(lower(name), value);
      }
      incoming.body = std::move(body);
    } catch (const std::exception& e) {
      exchange->answer(problem(400, "Bad Request", std::string("malformed request: ") + e.what()));
      return;
    }
    try {
      handler(std::move(incoming),
              [exchange](api::ServerResponse response) { exchange->answer(response); });
    } catch (...) {
      exchange->answer(
          problem(500, "Internal Server Error", "unexpected error while handling the request"));
    }
  }

  ServerOptions options_;
  std::shared_ptr<const api::Handler> handler_;
  std::shared_ptr<ParseBudget> budget_;
  std::shared_ptr<Gate> gate_;
  std::unique_ptr<http_listener> listener_;
  std::string key_;
};

}  // namespace

std::unique_ptr<api::HttpServer> make_cpprest_server(const ServerOptions& options,
                                                     api::Handler handler) {
  return std::make_unique<CpprestServer>(options, std::move(handler));
}

}  // namespace floodgate::http
