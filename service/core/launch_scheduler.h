#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/token_bucket.h"

namespace floodgate::core {

/// Per-batch limits on launch requests; 0 means "no limit of this batch's own".
struct BatchQuota {
  int priority = 0;                // weight in the round-robin is 1 + max(priority, 0)
  int max_in_flight = 0;           // concurrent create requests of this batch
  double launches_per_second = 0;  // items per second
  double burst = 0;                // items; defaults to max(1, launches_per_second)
};

/// Chooses which batch sends the next launch request: smooth weighted round-robin by
/// priority among batches that have items ready, are under their own in-flight cap and
/// have launch-rate tokens. Global limits (token bucket, in-flight) are the caller's.
class LaunchScheduler {
 public:
  using BatchKey = uint64_t;

  /// A batch's turn: send one request carrying `items` items of it.
  struct Grant {
    BatchKey batch = 0;
    int items = 0;
  };

  explicit LaunchScheduler(const Clock& clock) : clock_(clock) {}

  void add_batch(BatchKey key, const BatchQuota& quota);
  void update_quota(BatchKey key, const BatchQuota& quota);
  void remove_batch(BatchKey key);
  bool has_batch(BatchKey key) const { return batches_.count(key) != 0; }

  /// How many items of the batch can be launched now (pending, due retries).
  void set_ready(BatchKey key, int64_t ready);
  /// A paused batch is skipped until resumed.
  void set_paused(BatchKey key, bool paused);

  /// The next batch to serve, or nothing when no batch may send now. Takes the batch's
  /// rate tokens and counts the request as in flight; up to `max_items` items per request.
  std::optional<Grant> next(int max_items);
  /// A request granted by next() has finished (whatever its outcome).
  void on_request_done(BatchKey key);
  /// A grant from next() that was not used: its items are ready again, its rate tokens go
  /// back and it no longer counts as in flight.
  void cancel(const Grant& grant);
  /// Gives back `items` rate tokens of a grant whose items had already paid for their launch.
  void refund(BatchKey key, int items);

  /// Time until some batch that has ready items gets rate tokens again; nullopt when no batch
  /// is waiting only on its rate.
  std::optional<Duration> time_until_ready() const;

  int in_flight(BatchKey key) const;
  /// Whether the batch has items ready that wait for its own rate tokens (or its own in-flight
  /// cap), for the batch's "waiting on".
  bool held_by_own_limits(BatchKey key) const;
  size_t size() const { return batches_.size(); }

 private:
  struct Entry {
    BatchQuota quota;
    std::optional<TokenBucket> rate;
    int64_t ready = 0;
    int in_flight = 0;
    bool paused = false;
    int64_t current = 0;  // smooth WRR credit
  };
  static int weight(const BatchQuota& q) { return 1 + (q.priority > 0 ? q.priority : 0); }
  void apply_quota(Entry& e, const BatchQuota& quota);
  bool eligible(const Entry& e) const;

  const Clock& clock_;
  std::unordered_map<BatchKey, Entry> batches_;
  std::vector<BatchKey> order_;  // insertion order, for deterministic ties
};

}  // namespace floodgate::core
