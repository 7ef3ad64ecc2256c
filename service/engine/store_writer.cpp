#include "engine/store_writer.h"

#include <chrono>

#include "metrics/log.h"

namespace floodgate::engine {

StoreWriter::StoreWriter(store::Store& store, metrics::Metrics& metrics)
    : store_(store), metrics_(metrics), thread_([this] { run(); }) {}

StoreWriter::~StoreWriter() {
  drain();
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

void StoreWriter::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  uint64_t target = next_seq_ - 1;
  done_cv_.wait(lock, [&] { return applied_.load() >= target; });
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
    int failures = 0;
    while (true) {
      auto start = std::chrono::steady_clock::now();
      try {
        store_.apply(items, batches);
        metrics_.store_flushes().Increment();
        metrics_.store_flush_seconds().Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        break;
      } catch (const std::exception& e) {
        ++failures;
        log::error("store write failed; retrying",
                   {{"error", e.what()}, {"attempt", failures}, {"items", items.size()}});
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100 * failures, 2000)));
      }
    }
    lock.lock();
    applied_.store(jobs.back().seq);
    done_cv_.notify_all();
  }
}

}  // namespace floodgate::engine
