#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace floodgate::store {

/// One floodgated replica as the shared store knows it. Times are the database server's clock
/// (Unix ms), so replicas on machines whose clocks differ agree on who is alive.
struct ReplicaRecord {
  std::string id;
  std::string url;  // where the other replicas reach its API ("" when it gave none)
  int64_t heartbeat_at_ms = 0;
  int64_t demand = 0;        // unfinished batches it holds
  double share = 0;          // of the global budget toward Prefect, 0..1
  double limit_ratio = 1.0;  // its adaptive in-flight limit over the limit's maximum
};

/// What one heartbeat tells a replica about the others.
struct Heartbeat {
  std::vector<ReplicaRecord> live;  // every replica whose heartbeat is younger than the TTL
  double share = 0;                 // the share this replica may use from now on
  double limit_ratio = 1.0;         // the smallest limit_ratio of the live replicas
  /// Every live replica holds its fair share: nobody waits for another to let go of budget.
  bool settled = true;
};

/// The batch a replica was asked about and who holds it.
struct BatchOwner {
  std::string owner_id;   // "" when nobody holds it
  std::string url;        // the owner's API, "" when the owner is not alive
  bool alive = false;     // the owner's heartbeat is younger than the TTL
  bool finished = false;  // the batch is in a final state
};

/// Work sharing between replicas of one shared store (PostgreSQL): each replica holds batches
/// under leases it renews, claims the batches of replicas that died, and takes its share of one
/// budget toward Prefect. Thread-safe. The store fences its own writes with the replica id:
/// item and batch updates of a batch another replica holds are skipped.
class Leases {
 public:
  virtual ~Leases() = default;

  const std::string& replica_id() const { return replica_id_; }
  std::chrono::milliseconds ttl() const { return ttl_; }

  /// Records this replica as alive with `demand` and `limit_ratio` and recomputes its share:
  /// demand over the live replicas' total demand (an equal part while none has demand), but
  /// never more than the live replicas leave
  /// (heartbeats are serialised, so the shares of live replicas never sum to more than 1).
  virtual Heartbeat heartbeat(const std::string& url, int64_t demand, double limit_ratio) = 0;
  /// Extends the leases of every unfinished batch this replica holds; their ids.
  virtual std::vector<std::string> renew() = 0;
  /// Of `ids`, the batches another replica holds now (the lease was lost).
  virtual std::vector<std::string> taken_from_us(const std::vector<std::string>& ids) = 0;
  /// Claims at most `max` unfinished batches that nobody holds or whose owner's lease ran out
  /// while the owner stopped its heartbeat, oldest first (FOR UPDATE SKIP LOCKED, so replicas
  /// claiming at once never take the same batch); with their records.
  virtual std::vector<BatchRecord> claim(int max) = 0;
  /// How many unfinished batches exist, held or not.
  virtual int64_t unfinished_count() = 0;
  /// Takes one batch (final or not) whose owner is not alive, or that is ours; false when a
  /// live replica holds it (used to redrive a batch that ended on a replica since gone).
  virtual bool take_over(const std::string& batch_id) = 0;
  /// Who holds a batch; nullopt for an unknown batch.
  virtual std::optional<BatchOwner> owner_of(const std::string& batch_id) = 0;
  /// Gives up every lease and the heartbeat row (a clean stop): the others claim at once.
  virtual void release_all() = 0;

 protected:
  Leases(std::string replica_id, std::chrono::milliseconds ttl)
      : replica_id_(std::move(replica_id)), ttl_(ttl) {}

 private:
  const std::string replica_id_;
  const std::chrono::milliseconds ttl_;
};

}  // namespace floodgate::store
