#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "metrics/metrics.h"
#include "store/store.h"

namespace floodgate::engine {

/// Applies batched item and batch changes to the store on its own thread, in order, so the
/// engine never waits on the disk. A failed write is retried until it succeeds: nothing the
/// engine hands over is dropped.
class StoreWriter {
 public:
  StoreWriter(store::Store& store, metrics::Metrics& metrics);
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  /// Queues one transaction; returns its sequence number.
  uint64_t submit(std::vector<store::ItemUpdate> items, std::vector<store::BatchUpdate> batches);
  /// The highest sequence number written.
  uint64_t applied() const { return applied_.load(); }
  /// Blocks until everything queued so far is written (for shutdown).
  void drain();
  size_t queued() const;

 private:
  struct Job {
    uint64_t seq;
    std::vector<store::ItemUpdate> items;
    std::vector<store::BatchUpdate> batches;
  };
  void run();

  store::Store& store_;
  metrics::Metrics& metrics_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::deque<Job> queue_;
  uint64_t next_seq_ = 1;
  std::atomic<uint64_t> applied_{0};
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace floodgate::engine
