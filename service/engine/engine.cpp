#include "engine/engine.h"

#include <utility>

#include "core/uuid.h"
#include "metrics/log.h"

namespace floodgate::engine {

using nlohmann::json;

Engine::Engine(EngineRuntime runtime, EngineOptions options, store::Store& store,
               prefect::HttpClient& http, prefect::Credentials credentials,
               metrics::Metrics& metrics)
    : clock_(runtime.clock),
      timers_(runtime.timers),
      options_(std::move(options)),
      store_(store),
      api_(std::move(credentials), options_.csrf_client_id),
      writer_(store, metrics),
      scheduler_(runtime.clock),
      book_(runtime.clock, runtime.wall, metrics),
      dispatcher_(runtime.clock, runtime.wall, runtime.random, runtime.timers, options_.dispatch,
                  scheduler_, http, api_, metrics),
      resolver_(runtime.clock, runtime.random, book_, scheduler_, dispatcher_, api_, metrics),
      pager_(runtime.timers, store, book_, resolver_, dispatcher_, options_.page_items),
      retries_(runtime.clock, runtime.random, book_, resolver_, dispatcher_, api_, metrics),
      pacer_(runtime.clock, scheduler_, metrics),
      gate_(runtime.clock),
      tracker_(
          runtime.clock, runtime.wall, runtime.random,
          [&random = runtime.random] { return core::new_uuid(random); },
          TrackOptions{options_.track_interval_min, options_.track_interval_max}, book_, resolver_,
          dispatcher_, api_, metrics),
      linker_(runtime.clock, book_, resolver_, retries_, scheduler_, api_),
      launcher_(runtime.clock, options_.use_bulk,
                prefect::BulkLimits{static_cast<size_t>(std::max(1, options_.bulk_size)),
                                    options_.max_body_bytes},
                book_, resolver_, retries_, linker_, tracker_, scheduler_, api_),
      control_ops_(runtime.clock, book_, resolver_, scheduler_, dispatcher_),
      queries_(runtime.clock, runtime.timers, book_),
      flusher_(runtime.clock, runtime.timers,
               FlushOptions{options_.flush_interval, options_.flush_max_items}, book_, writer_),
      gauges_(runtime.clock, runtime.wall, book_, metrics) {
  api_.set_timeout(options_.request_timeout);
  dispatcher_.set_launch_source(&launcher_);
  // The order matters where one change concerns several: counts and the written state first,
  // then readiness and follow-ups, the long-polls last (they see the batch as it ends up).
  book_.add_observer(&gauges_);
  book_.add_observer(&gate_);
  book_.add_observer(&flusher_);
  book_.add_observer(&retries_);
  book_.add_observer(&resolver_);
  book_.add_observer(&pacer_);
  book_.add_observer(&tracker_);
  book_.add_observer(&pager_);
  pacer_.set_resync([this](Batch& b) {
    resolver_.sync_ready(b);
    dispatcher_.dispatch_now();
  });
  tracker_.set_pacer(&pacer_);
  tracker_.set_backlog_gate(&gate_);
  book_.add_observer(&queries_);
}

Engine::~Engine() {
  for (auto* t : {&tick_timer_, &track_timer_, &drain_timer_}) {
    if (*t) timers_.cancel(**t);
  }
}

void Engine::post(std::function<void()> fn) { timers_.post(std::move(fn)); }

StoredBatch read_stored_batch(store::Store& store, store::BatchRecord record) {
  StoredBatch out;
  out.counts = store.count_items(record.id);
  const BatchSpec spec = spec_from_json(json::parse(record.spec_json, nullptr, false));
  std::vector<core::ItemState> held = {core::ItemState::kRetryWait};
  if (spec.track) {
    held.push_back(core::ItemState::kLaunched);
    held.push_back(core::ItemState::kStuck);
  } else if (spec.on_cancel == OnCancel::kCancelChildren && !core::is_final(record.state)) {
    held.push_back(core::ItemState::kLaunched);
  }
  out.held = store.items_in_states(record.id, held, true);
  out.record = std::move(record);
  return out;
}

void Engine::start(bool load_unfinished) {
  if (load_unfinished) {
    for (auto& record : store_.load_unfinished_batches()) {
      load_batch(read_stored_batch(store_, std::move(record)));
    }
  }
  tick();
  schedule_tracking();
  dispatcher_.dispatch_now();
}

void Engine::adopt(StoredBatch stored) {
  if (queries_.has_batch(stored.record.id)) return;
  load_batch(std::move(stored));
  dispatcher_.dispatch_now();
}

int64_t Engine::demand() const {
  int64_t n = 0;
  for (const auto& [k, b] : book_.batches()) {
    if (!core::is_final(b->rec.state) || b->follows_children()) ++n;
  }
  return n;
}

std::vector<std::string> Engine::unfinished_ids() const {
  std::vector<std::string> ids;
  for (const auto& [k, b] : book_.batches()) {
    if (!core::is_final(b->rec.state) || b->follows_children()) ids.push_back(b->rec.id);
  }
  return ids;
}

void Engine::load_batch(StoredBatch stored) {
  BatchSpec spec = spec_from_json(json::parse(stored.record.spec_json, nullptr, false));
  Batch& b = book_.add(std::move(stored.record), std::move(spec));
  book_.set_counts(b, stored.counts);
  // The PENDING items (those in flight when the process stopped too: the store has them so) are
  // paged in from the first on; the others that need memory are held from now.
  b.unpaged = core::is_final(b.rec.state) ? 0 : b.count(core::ItemState::kPending);
  b.page_cursor = b.unpaged > 0 ? 0 : b.rec.total;
  auto to_launch = book_.hold_items(b, stored.held);
  log::info("resumed batch", {{"batch_id", b.rec.id},
                              {"state", std::string(core::to_string(b.rec.state))},
                              {"total", b.rec.total},
                              {"to_launch", b.count(core::ItemState::kPending)}});
  activate(b, to_launch);
}

void Engine::apply_defaults(BatchSpec& spec) const {
  auto& d = spec.deadlines;
  if (!d.start_s) d.start_s = options_.deadlines.start_s;
  if (!d.run_s) d.run_s = options_.deadlines.run_s;
  if (!d.on_deadline) d.on_deadline = options_.deadlines.on_deadline;
  if (!spec.limits.max_backlog) spec.limits.max_backlog = options_.max_backlog;
}

void Engine::add_batch(store::BatchRecord record, BatchSpec spec) {
  Batch& b = book_.add(std::move(record), std::move(spec));
  book_.start_paging(b);
  log::info("batch accepted", {{"batch_id", b.rec.id}, {"total", b.rec.total}});
  activate(b, {});
  dispatcher_.dispatch_now();
}

void Engine::activate(Batch& b, const std::vector<int64_t>& to_launch) {
  book_.announce(b);
  for (int64_t idx : to_launch) resolver_.make_ready(b, idx);
  if (core::is_final(b.rec.state)) return;
  scheduler_.add_batch(b.key, effective_quota(b));
  scheduler_.set_paused(b.key, b.rec.state == core::BatchState::kPaused);
  pager_.refill(b);
  resolver_.sync_ready(b);
  book_.check_finished(b);
}

void Engine::tick() {
  dispatcher_.update_gauges();
  gauges_.update(dispatcher_.gates(), scheduler_);
  flusher_.evict();
  // Pages a read failed to bring (the store was out of reach) are asked for again.
  for (const auto& [key, b] : book_.batches()) pager_.want(*b);
  tick_timer_ = timers_.schedule(clock_.now() + std::chrono::seconds(1), [this] {
    tick_timer_.reset();
    tick();
  });
}

void Engine::schedule_tracking() {
  if (track_timer_ || draining_) return;
  track_timer_ = timers_.schedule(clock_.now() + options_.track_interval_min, [this] {
    track_timer_.reset();
    tracker_.round();
    schedule_tracking();
  });
}

// ---------------------------------------------------------------------------------------------
// Drain

void Engine::drain(std::function<void()> done) {
  draining_ = true;
  drain_done_ = std::move(done);
  if (track_timer_) timers_.cancel(*track_timer_);
  track_timer_.reset();
  queries_.answer_new_at_once();
  dispatcher_.stop_sending([this] { maybe_finish_drain(); });
}

void Engine::maybe_finish_drain() {
  if (!drain_done_ || dispatcher_.in_flight() > 0) return;
  flusher_.flush();
  if (!writer_.caught_up()) {
    // The store is slow or cannot be written: look again shortly instead of blocking this
    // thread, so the drain deadline and a second signal still end the process.
    if (drain_timer_) timers_.cancel(*drain_timer_);
    drain_timer_ = timers_.schedule(clock_.now() + std::chrono::milliseconds(50), [this] {
      drain_timer_.reset();
      maybe_finish_drain();
    });
    return;
  }
  if (tick_timer_) timers_.cancel(*tick_timer_);
  tick_timer_.reset();
  flusher_.stop();
  // Answer long-polls now, while the listener can still carry the answers.
  queries_.answer_all();
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

// ---------------------------------------------------------------------------------------------
// Health and status

bool Engine::ready(std::string* why) const {
  if (dispatcher_.breaker_open()) {
    if (why) *why = "circuit breaker open: Prefect is failing; probing /health";
    return false;
  }
  if (draining_) {
    if (why) *why = "draining";
    return false;
  }
  if (!writer_.healthy(why)) return false;
  if (writer_.queued() > 100) {
    if (why) *why = "store writes are falling behind";
    return false;
  }
  return true;
}

json Engine::status_json() const {
  int active = 0;
  for (const auto& [k, b] : book_.batches()) active += core::is_final(b->rec.state) ? 0 : 1;
  json j = dispatcher_.status_json();
  j["bulk"] = launcher_.bulk_supported();
  j["active_batches"] = active;
  j["ready_items"] = gauges_.ready_items();
  j["batches"] = batch_views();
  return j;
}

// ---------------------------------------------------------------------------------------------
// Chunked appends

ControlAnswer Engine::may_append(const std::string& id) const {
  const Batch* b = book_.find(id);
  if (b == nullptr) return {ControlResult::kNotFound, "no batch with id " + id};
  if (core::is_final(b->rec.state)) {
    return {ControlResult::kConflict,
            "batch is already " + std::string(core::to_string(b->rec.state)) +
                "; runs can be appended only to a batch that has not ended"};
  }
  if (b->rec.sealed) {
    return {ControlResult::kConflict,
            "batch is sealed: it takes no more runs (create it with \"sealed\": false and "
            "seal it after the last chunk)"};
  }
  return {};
}

bool Engine::append_items(const std::string& id, int64_t first_index, int64_t count) {
  Batch* b = book_.find(id);
  if (b == nullptr) return false;
  book_.append_items(*b, first_index, count);
  pager_.want(*b);
  return true;
}

bool Engine::seal(const std::string& id) {
  Batch* b = book_.find(id);
  if (b == nullptr) return false;
  book_.seal(*b);
  return true;
}

}  // namespace floodgate::engine
