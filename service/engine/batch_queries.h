#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/states.h"
#include "core/timer_queue.h"
#include "engine/batch_book.h"
#include "engine/batch_view.h"
#include "store/store.h"

namespace floodgate::engine {

/// The API's reads of batches: JSON views, listings of batches and runs, and long-polls that
/// answer when a batch changes or their wait ends.
class BatchQueries final : public BatchObserver {
 public:
  BatchQueries(core::Clock& clock, core::TimerQueue& timers, BatchBook& book);
  ~BatchQueries() override;
  BatchQueries(const BatchQueries&) = delete;
  BatchQueries& operator=(const BatchQueries&) = delete;

  bool has_batch(const std::string& id) const { return book_.find(id) != nullptr; }
  int64_t batch_version(const std::string& id) const;
  const BatchSpec* spec_of(const std::string& id) const;
  /// The batch as JSON for the API, or null when unknown.
  nlohmann::json batch_json(const std::string& id) const;
  /// JSON for a batch not held in memory, from its record and its item counts.
  static nlohmann::json stored_batch_json(const store::BatchRecord& record,
                                          const std::array<int64_t, core::kItemStateCount>& counts);
  /// Calls `fn(batch_json)` once: when the batch's version exceeds `after_version`, or after
  /// `wait` (null JSON when the batch is unknown).
  void wait_for_change(const std::string& id, int64_t after_version, std::chrono::milliseconds wait,
                       std::function<void(nlohmann::json)> fn);
  /// A page of runs as the store listed them (`stored`: index > `after`, in `state` when given,
  /// at most `limit` + 1) with the held items put in: a held item replaces its stored row (or
  /// drops it when no longer in `state`), and held items in `state` that the store does not show
  /// so yet are added within the range the page covers. The store alone when not held.
  std::vector<RunView> overlay_runs(const std::string& id, std::optional<core::ItemState> state,
                                    int64_t after, int limit, std::vector<RunView> stored) const;
  /// Held batches after `after_seq` (optionally only in `state`), as (seq, JSON), by seq.
  std::vector<std::pair<int64_t, nlohmann::json>> held_batches(
      std::optional<core::BatchState> state, int64_t after_seq) const;

  /// From now on, a long-poll is answered at once (the process is draining).
  void answer_new_at_once() { answer_at_once_ = true; }
  /// Answers every waiting long-poll now.
  void answer_all();

  void on_batch_changed(Batch& b) override;

 private:
  struct Waiter {
    int64_t after;
    std::function<void(nlohmann::json)> fn;
    core::TimerQueue::Id timer = 0;
  };
  void expire(uint64_t key, const std::shared_ptr<Waiter>& w);

  core::Clock& clock_;
  core::TimerQueue& timers_;
  BatchBook& book_;
  std::unordered_map<uint64_t, std::vector<std::shared_ptr<Waiter>>> waiters_;
  bool answer_at_once_ = false;
};

}  // namespace floodgate::engine
