#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "core/random.h"
#include "core/states.h"
#include "core/timer_queue.h"
#include "engine/backlog_gate.h"
#include "engine/batch_book.h"
#include "engine/batch_control.h"
#include "engine/batch_queries.h"
#include "engine/batch_spec.h"
#include "engine/batch_view.h"
#include "engine/change_flusher.h"
#include "engine/child_tracker.h"
#include "engine/deployment_resolver.h"
#include "engine/dispatcher.h"
#include "engine/engine_gauges.h"
#include "engine/item_pager.h"
#include "engine/launch_retries.h"
#include "engine/launcher.h"
#include "engine/start_pacer.h"
#include "engine/store_writer.h"
#include "engine/subflow_linker.h"
#include "metrics/metrics.h"
#include "prefect/http_client.h"
#include "prefect/prefect_api.h"
#include "store/store.h"

namespace floodgate::engine {

/// A batch as the store holds it, read (off the engine's thread) to be resumed: its record, item
/// counts, and the items that must be held from the start (waiting for a retry, or children
/// followed or to be cancelled); the PENDING ones are paged in later.
struct StoredBatch {
  store::BatchRecord record;
  std::array<int64_t, core::kItemStateCount> counts{};
  std::vector<store::ItemRecord> held;
};
/// Reads what resuming batch `record` needs from the store (any thread).
StoredBatch read_stored_batch(store::Store& store, store::BatchRecord record);

/// Global limits and knobs of the engine.
struct EngineOptions {
  DispatchOptions dispatch;  // the global limits toward Prefect
  std::chrono::milliseconds request_timeout{30000};
  bool use_bulk = true;
  int bulk_size = 100;
  size_t max_body_bytes = 4 * 1024 * 1024;  // a bulk create's body, packed by bytes as well
  std::chrono::milliseconds flush_interval{50};
  // Items of a batch read from the store at a time, when fewer than this many held wait to
  // launch (ItemPager): what a batch holds in memory, besides its children in flight.
  int page_items = 2000;
  size_t flush_max_items = 5000;
  std::chrono::milliseconds track_interval_min{1000};
  std::chrono::milliseconds track_interval_max{15000};
  // Deadlines a batch that sets none gets (0: none), and what is done past them.
  DeadlineSpec deadlines{0.0, 0.0, OnDeadline::kReport};
  // The max_backlog a batch that sets none gets; unset: derived from the workers' start rate.
  std::optional<int> max_backlog;
  std::string csrf_client_id = "floodgate";
};

/// Where the engine reads the time and randomness from, and how it waits: real clocks and
/// Boost.Asio timers in production, a simulated clock and a manual queue in tests.
struct EngineRuntime {
  core::Clock& clock;
  core::WallClock& wall;
  core::Random& random;
  core::TimerQueue& timers;
};

/// The engine's driver and facade: wires its parts (book, resolver, dispatcher, launcher,
/// linker, tracker, control, queries, flusher, gauges) on one thread (the one that runs the
/// runtime's timer queue), owns the periodic timers and the drain.
class Engine {
 public:
  using ControlResult = engine::ControlResult;
  using ControlAnswer = engine::ControlAnswer;

  Engine(EngineRuntime runtime, EngineOptions options, store::Store& store,
         prefect::HttpClient& http, prefect::Credentials credentials, metrics::Metrics& metrics);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Runs `fn` on the engine's thread. Everything below that is not marked thread-safe must be
  /// called there.
  void post(std::function<void()> fn);

  /// Loads unfinished batches from the store (unless replicas share the store: then batches
  /// come by adopt()) and starts working (engine thread).
  void start(bool load_unfinished = true);
  /// Stops sending new requests, waits for those in flight (bounded by the request timeout),
  /// writes everything to the store, then calls `done` (engine thread).
  void drain(std::function<void()> done);

  /// Fills what a new batch's spec leaves unset with the server's defaults (its deadlines, and
  /// its max_backlog when the server sets a number), so they are stored with it and a restart
  /// with other defaults does not change it. Any thread.
  void apply_defaults(BatchSpec& spec) const;
  /// Takes a batch just committed to the store, its items all PENDING there (engine thread);
  /// they are read from the store as their turn to launch comes.
  void add_batch(store::BatchRecord record, BatchSpec spec);

  // --- Work sharing between replicas (engine thread) ---
  /// Takes a batch claimed from a replica that died (or left), as read from the store, and
  /// resumes it as after a restart; nothing when it is held already.
  void adopt(StoredBatch stored);
  /// Batches held that need Prefect: not final, or final with children still followed.
  int64_t demand() const;
  /// Ids of the batches held that need an owner: not final, or final with children still
  /// followed.
  std::vector<std::string> unfinished_ids() const;
  /// True once drain() was called: takes no batch of another replica any more.
  bool draining() const { return draining_; }
  /// This replica's part of the global budget and the most cautious replica's limit (see
  /// Dispatcher::set_share).
  void set_budget_share(double share, double peers_limit_ratio) {
    dispatcher_.set_share(share, peers_limit_ratio);
  }
  double limit_ratio() const { return dispatcher_.limit_ratio(); }

  // --- Reads and control, engine thread ---
  bool has_batch(const std::string& id) const { return queries_.has_batch(id); }
  /// The batch as JSON for the API, or null when unknown to the engine.
  nlohmann::json batch_json(const std::string& id) const { return queries_.batch_json(id); }
  using ItemCounts = std::array<int64_t, core::kItemStateCount>;
  /// JSON for a batch not held in memory (finished before this process started), from its record
  /// and item counts the caller read from the store (any thread).
  static nlohmann::json stored_batch_json(const store::BatchRecord& record,
                                          const ItemCounts& counts) {
    return BatchQueries::stored_batch_json(record, counts);
  }
  int64_t batch_version(const std::string& id) const { return queries_.batch_version(id); }
  /// Calls `fn(batch_json)` once: when the batch's version exceeds `after_version`, or after
  /// `wait` (null JSON when the batch is unknown).
  void wait_for_change(const std::string& id, int64_t after_version, std::chrono::milliseconds wait,
                       std::function<void(nlohmann::json)> fn) {
    queries_.wait_for_change(id, after_version, wait, std::move(fn));
  }
  /// A page of a batch's runs: `stored`, as the store listed them (index > `after`, in `state`
  /// when given, up to `limit` + 1), with what the engine holds newer when it holds the batch.
  std::vector<RunView> overlay_runs(const std::string& id, std::optional<core::ItemState> state,
                                    int64_t after, int limit, std::vector<RunView> stored) const {
    return queries_.overlay_runs(id, state, after, limit, std::move(stored));
  }
  /// True when the store has every change handed to its writer so far (any thread).
  bool store_caught_up() const { return writer_.caught_up(); }
  /// How many items of batch `id` are held in memory (the rest are in the store only); 0 when
  /// the batch is not held.
  size_t held_items(const std::string& id) const {
    const Batch* b = book_.find(id);
    return b == nullptr ? 0 : b->items.size();
  }
  /// Brings a batch that ended before this process started back into memory (for redrive),
  /// from its record and item counts as the caller read them from the store; nothing when it
  /// is held already.
  void hold(store::BatchRecord record, const ItemCounts& counts) {
    control_ops_.hold(std::move(record), counts);
  }
  /// Held batches after `after_seq` (optionally only in `state`), as (seq, JSON), by seq.
  std::vector<std::pair<int64_t, nlohmann::json>> held_batches(
      std::optional<core::BatchState> state, int64_t after_seq) const {
    return queries_.held_batches(state, after_seq);
  }

  ControlAnswer cancel(const std::string& id, std::optional<OnCancel> on_cancel) {
    return control_ops_.cancel(id, on_cancel);
  }
  ControlAnswer pause(const std::string& id) { return control_ops_.pause(id); }
  ControlAnswer resume(const std::string& id) { return control_ops_.resume(id); }
  /// kReadFirst: read `needs` from the store off this thread, then call again with what was read.
  ControlAnswer redrive(const std::string& id, const RedriveReads& reads = {}) {
    return control_ops_.redrive(id, reads);
  }
  /// Applies new limits/tolerance (already validated, merged into a full spec).
  ControlAnswer update_spec(const std::string& id, const BatchSpec& spec) {
    return control_ops_.update_spec(id, spec);
  }
  const BatchSpec* spec_of(const std::string& id) const { return queries_.spec_of(id); }

  /// Health for /readyz: false while the breaker is open, the engine drains or the store lags.
  bool ready(std::string* why) const;
  nlohmann::json status_json() const;
  /// Launch rate, completion rate, ETA and running children of each active batch, by id.
  nlohmann::json batch_views() const { return gauges_.batch_views(); }

  // --- Chunked appends, engine thread ---
  /// Whether runs may be appended to batch `id` now: kNotFound when it is not held, kConflict
  /// (with why) when it ended or is sealed.
  ControlAnswer may_append(const std::string& id) const;
  /// Takes `count` runs just appended to a held batch in the store (indexes `first_index` on)
  /// and puts them to work through the batch's limits; false when the batch is not held.
  bool append_items(const std::string& id, int64_t first_index, int64_t count);
  /// Marks a held batch sealed (stored so already), so that it may finish; false when not held.
  bool seal(const std::string& id);

 private:
  void load_batch(StoredBatch stored);
  /// Puts a batch just held (and its items to launch) to work.
  void activate(Batch& b, const std::vector<int64_t>& to_launch);
  void tick();
  void schedule_tracking();
  void maybe_finish_drain();

  core::Clock& clock_;
  core::TimerQueue& timers_;
  EngineOptions options_;
  store::Store& store_;
  prefect::PrefectApi api_;
  StoreWriter writer_;
  core::LaunchScheduler scheduler_;
  BatchBook book_;
  Dispatcher dispatcher_;
  DeploymentResolver resolver_;
  ItemPager pager_;
  LaunchRetries retries_;
  StartPacer pacer_;
  BacklogGate gate_;
  ChildTracker tracker_;
  SubflowLinker linker_;
  Launcher launcher_;
  BatchControl control_ops_;
  BatchQueries queries_;
  ChangeFlusher flusher_;
  EngineGauges gauges_;

  std::optional<core::TimerQueue::Id> tick_timer_;
  std::optional<core::TimerQueue::Id> track_timer_;
  std::optional<core::TimerQueue::Id> drain_timer_;
  bool draining_ = false;
  std::function<void()> drain_done_;
};

}  // namespace floodgate::engine
