#pragma once

#include <array>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/backoff.h"
#include "core/circuit_breaker.h"
#include "core/clock.h"
#include "core/concurrency_limit.h"
#include "core/contention_pause.h"
#include "core/global_backoff.h"
#include "core/launch_scheduler.h"
#include "core/random.h"
#include "core/retry_budget.h"
#include "core/states.h"
#include "core/timer_queue.h"
#include "core/token_bucket.h"
#include "engine/batch_spec.h"
#include "engine/batch_view.h"
#include "engine/store_writer.h"
#include "metrics/metrics.h"
#include "prefect/http_client.h"
#include "prefect/prefect_api.h"
#include "prefect/transient.h"
#include "store/store.h"

namespace floodgate::engine {

struct Batch;
struct Item;

/// Global limits and knobs of the engine.
struct EngineOptions {
  double rate = 0;   // requests per second to Prefect; 0 = no token bucket
  double burst = 0;  // tokens; 0 = max(1, rate)
  int max_in_flight = 256;
  bool adaptive = true;
  std::string limit_algorithm = "gradient";  // when adaptive: "gradient" or "aimd"
  int min_in_flight = 1;
  int initial_in_flight = 16;
  std::chrono::milliseconds request_timeout{30000};
  bool use_bulk = true;
  int bulk_size = 100;
  double retry_budget_ratio = 0.2;
  double retry_budget_min_per_s = 10;
  std::chrono::milliseconds flush_interval{50};
  size_t flush_max_items = 5000;
  std::chrono::milliseconds track_interval_min{1000};
  std::chrono::milliseconds track_interval_max{15000};
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

/// Drives batches from PENDING to their final state on a single thread (the one that runs the
/// runtime's timer queue): picks what to send through the core's limits, sends it with the
/// HttpClient, takes answers back on its own thread, and persists changes in batched transactions.
class Engine {
 public:
  Engine(EngineRuntime runtime, EngineOptions options, store::Store& store,
         prefect::HttpClient& http, prefect::Credentials credentials, metrics::Metrics& metrics);
  ~Engine();

  /// Runs `fn` on the engine's thread. Everything below that is not marked thread-safe must be
  /// called there.
  void post(std::function<void()> fn);

  /// Loads unfinished batches from the store and starts working (engine thread).
  void start();
  /// Stops sending new requests, waits for those in flight (bounded by the request timeout),
  /// writes everything to the store, then calls `done` (engine thread).
  void drain(std::function<void()> done);

  /// Takes a batch just committed to the store (engine thread); `run_specs[i]` is item i's spec
  /// JSON (a run may name its own deployment).
  void add_batch(store::BatchRecord record, BatchSpec spec, std::vector<std::string> run_specs);

  // --- Reads and control, engine thread ---
  bool has_batch(const std::string& id) const;
  /// The batch as JSON for the API, or null when unknown to the engine.
  nlohmann::json batch_json(const std::string& id) const;
  /// JSON for a batch not held in memory (finished before this process started).
  nlohmann::json stored_batch_json(const store::BatchRecord& record);
  using ItemCounts = std::array<int64_t, core::kItemStateCount>;
  /// The same from item counts the caller read from the store (any thread).
  static nlohmann::json stored_batch_json(const store::BatchRecord& record,
                                          const ItemCounts& counts);
  int64_t batch_version(const std::string& id) const;
  /// Calls `fn(batch_json)` once: when the batch's version exceeds `after_version`, or after
  /// `wait` (null JSON when the batch is unknown).
  void wait_for_change(const std::string& id, int64_t after_version, std::chrono::milliseconds wait,
                       std::function<void(nlohmann::json)> fn);
  /// Items of a held batch; nullopt when the batch's items are not in memory.
  std::optional<std::vector<RunView>> list_runs(const std::string& id,
                                                std::optional<core::ItemState> state, int64_t after,
                                                int limit) const;

  /// Brings a batch that ended before this process started back into memory (for redrive),
  /// from its record and item counts as the caller read them from the store; nothing when it
  /// is held already.
  void hold(store::BatchRecord record, const ItemCounts& counts);
  /// Held batches after `after_seq` (optionally only in `state`), as (seq, JSON), by seq.
  std::vector<std::pair<int64_t, nlohmann::json>> held_batches(
      std::optional<core::BatchState> state, int64_t after_seq) const;

  enum class ControlResult { kOk, kNotFound, kConflict };
  struct ControlAnswer {
    ControlResult result = ControlResult::kOk;
    std::string message;
  };
  ControlAnswer cancel(const std::string& id, std::optional<std::string> on_cancel);
  ControlAnswer pause(const std::string& id);
  ControlAnswer resume(const std::string& id);
  ControlAnswer redrive(const std::string& id);
  /// Applies new limits/tolerance (already validated, merged into a full spec).
  ControlAnswer update_spec(const std::string& id, const BatchSpec& spec);
  const BatchSpec* spec_of(const std::string& id) const;

  /// Health for /readyz: false while the breaker is open or the store lags badly.
  bool ready(std::string* why) const;
  nlohmann::json status_json() const;
  /// Launch rate, completion rate, ETA and running children of each active batch, by id.
  nlohmann::json batch_views() const;

 private:
  enum class ReqKind {
    kResolve,
    kCreate,
    kCreateBulk,
    kTrack,
    kCancelChild,
    kCsrf,
    kProbe,
    kPlaceholder,
    kLookup
  };
  struct Pending;

  // Scheduling.
  void pump();
  void arm_wake(core::TimePoint when);
  void on_wake();
  int effective_limit() const;
  static int sample_class(const Pending& p);
  // A ready-queue entry whose item has moved on since it was queued (in a request, launched or
  // final): skipped and dropped, not sent.
  static bool stale_in_ready(const Item& item);
  bool send_control();
  bool send_launch();
  void send(ReqKind kind, prefect::HttpRequest request, std::shared_ptr<Pending> pending);
  void on_response(std::shared_ptr<Pending> pending, prefect::HttpResponse response);
  void handle_resolve(Pending& p, const prefect::HttpResponse& r, const prefect::Classification& c);
  void handle_create(Pending& p, const prefect::HttpResponse& r, const prefect::Classification& c);
  void send_placeholder(Batch& b, const std::shared_ptr<Pending>& p, int64_t index);
  void handle_placeholder(Pending& p, const prefect::HttpResponse& r,
                          const prefect::Classification& c);
  void handle_bulk(Pending& p, const prefect::HttpResponse& r, const prefect::Classification& c);
  void handle_track(Pending& p, const prefect::HttpResponse& r, const prefect::Classification& c);
  void queue_parent_read(Batch& b);
  /// A read of the parent: `run` null when it failed or the parent was not found.
  void parent_read(Batch& b, const prefect::FlowRunInfo* run);
  void handle_cancel_child(Pending& p, const prefect::HttpResponse& r,
                           const prefect::Classification& c);
  /// Looks the runs of items whose create may have succeeded unseen up by idempotency key
  /// before they are reported LAUNCH_FAILED (`failure`) or SKIPPED (batch final): a run that
  /// exists is followed as launched.
  void queue_lookup(Batch& b, const std::vector<int64_t>& indexes, const std::string& failure);
  void handle_lookup(Pending& p, const prefect::HttpResponse& r, const prefect::Classification& c);
  static core::RetryPolicy retry_policy(const BatchSpec& spec);
  /// Sends a control request (resolve, cancel) again after `delay`.
  void requeue_control_after(const Pending& p, core::Duration delay);
  /// `charge`: the retry takes a retry-budget token (false for the other runs of a failed bulk
  /// request, which the first one pays for).
  void retry_or_fail(Batch& b, int64_t index, const prefect::Classification& c, bool charge = true);
  void requeue_without_attempt(Batch& b, int64_t index, core::Duration delay);
  void make_ready(Batch& b, int64_t index);
  void sync_ready(Batch& b);
  void schedule_tracking();

  // State changes.
  void set_state(Batch& b, Item& item, int64_t index, core::ItemState to);
  void launched(Batch& b, int64_t index, const std::string& flow_run_id, bool existing);
  void launch_failed(Batch& b, int64_t index, const std::string& message);
  void touch(Batch& b);
  void check_finished(Batch& b);
  void finish(Batch& b, core::BatchState state);
  void skip_unlaunched(Batch& b);
  void queue_cancel_children(Batch& b);
  void queue_cancel_child(Batch& b, const std::string& flow_run_id);
  void set_batch_state(Batch& b, core::BatchState s);
  void mark_dirty(Batch& b, int64_t index);
  void flush();
  void arm_flush();
  void tick();
  void update_gauges();
  void notify_waiters(Batch& b);
  void load_batch(store::BatchRecord record);
  void init_batch(Batch& b, std::vector<std::string> run_specs,
                  const std::vector<store::ItemRecord>* stored);
  void activate(Batch& b);
  core::BatchQuota quota_of(const BatchSpec& spec) const;
  std::string idempotency_key(const Batch& b, int64_t index, const Item& item) const;
  Batch* find(const std::string& id);
  const Batch* find(const std::string& id) const;
  void maybe_finish_drain();

  core::Clock& clock_;
  core::WallClock& wall_;
  core::Random& random_;
  core::TimerQueue& timers_;
  EngineOptions options_;
  store::Store& store_;
  prefect::HttpClient& http_;
  metrics::Metrics& metrics_;
  prefect::PrefectApi api_;
  StoreWriter writer_;

  core::TokenBucket bucket_;
  std::unique_ptr<core::ConcurrencyLimit> limit_;
  core::GlobalBackoff backoff_;
  core::RetryBudget budget_;
  core::CircuitBreaker breaker_;
  core::ContentionPause contention_;
  prefect::OnceFilter unclassified_seen_;
  core::LaunchScheduler scheduler_;

  std::unordered_map<uint64_t, std::unique_ptr<Batch>> batches_;
  std::unordered_map<std::string, uint64_t> by_id_;
  uint64_t next_key_ = 1;

  struct RetryEntry {
    core::TimePoint due;
    uint64_t batch;
    int64_t index;
    bool charge = true;     // false: a re-send at no cost (bulk fallback, CSRF, stale connection)
    bool deferred = false;  // already held back once by the retry budget
    bool operator>(const RetryEntry& o) const { return due > o.due; }
  };
  std::priority_queue<RetryEntry, std::vector<RetryEntry>, std::greater<>> retries_;
  std::deque<std::shared_ptr<Pending>> control_;  // resolves, tracking reads, cancels
  bool csrf_in_flight_ = false;
  bool probe_in_flight_ = false;
  bool bulk_supported_ = true;
  int in_flight_ = 0;
  int retry_credit_ = 0;  // items already paid for by a retry-budget token
  int64_t ready_total_ = 0;

  std::optional<core::TimerQueue::Id> wake_timer_;
  std::optional<core::TimePoint> wake_at_;
  std::optional<core::TimerQueue::Id> flush_timer_;
  std::optional<core::TimerQueue::Id> tick_timer_;
  std::optional<core::TimerQueue::Id> track_timer_;

  std::vector<std::pair<uint64_t, int64_t>> dirty_items_;
  std::vector<uint64_t> dirty_batches_;

  bool draining_ = false;
  std::function<void()> drain_done_;
  std::shared_ptr<bool> alive_;

  struct RequestMetrics {
    prometheus::Histogram* latency;
    std::array<prometheus::Counter*, 6> by_class;  // error,1xx..5xx
  };
  std::unordered_map<int, RequestMetrics> request_metrics_;
  RequestMetrics& request_metrics(ReqKind kind);
};

}  // namespace floodgate::engine
