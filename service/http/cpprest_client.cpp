#include "http/cpprest_client.h"

#include <cpprest/containerstream.h>
#include <cpprest/http_client.h>
#include <openssl/err.h>
#include <pplx/threadpool.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "http/url_redact.h"

namespace floodgate::http {
namespace {

using web::http::http_request;
using web::http::http_response;
using web::http::client::http_client;
using web::http::client::http_client_config;

// cpprest's own timer restarts on every socket operation; the whole-request deadline below is
// the real limit, so the library's timer is pushed out of its way.
constexpr auto kLibraryIdleTimeout = std::chrono::hours(24);

boost::asio::io_context& io() { return crossplat::threadpool::shared_instance().service(); }

std::string describe(std::exception_ptr error) {
  try {
    std::rethrow_exception(std::move(error));
  } catch (const pplx::task_canceled&) {
    return "request cancelled";
  } catch (const web::http::http_exception& e) {
    // cpprest squeezes every failure into a generic errno (refused reads "No route to host"), so
    // only its text is kept; a TLS failure carries an OpenSSL code worth spelling out.
    std::string text = e.what();
    if (text.find("SSL") != std::string::npos) {
      const auto code = static_cast<unsigned long>(e.error_code().value());
      if (const char* reason = ERR_reason_error_string(code)) {
        text += std::string(" (") + reason + ")";
      }
    }
    return text;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

bool is_library_timeout(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const web::http::http_exception& e) {
    return e.error_code() == std::errc::timed_out;
  } catch (...) {
    return false;
  }
}

web::web_proxy make_proxy(const std::string& proxy_url) {
  web::uri parsed;
  try {
    parsed = web::uri(proxy_url);
  } catch (const std::exception& e) {
    throw std::invalid_argument("invalid proxy URL '" + redact_url(proxy_url) + "': " + e.what());
  }
  if (parsed.scheme() != "http") {
    throw std::invalid_argument("unsupported proxy URL '" + redact_url(proxy_url) +
                                "': only http:// proxies are supported");
  }
  web::uri_builder address;
  address.set_scheme("http").set_host(parsed.host());
  // cpprest would default a port-less proxy to 8080; curl and Python use the scheme's port.
  address.set_port(parsed.port() > 0 ? parsed.port() : 80);
  web::web_proxy proxy(address.to_uri());
  if (const auto& user_info = parsed.user_info(); !user_info.empty()) {
    const auto colon = user_info.find(':');
    const auto user = web::uri::decode(user_info.substr(0, colon));
    const auto password =
        colon == std::string::npos ? std::string() : web::uri::decode(user_info.substr(colon + 1));
    proxy.set_credentials(web::credentials(user, password));
  }
  return proxy;
}

http_client_config make_config(const ClientOptions& options) {
  http_client_config config;
  config.set_timeout(kLibraryIdleTimeout);
  config.set_validate_certificates(options.verify_tls);
  // The Prefect layer sees every status as sent; following redirects would hide them.
  config.set_max_redirects(0);
  if (!options.ca_file.empty()) {
    if (!std::ifstream(options.ca_file).good()) {
      throw std::invalid_argument("cannot read CA file '" + options.ca_file + "'");
    }
    config.set_ssl_context_callback(
        [ca_file = options.ca_file](boost::asio::ssl::context& context) {
          context.load_verify_file(ca_file);
        });
  }
  if (!options.proxy_url.empty()) config.set_proxy(make_proxy(options.proxy_url));
  return config;
}

/// One request in flight: finishes exactly once, by response, transport error or deadline.
class Call {
 public:
  Call(std::function<void(prefect::HttpResponse)> done, std::string what,
       std::chrono::milliseconds timeout)
      : done_(std::move(done)), what_(std::move(what)), timeout_(timeout), deadline_(io()) {}

  static void arm_deadline(const std::shared_ptr<Call>& call) {
    call->deadline_.expires_after(call->timeout_);
    call->deadline_.async_wait([weak = std::weak_ptr<Call>(call)](boost::system::error_code ec) {
      if (ec) return;
      if (const auto self = weak.lock()) self->expire();
    });
  }

  pplx::cancellation_token token() const { return cancel_.get_token(); }

  void succeed(prefect::HttpResponse response) { finish(std::move(response)); }

  void fail(const std::exception_ptr& error) {
    if (is_library_timeout(error)) {
      finish(timed_out_response());
      return;
    }
    prefect::HttpResponse response;
    const std::string text = describe(error);
    // cpprest says so only in its text: a pooled connection closed by the server fails at once
    // while the request is written.
    response.transport = text.find("Failed to write request body") != std::string::npos
                             ? prefect::TransportError::kStaleConnection
                             : prefect::TransportError::kOther;
    response.error = what_ + ": " + text;
    finish(std::move(response));
  }

  void fail(std::string message) {
    prefect::HttpResponse response;
    response.transport = prefect::TransportError::kOther;
    response.error = what_ + ": " + std::move(message);
    finish(std::move(response));
  }

  /// Fails the call and closes its connection (the rest of the answer is not read).
  void abort(std::string message) {
    prefect::HttpResponse response;
    response.error = what_ + ": " + std::move(message);
    if (finish(std::move(response))) cancel_.cancel();
  }

 private:
  prefect::HttpResponse timed_out_response() const {
    prefect::HttpResponse response;
    response.timed_out = true;
    response.error = what_ + ": timed out after " + std::to_string(timeout_.count()) + " ms";
    return response;
  }

  void expire() {
    // Closes the connection, so cpprest stops and keeps it out of its pool.
    if (finish(timed_out_response())) cancel_.cancel();
  }

  bool finish(prefect::HttpResponse response) {
    if (finished_.exchange(true)) return false;
    if (!response.timed_out) {
      boost::system::error_code ignored;
      deadline_.cancel(ignored);
    }
    try {
      done_(std::move(response));
    } catch (...) {
      // `done` must not throw; an exception here would take down a pool thread.
    }
    return true;
  }

  std::function<void(prefect::HttpResponse)> done_;
  std::string what_;
  std::chrono::milliseconds timeout_;
  pplx::cancellation_token_source cancel_;
  boost::asio::steady_timer deadline_;
  std::atomic<bool> finished_{false};
};

class CpprestClient final : public prefect::HttpClient {
 public:
  explicit CpprestClient(const ClientOptions& options)
      : base_url_(redact_url(options.base_url)),
        default_timeout_(options.request_timeout),
        max_body_(options.max_response_bytes) {
    // base_url_ only names calls in errors and logs, so it never holds the URL's userinfo.
    web::uri base;
    try {
      base = web::uri(options.base_url);
    } catch (const std::exception& e) {
      throw std::invalid_argument("invalid base URL '" + base_url_ + "': " + e.what());
    }
    if (base.scheme() != "http" && base.scheme() != "https") {
      throw std::invalid_argument("invalid base URL '" + base_url_ +
                                  "': the scheme must be http or https");
    }
    if (base.host().empty()) {
      throw std::invalid_argument("invalid base URL '" + base_url_ + "': no host");
    }
    client_ = std::make_unique<http_client>(base, make_config(options));
    while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
  }

  void send(prefect::HttpRequest request,
            std::function<void(prefect::HttpResponse)> done) override {
    const auto timeout =
        request.timeout > std::chrono::milliseconds::zero() ? request.timeout : default_timeout_;
    auto call = std::make_shared<Call>(std::move(done),
                                       request.method + " " + base_url_ + request.path, timeout);

    http_request message;
    try {
      message = build(std::move(request));
    } catch (const std::exception& e) {
      // Never call `done` inside send(): the caller may hold a lock or be mid-dispatch.
      boost::asio::post(io(), [call, error = std::string(e.what())]() mutable {
        call->fail("invalid request: " + std::move(error));
      });
      return;
    }

    Call::arm_deadline(call);
    pplx::task<http_response> response;
    try {
      response = client_->request(std::move(message), call->token());
    } catch (...) {
      boost::asio::post(io(), [call, error = std::current_exception()] { call->fail(error); });
      return;
    }
    response.then([call, max_body = max_body_](pplx::task<http_response> answered) {
      try {
        read_body(call, answered.get(), max_body);
      } catch (...) {
        call->fail(std::current_exception());
      }
    });
  }

 private:
  static http_request build(prefect::HttpRequest request) {
    http_request message(request.method);
    message.set_request_uri(web::uri(request.path));
    for (auto& [name, value] : request.headers) message.headers().add(name, value);
    if (!request.body.empty()) {
      // Headers go first: set_body keeps a Content-Type that is already there.
      message.set_body(std::move(request.body), "application/json");
    }
    return message;
  }

  // The status line and headers are in; the body may still be arriving. It is read in chunks so
  // that an answer larger than `max_body` is dropped once the limit is passed, never buffered
  // whole (a declared Content-Length beyond the limit is refused before reading anything).
  static void read_body(const std::shared_ptr<Call>& call, const http_response& answer,
                        size_t max_body) {
    auto result = std::make_shared<prefect::HttpResponse>();
    result->status = answer.status_code();
    for (const auto& [name, value] : answer.headers()) result->headers.emplace_back(name, value);
    if (max_body > 0 && answer.headers().content_length() > max_body) {
      call->abort(too_large(max_body, answer.headers().content_length()));
      return;
    }
    auto sink = std::make_shared<Sink>();
    sink->declared = answer.headers().content_length();
    read_chunks(call, result, answer.body(), sink, max_body);
  }

  // The body read so far. container_buffer's vector grows by whole chunks ahead of the bytes
  // actually written, so the count of bytes read is kept apart.
  struct Sink {
    concurrency::streams::container_buffer<std::vector<uint8_t>> buffer;
    size_t size = 0;
    uint64_t declared = 0;  // Content-Length; 0 when absent (or empty)
  };

  // How much the next read asks for. The buffer zero-fills (and on growth copies) all of it, so
  // with a Content-Length the reads ask for just what is left plus the byte that shows the end:
  // the buffer then holds Content-Length + 1 bytes in all, instead of 64 KiB more per read. In a
  // perf profile of floodgated launching against the fake Prefect, that zeroing and copying was
  // 13% of the samples (3% of them are left in reading the body).
  static size_t next_chunk(const Sink& sink) {
    constexpr size_t kChunk = 64 * 1024;
    if (sink.declared == 0) return kChunk;
    return sink.size < sink.declared
               ? static_cast<size_t>(std::min<uint64_t>(sink.declared - sink.size, kChunk)) + 1
               : 1;
  }

  static void read_chunks(const std::shared_ptr<Call>& call,
                          const std::shared_ptr<prefect::HttpResponse>& result,
                          concurrency::streams::istream body, const std::shared_ptr<Sink>& sink,
                          size_t max_body) {
    body.read(sink->buffer, next_chunk(*sink)).then([=](pplx::task<size_t> read) {
      size_t n = 0;
      try {
        n = read.get();
      } catch (...) {
        call->fail(std::current_exception());
        return;
      }
      sink->size += n;
      if (max_body > 0 && sink->size > max_body) {
        call->abort(too_large(max_body, 0));
        return;
      }
      if (n == 0) {
        const auto& bytes = sink->buffer.collection();
        result->body.assign(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(sink->size));
        call->succeed(std::move(*result));
        return;
      }
      read_chunks(call, result, body, sink, max_body);
    });
  }

  static std::string too_large(size_t max_body, uint64_t declared) {
    return "answer body larger than the limit of " + std::to_string(max_body) +
           " bytes (--max-prefect-response-bytes)" +
           (declared ? "; Content-Length " + std::to_string(declared) : std::string());
  }

  std::string base_url_;
  std::chrono::milliseconds default_timeout_;
  size_t max_body_;
  std::unique_ptr<http_client> client_;
};

}  // namespace

std::unique_ptr<prefect::HttpClient> make_cpprest_client(const ClientOptions& options) {
  return std::make_unique<CpprestClient>(options);
}

}  // namespace floodgate::http
