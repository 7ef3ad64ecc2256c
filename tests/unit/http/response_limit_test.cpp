// The client adapter's limit on the size of Prefect's answers (--max-prefect-response-bytes):
// real sockets on 127.0.0.1; the peer is a raw TCP server so the test controls the framing
// (Content-Length or chunked) and can send more than it declares.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "http/cpprest_client.h"

namespace floodgate::http {
namespace {

using namespace std::chrono_literals;

/// Accepts connections on a free loopback port and answers each request with `answer` (a
/// whole HTTP response, headers and body), written in 64 KiB pieces; counts bytes sent.
class RawServer {
 public:
  explicit RawServer(std::string answer) : answer_(std::move(answer)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        listen(fd_, 8) != 0) {
      throw std::runtime_error("cannot listen");
    }
    socklen_t length = sizeof(address);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~RawServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }
  size_t sent() const { return sent_.load(); }

 private:
  void serve() {
    while (!stop_) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      // Read the request head (the client sends no body on GET).
      std::string head;
      char buffer[4096];
      while (head.find("\r\n\r\n") == std::string::npos) {
        const auto n = recv(c, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        head.append(buffer, static_cast<size_t>(n));
      }
      size_t off = 0;
      while (off < answer_.size()) {
        const auto n = ::send(c, answer_.data() + off,
                              std::min<size_t>(65536, answer_.size() - off), MSG_NOSIGNAL);
        if (n <= 0) break;  // the client closed the connection
        off += static_cast<size_t>(n);
        sent_ += static_cast<size_t>(n);
      }
      close(c);
    }
  }

  std::string answer_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> sent_{0};
  std::thread thread_;
};

prefect::HttpResponse get(uint16_t port, size_t max_bytes) {
  ClientOptions options;
  options.base_url = "http://127.0.0.1:" + std::to_string(port) + "/api";
  options.request_timeout = 10s;
  options.max_response_bytes = max_bytes;
  auto client = make_cpprest_client(options);
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<prefect::HttpResponse> got;
  prefect::HttpRequest request;
  request.method = "GET";
  request.path = "/flow_runs/x";
  client->send(request, [&](prefect::HttpResponse r) {
    std::lock_guard lock(mutex);
    got = std::move(r);
    cv.notify_all();
  });
  std::unique_lock lock(mutex);
  if (!cv.wait_for(lock, 15s, [&] { return got.has_value(); })) {
    ADD_FAILURE() << "no answer";
    return {};
  }
  return *got;
}

std::string with_length(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

std::string chunked(const std::string& body) {
  std::string out =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  char size[32];
  for (size_t off = 0; off < body.size(); off += 8192) {
    const auto n = std::min<size_t>(8192, body.size() - off);
    snprintf(size, sizeof(size), "%zx\r\n", n);
    out += size;
    out.append(body, off, n);
    out += "\r\n";
  }
  return out + "0\r\n\r\n";
}

const std::string kBig = "\"" + std::string(3 * 1024 * 1024, 'x') + "\"";  // 3 MiB of JSON

TEST(ResponseLimit, AnswerWithinTheLimitIsRead) {
  RawServer server(with_length(kBig));
  const auto r = get(server.port(), 4 * 1024 * 1024);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_TRUE(r.error.empty());
  EXPECT_EQ(r.body, kBig);
}

TEST(ResponseLimit, DeclaredLengthBeyondTheLimitIsATransportError) {
  RawServer server(with_length(kBig));
  const auto r = get(server.port(), 1024 * 1024);
  EXPECT_FALSE(r.error.empty());
  EXPECT_NE(r.error.find("larger than the limit of 1048576 bytes"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("Content-Length 3145730"), std::string::npos) << r.error;
  EXPECT_TRUE(r.body.empty());
}

TEST(ResponseLimit, ChunkedAnswerIsCutOffOnceItPassesTheLimit) {
  RawServer server(chunked(kBig));
  const auto r = get(server.port(), 256 * 1024);
  EXPECT_FALSE(r.error.empty());
  EXPECT_NE(r.error.find("larger than the limit of 262144 bytes"), std::string::npos) << r.error;
  EXPECT_TRUE(r.body.empty());
}

TEST(ResponseLimit, ZeroMeansNoLimit) {
  RawServer server(chunked(kBig));
  const auto r = get(server.port(), 0);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, kBig);
}

}  // namespace
}  // namespace floodgate::http
