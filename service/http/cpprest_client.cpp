#include "http/cpprest_client.h"

#include <cpprest/http_client.h>
#include <openssl/err.h>
#include <pplx/threadpool.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

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
    throw std::invalid_argument("invalid proxy URL '" + proxy_url + "': " + e.what());
  }
  if (parsed.scheme() != "http") {
    throw std::invalid_argument("unsupported proxy URL '" + proxy_url +
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
      : base_url_(options.base_url), default_timeout_(options.request_timeout) {
    web::uri base;
    try {
      base = web::uri(options.base_url);
    } catch (const std::exception& e) {
      throw std::invalid_argument("invalid base URL '" + options.base_url + "': " + e.what());
    }
    if (base.scheme() != "http" && base.scheme() != "https") {
      throw std::invalid_argument("invalid base URL '" + options.base_url +
                                  "': the scheme must be http or https");
    }
    if (base.host().empty()) {
      throw std::invalid_argument("invalid base URL '" + options.base_url + "': no host");
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
    response.then([call](pplx::task<http_response> answered) {
      try {
        read_body(call, answered.get());
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

  // The status line and headers are in; the body may still be arriving.
  static void read_body(const std::shared_ptr<Call>& call, const http_response& answer) {
    auto result = std::make_shared<prefect::HttpResponse>();
    result->status = answer.status_code();
    for (const auto& [name, value] : answer.headers()) result->headers.emplace_back(name, value);
    answer.extract_vector().then([call, result](pplx::task<std::vector<unsigned char>> body) {
      try {
        const auto bytes = body.get();
        result->body.assign(bytes.begin(), bytes.end());
      } catch (...) {
        call->fail(std::current_exception());
        return;
      }
      call->succeed(std::move(*result));
    });
  }

  std::string base_url_;
  std::chrono::milliseconds default_timeout_;
  std::unique_ptr<http_client> client_;
};

}  // namespace

std::unique_ptr<prefect::HttpClient> make_cpprest_client(const ClientOptions& options) {
  return std::make_unique<CpprestClient>(options);
}

}  // namespace floodgate::http
