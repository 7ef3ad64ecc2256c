#pragma once

#include <stdlib.h>  // mkdtemp
#include <time.h>    // clock_gettime

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "store/store.h"

namespace floodgate::store::testing {

/// A fresh directory under the system temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "floodgate-store-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline BatchRecord make_batch(const std::string& id, int64_t total = 0,
                              std::optional<std::string> key = std::nullopt) {
  BatchRecord b;
  b.id = id;
  b.spec_json = R"({"deployment":"flow/dep","limits":{"max_running":50}})";
  b.state = core::BatchState::kQueued;
  b.total = total;
  b.created_at_ms = 1'700'000'000'000;
  b.updated_at_ms = 1'700'000'000'000;
  b.idempotency_key = std::move(key);
  return b;
}

/// Items 0..n-1 in PENDING with a small, realistic spec.
inline std::vector<ItemRecord> make_items(int64_t n) {
  std::vector<ItemRecord> items;
  items.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    ItemRecord item;
    item.index = i;
    item.spec_json = R"({"parameters":{"shard":)" + std::to_string(i) +
                     R"(,"date":"2026-01-01","mode":"full"},"name":"child-)" + std::to_string(i) +
                     R"(","tags":["nightly","fanout"]})";
    items.push_back(std::move(item));
  }
  return items;
}

/// Wall time and this thread's CPU time, for the timing tests.
// On a loaded machine the CPU time shows the store's own cost, the wall time adds waiting for
// the disk (fsync), the scheduler and, for PostgreSQL, the server.
class Stopwatch {
 public:
  Stopwatch() { restart(); }
  void restart() {
    wall_ = std::chrono::steady_clock::now();
    cpu_ = cpu_now();
  }
  double wall_ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_)
        .count();
  }
  double cpu_ms() const { return cpu_now() - cpu_; }

 private:
  static double cpu_now() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
  }
  std::chrono::steady_clock::time_point wall_;
  double cpu_ = 0;
};

}  // namespace floodgate::store::testing
