// The ceiling of the HTTP library: a bare loop of cpprest POSTs with a fixed number in flight.
//
//   bench_cpprest_loop --url http://127.0.0.1:4200/api/flow_runs/ --concurrency 64 --seconds 10
//                      --body '{"name":"x"}' [--threads 40]
//
// One http_client; each completion issues the next request from its continuation, never blocking
// a pool thread, exactly as floodgate's client adapter does.
// clang-format off
#include <utility>  // Boost 1.74's asio uses std::exchange without including it (C++20)
#include <cpprest/http_client.h>
#include <pplx/threadpool.h>
// clang-format on

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using web::http::http_request;
using web::http::http_response;
using web::http::client::http_client;

struct Options {
  std::string url;
  int concurrency = 64;
  int seconds = 10;
  std::string body = "{}";
  int threads = 0;  // 0 = cpprest's default pool
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << problem << "\n"
            << "usage: bench_cpprest_loop --url URL [--concurrency N] [--seconds S] [--body JSON]"
               " [--threads T]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage("missing value for " + flag);
    const std::string value = argv[++i];
    try {
      if (flag == "--url") {
        options.url = value;
      } else if (flag == "--concurrency") {
        options.concurrency = std::stoi(value);
      } else if (flag == "--seconds") {
        options.seconds = std::stoi(value);
      } else if (flag == "--body") {
        options.body = value;
      } else if (flag == "--threads") {
        options.threads = std::stoi(value);
      } else {
        usage("unknown flag " + flag);
      }
    } catch (const std::logic_error&) {
      usage("bad value for " + flag + ": " + value);
    }
  }
  if (options.url.empty()) usage("--url is required");
  if (options.concurrency < 1 || options.seconds < 1) usage("concurrency and seconds must be >= 1");
  return options;
}

class Loop {
 public:
  explicit Loop(const Options& options) : client_(options.url), body_(options.body) {}

  void start(int concurrency) {
    in_flight_ = concurrency;
    for (int i = 0; i < concurrency; ++i) issue();
  }

  // Stops issuing; true once every request in flight has completed.
  bool stop_and_drain(std::chrono::seconds limit) {
    measuring_ = false;
    stopping_ = true;
    std::unique_lock lock(mutex_);
    return drained_.wait_for(lock, limit, [this] { return in_flight_.load() == 0; });
  }

  uint64_t ok() const { return ok_; }
  uint64_t failed() const { return failed_; }
  double mean_latency_ms() const {
    return ok_ == 0 ? 0.0 : static_cast<double>(latency_ns_) / static_cast<double>(ok_) / 1e6;
  }

 private:
  void issue() {
    if (stopping_) {
      if (--in_flight_ == 0) {
        std::lock_guard lock(mutex_);
        drained_.notify_all();
      }
      return;
    }
    http_request request(web::http::methods::POST);
    request.set_body(body_, "application/json");
    const auto started = Clock::now();
    client_.request(request).then([this, started](pplx::task<http_response> answered) {
      try {
        const auto response = answered.get();
        const auto status = response.status_code();
        response.extract_vector().then(
            [this, started, status](pplx::task<std::vector<unsigned char>> body) {
              bool good = false;
              try {
                body.get();
                good = status < 400;
              } catch (...) {
              }
              record(good, started);
              issue();
            });
      } catch (...) {
        record(false, started);
        issue();
      }
    });
  }

  void record(bool good, Clock::time_point started) {
    if (!measuring_) return;
    if (good) {
      ++ok_;
      latency_ns_ += static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started).count());
    } else {
      ++failed_;
    }
  }

  http_client client_;
  std::string body_;
  std::atomic<bool> measuring_{true};
  std::atomic<bool> stopping_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<uint64_t> ok_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> latency_ns_{0};
  std::mutex mutex_;
  std::condition_variable drained_;
};

}  // namespace

int main(int argc, char** argv) {
  const auto options = parse(argc, argv);
  if (options.threads > 0) {
    crossplat::threadpool::initialize_with_threads(static_cast<size_t>(options.threads));
  }

  auto* loop = new Loop(options);  // leaked on purpose if requests never drain
  const auto started = Clock::now();
  loop->start(options.concurrency);
  std::this_thread::sleep_for(std::chrono::seconds(options.seconds));
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  const bool drained = loop->stop_and_drain(std::chrono::seconds(10));

  std::printf("url=%s concurrency=%d seconds=%.2f\n", options.url.c_str(), options.concurrency,
              elapsed);
  std::printf("ok=%llu failed=%llu requests/s=%.1f mean_latency_ms=%.3f\n",
              static_cast<unsigned long long>(loop->ok()),
              static_cast<unsigned long long>(loop->failed()),
              static_cast<double>(loop->ok()) / elapsed, loop->mean_latency_ms());
  std::fflush(stdout);
  if (!drained) std::_Exit(1);  // completions still pending would touch a destroyed client
  delete loop;
  return 0;
}
