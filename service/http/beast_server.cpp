#include "http/beast_server.h"

#include <malloc.h>

#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <cerrno>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "http/beast_connection.h"
#include "metrics/log.h"

namespace floodgate::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

using namespace beast_detail;  // NOLINT: the listener's own pieces
/// How long a connection being closed after an early answer (413, 400, 503) may keep sending
/// before it is cut: long enough for a client to finish writing and read the answer, which a
/// close with unread data (a TCP reset) could otherwise destroy.
constexpr auto kLingerTimeout = 2s;
/// When accept() fails for lack of descriptors or memory: wait this long before trying again
/// instead of spinning on a listening socket that stays readable.
constexpr auto kAcceptBackoff = 50ms;
/// At most one warning per this interval about shed connections or failing accepts.
constexpr auto kWarnEvery = 10s;

template <bool kTls>
class Session final : public Connection {
 public:
  using Stream = std::conditional_t<kTls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

  Session(std::shared_ptr<Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)), stream_(make_stream(*shared_, std::move(socket))) {}

  ~Session() override {
    shared_->connections.fetch_sub(1);
    std::lock_guard lock(shared_->registry_mutex);
    shared_->registry.erase(this);
  }

  void start() override {
    // The first request's head is due within the header timeout of the accept, handshake
    // included: a client that connects and sends nothing is cut off like one that dribbles.
    lowest().expires_after(shared_->options.header_timeout);
    if constexpr (kTls) {
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = self()](beast::error_code ec) {
                                if (ec) return self->shut();
                                self->read_head();
                              });
    } else {
      read_head();
    }
  }

  void close() override {
    asio::post(stream_.get_executor(), [self = self()] { self->shut(); });
  }

  void answer(api::ServerResponse response) override { write(std::move(response), false); }

  asio::any_io_executor executor() override { return stream_.get_executor(); }

 private:
  static Stream make_stream(Shared& shared, tcp::socket socket) {
    if constexpr (kTls) {
      return Stream(beast::tcp_stream(std::move(socket)), *shared.tls);
    } else {
      return Stream(std::move(socket));
    }
  }

  std::shared_ptr<Session> self() { return std::static_pointer_cast<Session>(shared_from_this()); }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  /// Waits for the first byte of the next request on a kept-alive connection.
  void await_next() {
    if (buffer_.size() > 0) {
      lowest().expires_after(shared_->options.header_timeout);
      return read_head();
    }
    lowest().expires_after(shared_->options.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096), [self = self()](beast::error_code ec, size_t n) {
      if (ec) return self->shut();  // idle timeout or the client left
      self->buffer_.commit(n);
      self->lowest().expires_after(self->shared_->options.header_timeout);
      self->read_head();
    });
  }

  void read_head() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(kMaxHeaderBytes));
    // The body's limit is checked here against Content-Length and by the parser only once the
    // head is in, so that an oversized declaration gets 413 rather than a parse error.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());  // not none: 1.74's
    // check compares the length with the optional itself, and anything exceeds an empty one.
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = self()](beast::error_code ec, size_t) { self->on_head(ec); });
  }

  void on_head(beast::error_code ec) {
    if (ec) {
      if (auto answer = answer_for_head_error(ec)) return early(std::move(*answer));
      return shut();
    }

    auto& request = parser_->get();
    version_ = request.version();
    keep_alive_ = request.keep_alive();
    head_ = request.method() == bhttp::verb::head;
    exchange_ = std::make_shared<Exchange>(shared_, shared_from_this());

    // Beast accepts a repeated Content-Length with one value ("2, 2" or twice "2"); a proxy in
    // front may not agree on the framing, so floodgate refuses it like a conflicting one.
    const auto lengths = request.count(bhttp::field::content_length);
    if (lengths > 1 ||
        (lengths == 1 && request[bhttp::field::content_length].find(',') != std::string::npos)) {
      return early(bad_length());
    }
    const size_t limit = shared_->options.max_body_bytes;
    if (const auto declared = parser_->content_length()) {
      if (*declared > limit) return early(too_large(limit));
      if (!exchange_->reserve_for(static_cast<size_t>(*declared))) return early(busy());
    }
    parser_->body_limit(limit);
    lowest().expires_after(shared_->options.body_timeout);
    if (parser_->is_done()) return dispatch();
    if (beast::iequals(request[bhttp::field::expect], "100-continue")) {
      auto proceed =
          std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_, version_);
      bhttp::async_write(stream_, *proceed, [self = self(), proceed](beast::error_code e, size_t) {
        if (e) return self->shut();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    bhttp::async_read_some(stream_, buffer_, *parser_,
                           [self = self()](beast::error_code ec, size_t) { self->on_body(ec); });
  }

  void on_body(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) return early(too_large(shared_->options.max_body_bytes));
    if (ec == bhttp::error::bad_chunk || ec == bhttp::error::bad_chunk_extension) {
      return early(bad_request("malformed chunked body"));
    }
    if (ec) return shut();  // body timeout, or the client went away mid-body
    if (!exchange_->reserve_for(parser_->get().body().size())) return early(busy());
    if (!parser_->is_done()) return read_body();
    dispatch();
  }

  void dispatch() {
    lowest().expires_never();  // the handler has all the time it needs; the client waits
    auto exchange = std::move(exchange_);
    auto& request = parser_->get();
    api::ServerRequest incoming;
    try {
      incoming.method = std::string(request.method_string());
      const auto raw_target = request.target();
      std::string_view target(raw_target.data(), raw_target.size());
      // Absolute form (a request meant for a proxy): keep the path and query only.
      if (auto scheme = target.find("://"); scheme != std::string_view::npos && target[0] != '/') {
        const auto slash = target.find('/', scheme + 3);
        target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      }
      const auto question = target.find('?');
      incoming.path = decode_path(target.substr(0, question));
      if (question != std::string_view::npos)
        incoming.query = std::string(target.substr(question + 1));
      for (const auto& field : request) {
        auto name = lower(std::string(field.name_string()));
        auto [it, fresh] = incoming.headers.emplace(std::move(name), std::string(field.value()));
        if (!fresh) it->second += ", " + std::string(field.value());
      }
      incoming.body = std::move(request.body());
    } catch (const std::exception& e) {
      exchange->answer(bad_request(std::string("malformed request: ") + e.what()));
      return;
    }
    parser_.reset();
    try {
      (*shared_->handler)(std::move(incoming), [exchange](api::ServerResponse response) {
        exchange->answer(std::move(response));
      });
    } catch (...) {
      exchange->answer(
          problem(500, "Internal Server Error", "unexpected error while handling the request"));
    }
  }

  /// Answers before the body has been read, then ends the connection.
  void early(api::ServerResponse response) {
    if (exchange_) {
      // Counts as the answer: a later drop of the exchange must not send a 500 as well.
      auto exchange = std::move(exchange_);
      exchange->answer(std::move(response));
      return;
    }
    write(std::move(response), true);
  }

  void write(api::ServerResponse answer, bool unread_input) {
    if (writing_) return;  // one answer per request
    writing_ = true;
    auto response = std::make_shared<bhttp::response<bhttp::string_body>>();
    response->version(version_ == 10 ? 10 : 11);
    response->result(static_cast<unsigned>(answer.status));
    bool close_after = !keep_alive_ || unread_input || parser_.has_value();
    for (const auto& [name, value] : answer.headers) {
      if (beast::iequals(name, "connection")) {
        if (lower(value).find("close") != std::string::npos) close_after = true;
        continue;
      }
      response->insert(name, value);
    }
    for (const auto& [name, value] : default_response_headers()) {
      if (response->find(name) == response->end()) response->set(name, value);
    }
    const bool no_body = answer.status == 204 || answer.status == 304 ||
                         (answer.status >= 100 && answer.status < 200);
    if (!answer.body.empty() && !no_body) {
      if (response->find(bhttp::field::content_type) == response->end()) {
        response->set(bhttp::field::content_type, answer.content_type.empty()
                                                      ? "application/octet-stream"
                                                      : answer.content_type);
      }
    } else if (!answer.content_type.empty() && !no_body &&
               response->find(bhttp::field::content_type) == response->end()) {
      response->set(bhttp::field::content_type, answer.content_type);
    }
    if (!no_body) {
      if (head_) {
        response->content_length(answer.body.size());
      } else {
        response->body() = std::move(answer.body);
        response->prepare_payload();
      }
    }
    response->keep_alive(!close_after);
    lowest().expires_after(shared_->options.body_timeout);
    bhttp::async_write(stream_, *response,
                       [self = self(), response, close_after](beast::error_code ec, size_t) {
                         self->writing_ = false;
                         if (ec) return self->shut();
                         if (close_after) return self->linger();
                         self->parser_.reset();
                         self->await_next();
                       });
  }

  /// Ends the connection without a reset destroying the answer just sent: stops sending, then
  /// reads and drops what the client still sends until it closes, for kLingerTimeout at most.
  void linger() {
    parser_.reset();
    beast::error_code ignored;
    if constexpr (!kTls) lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest().expires_after(kLingerTimeout);
    drain();
  }

  void drain() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(16 * 1024),
                            [self = self()](beast::error_code ec, size_t) {
                              if (ec) return self->shut();
                              self->drain();
                            });
  }

  void shut() {
    if (exchange_) {
      // Breaks the cycle connection -> exchange -> connection, and releases the budget.
      exchange_->abandon();
      exchange_.reset();
    }
    beast::error_code ignored;
    lowest().socket().close(ignored);
  }

  std::shared_ptr<Shared> shared_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<Exchange> exchange_;  // from the head until dispatch or an early answer
  unsigned version_ = 11;
  bool keep_alive_ = false;
  bool head_ = false;
  bool writing_ = false;
};

/// Rate-limits one kind of warning and counts what it did not say.
class Warner {
 public:
  void warn(const std::string& message, nlohmann::json fields) {
    std::lock_guard lock(mutex_);
    ++count_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < kWarnEvery) return;
    last_ = now;
    fields["count"] = count_;
    count_ = 0;
    log::warn(message, fields);
  }

 private:
  std::mutex mutex_;
  std::chrono::steady_clock::time_point last_{};
  int64_t count_ = 0;
};

class BeastServer final : public HttpListener {
 public:
  BeastServer(ServerOptions options, api::Handler handler)
      : options_(std::move(options)),
        handler_(std::make_shared<const api::Handler>(std::move(handler))) {}

  ~BeastServer() override { stop(); }

  void start() override {
    if (shared_) return;
    const auto where = options_.host + ":" + std::to_string(options_.port);
    auto shared = std::make_shared<Shared>(options_, handler_);
    try {
      if (!options_.tls_cert_file.empty()) {
        shared->tls.emplace(asio::ssl::context::tls_server);
        // TLS 1.2 and later only.
        shared->tls->set_options(asio::ssl::context::default_workarounds |
                                 asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                                 asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                                 asio::ssl::context::single_dh_use);
        shared->tls->use_certificate_chain_file(options_.tls_cert_file);
        shared->tls->use_private_key_file(options_.tls_key_file, asio::ssl::context::pem);
      }
      tcp::resolver resolver(shared->io);
      const auto endpoints =
          resolver.resolve(options_.host, std::to_string(options_.port),
                           tcp::resolver::passive | tcp::resolver::numeric_service);
      if (endpoints.empty()) throw std::runtime_error("no address");
      const auto endpoint = endpoints.begin()->endpoint();
      acceptor_.emplace(asio::make_strand(shared->io));
      acceptor_->open(endpoint.protocol());
      acceptor_->set_option(asio::socket_base::reuse_address(true));
      acceptor_->bind(endpoint);
      acceptor_->listen(asio::socket_base::max_listen_connections);
      port_ = acceptor_->local_endpoint().port();
    } catch (const std::exception& e) {
      acceptor_.reset();
      throw std::runtime_error("cannot listen on " + where + ": " + e.what());
    }
    shared_ = std::move(shared);
    backoff_.emplace(acceptor_->get_executor());
    work_.emplace(asio::make_work_guard(shared_->io));
    accept();
    const size_t threads = std::max<size_t>(1, options_.threads);
    for (size_t i = 0; i < threads; ++i) {
      threads_.emplace_back([shared = shared_] {
        while (true) {
          try {
            shared->io.run();
            return;
          } catch (const std::exception& e) {
            log::error("listener thread: unexpected error", {{"error", e.what()}});
          } catch (...) {
            log::error("listener thread: unexpected error");
          }
        }
      });
    }
  }

  void stop() override {
    if (!shared_) return;
    {
      std::unique_lock lock(shared_->gate_mutex);
      shared_->open = false;
    }
    // On the acceptor's strand: once it is closed no connection joins the registry any more.
    asio::post(acceptor_->get_executor(), [this] {
      beast::error_code ignored;
      acceptor_->close(ignored);
      backoff_->cancel();
      std::vector<std::shared_ptr<Connection>> open;
      {
        std::lock_guard lock(shared_->registry_mutex);
        for (auto& [key, weak] : shared_->registry) {
          if (auto connection = weak.lock()) open.push_back(std::move(connection));
        }
      }
      // Outside the lock: dropping the last reference runs a destructor that takes it.
      for (auto& connection : open) connection->close();
    });
    // Every socket is closing: the threads end once the last completion has run. A connection
    // that a Responder still holds keeps `shared` (and its io_context) alive, never running.
    work_.reset();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    backoff_.reset();
    acceptor_.reset();
    port_ = 0;
    shared_.reset();
  }

  uint16_t port() const override { return port_; }

 private:
  void accept() {
    acceptor_->async_accept(
        asio::make_strand(shared_->io),
        [this](beast::error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
    if (ec) {
      const int code = ec.value();
      if (code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM) {
        // The pending connection stays in the backlog and the socket stays readable: trying
        // again at once would spin. Wait for connections to close.
        accept_warner_.warn("cannot accept a connection; retrying shortly",
                            {{"error", ec.message()}});
        backoff_->expires_after(kAcceptBackoff);
        backoff_->async_wait([this](beast::error_code e) {
          if (!e) accept();
        });
        return;
      }
      return accept();  // e.g. the client gave up before the accept
    }
    if (shared_->connections.load() >= options_.max_connections) {
      shed(std::move(socket));
      return accept();
    }
    shared_->connections.fetch_add(1);
    std::shared_ptr<Connection> connection;
    if (shared_->tls) {
      connection = std::make_shared<Session<true>>(shared_, std::move(socket));
    } else {
      connection = std::make_shared<Session<false>>(shared_, std::move(socket));
    }
    {
      std::lock_guard lock(shared_->registry_mutex);
      shared_->registry.emplace(connection.get(), connection);
    }
    asio::post(connection->executor(), [connection] { connection->start(); });
    accept();
  }

  /// Refuses a connection over --max-connections at once: a 503 on plain HTTP (written without
  /// waiting: a client that does not read it simply misses it), closed on TLS.
  void shed(tcp::socket socket) {
    shed_warner_.warn("connection limit reached; refusing new connections (--max-connections)",
                      {{"max_connections", static_cast<int64_t>(options_.max_connections)}});
    beast::error_code ignored;
    if (!shared_->tls) {
      static const std::string kAnswer = [] {
        const auto body = problem(503, "Service Unavailable",
                                  "floodgate has as many connections open as --max-connections "
                                  "allows; try again shortly")
                              .body;
        return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
               "Retry-After: 1\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n"
               "Content-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
      }();
      socket.non_blocking(true, ignored);
      // Drop what already arrived, so that the close below is not a reset that destroys the
      // answer; whatever arrives later is the client's loss.
      std::array<char, 4096> sink{};
      while (socket.available(ignored) > 0 && !ignored) {
        socket.receive(asio::buffer(sink), 0, ignored);
        if (ignored) break;
      }
      socket.send(asio::buffer(kAnswer), 0, ignored);
      socket.shutdown(tcp::socket::shutdown_send, ignored);
    }
    socket.close(ignored);
  }

  ServerOptions options_;
  std::shared_ptr<const api::Handler> handler_;
  std::shared_ptr<Shared> shared_;
  std::optional<tcp::acceptor> acceptor_;  // on its own strand, with backoff_
  std::optional<asio::steady_timer> backoff_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  Warner accept_warner_;
  Warner shed_warner_;
};

}  // namespace

std::unique_ptr<HttpListener> make_http_server(const ServerOptions& options, api::Handler handler) {
  return std::make_unique<BeastServer>(options, std::move(handler));
}

}  // namespace floodgate::http
