// Adapter tests: real sockets on 127.0.0.1 and short sleeps, unlike the core's tests.
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

#include "http/cpprest_client.h"
#include "http/cpprest_server.h"
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
  std::unique_ptr<api::HttpServer> server;
  uint16_t port = 0;
};

Server start_server(api::Handler handler, size_t max_body = 16 * 1024 * 1024) {
  const int first = 18000 + static_cast<int>(getpid() % 1000);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto port = static_cast<uint16_t>(18000 + (first - 18000 + attempt * 7) % 2000);
    auto server = make_cpprest_server(ServerOptions{"127.0.0.1", port, max_body}, handler);
    try {
      server->start();
      return {std::move(server), port};
    } catch (const std::runtime_error&) {
      // Taken, perhaps by a test running in parallel: try the next one.
    }
  }
  throw std::runtime_error("no free port for the test server");
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

/// Writes raw bytes to the server and returns what it answers before closing (or 3 s pass).
std::string raw_exchange(uint16_t port, const std::string& bytes, bool read_answer = true) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return "connect failed";
  }
  timeval limit{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  size_t sent = 0;
  while (sent < bytes.size()) {
    const auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string answer;
  if (read_answer) {
    char buffer[4096];
    while (true) {
      const auto n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      answer.append(buffer, static_cast<size_t>(n));
    }
  }
  close(fd);
  return answer;
}

TEST(CpprestAdapter, RoundTripsStatusBodyAndHeaders) {
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

TEST(CpprestAdapter, KeepsTheCallersContentType) {
  auto server = start_server(echo_handler());
  auto client = client_for(server.port);
  auto request = post("/v1/x", "plain words");
  request.headers = {{"Content-Type", "text/plain"}};
  const auto response = call(*client, request);
  ASSERT_EQ(response.status, 200) << response.error;
  EXPECT_EQ(json::parse(response.body)["headers"]["content-type"], "text/plain");
}

TEST(CpprestAdapter, GetWithoutBody) {
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

TEST(CpprestAdapter, NoContentAndBinaryBodies) {
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

TEST(CpprestAdapter, OversizedBodyGets413WithoutReachingTheHandler) {
  std::atomic<int> handled{0};
  auto handler = echo_handler();
  auto server = start_server(
      [&handled, handler](api::ServerRequest request, api::Responder respond) {
        ++handled;
        handler(std::move(request), std::move(respond));
      },
      1024);
  auto client = client_for(server.port);

  const auto response = call(*client, post("/v1/batches", std::string(4096, 'x')));

  ASSERT_EQ(response.status, 413) << response.error;
  EXPECT_EQ(response.header("content-type"), "application/problem+json");
  const auto problem = json::parse(response.body);
  EXPECT_EQ(problem["type"], "about:blank");
  EXPECT_EQ(problem["title"], "Payload Too Large");
  EXPECT_EQ(problem["status"], 413);
  EXPECT_EQ(problem["detail"], "request body exceeds the limit of 1024 bytes");
  EXPECT_EQ(handled.load(), 0);

  // A body at the limit passes, and the server is still healthy after the refusal.
  const auto fine = call(*client, post("/v1/batches", std::string(1024, 'y')));
  EXPECT_EQ(fine.status, 200) << fine.error;
  EXPECT_EQ(handled.load(), 1);
}

TEST(CpprestAdapter, OversizedChunkedBodyGets413) {
  auto server = start_server(echo_handler(), 1024);
  std::string request =
      "POST /v1/batches HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      "Connection: close\r\n\r\n";
  for (int i = 0; i < 4; ++i) request += "400\r\n" + std::string(1024, 'z') + "\r\n";
  request += "0\r\n\r\n";
  const auto answer = raw_exchange(server.port, request);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  EXPECT_NE(answer.find("exceeds the limit of 1024 bytes"), std::string::npos) << answer;

  const std::string small =
      "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      "Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  const auto echoed = raw_exchange(server.port, small);
  EXPECT_EQ(echoed.rfind("HTTP/1.1 200", 0), 0u) << echoed;
  EXPECT_NE(echoed.find(R"("body":"hello")"), std::string::npos) << echoed;
}

TEST(CpprestAdapter, ClientVanishingMidBodyLeavesTheServerHealthy) {
  auto server = start_server(echo_handler(), 1024);
  for (int i = 0; i < 5; ++i) {
    raw_exchange(server.port,
                 "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789", false);
    raw_exchange(server.port,
                 "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789",
                 false);
  }
  std::this_thread::sleep_for(100ms);
  auto client = client_for(server.port);
  const auto response = call(*client, post("/v1/x", "{}"));
  EXPECT_EQ(response.status, 200) << response.error;
}

TEST(CpprestAdapter, HandlerThatThrowsGets500) {
  auto server = start_server([](api::ServerRequest, api::Responder) {
    throw std::logic_error("handler bug with secret detail");
  });
  auto client = client_for(server.port);
  const auto response = call(*client, post("/v1/x", "{}"));
  ASSERT_EQ(response.status, 500) << response.error;
  EXPECT_EQ(response.header("content-type"), "application/problem+json");
  EXPECT_EQ(json::parse(response.body)["status"], 500);
  EXPECT_EQ(response.body.find("secret"), std::string::npos);
}

TEST(CpprestAdapter, DroppedResponderGets500) {
  auto server = start_server([](api::ServerRequest, api::Responder) {});
  auto client = client_for(server.port);
  const auto response = call(*client, post("/v1/x", "{}"));
  EXPECT_EQ(response.status, 500) << response.error;
}

TEST(CpprestAdapter, SecondAnswerIsIgnored) {
  auto server = start_server([](api::ServerRequest, api::Responder respond) {
    api::ServerResponse first;
    first.status = 202;
    respond(first);
    api::ServerResponse second;
    second.status = 503;
    respond(second);
  });
  auto client = client_for(server.port);
  EXPECT_EQ(call(*client, post("/v1/x", "{}")).status, 202);
}

TEST(CpprestAdapter, SlowAnswerTimesOut) {
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

TEST(CpprestAdapter, ConnectionRefusedIsATransportError) {
  auto client = client_for(unused_port());
  const auto response = call(*client, post("/v1/x", "{}"));
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.timed_out);
  EXPECT_FALSE(response.error.empty());
  EXPECT_NE(response.error.find("POST http://127.0.0.1:"), std::string::npos) << response.error;
}

TEST(CpprestAdapter, UnresolvableHostIsATransportError) {
  ClientOptions options;
  options.base_url = "http://floodgate-test.invalid:4200/api";
  auto client = make_cpprest_client(options);
  const auto response = call(*client, post("/v1/x", "{}"));
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.error.empty());
}

TEST(CpprestAdapter, InvalidPathIsReportedAsynchronously) {
  auto client = client_for(unused_port());
  Pending pending;
  auto request = post("/has space", "{}");
  client->send(request, pending.callback());
  const auto response = pending.wait();
  EXPECT_EQ(response.status, 0);
  EXPECT_NE(response.error.find("invalid request"), std::string::npos) << response.error;
  EXPECT_EQ(pending.calls(), 1);
}

TEST(CpprestAdapter, FiftyConcurrentRequestsAllAnswered) {
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

TEST(CpprestAdapter, GoesThroughTheConfiguredProxy) {
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

TEST(CpprestAdapter, RejectsBadOptions) {
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

TEST(CpprestAdapter, StartFailsClearlyWhenThePortIsTaken) {
  auto first = start_server(echo_handler());
  auto second = make_cpprest_server(ServerOptions{"127.0.0.1", first.port, 1024}, echo_handler());
  try {
    second->start();
    FAIL() << "expected start() to throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "cannot listen on 127.0.0.1:" + std::to_string(first.port) + ": "),
              std::string::npos)
        << e.what();
  }
  // The first server is unaffected.
  auto client = client_for(first.port);
  EXPECT_EQ(call(*client, post("/v1/x", "{}")).status, 200);
}

TEST(CpprestAdapter, StartFailsClearlyWhenAnotherProcessHasThePort) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const auto port = ntohs(address.sin_port);
  auto server = make_cpprest_server(ServerOptions{"127.0.0.1", port, 1024}, echo_handler());
  try {
    server->start();
    FAIL() << "expected start() to throw";
  } catch (const std::runtime_error& e) {
    std::cout << "start() said: " << e.what() << "\n";
    EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << e.what();
  }
  close(fd);
  // The failed attempt leaves nothing behind: the port works once it is free.
  server->start();
  auto client = client_for(port);
  EXPECT_EQ(call(*client, post("/v1/x", "{}")).status, 200);
}

TEST(CpprestAdapter, OtherServersSurviveAFailedStart) {
  auto first = start_server(echo_handler());
  auto second = make_cpprest_server(ServerOptions{"127.0.0.1", first.port, 1024}, echo_handler());
  EXPECT_THROW(second->start(), std::runtime_error);
  second.reset();
  auto client = client_for(first.port);
  EXPECT_EQ(call(*client, post("/v1/x", "{}")).status, 200);
}

TEST(CpprestAdapter, StopWithARequestInFlightAndALateAnswer) {
  std::mutex mutex;
  std::optional<api::Responder> parked;
  std::condition_variable arrived;
  auto server = start_server([&](api::ServerRequest, api::Responder respond) {
    std::lock_guard lock(mutex);
    parked = std::move(respond);
    arrived.notify_all();
  });
  auto client = client_for(server.port);
  Pending pending;
  client->send(post("/v1/x", "{}"), pending.callback());
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(arrived.wait_for(lock, 5s, [&] { return parked.has_value(); }));
  }
  server.server->stop();
  const auto response = pending.wait();
  EXPECT_TRUE(response.status == 500 || response.status == 0) << response.status;
  // Answering after stop() is harmless.
  (*parked)(api::ServerResponse{});
  parked.reset();
  server.server.reset();
}

TEST(CpprestAdapter, RestartsAfterStop) {
  auto server = start_server(echo_handler());
  server.server->stop();
  server.server->start();
  auto client = client_for(server.port);
  EXPECT_EQ(call(*client, post("/v1/x", "{}")).status, 200);
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
