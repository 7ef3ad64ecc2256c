#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/states.h"
#include "engine/batch.h"
#include "metrics/metrics.h"
#include "store/store.h"

namespace floodgate::engine {

/// What the batch book tells about each change; every part that follows batches (persistence,
/// long-polls, gauges, readiness, tracking) subscribes instead of being called by hand.
class BatchObserver {
 public:
  virtual ~BatchObserver() = default;
  /// Batch `b` is held in memory now, with its counts (accepted, resumed or brought back).
  virtual void on_batch_held(Batch& /*b*/) {}
  /// Batch `b`'s items were read back from the store; its counts were `before`.
  virtual void on_items_reloaded(Batch& /*b*/,
                                 const std::array<int64_t, core::kItemStateCount>& /*before*/) {}
  virtual void on_item_state(Batch& /*b*/, int64_t /*index*/, core::ItemState /*from*/,
                             core::ItemState /*to*/) {}
  /// Something of item `index` that is persisted changed.
  virtual void on_item_changed(Batch& /*b*/, int64_t /*index*/) {}
  /// The batch's version moved on: something the API shows of it changed.
  virtual void on_batch_changed(Batch& /*b*/) {}
  virtual void on_batch_state(Batch& /*b*/, core::BatchState /*from*/, core::BatchState /*to*/) {}
  /// Batch `b` is ending: its unlaunched items are skipped, except those in `in_doubt` (a create
  /// that may have made their run got no answer), which are left for a lookup.
  virtual void on_batch_ending(Batch& /*b*/, const std::vector<int64_t>& /*in_doubt*/) {}
  /// Batch `b` has ended (its final state is set).
  virtual void on_batch_finished(Batch& /*b*/) {}
};

/// The batches held in memory and the only writer of batch and item state, counts, tolerance
/// and finishing; tells its observers of every change.
class BatchBook {
 public:
  BatchBook(core::Clock& clock, core::WallClock& wall, metrics::Metrics& metrics);

  /// Observers are told in the order they were added.
  void add_observer(BatchObserver* observer) { observers_.push_back(observer); }

  Batch* find(const std::string& id);
  const Batch* find(const std::string& id) const;
  Batch* get(uint64_t key);
  const Batch* get(uint64_t key) const;
  const std::unordered_map<uint64_t, std::unique_ptr<Batch>>& batches() const { return batches_; }

  /// Holds a batch (without its items); tell observers with announce() once it is filled in.
  Batch& add(store::BatchRecord record, BatchSpec spec);
  /// Items of a new batch from the runs' spec JSON, all held (tests of the engine's parts);
  /// returns the indexes to launch.
  std::vector<int64_t> load_items(Batch& b, const std::vector<std::string>& run_specs);
  /// A new batch whose `rec.total` items are all PENDING in the store: none held, each paged in
  /// as its turn comes (ItemPager).
  void start_paging(Batch& b);
  /// Holds the items read from the store that are not held yet (PENDING again when they were in
  /// flight or waiting, counted so); the counts must already include them. Returns the indexes
  /// to launch.
  std::vector<int64_t> hold_items(Batch& b, const std::vector<store::ItemRecord>& stored);
  /// Counts of a batch whose items stay in the store.
  void set_counts(Batch& b, const std::array<int64_t, core::kItemStateCount>& counts);
  void announce(Batch& b);
  /// Tells observers that `b`'s counts moved in bulk (were `before`).
  void items_reloaded(Batch& b, const std::array<int64_t, core::kItemStateCount>& before);
  /// Whether item `item` of `b` may leave memory once written: it is done (or no longer
  /// followed) and nothing of it is unwritten or in flight.
  static bool evictable(const Batch& b, const Item& item);
  /// Drops item `index` from memory when it is evictable (see ChangeFlusher).
  void evict(Batch& b, int64_t index);

  void set_state(Batch& b, int64_t index, core::ItemState to);
  void launched(Batch& b, int64_t index, const std::string& flow_run_id, bool existing);
  void launch_failed(Batch& b, int64_t index, const std::string& message);
  /// Something the API shows of the batch changed outside a state change.
  void batch_changed(Batch& b);
  /// Something persisted of item `index` changed outside a state change.
  void item_changed(Batch& b, int64_t index);
  void set_batch_state(Batch& b, core::BatchState s);
  /// Ends the batch when its failures pass the tolerance or every item is done.
  void check_finished(Batch& b);
  void finish(Batch& b, core::BatchState state);

  /// `n` runs were just appended to the batch in the store (indexes `first_index` on, which must
  /// be where the batch ends): counted PENDING and paged in as their turn comes. Appended to a
  /// batch that ended meanwhile, they are SKIPPED at once.
  void append_items(Batch& b, int64_t first_index, int64_t n);
  /// No more runs will be appended: the batch may finish.
  void seal(Batch& b);

 private:
  /// The items PENDING in the store and not held (from `from_index` on) become SKIPPED: in the
  /// counts now, in the store with the batch's next write.
  void skip_unpaged(Batch& b, int64_t from_index);
  void bump_version(Batch& b);
  void notify_changed(Batch& b);

  core::Clock& clock_;
  core::WallClock& wall_;
  metrics::Metrics& metrics_;
  std::vector<BatchObserver*> observers_;
  std::unordered_map<uint64_t, std::unique_ptr<Batch>> batches_;
  std::unordered_map<std::string, uint64_t> by_id_;
  uint64_t next_key_ = 1;
};

/// The states whose items a redrive launches again.
inline const std::vector<core::ItemState> kRedrivableStates = {
    core::ItemState::kLaunchFailed, core::ItemState::kFailed, core::ItemState::kCrashed,
    core::ItemState::kSkipped};
inline bool is_redrivable(core::ItemState s) {
  return std::find(kRedrivableStates.begin(), kRedrivableStates.end(), s) !=
         kRedrivableStates.end();
}

/// The index of the batch's deployment named `text`, added (unresolved, or failed when `text`
/// is no deployment reference) when new.
uint16_t deployment_index(Batch& b, const std::string& text);
/// The idempotency key of item `index`'s next create.
std::string idempotency_key(const Batch& b, int64_t index, const Item& item);

}  // namespace floodgate::engine
