#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "metrics/metrics.h"
#include "store/store.h"

namespace floodgate::engine {

/// Applies batched item and batch changes to the store on its own thread, in order, so the
/// engine never waits on the disk. A failed write is retried until it succeeds or the writer is
/// destroyed: then what was not written is logged (counted), never silently dropped.
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
  /// True when everything queued so far is written.
  bool caught_up() const;
  /// Blocks until everything queued so far is written or `limit` passes; true when written.
  bool drain_for(std::chrono::milliseconds limit);
  size_t queued() const;
  /// False while the last write failed (disk full, read-only file...); `why` gets the error.
  bool healthy(std::string* why = nullptr) const;

 private:
  struct Job {
    uint64_t seq;
    std::vector<store::ItemUpdate> items;
    std::vector<store::BatchUpdate> batches;
  };
  void run();
  /// Applies one merged transaction, retrying while it fails; false when it still failed as
  /// the writer stops. `lock` (of mutex_) is released on entry and on return.
  bool write(const std::vector<store::ItemUpdate>& items,
             const std::vector<store::BatchUpdate>& batches, std::unique_lock<std::mutex>& lock);
  /// Logs what will not be written (mutex_ held).
  void give_up(size_t lost_items, size_t lost_batches);

  store::Store& store_;
  metrics::Metrics& metrics_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::deque<Job> queue_;
  uint64_t next_seq_ = 1;
  std::atomic<uint64_t> applied_{0};
  std::atomic<bool> failing_{false};
  std::string last_error_;  // guarded by mutex_
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace floodgate::engine
