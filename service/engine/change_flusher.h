#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/timer_queue.h"
#include "engine/batch_book.h"
#include "engine/store_writer.h"

namespace floodgate::engine {

/// How often changes are written.
struct FlushOptions {
  std::chrono::milliseconds interval{50};
  size_t max_items = 5000;  // a flush as soon as this many items changed
};

/// Collects changed items and batches and hands them to the store writer in batched
/// transactions (every interval, or sooner when many changed); evicts items that are done from
/// memory once their last change is written (the store then answers for them).
class ChangeFlusher final : public BatchObserver {
 public:
  ChangeFlusher(core::Clock& clock, core::TimerQueue& timers, FlushOptions options, BatchBook& book,
                StoreWriter& writer);
  ~ChangeFlusher() override;
  ChangeFlusher(const ChangeFlusher&) = delete;
  ChangeFlusher& operator=(const ChangeFlusher&) = delete;

  void on_item_changed(Batch& b, int64_t index) override;
  void on_batch_changed(Batch& b) override;

  /// Hands every change so far to the store writer.
  void flush();
  /// Evicts the items that are done and whose last change the store has written, and those of
  /// ended batches that no longer need memory (each second).
  void evict();
  /// Cancels the flush timer (the last flush is the caller's).
  void stop();

 private:
  void arm();
  /// Evicts the items that were done when written, once the store has their write.
  void evict_written();

  core::Clock& clock_;
  core::TimerQueue& timers_;
  FlushOptions options_;
  BatchBook& book_;
  StoreWriter& writer_;
  std::vector<std::pair<uint64_t, int64_t>> dirty_items_;
  std::vector<uint64_t> dirty_batches_;
  // Items that were done when written, by the writer's sequence number of the write.
  std::deque<std::pair<uint64_t, std::vector<std::pair<uint64_t, int64_t>>>> written_done_;
  std::optional<core::TimerQueue::Id> timer_;
  bool stopped_ = false;
};

}  // namespace floodgate::engine
