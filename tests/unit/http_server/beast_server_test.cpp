// The listener's tests: real sockets on 127.0.0.1 spoken to byte by byte, so that each test
// controls the framing and the pace. No cpprestsdk here: this binary also runs under TSan.
// Timeouts are set short by each test; waits are for events (an answer, a close) with poll().
#include "http/beast_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace floodgate::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

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

ServerOptions options(size_t max_body = 16 * 1024 * 1024) {
  ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.max_body_bytes = max_body;
  return o;
}

std::unique_ptr<HttpListener> start(ServerOptions o, api::Handler handler) {
  auto server = make_http_server(o, std::move(handler));
  server->start();
  return server;
}

/// A client connection; closes on destruction.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      throw std::runtime_error("connect failed");
    }
  }
  explicit Client(int fd) : fd_(fd) {}
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&& other) noexcept : fd_(std::exchange(other.fd_, -1)), in_(std::move(other.in_)) {}
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }

  /// False once the server has closed or reset the connection.
  bool send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  /// Reads one whole answer (head and Content-Length body); "" when the connection ends first
  /// or nothing complete arrives within `limit`.
  std::string answer(std::chrono::milliseconds limit = 5s) {
    const auto deadline = Clock::now() + limit;
    while (true) {
      if (const auto end = in_.find("\r\n\r\n"); end != std::string::npos) {
        size_t length = 0;
        const auto head = lower(in_.substr(0, end));
        if (const auto at = head.find("\r\ncontent-length:"); at != std::string::npos) {
          length = std::stoul(head.substr(at + 17));
        }
        if (in_.size() >= end + 4 + length) {
          auto whole = in_.substr(0, end + 4 + length);
          in_.erase(0, whole.size());
          return whole;
        }
      }
      if (!read_some(deadline)) return "";
    }
  }

  /// Waits for the server to end the connection: how long it took, or nullopt if it stays
  /// open for `limit`. Whatever arrives meanwhile is kept for answer().
  std::optional<Clock::duration> closed_within(std::chrono::milliseconds limit) {
    const auto started = Clock::now();
    const auto deadline = started + limit;
    while (Clock::now() < deadline) {
      if (!read_some(deadline) && Clock::now() < deadline) return Clock::now() - started;
    }
    return std::nullopt;
  }

  /// Sends `bytes` one piece every `every`, stopping when the server closes the connection:
  /// the time until it did, or nullopt if all was sent and it stayed open.
  std::optional<Clock::duration> dribble(const std::string& bytes, std::chrono::milliseconds every,
                                         size_t piece = 1) {
    const auto started = Clock::now();
    for (size_t at = 0; at < bytes.size(); at += piece) {
      if (!send(bytes.substr(at, piece))) return Clock::now() - started;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(every.count())) > 0) {
        char c;
        if (recv(fd_, &c, 1, MSG_PEEK) <= 0) return Clock::now() - started;
        return std::nullopt;  // an answer, not a close
      }
    }
    return std::nullopt;
  }

  int fd() const { return fd_; }

 private:
  static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  bool read_some(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buffer[16384];
    const auto n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n <= 0) return false;
    in_.append(buffer, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string in_;
};

int status_of(const std::string& answer) {
  if (answer.rfind("HTTP/1.", 0) != 0 || answer.size() < 12) return 0;
  return std::stoi(answer.substr(9, 3));
}

std::string body_of(const std::string& answer) {
  const auto end = answer.find("\r\n\r\n");
  return end == std::string::npos ? "" : answer.substr(end + 4);
}

/// One request on a fresh connection; the whole answer.
std::string roundtrip(uint16_t port, const std::string& request) {
  Client client(port);
  client.send(request);
  return client.answer();
}

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n";
}

std::string post(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// ---------------------------------------------------------------------------------------------
// Requests and answers

TEST(BeastServer, PassesMethodDecodedPathRawQueryHeadersAndBody) {
  auto server = start(options(), echo_handler());
  const auto answer =
      roundtrip(server->port(), post("/v1/echo/a%20b?x=1&y=two%20words", R"({"a":1})",
                                     "X-Test: hello\r\nX-Status: 201\r\n"
                                     "X-Twice: 1\r\nX-Twice: 2\r\n"));
  ASSERT_EQ(status_of(answer), 201) << answer;
  EXPECT_NE(answer.find("X-Echo: hello\r\n"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Content-Type: application/json\r\n"), std::string::npos) << answer;
  EXPECT_NE(answer.find("X-Content-Type-Options: nosniff\r\n"), std::string::npos) << answer;
  const auto seen = json::parse(body_of(answer));
  EXPECT_EQ(seen["method"], "POST");
  EXPECT_EQ(seen["path"], "/v1/echo/a b");
  EXPECT_EQ(seen["query"], "x=1&y=two%20words");
  EXPECT_EQ(seen["body"], R"({"a":1})");
  EXPECT_EQ(seen["headers"]["x-test"], "hello");
  EXPECT_EQ(seen["headers"]["x-twice"], "1, 2");
  EXPECT_EQ(seen["headers"]["content-length"], "7");
}

TEST(BeastServer, AbsoluteFormTargetKeepsPathAndQuery) {
  auto server = start(options(), echo_handler());
  const auto answer = roundtrip(server->port(), get("http://elsewhere.invalid:81/api/v1/x?q=1"));
  ASSERT_EQ(status_of(answer), 200) << answer;
  const auto seen = json::parse(body_of(answer));
  EXPECT_EQ(seen["path"], "/api/v1/x");
  EXPECT_EQ(seen["query"], "q=1");
}

TEST(BeastServer, BrokenPercentEscapeIs400) {
  auto server = start(options(), echo_handler());
  EXPECT_EQ(status_of(roundtrip(server->port(), get("/a%zz"))), 400);
  EXPECT_EQ(status_of(roundtrip(server->port(), get("/a%4"))), 400);
}

TEST(BeastServer, NoContentBinaryAndHead) {
  auto server = start(options(), [](api::ServerRequest request, api::Responder respond) {
    api::ServerResponse response;
    if (request.path == "/empty") {
      response.status = 204;
    } else {
      response.content_type = "application/octet-stream";
      response.body = std::string("\0\x01\xff\xfe bytes", 10);
    }
    respond(std::move(response));
  });
  auto answer = roundtrip(server->port(), get("/empty"));
  EXPECT_EQ(status_of(answer), 204) << answer;
  EXPECT_EQ(body_of(answer), "");
  answer = roundtrip(server->port(), get("/binary"));
  EXPECT_EQ(body_of(answer), std::string("\0\x01\xff\xfe bytes", 10));
  // HEAD: the length of the body a GET would get, and no body.
  Client client(server->port());
  client.send("HEAD /binary HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string head;
  char buffer[1024];
  pollfd p{client.fd(), POLLIN, 0};
  ASSERT_GT(poll(&p, 1, 5000), 0);
  const auto n = recv(client.fd(), buffer, sizeof(buffer), 0);
  ASSERT_GT(n, 0);
  head.assign(buffer, static_cast<size_t>(n));
  EXPECT_NE(head.find("Content-Length: 10\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), "") << head;
}

TEST(BeastServer, KeepAliveServesManyRequestsOnOneConnection) {
  auto server = start(options(), echo_handler());
  Client client(server->port());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(client.send(post("/v1/n", std::to_string(i))));
    const auto answer = client.answer();
    ASSERT_EQ(status_of(answer), 200) << answer;
    EXPECT_EQ(json::parse(body_of(answer))["body"], std::to_string(i));
  }
  // Two requests in one write (pipelined) are answered in order.
  ASSERT_TRUE(client.send(post("/v1/n", "a") + post("/v1/n", "b")));
  EXPECT_EQ(json::parse(body_of(client.answer()))["body"], "a");
  EXPECT_EQ(json::parse(body_of(client.answer()))["body"], "b");
  // Connection: close is honoured.
  ASSERT_TRUE(client.send(get("/last", "Connection: close\r\n")));
  const auto last = client.answer();
  EXPECT_NE(last.find("Connection: close\r\n"), std::string::npos) << last;
  EXPECT_TRUE(client.closed_within(2s).has_value());
}

TEST(BeastServer, ExpectContinueGetsAnInterimAnswer) {
  auto server = start(options(), echo_handler());
  Client client(server->port());
  client.send(
      "POST /v1/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  EXPECT_EQ(status_of(client.answer()), 100);
  client.send("hello");
  const auto answer = client.answer();
  ASSERT_EQ(status_of(answer), 200) << answer;
  EXPECT_EQ(json::parse(body_of(answer))["body"], "hello");
}

// ---------------------------------------------------------------------------------------------
// Framing and size limits

TEST(BeastServer, OversizedBodyGets413WithoutReachingTheHandler) {
  std::atomic<int> handled{0};
  auto handler = echo_handler();
  auto server = start(options(1024), [&handled, handler](api::ServerRequest r, api::Responder s) {
    ++handled;
    handler(std::move(r), std::move(s));
  });
  const auto answer = roundtrip(server->port(), post("/v1/batches", std::string(4096, 'x')));
  ASSERT_EQ(status_of(answer), 413) << answer;
  EXPECT_NE(answer.find("Content-Type: application/problem+json\r\n"), std::string::npos);
  EXPECT_NE(answer.find("Connection: close\r\n"), std::string::npos);
  const auto problem = json::parse(body_of(answer));
  EXPECT_EQ(problem["type"], "about:blank");
  EXPECT_EQ(problem["title"], "Payload Too Large");
  EXPECT_EQ(problem["status"], 413);
  EXPECT_EQ(problem["detail"], "request body exceeds the limit of 1024 bytes");
  EXPECT_EQ(handled.load(), 0);
  // A body at the limit passes, and the server is still healthy after the refusal.
  EXPECT_EQ(status_of(roundtrip(server->port(), post("/v1/batches", std::string(1024, 'y')))), 200);
  EXPECT_EQ(handled.load(), 1);
}

TEST(BeastServer, OversizedChunkedBodyGets413) {
  auto server = start(options(1024), echo_handler());
  std::string request =
      "POST /v1/batches HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      "Connection: close\r\n\r\n";
  for (int i = 0; i < 4; ++i) request += "400\r\n" + std::string(1024, 'z') + "\r\n";
  request += "0\r\n\r\n";
  const auto answer = roundtrip(server->port(), request);
  EXPECT_EQ(status_of(answer), 413) << answer;
  EXPECT_NE(answer.find("exceeds the limit of 1024 bytes"), std::string::npos) << answer;

  const auto echoed = roundtrip(server->port(),
                                "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                "Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(status_of(echoed), 200) << echoed;
  EXPECT_NE(echoed.find(R"("body":"hello")"), std::string::npos) << echoed;
}

TEST(BeastServer, RepeatedOrMalformedContentLengthIs400) {
  std::atomic<int> handled{0};
  auto server = start(options(), [&handled](api::ServerRequest, api::Responder respond) {
    ++handled;
    respond({});
  });
  for (const std::string lengths :
       {"Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length: 2\r\nContent-Length: 2\r\n",
        "Content-Length: 2, 2\r\n", "Content-Length: +2\r\n", "Content-Length: 0x2\r\n",
        "Content-Length: 99999999999999999999999\r\n"}) {
    const auto answer =
        roundtrip(server->port(), "POST /v1/x HTTP/1.1\r\nHost: x\r\n" + lengths + "\r\n{}");
    EXPECT_EQ(status_of(answer), 400) << lengths << answer;
    EXPECT_NE(answer.find("Content-Length"), std::string::npos) << answer;
  }
  const auto both = roundtrip(server->port(),
                              "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "Content-Length: 7\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
  EXPECT_EQ(status_of(both), 400) << both;
  EXPECT_EQ(status_of(roundtrip(server->port(), "NOT HTTP AT ALL\r\n\r\n")), 400);
  EXPECT_EQ(handled.load(), 0);
}

TEST(BeastServer, HeadOverTheLimitGets431) {
  auto server = start(options(), echo_handler());
  const auto answer =
      roundtrip(server->port(), get("/", "X-Big: " + std::string(kMaxHeaderBytes, 'h') + "\r\n"));
  EXPECT_EQ(status_of(answer), 431) << answer.substr(0, 200);
  // Just below it passes.
  EXPECT_EQ(
      status_of(roundtrip(server->port(),
                          get("/", "X-Big: " + std::string(kMaxHeaderBytes / 2, 'h') + "\r\n"))),
      200);
}

TEST(BeastServer, BodiesBeyondTheParseBudgetGet503) {
  auto o = options(1024 * 1024);
  o.max_parse_memory = 3 * 1024 * 1024 + 64 * 1024;  // one full-size body, and small ones
  auto server = start(o, echo_handler());
  std::optional<Client> holder;
  auto hold = [&] {
    holder.emplace(server->port());
    holder->send("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n{");
    std::this_thread::sleep_for(50ms);  // a head start: a probe read first would refuse it
  };
  hold();
  // Event: the holder's head has been read once a request behind it on another connection
  // is refused; retried until then because the two connections race (a generous deadline: a
  // loaded machine under ASan once needed more than 200 tries of 5 ms).
  std::string answer;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (status_of(answer) != 503 && std::chrono::steady_clock::now() < deadline) {
    answer = roundtrip(server->port(), post("/v1/x", std::string(600 * 1024, ' ')));
    if (status_of(answer) == 503) break;
    // The holder can lose the race the other way: a probe's head read first leaves it no room,
    // and the holder is refused (503) and closed, holding nothing; it is started again then.
    if (!holder->answer(1ms).empty()) hold();
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(status_of(answer), 503) << answer.substr(0, 300);
  EXPECT_NE(answer.find("Retry-After: 1\r\n"), std::string::npos);
  EXPECT_NE(answer.find("--max-parse-memory"), std::string::npos);
  // Small bodies still fit beside the holder; its share returns once it is gone.
  EXPECT_EQ(status_of(roundtrip(server->port(), post("/v1/x", "{}"))), 200);
  holder.reset();
  answer.clear();
  deadline = std::chrono::steady_clock::now() + 20s;
  while (status_of(answer) != 200 && std::chrono::steady_clock::now() < deadline) {
    answer = roundtrip(server->port(), post("/v1/x", std::string(600 * 1024, ' ')));
    if (status_of(answer) != 200) std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(status_of(answer), 200);
}

TEST(BeastServer, ClientVanishingMidBodyLeavesTheServerHealthy) {
  auto server = start(options(1024), echo_handler());
  for (int i = 0; i < 5; ++i) {
    Client(server->port())
        .send("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123");
    Client(server->port())
        .send("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789");
  }
  EXPECT_EQ(status_of(roundtrip(server->port(), post("/v1/x", "{}"))), 200);
}

// ---------------------------------------------------------------------------------------------
// Handlers that misbehave

TEST(BeastServer, HandlerThatThrowsGets500) {
  auto server = start(options(), [](api::ServerRequest, api::Responder) {
    throw std::logic_error("handler bug with secret detail");
  });
  const auto answer = roundtrip(server->port(), post("/v1/x", "{}"));
  ASSERT_EQ(status_of(answer), 500) << answer;
  EXPECT_NE(answer.find("Content-Type: application/problem+json\r\n"), std::string::npos);
  EXPECT_EQ(json::parse(body_of(answer))["status"], 500);
  EXPECT_EQ(answer.find("secret"), std::string::npos);
}

TEST(BeastServer, DroppedResponderGets500) {
  auto server = start(options(), [](api::ServerRequest, api::Responder) {});
  EXPECT_EQ(status_of(roundtrip(server->port(), post("/v1/x", "{}"))), 500);
}

TEST(BeastServer, SecondAnswerIsIgnored) {
  auto server = start(options(), [](api::ServerRequest, api::Responder respond) {
    api::ServerResponse first;
    first.status = 202;
    respond(first);
    api::ServerResponse second;
    second.status = 503;
    respond(second);
  });
  Client client(server->port());
  client.send(post("/v1/x", "{}"));
  EXPECT_EQ(status_of(client.answer()), 202);
  client.send(post("/v1/x", "{}"));
  EXPECT_EQ(status_of(client.answer()), 202);
}

TEST(BeastServer, AnswersFromOtherThreadsLater) {
  std::mutex mutex;
  std::vector<std::thread> repliers;
  auto server = start(options(), [&](api::ServerRequest request, api::Responder respond) {
    std::lock_guard lock(mutex);
    repliers.emplace_back([request = std::move(request), respond = std::move(respond)] {
      std::this_thread::sleep_for(20ms);
      api::ServerResponse response;
      response.body = request.body;
      respond(std::move(response));
    });
  });
  constexpr int kClients = 30;
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(server->port());
    clients.back().send(post("/v1/n", std::to_string(i)));
  }
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(body_of(clients[static_cast<size_t>(i)].answer()), std::to_string(i));
  }
  std::lock_guard lock(mutex);
  for (auto& replier : repliers) replier.join();
}

// ---------------------------------------------------------------------------------------------
// Start and stop

TEST(BeastServer, StartFailsClearlyWhenThePortIsTaken) {
  auto first = start(options(), echo_handler());
  auto o = options();
  o.port = first->port();
  auto second = make_http_server(o, echo_handler());
  try {
    second->start();
    FAIL() << "expected start() to throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "cannot listen on 127.0.0.1:" + std::to_string(first->port()) + ": "),
              std::string::npos)
        << e.what();
  }
  second.reset();
  // The first server is unaffected.
  EXPECT_EQ(status_of(roundtrip(first->port(), get("/"))), 200);
}

TEST(BeastServer, StartFailsClearlyOnUnreadableTlsFiles) {
  auto o = options();
  o.tls_cert_file = "/nonexistent/cert.pem";
  o.tls_key_file = "/nonexistent/key.pem";
  auto server = make_http_server(o, echo_handler());
  try {
    server->start();
    FAIL() << "expected start() to throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:0: "), std::string::npos)
        << e.what();
  }
}

TEST(BeastServer, StopWithARequestInFlightAndALateAnswer) {
  std::mutex mutex;
  std::optional<api::Responder> parked;
  std::condition_variable arrived;
  auto server = start(options(), [&](api::ServerRequest, api::Responder respond) {
    std::lock_guard lock(mutex);
    parked = std::move(respond);
    arrived.notify_all();
  });
  Client client(server->port());
  client.send(post("/v1/x", "{}"));
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(arrived.wait_for(lock, 5s, [&] { return parked.has_value(); }));
  }
  server->stop();
  EXPECT_TRUE(client.closed_within(5s).has_value());
  // Answering after stop(), and after the listener is gone, is harmless.
  server.reset();
  (*parked)(api::ServerResponse{});
  parked.reset();
}

TEST(BeastServer, RestartsAfterStop) {
  auto server = start(options(), echo_handler());
  const auto port = server->port();
  server->stop();
  EXPECT_EQ(server->port(), 0);
  auto o = options();
  o.port = port;
  server = start(o, echo_handler());
  EXPECT_EQ(status_of(roundtrip(port, get("/"))), 200);
  server->stop();
  server->start();
  EXPECT_EQ(status_of(roundtrip(port, get("/"))), 200);
}

// ---------------------------------------------------------------------------------------------
// Listener limits: timeouts and the connection cap

TEST(ListenerLimits, HeadSentSlowlyIsCutOffAtTheHeaderTimeout) {
  auto o = options();
  o.header_timeout = 300ms;
  std::atomic<int> handled{0};
  auto server = start(o, [&](api::ServerRequest, api::Responder respond) {
    ++handled;
    respond({});
  });
  Client slow(server->port());
  // Slowloris: a byte every 20 ms, always some progress, never the end of the head.
  const auto cut = slow.dribble("GET / HTTP/1.1\r\nHost: x\r\n" + std::string(1000, 'X'), 20ms);
  ASSERT_TRUE(cut.has_value()) << "the slow head was never cut off";
  EXPECT_GE(ms(*cut), 280);
  EXPECT_LT(ms(*cut), 3000);
  std::cout << "slow head cut off after " << ms(*cut) << " ms (header timeout 300 ms)\n";
  EXPECT_EQ(handled.load(), 0);
  // A head that arrives in time on a fresh connection is served.
  EXPECT_EQ(status_of(roundtrip(server->port(), get("/"))), 200);
}

TEST(ListenerLimits, ConnectionThatSendsNothingIsCutOffAtTheHeaderTimeout) {
  auto o = options();
  o.header_timeout = 300ms;
  o.idle_timeout = 60s;  // a new connection is not idle: the header timeout applies
  auto server = start(o, echo_handler());
  Client silent(server->port());
  const auto cut = silent.closed_within(5s);
  ASSERT_TRUE(cut.has_value());
  EXPECT_GE(ms(*cut), 280);
  EXPECT_LT(ms(*cut), 3000);
}

TEST(ListenerLimits, BodySentSlowlyIsCutOffAtTheBodyTimeout) {
  auto o = options();
  o.header_timeout = 5s;
  o.body_timeout = 300ms;
  std::atomic<int> handled{0};
  auto server = start(o, [&](api::ServerRequest, api::Responder respond) {
    ++handled;
    respond({});
  });
  Client slow(server->port());
  ASSERT_TRUE(slow.send("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"));
  const auto cut = slow.dribble(std::string(1000, 'b'), 20ms);
  ASSERT_TRUE(cut.has_value()) << "the slow body was never cut off";
  EXPECT_GE(ms(*cut), 280);
  EXPECT_LT(ms(*cut), 3000);
  std::cout << "slow body cut off after " << ms(*cut) << " ms (body timeout 300 ms)\n";
  EXPECT_EQ(handled.load(), 0);
  // The same, chunked.
  Client chunked(server->port());
  ASSERT_TRUE(chunked.send("POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
  std::string chunks;
  for (int i = 0; i < 200; ++i) chunks += "1\r\nb\r\n";
  EXPECT_TRUE(chunked.dribble(chunks, 20ms, 6).has_value());
  EXPECT_EQ(handled.load(), 0);
  // A body in time is served.
  EXPECT_EQ(status_of(roundtrip(server->port(), post("/v1/x", std::string(1000, 'b')))), 200);
}

TEST(ListenerLimits, IdleKeptAliveConnectionIsClosedAtTheIdleTimeout) {
  auto o = options();
  o.header_timeout = 5s;
  o.idle_timeout = 300ms;
  auto server = start(o, echo_handler());
  Client client(server->port());
  ASSERT_TRUE(client.send(get("/")));
  ASSERT_EQ(status_of(client.answer()), 200);
  const auto answered = Clock::now();
  const auto cut = client.closed_within(5s);
  ASSERT_TRUE(cut.has_value());
  const auto idle = ms(Clock::now() - answered);
  EXPECT_GE(idle, 280);
  EXPECT_LT(idle, 3000);
  std::cout << "idle connection closed after " << idle << " ms (idle timeout 300 ms)\n";

  // The idle clock restarts with each request: a client that keeps asking keeps its connection.
  Client busy(server->port());
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(busy.send(get("/")));
    ASSERT_EQ(status_of(busy.answer()), 200) << i;
    pollfd p{busy.fd(), POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 100), 0) << "closed although it was idle for 100 ms only";
  }
}

TEST(ListenerLimits, ConnectionsOverTheCapAreRefusedAndTheRestServed) {
  auto o = options();
  o.max_connections = 3;
  auto server = start(o, echo_handler());
  std::vector<Client> held;
  for (int i = 0; i < 3; ++i) {
    held.emplace_back(server->port());
    ASSERT_TRUE(held.back().send(get("/")));
    ASSERT_EQ(status_of(held.back().answer()), 200);  // accepted and counted
  }
  int refused = 0;
  for (int i = 0; i < 50; ++i) {
    Client extra(server->port());
    const auto answer = extra.answer(5s);
    if (status_of(answer) == 503) ++refused;
    EXPECT_NE(answer.find("--max-connections"), std::string::npos) << answer;
    EXPECT_TRUE(extra.closed_within(5s).has_value());
  }
  EXPECT_EQ(refused, 50);
  std::cout << "over the cap of 3: " << refused << " of 50 connections refused with 503\n";
  // The held connections still work.
  for (auto& client : held) {
    ASSERT_TRUE(client.send(get("/")));
    EXPECT_EQ(status_of(client.answer()), 200);
  }
  // Once one closes, a new connection is served (after the server has seen the close).
  held.pop_back();
  std::string answer;
  for (int i = 0; i < 400 && status_of(answer) != 200; ++i) {
    answer = roundtrip(server->port(), get("/"));
    if (status_of(answer) != 200) std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(status_of(answer), 200) << answer;
}

TEST(ListenerLimits, SlowClientsAtTheCapAreCutOffAndMakeRoom) {
  auto o = options();
  o.max_connections = 5;
  o.header_timeout = 300ms;
  auto server = start(o, echo_handler());
  std::vector<Client> slow;
  for (int i = 0; i < 5; ++i) {
    slow.emplace_back(server->port());
    slow.back().send("GET / HTTP/1.1\r\n");
  }
  for (auto& client : slow) EXPECT_TRUE(client.closed_within(5s).has_value());
  std::string answer;
  for (int i = 0; i < 400 && status_of(answer) != 200; ++i) {
    answer = roundtrip(server->port(), get("/"));
    if (status_of(answer) != 200) std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(status_of(answer), 200) << answer;
}

TEST(ListenerLimits, OutOfDescriptorsDoesNotSpin) {
  auto server = start(options(), echo_handler());
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  Client waiting(socket(AF_INET, SOCK_STREAM, 0));
  // Fill the descriptor table under a lowered limit, then connect: the kernel completes the
  // connection, but the listener cannot accept it.
  int highest = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    if (fcntl(fd, F_GETFD) != -1) highest = fd;
  }
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(highest + 64);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  const int null = open("/dev/null", O_RDONLY);
  ASSERT_GE(null, 0);
  std::vector<int> filler{null};
  while (true) {
    const int fd = dup(null);
    if (fd < 0) break;
    filler.push_back(fd);
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(server->port());
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int connected =
      connect(waiting.fd(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  const auto wall_started = Clock::now();
  std::this_thread::sleep_for(500ms);  // the window in which a spinning accept loop burns CPU
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  const auto wall = ms(Clock::now() - wall_started);
  for (const int fd : filler) close(fd);
  setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_EQ(connected, 0);
  auto cpu_ms = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000.0 +
           (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1000.0;
  };
  const double cpu = cpu_ms(after) - cpu_ms(before);
  std::cout << "out of descriptors: " << cpu << " ms CPU in " << wall << " ms\n";
  EXPECT_LT(cpu, wall * 0.2);
  // With descriptors back, the waiting connection is accepted and served.
  ASSERT_TRUE(waiting.send(get("/")));
  EXPECT_EQ(status_of(waiting.answer()), 200);
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A self-signed certificate and key for 127.0.0.1, made with the openssl command.
struct TlsFiles {
  TlsFiles() {
    dir = std::filesystem::temp_directory_path() / ("floodgate-tls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    cert = (dir / "cert.pem").string();
    key = (dir / "key.pem").string();
    const auto command =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
        "-keyout " +
        key + " -out " + cert + " >/dev/null 2>&1";
    made = std::system(command.c_str()) == 0;
  }
  ~TlsFiles() { std::filesystem::remove_all(dir); }
  std::filesystem::path dir;
  std::string cert, key;
  bool made = false;
};

TEST(BeastServerTls, ServesHttpsAndCutsOffASilentHandshake) {
  TlsFiles files;
  ASSERT_TRUE(files.made) << "openssl could not make a certificate";
  auto o = options();
  o.tls_cert_file = files.cert;
  o.tls_key_file = files.key;
  o.header_timeout = 300ms;
  auto server = start(o, echo_handler());

  namespace asio = boost::asio;
  namespace beast = boost::beast;
  asio::io_context io;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.set_verify_mode(asio::ssl::verify_none);
  beast::ssl_stream<beast::tcp_stream> stream(io, context);
  beast::get_lowest_layer(stream).connect(
      asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port()));
  stream.handshake(asio::ssl::stream_base::client);
  for (int i = 0; i < 2; ++i) {  // kept alive
    beast::http::request<beast::http::string_body> request(beast::http::verb::post, "/v1/x", 11);
    request.set(beast::http::field::host, "x");
    request.body() = "secure";
    request.prepare_payload();
    beast::http::write(stream, request);
    beast::flat_buffer buffer;
    beast::http::response<beast::http::string_body> response;
    beast::http::read(stream, buffer, response);
    EXPECT_EQ(response.result_int(), 200u);
    EXPECT_EQ(json::parse(response.body())["body"], "secure");
  }
  // Plain HTTP on the TLS port is not served.
  EXPECT_NE(status_of(roundtrip(server->port(), get("/"))), 200);
  // A client that connects and never starts the handshake is cut off too.
  Client silent(server->port());
  const auto cut = silent.closed_within(5s);
  ASSERT_TRUE(cut.has_value());
  EXPECT_GE(ms(*cut), 280);
}

TEST(BeastServerTls, ConnectionsOverTheCapAreClosedAtOnce) {
  TlsFiles files;
  ASSERT_TRUE(files.made) << "openssl could not make a certificate";
  auto o = options();
  o.tls_cert_file = files.cert;
  o.tls_key_file = files.key;
  o.header_timeout = 5s;
  o.max_connections = 1;
  auto server = start(o, echo_handler());

  namespace asio = boost::asio;
  namespace beast = boost::beast;
  asio::io_context io;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.set_verify_mode(asio::ssl::verify_none);
  const asio::ip::tcp::endpoint where(asio::ip::make_address("127.0.0.1"), server->port());
  auto held = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io, context);
  beast::get_lowest_layer(*held).connect(where);
  held->handshake(asio::ssl::stream_base::client);
  // No plain-text 503 on a TLS port: the extra connection is closed, long before the header
  // timeout would have closed it.
  Client extra(server->port());
  const auto cut = extra.closed_within(4s);
  ASSERT_TRUE(cut.has_value());
  EXPECT_LT(ms(*cut), 2000);
  EXPECT_EQ(extra.answer(0ms), "");
  // Once the held one is gone, a new one gets its handshake (after the server saw the close).
  held.reset();
  bool served = false;
  for (int i = 0; i < 400 && !served; ++i) {
    beast::ssl_stream<beast::tcp_stream> next(io, context);
    beast::get_lowest_layer(next).connect(where);
    beast::error_code ec;
    next.handshake(asio::ssl::stream_base::client, ec);
    served = !ec;
    if (!served) std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(served);
}

}  // namespace
}  // namespace floodgate::http
