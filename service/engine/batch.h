#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/states.h"
#include "core/windowed_counter.h"
#include "engine/batch_spec.h"
#include "metrics/batch_rate.h"
#include "prefect/prefect_api.h"
#include "store/store.h"

namespace floodgate::engine {

/// One child run of a batch, as the engine holds it.
struct Item {
  core::ItemState state = core::ItemState::kPending;
  bool dirty = false;
  bool in_request = false;
  uint16_t deployment = 0;  // index into Batch::deployments
  int32_t attempts = 0;
  int32_t relaunches = 0;
  int32_t unavailable = 0;  // transient attempts: Prefect busy or out of reach, not a verdict
  bool in_doubt = false;    // a create that may have made the run got no answer saying so
  core::TimePoint first_attempt{};
  core::Duration capped_at_first{};  // the batch's capped_time() at first_attempt
  core::TimePoint settled{};         // launched or failed: the end of its wait
  // Deadlines: when its run was created and when a read first found it started;
  // TimePoint::min() while not known.
  core::TimePoint launched_at = core::TimePoint::min();
  core::TimePoint started_at = core::TimePoint::min();
  // This process did not see its run created (held again after a restart or by another replica,
  // or an existing run a create found by its key): reads set launched_at and started_at from the
  // run's own created and start_time in Prefect.
  bool times_from_prefect = false;
  uint8_t missing_reads = 0;  // successive reads that did not find its run (deleted in Prefect)
  std::string flow_run_id;
  std::string flow_run_state;
  std::string last_error;
  std::string parent_task_run_id;  // the placeholder in the parent flow run (as_subflow)
  // The run's own spec; released once the run exists and can no longer be launched again.
  std::unique_ptr<RunSpec> spec;
  nlohmann::json earlier_runs;  // ids of runs of earlier attempts (re-launches), null when none
};

/// The items of a batch held in memory, by index: those waiting to launch or being launched,
/// children being followed, and items that are done until their last change is written. The
/// others live in the store only: items not yet paged in (ItemPager) and items done and written
/// (ChangeFlusher evicts them). Reaching an item that is not held is a bug: at() throws.
class ItemWindow {
 public:
  using Map = std::map<int64_t, Item>;
  Item& operator[](int64_t index) { return items_.at(index); }
  const Item& operator[](int64_t index) const { return items_.at(index); }
  Item* find(int64_t index) {
    auto it = items_.find(index);
    return it == items_.end() ? nullptr : &it->second;
  }
  const Item* find(int64_t index) const {
    auto it = items_.find(index);
    return it == items_.end() ? nullptr : &it->second;
  }
  /// Item `index`, held from now on (a new, PENDING item when it was not held).
  Item& hold(int64_t index) { return items_[index]; }
  void erase(int64_t index) { items_.erase(index); }
  void clear() { items_.clear(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  Map::iterator begin() { return items_.begin(); }
  Map::iterator end() { return items_.end(); }
  Map::const_iterator begin() const { return items_.begin(); }
  Map::const_iterator end() const { return items_.end(); }
  /// Held items with index > `after`, in index order.
  Map::const_iterator after(int64_t index) const { return items_.upper_bound(index); }

 private:
  Map items_;
};

/// One deployment a batch launches into, resolved once for the items that name it.
struct BatchDeployment {
  enum class State { kUnresolved, kResolving, kResolved, kFailed };
  prefect::DeploymentRef ref;
  std::string text;  // as the user wrote it
  State state = State::kUnresolved;
  std::string id;
  std::string error;
  std::vector<int64_t> waiting;
  int attempts = 0;
  int transient = 0;  // attempts Prefect answered "not now": bounded by max_elapsed_s only
  core::TimePoint first_attempt{};
};

/// A batch's start pace (StartPacer): lowered when children crash soon after they start, raised
/// again while they start cleanly; inactive until the first such crash.
struct StartPace {
  bool active = false;
  double rate = 0;          // launches per second
  int64_t running_cap = 0;  // children not yet final
  int64_t cuts = 0;
  int64_t early_crashes = 0;
  double crash_rate = 0;  // the launch rate at the last cut: the pace rises slowly near it
  core::TimePoint last_cut{};
};

/// A batch's backlog (BacklogGate): its children created and not yet seen started, and how fast
/// workers have been starting them.
struct Backlog {
  /// The workers' start rate is measured over this window (or since the first launch).
  static constexpr std::chrono::seconds kRateWindow{30};
  int64_t unstarted = 0;  // LAUNCHED items whose run no read has yet found started
  core::WindowedCounter starts{kRateWindow, 30};
  bool held = false;             // launches waited on the backlog at the last count of ready items
  std::optional<int64_t> limit;  // the limit at the last count of ready items; none: not gated
};

enum class Wait : uint8_t;

/// A batch's progress, sampled each second: its launch and completion rates (for the ETA) and
/// what it waits on.
struct Progress {
  metrics::BatchRate rate{60};
  std::vector<Wait> waiting_on;
  int64_t children_running = 0;  // children Prefect last showed Running
};

/// A batch held in memory: its record, spec, items and the engine's bookkeeping of it.
struct Batch {
  uint64_t key = 0;
  store::BatchRecord rec;
  BatchSpec spec;
  ItemWindow items;
  // Paging (ItemPager): every item below page_cursor that is PENDING in the store is held;
  // `unpaged` items at or past it are PENDING in the store and not held yet.
  int64_t page_cursor = 0;
  int64_t unpaged = 0;
  bool page_wanted = false;  // a refill is posted
  // Where the store must still turn the PENDING items not held into SKIPPED (the batch ended
  // before they were paged in), written with the batch's next update; none when unset.
  std::optional<int64_t> skip_unpaged_from;
  // How many items in a state a redrive launches again left memory (evicted, or SKIPPED in the
  // store without being paged in): a redrive reads them from the store when there are any, and
  // its read is current when no more left since it was asked for.
  uint64_t redrivable_evictions = 0;
  std::vector<BatchDeployment> deployments;  // [0] is the batch's own
  std::deque<int64_t> ready;
  std::array<int64_t, core::kItemStateCount> counts{};
  bool dirty = false;  // changed since the last flush
  int64_t failures = 0;
  std::string batch_tag;
  uint64_t final_flush_seq = 0;
  // Tracking cadence, per batch: shortens while children finish, stretches while none do.
  core::Duration track_interval{};
  core::TimePoint next_track{};
  int track_outstanding = 0;
  bool track_saw_final = false;
  // Parent watch: when a read last found the parent not yet final; launches wait for a fresh
  // one (kParentRecheck) so nothing is launched under a parent that has ended.
  core::TimePoint parent_seen_running{};
  bool parent_read_outstanding = false;
  core::TimePoint finished_steady{};
  int waiters = 0;  // long-polls waiting for a change of this batch
  // Time the batch spent at its own max_running cap with items ready to launch. Those items wait
  // for the batch's children, not for Prefect, so their max_elapsed_s clocks stop meanwhile.
  StartPace pace;
  core::WindowedCounter recent_launches{std::chrono::seconds(5), 5};  // for the pace's base
  Backlog backlog;
  Progress progress;
  // When this process first saw a run of the batch created: the rates of the start pace and of
  // the backlog gate count from there while the batch is younger than their windows.
  core::TimePoint first_launch = core::TimePoint::min();
  bool capped = false;
  core::TimePoint capped_since{};
  core::Duration capped_total{};

  core::Duration capped_time(core::TimePoint now) const {
    return capped_total + (capped ? now - capped_since : core::Duration{});
  }
  void set_capped(bool now_capped, core::TimePoint now) {
    if (now_capped == capped) return;
    if (capped) capped_total += now - capped_since;
    capped = now_capped;
    capped_since = now;
  }
  /// When an item's max_elapsed_s clock started, moved later by the time the batch was capped.
  core::TimePoint retry_clock_start(const Item& item, core::TimePoint now) const {
    return item.first_attempt + (capped_time(now) - item.capped_at_first);
  }

  /// Items waiting to launch or being launched that are held (not counting those the store
  /// holds until they are paged in).
  int64_t held_unlaunched() const {
    return counts[static_cast<int>(core::ItemState::kPending)] +
           counts[static_cast<int>(core::ItemState::kLaunching)] +
           counts[static_cast<int>(core::ItemState::kRetryWait)] - unpaged;
  }
  int64_t running() const {
    return counts[static_cast<int>(core::ItemState::kLaunching)] +
           (spec.track ? counts[static_cast<int>(core::ItemState::kLaunched)] : 0);
  }
  int64_t count(core::ItemState s) const { return counts[static_cast<int>(s)]; }
  /// Whether some of its children are still followed (LAUNCHED or STUCK in a tracked batch).
  bool follows_children() const {
    return spec.track && count(core::ItemState::kLaunched) + count(core::ItemState::kStuck) > 0;
  }
  int64_t done() const {
    int64_t n = 0;
    for (int i = 0; i < core::kItemStateCount; ++i) {
      auto s = static_cast<core::ItemState>(i);
      if (core::is_final(s) || (!spec.track && s == core::ItemState::kLaunched)) n += counts[i];
    }
    return n;
  }
};

}  // namespace floodgate::engine
