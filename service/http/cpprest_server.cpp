#include "http/cpprest_server.h"

#include <cpprest/http_listener.h>

#include <array>
#include <atomic>
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
  Exchange(std::shared_ptr<Gate> gate, http_request request)
      : gate_(std::move(gate)), request_(std::move(request)) {}
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
  }

  void answer(const api::ServerResponse& response) {
    if (answered_.exchange(true)) return;
    reply(*gate_, request_, response);
  }

  const http_request& request() const { return request_; }
  Gate& gate() { return *gate_; }

 private:
  std::shared_ptr<Gate> gate_;
  http_request request_;
  std::atomic<bool> answered_{false};
};

/// Reads a request body chunk by chunk, stopping at the limit instead of buffering it all.
class BodyReader : public std::enable_shared_from_this<BodyReader> {
 public:
  enum class Outcome { kComplete, kTooLarge, kFailed };
  using Done = std::function<void(Outcome, std::string body, std::string error)>;

  static void start(concurrency::streams::streambuf<uint8_t> source, size_t limit, Done done) {
    auto reader =
        std::shared_ptr<BodyReader>(new BodyReader(std::move(source), limit, std::move(done)));
    reader->read_next();
  }

 private:
  BodyReader(concurrency::streams::streambuf<uint8_t> source, size_t limit, Done done)
      : source_(std::move(source)), limit_(limit), done_(std::move(done)) {}

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
      self->body_.append(reinterpret_cast<const char*>(self->chunk_.data()), size);
      self->read_next();
    });
  }

  concurrency::streams::streambuf<uint8_t> source_;
  size_t limit_;
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
        handler_(std::make_shared<const api::Handler>(std::move(handler))) {}

  ~CpprestServer() override { stop(); }

  void start() override {
    if (listener_) return;
    const auto where = options_.host + ":" + std::to_string(options_.port);
    const bool v6 = options_.host.find(':') != std::string::npos;
    const auto address = "http://" + (v6 ? "[" + options_.host + "]" : options_.host) + ":" +
                         std::to_string(options_.port) + "/";
    const auto key = lower(options_.host) + ":" + std::to_string(options_.port);
    if (!AddressRegistry::claim(key)) {
      throw std::runtime_error("cannot listen on " + where +
                               ": already listening there in this process");
    }
    gate_ = std::make_shared<Gate>();
    try {
      auto listener = std::make_unique<http_listener>(web::uri(address));
      listener->support([gate = gate_, handler = handler_,
                         limit = options_.max_body_bytes](http_request request) {
        dispatch(gate, handler, limit, std::move(request));
      });
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
                       const std::shared_ptr<const api::Handler>& handler, size_t limit,
                       http_request request) {
    auto exchange = std::make_shared<Exchange>(gate, request);
    utility::size64_t declared = 0;
    if (request.headers().match(web::http::header_names::content_length, declared) &&
        declared > limit) {
      discard_body(request);
      exchange->answer(too_large(limit));
      return;
    }

    BodyReader::start(
        request.body().streambuf(), limit,
        [exchange, handler, limit](BodyReader::Outcome outcome, std::string body,
                                   std::string error) {
          if (outcome == BodyReader::Outcome::kTooLarge) {
            discard_body(exchange->request());
            exchange->answer(too_large(limit));
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
