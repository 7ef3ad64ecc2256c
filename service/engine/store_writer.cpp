#include "engine/store_writer.h"

#include <chrono>

#include "metrics/log.h"

namespace floodgate::engine {

StoreWriter::StoreWriter(store::Store& store, metrics::Metrics& metrics)
    : store_(store), metrics_(metrics), thread_([this] { run(); }) {}

StoreWriter::~StoreWriter() {
  // No unbounded wait here: the writer thread still writes everything queued while the store
  // accepts writes, but once stopping it gives up on the first failed attempt (the shutdown
  // deadline has passed by then; see Engine::maybe_finish_drain) and logs what it could not
  // write.
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t StoreWriter::submit(std::vector<store::ItemUpdate> items,
                             std::vector<store::BatchUpdate> batches) {
  uint64_t seq;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    seq = next_seq_++;
    queue_.push_back(Job{seq, std::move(items), std::move(batches)});
  }
  cv_.notify_one();
  return seq;
}

size_t StoreWriter::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

bool StoreWriter::caught_up() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return applied_.load() >= next_seq_ - 1;
}

bool StoreWriter::drain_for(std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock(mutex_);
  uint64_t target = next_seq_ - 1;
  return done_cv_.wait_for(lock, limit, [&] { return applied_.load() >= target; });
}

bool StoreWriter::healthy(std::string* why) const {
  if (!failing_.load()) return true;
  if (why) {
    std::lock_guard<std::mutex> lock(mutex_);
    *why = "store cannot be written: " + last_error_;
  }
  return false;
}

void StoreWriter::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and nothing left
    // Merge everything queued into one transaction; order within is preserved.
    std::vector<Job> jobs;
    while (!queue_.empty()) {
      jobs.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    lock.unlock();
    std::vector<store::ItemUpdate> items;
    std::vector<store::BatchUpdate> batches;
    for (auto& j : jobs) {
      items.insert(items.end(), std::make_move_iterator(j.items.begin()),
                   std::make_move_iterator(j.items.end()));
      batches.insert(batches.end(), std::make_move_iterator(j.batches.begin()),
                     std::make_move_iterator(j.batches.end()));
    }
    const bool written = write(items, batches, lock);
    lock.lock();
    if (written) {
      failing_ = false;
      applied_.store(jobs.back().seq);
      done_cv_.notify_all();
      continue;
    }
    give_up(items.size(), batches.size());
    return;
  }
}

bool StoreWriter::write(const std::vector<store::ItemUpdate>& items,
                        const std::vector<store::BatchUpdate>& batches,
                        std::unique_lock<std::mutex>& lock) {
  int failures = 0;
  while (true) {
    auto start = std::chrono::steady_clock::now();
    try {
      store_.apply(items, batches);
      metrics_.store_flushes().Increment();
      metrics_.store_flush_seconds().Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      if (failures > 0) log::info("store writes succeed again", {{"after_attempts", failures}});
      return true;
    } catch (const std::exception& e) {
      ++failures;
      lock.lock();
      last_error_ = e.what();
      failing_ = true;
      if (stop_) {
        lock.unlock();
        return false;  // shutting down: do not wait for the disk forever
      }
      log::error("store write failed; retrying",
                 {{"error", e.what()}, {"attempt", failures}, {"items", items.size()}});
      // Waits, but wakes at once for shutdown.
      cv_.wait_for(lock, std::chrono::milliseconds(std::min(100 * failures, 2000)),
                   [&] { return stop_; });
      lock.unlock();
    }
  }
}

void StoreWriter::give_up(size_t lost_items, size_t lost_batches) {
  // Stopping with a write that fails (the lock is held): everything from here on is lost to
  // the store. Items whose launch was requested are found again by their idempotency keys when
  // floodgated next starts; batches were written when they were accepted.
  for (const auto& j : queue_) {
    lost_items += j.items.size();
    lost_batches += j.batches.size();
  }
  queue_.clear();
  log::error("store cannot be written; stopping without these changes",
             {{"error", last_error_},
              {"item_updates_not_written", lost_items},
              {"batch_updates_not_written", lost_batches}});
}

}  // namespace floodgate::engine
