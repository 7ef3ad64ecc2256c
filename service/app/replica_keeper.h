#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "metrics/metrics.h"
#include "store/leases.h"
#include "store/store.h"

namespace floodgate::app {

/// Keeps this replica's place among the replicas of a shared store, on a thread of its own (the
/// store's calls block): every interval it records a heartbeat, renews the leases of the
/// batches it holds, hands the engine its share of the budget toward Prefect, and claims the
/// batches of replicas that died (resumed by Engine::adopt). When a lease it held was taken by
/// another replica (this one was cut off from the database, or stalled, for longer than the
/// TTL), it calls `on_lost`: the process must stop working on those batches at once.
class ReplicaKeeper {
 public:
  struct Options {
    std::string url;  // this replica's API, for the others to forward requests to
    std::chrono::milliseconds interval{1000};
  };

  ReplicaKeeper(store::Store& store, store::Leases& leases, engine::Engine& engine,
                metrics::Metrics& metrics, Options options,
                std::function<void(std::vector<std::string>)> on_lost);
  ~ReplicaKeeper();
  ReplicaKeeper(const ReplicaKeeper&) = delete;
  ReplicaKeeper& operator=(const ReplicaKeeper&) = delete;

  void start();
  /// Stops the thread; with `release`, gives the leases up so the others claim them at once.
  void stop(bool release);

  const std::string& url() const { return options_.url; }
  /// Ready while heartbeats succeed; `why` says what is wrong otherwise. Any thread.
  bool healthy(std::string* why) const;
  /// This replica, the live ones and what it holds, for /readyz. Any thread.
  nlohmann::json status_json() const;

 private:
  void run();
  /// One round: heartbeat, renew, share, claim. Throws StoreError.
  void round();
  /// Claims batches no live replica holds, up to a fair part of the unfinished ones (at least
  /// one a round), and hands them to the engine.
  void claim(size_t live_replicas, size_t held);

  store::Store& store_;
  store::Leases& leases_;
  engine::Engine& engine_;
  metrics::Metrics& metrics_;
  const Options options_;
  std::function<void(std::vector<std::string>)> on_lost_;

  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;                          // guarded by mutex_
  std::vector<store::ReplicaRecord> live_;         // guarded by mutex_
  std::vector<std::string> held_;                  // guarded by mutex_: leases renewed last
  std::vector<std::string> working_on_;            // guarded by mutex_: the engine's, read last
  std::string last_error_;                         // guarded by mutex_
  std::chrono::steady_clock::time_point last_ok_;  // guarded by mutex_
  bool settled_ = true;  // guarded by mutex_: the last heartbeat found every share fair
  bool fenced_ = false;  // guarded by mutex_: share set to 0
  int good_rounds_ = 0;  // rounds since the store answered again
  // Read by the keeper, written on the engine's thread.
  std::atomic<int64_t> demand_{0};
  std::atomic<double> limit_ratio_{1.0};
  std::atomic<bool> draining_{false};
};

}  // namespace floodgate::app
