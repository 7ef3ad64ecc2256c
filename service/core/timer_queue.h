#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "core/clock.h"

namespace floodgate::core {

/// Runs callbacks on its owner's single thread, now or at a time; the engine's only way to wait.
class TimerQueue {
 public:
  using Id = uint64_t;
  virtual ~TimerQueue() = default;
  /// Runs `fn` once at `when` (or soon after) on the queue's thread; the id cancels it.
  virtual Id schedule(TimePoint when, std::function<void()> fn) = 0;
  /// Drops a callback that has not run yet; unknown or spent ids are ignored.
  virtual void cancel(Id id) = 0;
  /// Runs `fn` on the queue's thread as soon as possible. Thread-safe.
  virtual void post(std::function<void()> fn) = 0;
};

/// A timer queue that runs only when a test tells it to, on a simulated clock.
class ManualTimerQueue final : public TimerQueue {
 public:
  explicit ManualTimerQueue(SimulatedClock& clock) : clock_(clock) {}

  Id schedule(TimePoint when, std::function<void()> fn) override {
    const Id id = next_id_++;
    timers_.emplace(std::make_pair(when, id), std::move(fn));
    return id;
  }
  void cancel(Id id) override {
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (it->first.second == id) {
        timers_.erase(it);
        return;
      }
    }
  }
  void post(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mutex_);
    posted_.push_back(std::move(fn));
  }

  /// Runs everything posted and every timer due now, until nothing more is; returns the count.
  int run_ready() {
    int n = 0;
    while (true) {
      std::vector<std::function<void()>> batch;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        batch.swap(posted_);
      }
      if (!batch.empty()) {
        for (auto& fn : batch) fn();
        n += static_cast<int>(batch.size());
        continue;
      }
      if (timers_.empty() || timers_.begin()->first.first > clock_.now()) return n;
      auto node = timers_.extract(timers_.begin());
      node.mapped()();
      n += 1;
    }
  }
  /// Moves the clock forward by `d`, stopping at each timer on the way to run it.
  void advance(Duration d) { run_until(clock_.now() + d); }
  void run_until(TimePoint end) {
    run_ready();
    while (!timers_.empty() && timers_.begin()->first.first <= end) {
      clock_.set(std::max(clock_.now(), timers_.begin()->first.first));
      run_ready();
    }
    clock_.set(std::max(clock_.now(), end));
    run_ready();
  }
  size_t scheduled() const { return timers_.size(); }

 private:
  SimulatedClock& clock_;
  std::map<std::pair<TimePoint, Id>, std::function<void()>> timers_;
  Id next_id_ = 1;
  std::mutex mutex_;
  std::vector<std::function<void()>> posted_;
};

}  // namespace floodgate::core
