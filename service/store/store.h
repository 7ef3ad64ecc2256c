#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/states.h"

namespace floodgate::store {

/// A failure of the underlying database (I/O error, corruption, lock timeout).
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A batch as persisted. Times are Unix milliseconds; 0 means "not yet".
struct BatchRecord {
  std::string id;
  std::string spec_json;  // batch-level options (deployment, limits, retry, tags, ...)
  core::BatchState state = core::BatchState::kQueued;
  int64_t total = 0;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  int64_t finished_at_ms = 0;
  int64_t version = 0;
  std::optional<std::string> idempotency_key;
  int64_t seq = 0;                // insertion order, assigned by the store
  std::string submitted_by = {};  // name of the API token that submitted it; "" without auth
  // False while more runs may be appended (POST /v1/batches/{id}/runs): such a batch does not
  // finish before it is sealed. A column of its own rather than a key of spec_json, so that
  // sealing never races with the engine's rewrites of the spec (PATCH).
  bool sealed = true;
};

/// One item (one child run) as persisted.
struct ItemRecord {
  int64_t index = 0;
  core::ItemState state = core::ItemState::kPending;
  int32_t attempts = 0;
  std::string flow_run_id;
  std::string flow_run_state;
  std::string last_error;
  std::string spec_json;  // the run's own spec: parameters, name, tags, ...
  /// Extra mutable details as JSON: the runs of earlier rounds (relaunches, redrives), the
  /// parent's task run of a subflow, attempts Prefect answered "not now" and the seconds waited
  /// until the launch; "" when none.
  std::string detail_json;
};

/// A change to one item; the item's spec is never changed.
struct ItemUpdate {
  std::string batch_id;
  int64_t index = 0;
  core::ItemState state = core::ItemState::kPending;
  int32_t attempts = 0;
  std::string flow_run_id;
  std::string flow_run_state;
  std::string last_error;
  std::string detail_json;
};

/// A change to a batch's mutable fields.
struct BatchUpdate {
  std::string id;
  core::BatchState state = core::BatchState::kQueued;
  int64_t updated_at_ms = 0;
  int64_t finished_at_ms = 0;
  int64_t version = 0;
  std::optional<std::string> spec_json;  // set when limits were changed
  /// The batch's items still PENDING from this index on become SKIPPED (it ended before they
  /// were launched; the engine never held them). Applied only when the batch update is.
  std::optional<int64_t> skip_pending_from;
  /// The batch ended with children it still follows (it keeps needing an owner; PostgreSQL with
  /// replicas only).
  bool followed = false;
};

struct InsertResult {
  bool inserted = false;  // false: the idempotency key matched an existing batch
  std::string batch_id;   // the new batch, or the existing one
};

/// One chunk of runs to append to a batch.
struct AppendRequest {
  std::string batch_id;
  /// The chunk's Idempotency-Key: a chunk sent again with it appends nothing and is answered as
  /// the first time (kRepeated). Keys are per batch.
  std::optional<std::string> idempotency_key;
  std::string body_hash;  // tells a repeat from another chunk under the same key
  /// False: the caller knows the batch takes no more runs; only a repeated key is answered,
  /// nothing is appended (kRefused, or kNotFound/kFinal/kSealed when the store sees why).
  bool allowed = true;
};

enum class AppendOutcome {
  kAppended,
  kRepeated,   // the key was used before with the same body: nothing appended
  kKeyReused,  // the key was used before with another body: nothing appended
  kNotFound,
  kFinal,   // the batch ended
  kSealed,  // the batch takes no more runs
  kRefused  // not allowed by the caller, and the store sees no reason of its own
};

struct AppendResult {
  AppendOutcome outcome = AppendOutcome::kNotFound;
  int64_t first_index = 0;  // of the chunk (appended now or first)
  int64_t count = 0;        // runs in the chunk
  int64_t total = 0;        // the batch's total after the append (or now)
};

enum class SealResult { kSealed, kAlreadySealed, kNotFound };

/// Durable storage of batches and items. Thread-safe: any thread may call any method.
class Store {
 public:
  virtual ~Store() = default;

  /// Inserts a batch and all its items in one transaction. When the batch's
  /// idempotency_key is already taken, inserts nothing and names the existing batch.
  virtual InsertResult insert_batch(const BatchRecord& batch,
                                    const std::vector<ItemRecord>& items) = 0;

  /// insert_batch() of a new batch whose items are all PENDING, item i with `run_specs[i]`,
  /// without making a record of each (the default does; the stores insert from the specs).
  virtual InsertResult insert_pending_batch(const BatchRecord& batch,
                                            const std::vector<std::string>& run_specs);

  /// Applies item and batch changes in one transaction. Changes naming an unknown batch or
  /// item are skipped; only database failures throw.
  virtual void apply(const std::vector<ItemUpdate>& items,
                     const std::vector<BatchUpdate>& batches) = 0;

  virtual std::optional<BatchRecord> get_batch(const std::string& id) = 0;

  /// Batches in insertion order, optionally only those in one state, with seq > after_seq,
  /// at most `limit` (a negative limit means no limit).
  virtual std::vector<BatchRecord> list_batches(std::optional<core::BatchState> state,
                                                int64_t after_seq, int limit) = 0;

  /// Batches that are not in a final state, in insertion order.
  virtual std::vector<BatchRecord> load_unfinished_batches() = 0;

  /// All items of a batch in index order (with their specs when `with_spec`).
  virtual std::vector<ItemRecord> load_items(const std::string& batch_id, bool with_spec) = 0;

  /// Items of a batch with index > after_index, optionally in one state, at most `limit`
  /// (a negative limit means no limit), in index order, without their specs.
  virtual std::vector<ItemRecord> list_items(const std::string& batch_id,
                                             std::optional<core::ItemState> state,
                                             int64_t after_index, int limit) = 0;

  /// How many items of a batch are in each state (indexed by ItemState).
  virtual std::array<int64_t, core::kItemStateCount> count_items(const std::string& batch_id) {
    std::array<int64_t, core::kItemStateCount> counts{};
    int64_t after = -1;
    while (true) {
      auto page = list_items(batch_id, std::nullopt, after, 10000);
      if (page.empty()) break;
      for (const auto& item : page) counts[static_cast<int>(item.state)] += 1;
      after = page.back().index;
    }
    return counts;
  }

  /// Items of a batch in any of `states`, in index order, with their specs when `with_spec`.
  std::vector<ItemRecord> items_in_states(const std::string& batch_id,
                                          const std::vector<core::ItemState>& states,
                                          bool with_spec);
  /// Up to `limit` PENDING items of a batch with `after` < index < `before`, in index order,
  /// with their specs: the next items to launch (see the engine's ItemPager).
  /// (The default lists, then reads the specs; the stores read both in one query.)
  virtual std::vector<ItemRecord> pending_page(const std::string& batch_id, int64_t after,
                                               int64_t before, int limit);

  /// Work sharing between replicas; null where one process owns the store (SQLite).
  virtual class Leases* leases() { return nullptr; }

  /// Specs of the given items of a batch (index -> spec), for launching them again (a crashed
  /// child relaunched, a redrive); in the order asked, leaving out indexes the batch does not
  /// have.
  virtual std::vector<std::pair<int64_t, std::string>> load_item_specs(
      const std::string& batch_id, const std::vector<int64_t>& indexes) = 0;

  // --- Chunked appends (POST /v1/batches/{id}/runs and /seal) ---

  /// Appends runs (their spec JSON) to a batch as PENDING items numbered from its total on, grows
  /// its total and records the chunk's key, in one transaction (see AppendRequest). The default
  /// throws: stores made for tests need not support it.
  virtual AppendResult append_items(const AppendRequest& request,
                                    const std::vector<std::string>& run_specs);
  /// Marks a batch sealed: no runs will be appended any more. Idempotent.
  virtual SealResult seal_batch(const std::string& batch_id);
};

/// Opens the store named by a URL: "sqlite:///abs/path.db", "sqlite://./rel.db" (or
/// "sqlite://rel.db"), "sqlite://:memory:", "postgresql://user:pass@host:port/db?sslmode=...".
/// Throws StoreError with a clear message on a bad URL or a failure to open.
/// `replica_id` (PostgreSQL only): share the database with other replicas under leases of
/// `lease_ttl` (see leases.h).
std::unique_ptr<Store> open_store(const std::string& url, const std::string& replica_id = "",
                                  std::chrono::milliseconds lease_ttl = std::chrono::seconds(15));

}  // namespace floodgate::store
