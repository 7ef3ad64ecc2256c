// The cpprest client adapter: real sockets on 127.0.0.1 and short sleeps, unlike the core's
// tests. Its peer is floodgate's own listener (the listener's own tests: tests/unit/http_server).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http/beast_server.h"
#include "http/cpprest_client.h"
#include "http/thread_pool.h"

namespace floodgate::http {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

/// Receives one response; safe to outlive the test that waits on it.
class Pending {
 public:
  std::function<void(prefect::HttpResponse)> callback() {
    return [state = state_](prefect::HttpResponse response) {
      std::lock_guard lock(state->mutex);
      ++state->calls;
      state->response = std::move(response);
      state->ready.notify_all();
    };
  }

  prefect::HttpResponse wait(std::chrono::milliseconds limit = 10s) {
    std::unique_lock lock(state_->mutex);
    if (!state_->ready.wait_for(lock, limit, [&] { return state_->response.has_value(); })) {
      ADD_FAILURE() << "no response within " << limit.count() << " ms";
      return {};
    }
    return *state_->response;
  }

  int calls() const {
    std::lock_guard lock(state_->mutex);
    return state_->calls;
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable ready;
    std::optional<prefect::HttpResponse> response;
    int calls = 0;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

/// Replies with a JSON description of what arrived.
api::Handler echo_handler() {
  return [](api::ServerRequest request, api::Responder respond) {
    api::ServerResponse response;
    const auto status = request.headers.find("x-status");
    response.status = status == request.headers.end() ? 200 : std::stoi(status->second);
    response.body = json{{"method", request.method},
                         {"path", request.path},
                         {"query", request.query},
                         {"body", request.body},
                         {"headers", request.headers}}
                        .dump();
    response.headers["X-Echo"] = request.headers["x-test"];
    respond(std::move(response));
  };
}

struct Server {
  std::unique_ptr<HttpListener> server;
  uint16_t port = 0;
};

Server start_server(api::Handler handler, size_t max_body = 16 * 1024 * 1024) {
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;  // a free one
  options.max_body_bytes = max_body;
  auto server = make_http_server(options, std::move(handler));
  server->start();
  const auto port = server->port();
  return {std::move(server), port};
}

std::unique_ptr<prefect::HttpClient> client_for(uint16_t port,
                                                std::chrono::milliseconds timeout = 5s) {
  ClientOptions options;
  options.base_url = "http://127.0.0.1:" + std::to_string(port) + "/api";
  options.request_timeout = timeout;
  return make_cpprest_client(options);
}

prefect::HttpResponse call(prefect::HttpClient& client, prefect::HttpRequest request) {
  Pending pending;
  client.send(std::move(request), pending.callback());
  return pending.wait();
}

prefect::HttpRequest post(std::string path, std::string body) {
  prefect::HttpRequest request;
  request.method = "POST";
  request.path = std::move(path);
  request.body = std::move(body);
  request.timeout = 5s;
  return request;
}

uint16_t unused_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

TEST(CpprestClient, RoundTripsStatusBodyAndHeaders) {
  auto server = start_server(echo_handler());
  auto client = client_for(server.port);
  auto request = post("/v1/echo/a%20b?x=1&y=two%20words", R"({"a":1})");
  request.headers = {{"X-Test", "hello"}, {"X-Status", "201"}};

  const auto response = call(*client, request);

  ASSERT_EQ(response.status, 201) << response.error;
  EXPECT_TRUE(response.error.empty());
  EXPECT_FALSE(response.timed_out);
  EXPECT_EQ(response.header("x-echo"), "hello");
  EXPECT_EQ(response.header("CONTENT-TYPE"), "application/json");
  const auto seen = json::parse(response.body);
  EXPECT_EQ(seen["method"], "POST");
  EXPECT_EQ(seen["path"], "/api/v1/echo/a b");
  EXPECT_EQ(seen["query"], "x=1&y=two%20words");
  EXPECT_EQ(seen["body"], R"({"a":1})");
  EXPECT_EQ(seen["headers"]["x-test"], "hello");
  EXPECT_EQ(seen["headers"]["content-type"], "application/json");
  EXPECT_EQ(seen["headers"]["content-length"], "7");
}

TEST(CpprestClient, KeepsTheCallersContentType) {
  auto server = start_server(echo_handler());
  auto client = client_for(server.port);
  auto request = post("/v1/x", "plain words");
  request.headers = {{"Content-Type", "text/plain"}};
  const auto response = call(*client, request);
  ASSERT_EQ(response.status, 200) << response.error;
  EXPECT_EQ(json::parse(response.body)["headers"]["content-type"], "text/plain");
}

TEST(CpprestClient, GetWithoutBody) {
  auto server = start_server(echo_handler());
  auto client = client_for(server.port);
  prefect::HttpRequest request;
  request.method = "GET";
  request.path = "/healthz";
  const auto response = call(*client, request);
  ASSERT_EQ(response.status, 200) << response.error;
  const auto seen = json::parse(response.body);
  EXPECT_EQ(seen["method"], "GET");
  EXPECT_EQ(seen["body"], "");
  EXPECT_FALSE(seen["headers"].contains("content-type"));
}

TEST(CpprestClient, NoContentAndBinaryBodies) {
  auto server = start_server([](api::ServerRequest request, api::Responder respond) {
    api::ServerResponse response;
    if (request.path == "/empty") {
      response.status = 204;
    } else {
      response.content_type = "application/octet-stream";
      response.body = std::string("\0\x01\xff\xfe bytes", 10);
    }
    respond(std::move(response));
  });
  ClientOptions options;
  options.base_url = "http://127.0.0.1:" + std::to_string(server.port);
  auto root_client = make_cpprest_client(options);
  auto response = call(*root_client, post("/empty", ""));
  EXPECT_EQ(response.status, 204) << response.error;
  EXPECT_EQ(response.body, "");
  response = call(*root_client, post("/binary", "x"));
  EXPECT_EQ(response.status, 200) << response.error;
  EXPECT_EQ(response.body, std::string("\0\x01\xff\xfe bytes", 10));
}

TEST(CpprestClient, SlowAnswerTimesOut) {
  std::mutex mutex;
  std::vector<std::thread> repliers;
  auto server = start_server([&](api::ServerRequest, api::Responder respond) {
    std::lock_guard lock(mutex);
    repliers.emplace_back([respond = std::move(respond)] {
      std::this_thread::sleep_for(300ms);
      respond(api::ServerResponse{});
    });
  });
  auto client = client_for(server.port);

  auto request = post("/v1/slow", "{}");
  request.timeout = 100ms;
  const auto started = std::chrono::steady_clock::now();
  const auto response = call(*client, request);
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(response.status, 0);
  EXPECT_TRUE(response.timed_out);
  EXPECT_NE(response.error.find("timed out"), std::string::npos) << response.error;
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 290ms);

  // A zero request timeout falls back to the client's default.
  auto fallback_client = client_for(server.port, 100ms);
  request.timeout = std::chrono::milliseconds::zero();
  const auto fallback = call(*fallback_client, request);
  EXPECT_TRUE(fallback.timed_out) << fallback.status << " " << fallback.error;

  // The same client still works once the slow answers have been sent.
  request.timeout = 2s;
  const auto patient = call(*client, request);
  EXPECT_EQ(patient.status, 200) << patient.error;

  std::lock_guard lock(mutex);
  for (auto& replier : repliers) replier.join();
}

TEST(CpprestClient, ConnectionRefusedIsATransportError) {
  auto client = client_for(unused_port());
  const auto response = call(*client, post("/v1/x", "{}"));
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.timed_out);
  EXPECT_FALSE(response.error.empty());
  EXPECT_NE(response.error.find("POST http://127.0.0.1:"), std::string::npos) << response.error;
}

TEST(CpprestClient, UnresolvableHostIsATransportError) {
  ClientOptions options;
  options.base_url = "http://floodgate-test.invalid:4200/api";
  auto client = make_cpprest_client(options);
  const auto response = call(*client, post("/v1/x", "{}"));
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.error.empty());
}

TEST(CpprestClient, InvalidPathIsReportedAsynchronously) {
  auto client = client_for(unused_port());
  Pending pending;
  auto request = post("/has space", "{}");
  client->send(request, pending.callback());
  const auto response = pending.wait();
  EXPECT_EQ(response.status, 0);
  EXPECT_NE(response.error.find("invalid request"), std::string::npos) << response.error;
  EXPECT_EQ(pending.calls(), 1);
}

TEST(CpprestClient, FiftyConcurrentRequestsAllAnswered) {
  auto server = start_server([](api::ServerRequest request, api::Responder respond) {
    // Answer from another thread, a little later, so the requests really overlap.
    std::thread([request = std::move(request), respond = std::move(respond)] {
      std::this_thread::sleep_for(20ms);
      api::ServerResponse response;
      response.body = request.body;
      respond(std::move(response));
    }).detach();
  });
  auto client = client_for(server.port);

  constexpr int kRequests = 50;
  std::vector<Pending> pending(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    client->send(post("/v1/n", std::to_string(i)), pending[static_cast<size_t>(i)].callback());
  }
  for (int i = 0; i < kRequests; ++i) {
    const auto response = pending[static_cast<size_t>(i)].wait();
    EXPECT_EQ(response.status, 200) << response.error;
    EXPECT_EQ(response.body, std::to_string(i));
    EXPECT_EQ(pending[static_cast<size_t>(i)].calls(), 1);
  }
}

TEST(CpprestClient, GoesThroughTheConfiguredProxy) {
  // The echo server plays a forward proxy: it receives the absolute-form request.
  auto proxy = start_server(echo_handler());
  ClientOptions options;
  options.base_url = "http://floodgate-target.invalid:81/api";
  options.proxy_url = "http://user:p%40ss@127.0.0.1:" + std::to_string(proxy.port);
  auto client = make_cpprest_client(options);
  const auto response = call(*client, post("/v1/x", "{}"));
  ASSERT_EQ(response.status, 200) << response.error;
  const auto seen = json::parse(response.body);
  EXPECT_EQ(seen["path"], "/api/v1/x");
  EXPECT_EQ(seen["headers"]["host"], "floodgate-target.invalid:81");
  // base64("user:p@ss")
  EXPECT_EQ(seen["headers"]["proxy-authorization"], "Basic dXNlcjpwQHNz");
}

TEST(CpprestClient, RejectsBadOptions) {
  ClientOptions options;
  options.base_url = "not a url";
  EXPECT_THROW(make_cpprest_client(options), std::invalid_argument);
  options.base_url = "ftp://prefect/api";
  EXPECT_THROW(make_cpprest_client(options), std::invalid_argument);
  options.base_url = "http://prefect/api";
  options.proxy_url = "socks5://proxy:1080";
  EXPECT_THROW(make_cpprest_client(options), std::invalid_argument);
  options.proxy_url.clear();
  options.ca_file = "/nonexistent/ca.pem";
  EXPECT_THROW(make_cpprest_client(options), std::invalid_argument);
}

TEST(HttpResponse, HeaderLookupIgnoresCase) {
  prefect::HttpResponse response;
  response.headers = {{"Retry-After", "7"}, {"X-Other", "1"}};
  EXPECT_EQ(response.header("retry-after"), "7");
  EXPECT_EQ(response.header("RETRY-AFTER"), "7");
  EXPECT_EQ(response.header("Retry-Afte"), "");
  EXPECT_EQ(response.header("missing"), "");
}

// Last in the file: sizing the pool only works before any HTTP object has existed.
TEST(HttpThreads, PoolIsSizedOnceOnly) {
  EXPECT_THROW(init_http_threads(0), std::runtime_error);
  try {
    init_http_threads(8);
  } catch (const std::runtime_error&) {
    // Earlier tests in this process already started the pool.
  }
  EXPECT_THROW(init_http_threads(8), std::runtime_error);
}

}  // namespace
}  // namespace floodgate::http
