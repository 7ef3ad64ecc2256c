#include "engine/engine.h"

#include <algorithm>
#include <bit>

#include "core/uuid.h"
#include "engine/batch.h"
#include "engine/batch_view.h"
#include "metrics/log.h"

namespace floodgate::engine {

using core::BatchState;
using core::ItemState;
using nlohmann::json;

namespace {

core::Duration ms(int64_t n) { return std::chrono::milliseconds(n); }

// A batch under a parent launches only while a read of the parent at most this old found it
// not yet final.
constexpr std::chrono::seconds kParentRecheck{5};
// The longest tracking interval while a single read covers the batch's running children.
constexpr std::chrono::seconds kOnePageTrackMax{5};

bool prefect_final(const std::string& type) {
  return type == "COMPLETED" || type == "FAILED" || type == "CRASHED" || type == "CANCELLED";
}

const char* endpoint_name(int kind) {
  static constexpr const char* kNames[] = {
      "read_deployment", "create_flow_run", "create_flow_run_bulk", "filter_flow_runs", "set_state",
      "csrf_token",      "health",          "create_task_run",      "filter_flow_runs"};
  return kNames[kind];
}

}  // namespace

struct Engine::Pending {
  ReqKind kind = ReqKind::kCreate;
  uint64_t batch = 0;
  std::vector<int64_t> indexes;
  int slot = -1;
  std::vector<std::string> ids;  // tracking: flow run ids, aligned with indexes
  std::string child_id;          // cancel: the flow run
  bool parent_only = false;      // tracking: a read of the parent alone, before launches
  std::string transition_id;
  std::string failure;  // lookup: the error to report for runs that do not exist
  int attempts = 0;
  core::TimePoint sent{};
  core::TimePoint first_sent{};
};

Engine::Engine(EngineRuntime runtime, EngineOptions options, store::Store& store,
               prefect::HttpClient& http, prefect::Credentials credentials,
               metrics::Metrics& metrics)
    : clock_(runtime.clock),
      wall_(runtime.wall),
      random_(runtime.random),
      timers_(runtime.timers),
      options_(std::move(options)),
      store_(store),
      http_(http),
      metrics_(metrics),
      api_(std::move(credentials), options_.csrf_client_id),
      writer_(store, metrics),
      bucket_(clock_, options_.rate,
              options_.rate > 0 ? std::max(1.0, options_.burst > 0 ? options_.burst : options_.rate)
                                : 0),
      limit_(options_.adaptive
                 ? core::make_limit(options_.limit_algorithm, options_.initial_in_flight,
                                    options_.min_in_flight, options_.max_in_flight)
                 : core::make_limit("fixed", options_.max_in_flight, options_.max_in_flight,
                                    options_.max_in_flight)),
      backoff_(clock_),
      budget_(clock_, options_.retry_budget_ratio, options_.retry_budget_min_per_s),
      breaker_(clock_, random_, core::CircuitBreaker::Options{}),
      scheduler_(clock_),
      alive_(std::make_shared<bool>(true)) {
  api_.set_timeout(options_.request_timeout);
  bulk_supported_ = options_.use_bulk;
}

Engine::~Engine() {
  *alive_ = false;
  for (auto* t : {&wake_timer_, &flush_timer_, &tick_timer_, &track_timer_}) {
    if (*t) timers_.cancel(**t);
  }
  for (auto& [key, b] : batches_) {
    for (auto& w : b->waiters) timers_.cancel(w->timer);
  }
}

void Engine::post(std::function<void()> fn) { timers_.post(std::move(fn)); }

Batch* Engine::find(const std::string& id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : batches_.at(it->second).get();
}
const Batch* Engine::find(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : batches_.at(it->second).get();
}

// ---------------------------------------------------------------------------------------------
// Start-up and batches

void Engine::start() {
  for (auto& record : store_.load_unfinished_batches()) load_batch(std::move(record));
  tick();
  schedule_tracking();
  pump();
}

void Engine::load_batch(store::BatchRecord record) {
  BatchSpec spec = spec_from_json(json::parse(record.spec_json, nullptr, false));
  auto stored = store_.load_items(record.id, true);
  auto b = std::make_unique<Batch>();
  b->key = next_key_++;
  b->rec = std::move(record);
  b->spec = std::move(spec);
  Batch& ref = *b;
  by_id_[ref.rec.id] = ref.key;
  batches_[ref.key] = std::move(b);
  init_batch(ref, {}, &stored);
  log::info("resumed batch", {{"batch_id", ref.rec.id},
                              {"state", std::string(core::to_string(ref.rec.state))},
                              {"total", ref.rec.total},
                              {"to_launch", ref.counts[static_cast<int>(ItemState::kPending)]}});
  activate(ref);
}

void Engine::add_batch(store::BatchRecord record, BatchSpec spec,
                       std::vector<std::string> run_specs) {
  auto b = std::make_unique<Batch>();
  b->key = next_key_++;
  b->rec = std::move(record);
  b->spec = std::move(spec);
  Batch& ref = *b;
  by_id_[ref.rec.id] = ref.key;
  batches_[ref.key] = std::move(b);
  init_batch(ref, std::move(run_specs), nullptr);
  log::info("batch accepted", {{"batch_id", ref.rec.id}, {"total", ref.rec.total}});
  activate(ref);
  pump();
}

void Engine::init_batch(Batch& b, std::vector<std::string> run_specs,
                        const std::vector<store::ItemRecord>* stored) {
  b.batch_tag = "floodgate-batch:" + b.rec.id;
  const size_t n = stored ? stored->size() : run_specs.size();
  b.items.resize(n);
  std::unordered_map<std::string, uint16_t> slot_of;
  auto slot_for = [&](const std::string& text) -> uint16_t {
    auto it = slot_of.find(text);
    if (it != slot_of.end()) return it->second;
    DeploymentSlot s;
    s.text = text;
    auto ref = prefect::parse_deployment_ref(text);
    if (ref) {
      s.ref = *ref;
    } else {
      s.state = DeploymentSlot::State::kFailed;
      s.error = "deployment '" + text + "' is neither \"flow/deployment\" nor an id";
    }
    b.slots.push_back(std::move(s));
    auto idx = static_cast<uint16_t>(b.slots.size() - 1);
    slot_of.emplace(text, idx);
    return idx;
  };
  slot_for(b.spec.deployment);
  std::vector<int64_t> to_launch;
  for (size_t i = 0; i < n; ++i) {
    Item& item = b.items[i];
    if (stored) {
      const auto& rec = (*stored)[i];
      item.state = rec.state;
      item.attempts = rec.attempts;
      item.flow_run_id = rec.flow_run_id;
      item.flow_run_state = rec.flow_run_state;
      item.last_error = rec.last_error;
      if (!rec.detail_json.empty()) {
        json d = json::parse(rec.detail_json, nullptr, false);
        if (d.is_object()) {
          item.relaunches = d.value("relaunches", 0);
          if (d.contains("earlier_runs")) item.earlier_runs = d["earlier_runs"];
          item.parent_task_run_id = d.value("parent_task_run_id", "");
          item.unavailable = d.value("transient_attempts", 0);
        }
      }
      if (item.state == ItemState::kLaunching || item.state == ItemState::kRetryWait) {
        // In flight or waiting when the process stopped: send again with the same key.
        item.state = ItemState::kPending;
      }
      if (item.state == ItemState::kPending) item.spec = rec.spec_json;
      // Steady time does not survive a restart: max_elapsed_s counts again from now.
      item.first_attempt = clock_.now();
      if (!rec.detail_json.empty() && rec.detail_json.find("\"waited_s\"") != std::string::npos) {
        json d = json::parse(rec.detail_json, nullptr, false);
        if (d.is_object() && d["waited_s"].is_number()) {
          item.settled = item.first_attempt + core::from_seconds(d["waited_s"].get<double>());
        }
      }
    } else {
      item.spec = std::move(run_specs[i]);
    }
    if (item.state == ItemState::kPending && !item.spec.empty()) {
      // Most runs use the batch's deployment; only look inside specs that override it.
      if (item.spec.find("\"deployment\"") != std::string::npos) {
        json j = json::parse(item.spec, nullptr, false);
        if (j.is_object() && j.contains("deployment") && j["deployment"].is_string()) {
          item.slot = slot_for(j["deployment"].get<std::string>());
        }
      }
      to_launch.push_back(static_cast<int64_t>(i));
    }
    b.counts[static_cast<int>(item.state)] += 1;
    if (core::is_failure(item.state)) b.failures += 1;
  }
  for (int i = 0; i < core::kItemStateCount; ++i) {
    metrics_.items(static_cast<ItemState>(i)).Increment(static_cast<double>(b.counts[i]));
  }
  for (int64_t idx : to_launch) make_ready(b, idx);
}

void Engine::activate(Batch& b) {
  metrics_.batches(b.rec.state).Increment();
  if (core::is_final(b.rec.state)) return;
  scheduler_.add_batch(b.key, quota_of(b.spec));
  scheduler_.set_paused(b.key, b.rec.state == BatchState::kPaused);
  sync_ready(b);
  check_finished(b);
}

core::BatchQuota Engine::quota_of(const BatchSpec& spec) const {
  core::BatchQuota q;
  q.priority = spec.priority;
  q.max_in_flight = spec.limits.max_in_flight.value_or(0);
  q.launches_per_second = spec.limits.launches_per_second.value_or(0);
  q.burst = spec.limits.burst.value_or(0);
  return q;
}

std::string Engine::idempotency_key(const Batch& b, int64_t index, const Item& item) const {
  std::string key;
  if (item.spec.find("\"idempotency_key\"") != std::string::npos) {
    json j = json::parse(item.spec, nullptr, false);
    if (j.is_object() && j.contains("idempotency_key") && j["idempotency_key"].is_string()) {
      key = j["idempotency_key"].get<std::string>();
    }
  }
  if (key.empty()) key = "floodgate:" + b.rec.id + ":" + std::to_string(index);
  if (item.relaunches > 0) key += ":r" + std::to_string(item.relaunches);
  return key;
}

// ---------------------------------------------------------------------------------------------
// Readiness

void Engine::make_ready(Batch& b, int64_t index) {
  Item& item = b.items[index];
  DeploymentSlot& slot = b.slots[item.slot];
  switch (slot.state) {
    case DeploymentSlot::State::kResolved:
      b.ready.push_back(index);
      break;
    case DeploymentSlot::State::kFailed:
      launch_failed(b, index, slot.error);
      return;
    case DeploymentSlot::State::kUnresolved: {
      slot.state = DeploymentSlot::State::kResolving;
      auto p = std::make_shared<Pending>();
      p->kind = ReqKind::kResolve;
      p->batch = b.key;
      p->slot = item.slot;
      control_.push_back(std::move(p));
      [[fallthrough]];
    }
    case DeploymentSlot::State::kResolving:
      slot.waiting.push_back(index);
      break;
  }
  sync_ready(b);
}

void Engine::sync_ready(Batch& b) {
  if (!scheduler_.has_batch(b.key)) return;
  int64_t ready = b.parent_read_outstanding ? 0 : static_cast<int64_t>(b.ready.size());
  if (b.spec.limits.max_running) {
    // Launch only while fewer than max_running children are not yet final.
    ready =
        std::min<int64_t>(ready, std::max<int64_t>(0, *b.spec.limits.max_running - b.running()));
  }
  scheduler_.set_ready(b.key, ready);
}

// ---------------------------------------------------------------------------------------------
// The dispatch loop

// Requests of one kind and of like size (runs in a bulk create, ids in a read) take like
// times; the adaptive limit compares each answer with the floor of its class.
int Engine::sample_class(const Pending& p) {
  const int kind = static_cast<int>(p.kind);
  if (p.kind != ReqKind::kCreateBulk && p.kind != ReqKind::kTrack) return kind * 8;
  const auto n = static_cast<uint64_t>(std::max<size_t>(1, p.indexes.size()));
  const int size_class = std::min(7, static_cast<int>(std::bit_width(n)) - 1);  // 1, 2-3, 4-7…
  return kind * 8 + size_class;
}

int Engine::effective_limit() const {
  double limit = limit_->limit() * backoff_.resume_fraction();
  // Half-open trials go one at a time: two at once can lose to each other on a server that
  // serialises writes (SQLite), and the breaker would reopen for a race it caused.
  if (breaker_.is_half_open()) limit = 1.0;
  return std::max(1, static_cast<int>(limit));
}

void Engine::arm_wake(core::TimePoint when) {
  if (wake_at_ && *wake_at_ <= when) return;
  wake_at_ = when;
  if (wake_timer_) timers_.cancel(*wake_timer_);
  std::weak_ptr<bool> alive = alive_;
  wake_timer_ = timers_.schedule(when, [this, alive] {
    if (alive.expired()) return;
    wake_at_.reset();
    wake_timer_.reset();
    on_wake();
  });
}

void Engine::on_wake() { pump(); }

void Engine::pump() {
  const auto now = clock_.now();
  // Retries that are due become ready, within the retry budget.
  while (!retries_.empty() && retries_.top().due <= now) {
    RetryEntry e = retries_.top();
    retries_.pop();
    auto it = batches_.find(e.batch);
    if (it == batches_.end()) continue;
    Batch& b = *it->second;
    if (core::is_final(b.rec.state) || !b.items_loaded) continue;
    Item& item = b.items[e.index];
    if (item.state != ItemState::kRetryWait || item.in_request) continue;
    // The budget counts requests: one retry token pays for as many items as one request
    // carries, so a failed bulk create costs one retry, not a hundred.
    if (e.charge && retry_credit_ == 0) {
      if (!budget_.try_acquire_retry()) {
        // Counted once per retry, however many times it is looked at again.
        if (!e.deferred) metrics_.retries_denied_by_budget().Increment();
        retries_.push({now + ms(250), e.batch, e.index, true, true});
        break;
      }
      retry_credit_ = bulk_supported_ ? std::max(1, options_.bulk_size) : 1;
    }
    if (e.charge) retry_credit_ -= 1;
    make_ready(b, e.index);
  }

  while (!draining_) {
    if (breaker_.state() == core::CircuitBreaker::State::kOpen) {
      if (!probe_in_flight_) {
        if (breaker_.probe_due()) {
          auto p = std::make_shared<Pending>();
          p->kind = ReqKind::kProbe;
          probe_in_flight_ = true;
          send(ReqKind::kProbe, api_.health(), p);
        } else {
          arm_wake(now + breaker_.time_until_probe());
        }
      }
      break;
    }
    if (backoff_.paused()) {
      arm_wake(now + backoff_.remaining());
      break;
    }
    if (in_flight_ >= effective_limit()) break;
    if (api_.csrf() == prefect::PrefectApi::Csrf::kUnknown) {
      if (!csrf_in_flight_) {
        csrf_in_flight_ = true;
        auto p = std::make_shared<Pending>();
        p->kind = ReqKind::kCsrf;
        send(ReqKind::kCsrf, api_.csrf_token(), p);
      }
      break;
    }
    auto wait = bucket_.time_until(1);
    if (wait > core::Duration(0)) {
      arm_wake(now + wait);
      break;
    }
    if (send_control()) continue;
    if (send_launch()) continue;
    break;
  }
  if (!retries_.empty()) arm_wake(retries_.top().due);
  if (auto t = scheduler_.time_until_ready()) arm_wake(now + *t);
  if (backoff_.resume_fraction() < 1.0 && !backoff_.paused()) arm_wake(now + ms(100));
}

bool Engine::send_control() {
  while (!control_.empty()) {
    auto p = control_.front();
    control_.pop_front();
    prefect::HttpRequest req;
    switch (p->kind) {
      case ReqKind::kResolve: {
        auto it = batches_.find(p->batch);
        if (it == batches_.end()) continue;
        req = api_.read_deployment(it->second->slots[p->slot].ref);
        break;
      }
      case ReqKind::kTrack:
        req = api_.filter_flow_runs(p->ids);
        break;
      case ReqKind::kCancelChild:
        req = api_.cancel_flow_run(p->child_id, p->transition_id,
                                   "Cancelled by floodgate: batch cancelled or failed");
        break;
      case ReqKind::kLookup: {
        auto it = batches_.find(p->batch);
        if (it == batches_.end()) continue;
        std::vector<std::string> deployments;
        for (int64_t idx : p->indexes) {
          const std::string& id = it->second->slots[it->second->items[idx].slot].id;
          if (std::find(deployments.begin(), deployments.end(), id) == deployments.end()) {
            deployments.push_back(id);
          }
        }
        req = api_.filter_flow_runs_by_keys(p->ids, deployments);
        break;
      }
      default:
        continue;
    }
    (void)bucket_.try_consume(1);
    send(p->kind, std::move(req), p);
    return true;
  }
  return false;
}

bool Engine::stale_in_ready(const Item& item) {
  return item.in_request || core::is_final(item.state) || item.state == ItemState::kLaunched ||
         item.state == ItemState::kLaunching;
}

bool Engine::send_launch() {
  const int max_items = bulk_supported_ ? std::max(1, options_.bulk_size) : 1;
  auto grant = scheduler_.next(max_items);
  if (!grant) return false;
  Batch& b = *batches_.at(grant->batch);
  if (!b.spec.parent_flow_run_id.empty() && b.spec.track &&
      clock_.now() - b.parent_seen_running >= kParentRecheck) {
    // Has the parent ended? Ask before launching under it (one read of one id).
    scheduler_.cancel(*grant);
    queue_parent_read(b);
    return true;
  }
  auto p = std::make_shared<Pending>();
  p->batch = b.key;
  if (!b.spec.parent_flow_run_id.empty() && grant->items > 1) {
    // Under a parent each child is two writes: its placeholder task run, then its create.
    // Placeholders go first, for up to a grant's worth of items; the creates of those then go
    // together in one bulk request: 1 + 1/n writes per child instead of 2, which matters most
    // to a server that takes one write at a time (SQLite).
    int placed = 0;
    std::optional<size_t> unplaced;
    for (size_t i = 0; i < b.ready.size() && placed < grant->items; ++i) {
      const Item& item = b.items[b.ready[i]];
      if (stale_in_ready(item)) continue;
      if (item.parent_task_run_id.empty()) {
        unplaced = i;
        break;
      }
      ++placed;
    }
    if (unplaced && placed < grant->items) {
      const int64_t idx = b.ready[*unplaced];
      b.ready.erase(b.ready.begin() + static_cast<std::ptrdiff_t>(*unplaced));
      // One launch, one per-batch rate token: the rest of the grant's go back.
      scheduler_.refund(b.key, grant->items - 1);
      p->indexes.push_back(idx);
      send_placeholder(b, p, idx);
      return true;
    }
  }
  int slot = -1;
  while (!b.ready.empty() && static_cast<int>(p->indexes.size()) < grant->items) {
    int64_t idx = b.ready.front();
    Item& item = b.items[idx];
    if (stale_in_ready(item)) {
      b.ready.pop_front();
      continue;
    }
    if (slot >= 0 && item.slot != slot) break;
    const bool needs_placeholder =
        !b.spec.parent_flow_run_id.empty() && item.parent_task_run_id.empty();
    if (needs_placeholder && !p->indexes.empty()) break;
    slot = item.slot;
    b.ready.pop_front();
    p->indexes.push_back(idx);
    if (needs_placeholder) {
      send_placeholder(b, p, idx);
      return true;
    }
  }
  if (p->indexes.empty()) {
    scheduler_.on_request_done(b.key);
    scheduler_.set_ready(b.key, 0);
    return true;  // the scheduler's view was stale; try again
  }
  const DeploymentSlot& s = b.slots[slot];
  const auto now = clock_.now();
  if (b.rec.state == BatchState::kQueued) set_batch_state(b, BatchState::kRunning);
  json bodies = json::array();
  bool first_attempt = false;
  for (int64_t idx : p->indexes) {
    Item& item = b.items[idx];
    json spec = json::parse(item.spec, nullptr, false);
    prefect::CreateContext ctx;
    ctx.batch_tags = &b.spec.tags;
    ctx.batch_tag = b.batch_tag;
    std::string key = idempotency_key(b, idx, item);
    ctx.idempotency_key = key;
    ctx.parent_task_run_id = item.parent_task_run_id;
    bodies.push_back(prefect::build_create_body(spec.is_object() ? spec : json::object(), ctx));
    if (item.attempts == 0) {
      item.first_attempt = now;
      first_attempt = true;
    }
    item.attempts += 1;
    item.in_request = true;
    set_state(b, item, idx, ItemState::kLaunching);
  }
  if (first_attempt) budget_.on_request();
  sync_ready(b);
  (void)bucket_.try_consume(1);
  if (p->indexes.size() == 1) {
    p->kind = ReqKind::kCreate;
    send(ReqKind::kCreate, api_.create_flow_run(s.id, bodies[0].dump()), p);
  } else {
    p->kind = ReqKind::kCreateBulk;
    send(ReqKind::kCreateBulk, api_.create_flow_run_bulk(s.id, bodies.dump()), p);
  }
  return true;
}

void Engine::send_placeholder(Batch& b, const std::shared_ptr<Pending>& p, int64_t index) {
  // As run_deployment(as_subflow=True) does: a task run in the parent stands for the child,
  // and the child is created with it as parent_task_run_id. The dynamic key names the batch
  // too, so two batches from one parent never share a placeholder.
  Item& item = b.items[index];
  const DeploymentSlot& s = b.slots[item.slot];
  prefect::PlaceholderContext ctx;
  ctx.parent_flow_run_id = b.spec.parent_flow_run_id;
  ctx.deployment_name = s.ref.id.empty() ? s.ref.flow_name + "/" + s.ref.name : s.text;
  ctx.dynamic_key = "floodgate:" + b.rec.id + ":" + std::to_string(index);
  ctx.index = index;
  ctx.tags = &b.spec.tags;
  json body = prefect::build_placeholder_body(ctx);
  const auto now = clock_.now();
  if (b.rec.state == BatchState::kQueued) set_batch_state(b, BatchState::kRunning);
  if (item.attempts == 0) {
    item.first_attempt = now;
    budget_.on_request();
  }
  item.attempts += 1;
  item.in_request = true;
  set_state(b, item, index, ItemState::kLaunching);
  sync_ready(b);
  (void)bucket_.try_consume(1);
  send(ReqKind::kPlaceholder, api_.create_task_run(body), p);
}

void Engine::handle_placeholder(Pending& p, const prefect::HttpResponse& r,
                                const prefect::Classification& c) {
  scheduler_.on_request_done(p.batch);
  auto it = batches_.find(p.batch);
  if (it == batches_.end()) return;
  Batch& b = *it->second;
  const int64_t idx = p.indexes.front();
  Item& item = b.items[idx];
  item.in_request = false;
  if (c.verdict == prefect::Verdict::kOk) {
    json j = json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("id") && j["id"].is_string()) {
      item.parent_task_run_id = j["id"].get<std::string>();
      // The placeholder is not a launch attempt of the child.
      item.attempts = std::max(0, item.attempts - 1);
      if (core::is_final(b.rec.state)) {
        set_state(b, item, idx, ItemState::kSkipped);
        check_finished(b);
        return;
      }
      set_state(b, item, idx, ItemState::kPending);
      mark_dirty(b, idx);
      b.ready.push_front(idx);
      // The placeholder and the create are one launch: the create, next in line, gets the
      // per-batch rate token back instead of waiting for another.
      scheduler_.refund(b.key, 1);
      sync_ready(b);
      return;
    }
    prefect::Classification bad{prefect::Verdict::kRetryable,
                                "bad_answer",
                                "Prefect's answer to the task run create has no id",
                                {},
                                /*transient=*/true};
    retry_or_fail(b, idx, bad);
    return;
  }
  if (c.verdict == prefect::Verdict::kPermanent) {
    launch_failed(b, idx,
                  "could not create the placeholder task run in parent flow run " +
                      b.spec.parent_flow_run_id + ": " + c.message);
    return;
  }
  if (c.verdict == prefect::Verdict::kCsrfInvalid) {
    api_.invalidate_csrf_token();
    requeue_without_attempt(b, idx, core::Duration(0));
    return;
  }
  retry_or_fail(b, idx, c);
}

Engine::RequestMetrics& Engine::request_metrics(ReqKind kind) {
  int k = static_cast<int>(kind);
  auto it = request_metrics_.find(k);
  if (it != request_metrics_.end()) return it->second;
  RequestMetrics m{};
  std::string name = endpoint_name(k);
  m.latency = &metrics_.prefect_latency(name);
  for (int c = 0; c < 6; ++c) m.by_class[c] = &metrics_.prefect_requests(name, c * 100);
  return request_metrics_.emplace(k, m).first->second;
}

void Engine::send(ReqKind kind, prefect::HttpRequest request, std::shared_ptr<Pending> pending) {
  pending->kind = kind;
  pending->sent = clock_.now();
  if (pending->attempts == 0) pending->first_sent = pending->sent;
  in_flight_ += 1;
  metrics_.requests_in_flight().Set(in_flight_);
  metrics_.in_flight_limit().Set(effective_limit());
  std::weak_ptr<bool> alive = alive_;
  http_.send(std::move(request), [this, alive, pending](prefect::HttpResponse response) {
    if (alive.expired()) return;
    timers_.post([this, alive, pending, r = std::move(response)]() mutable {
      if (alive.expired()) return;
      on_response(pending, std::move(r));
    });
  });
}

void Engine::on_response(std::shared_ptr<Pending> pending, prefect::HttpResponse response) {
  Pending& p = *pending;
  in_flight_ -= 1;
  metrics_.requests_in_flight().Set(in_flight_);
  metrics_.in_flight_limit().Set(effective_limit());
  const auto now = clock_.now();
  const core::Duration rtt = now - p.sent;
  auto c = prefect::classify(response, wall_.now());

  auto& rm = request_metrics(p.kind);
  rm.latency->Observe(core::to_seconds(rtt));
  int cls = response.status <= 0 ? 0 : std::clamp(response.status / 100, 1, 5);
  rm.by_class[cls]->Increment();

  // A pooled connection the server already closed fails at once while writing: that says
  // nothing about Prefect's health or load. Send again (same idempotency key) at no cost.
  const bool stale_connection =
      response.status == 0 && response.transport == prefect::TransportError::kStaleConnection;
  if (stale_connection && (p.kind == ReqKind::kCreate || p.kind == ReqKind::kCreateBulk ||
                           p.kind == ReqKind::kPlaceholder)) {
    scheduler_.on_request_done(p.batch);
    auto bit = batches_.find(p.batch);
    if (bit != batches_.end()) {
      for (int64_t idx : p.indexes) {
        bit->second->items[idx].in_request = false;
        requeue_without_attempt(*bit->second, idx, ms(20));
      }
    }
    metrics_.retries("stale_connection").Increment();
    maybe_finish_drain();
    pump();
    return;
  }
  // Database contention (Prefect's 503 for a locked database, contended runs in a bulk answer)
  // is load: it lowers the limit and pauses all requests briefly, as a Retry-After does, so
  // floodgate writes less while the database is busy instead of each run retrying on its own.
  const bool congested = prefect::is_locked_database(response) ||
                         (p.kind == ReqKind::kCreateBulk && c.verdict == prefect::Verdict::kOk &&
                          prefect::bulk_contention_count(response.body) > 0);
  if (p.kind != ReqKind::kProbe && p.kind != ReqKind::kCsrf) {
    auto outcome = core::ConcurrencyLimit::Outcome::kSuccess;
    if (c.verdict == prefect::Verdict::kRetryable || c.verdict == prefect::Verdict::kRateLimited ||
        congested) {
      outcome = core::ConcurrencyLimit::Outcome::kDropped;
    } else if (c.verdict == prefect::Verdict::kPermanent) {
      outcome = core::ConcurrencyLimit::Outcome::kIgnore;
    }
    limit_->on_sample(now, rtt, in_flight_ + 1, outcome, sample_class(p));
    // A locked database is load on a server that answers, not an outage: the limit and the
    // contention pause slow floodgate down; the breaker stays out of it.
    if (c.verdict == prefect::Verdict::kRetryable && !stale_connection &&
        !prefect::is_locked_database(response)) {
      breaker_.on_failure();
    } else if (c.verdict != prefect::Verdict::kRateLimited) {
      breaker_.on_success();
    }
  }
  if (c.verdict == prefect::Verdict::kRateLimited) {
    auto pause = c.retry_after.value_or(std::chrono::seconds(1));
    backoff_.pause_until(now + pause);
    log::warn("Prefect asked to slow down; pausing all requests",
              {{"status", response.status}, {"pause_s", core::to_seconds(pause)}});
  } else if (congested && p.kind != ReqKind::kProbe && p.kind != ReqKind::kCsrf) {
    const auto pause = contention_.on_signal(now);
    if (pause > core::Duration(0)) {
      backoff_.pause_until(now + pause);
      log::info("Prefect is busy; pausing all requests",
                {{"status", response.status},
                 {"reason", c.verdict == prefect::Verdict::kOk ? "bulk_contention" : c.reason},
                 {"pause_s", core::to_seconds(pause)}});
    }
  }

  switch (p.kind) {
    case ReqKind::kResolve:
      handle_resolve(p, response, c);
      break;
    case ReqKind::kCreate:
      handle_create(p, response, c);
      break;
    case ReqKind::kCreateBulk:
      handle_bulk(p, response, c);
      break;
    case ReqKind::kPlaceholder:
      handle_placeholder(p, response, c);
      break;
    case ReqKind::kTrack:
      handle_track(p, response, c);
      break;
    case ReqKind::kCancelChild:
      handle_cancel_child(p, response, c);
      break;
    case ReqKind::kLookup:
      handle_lookup(p, response, c);
      break;
    case ReqKind::kCsrf:
      csrf_in_flight_ = false;
      if (!api_.on_csrf_response(response)) {
        log::warn("could not get a CSRF token from Prefect; retrying",
                  {{"status", response.status}, {"error", c.message}});
        if (c.verdict == prefect::Verdict::kRetryable) breaker_.on_failure();
        arm_wake(now + ms(1000));
      } else {
        breaker_.on_success();
      }
      break;
    case ReqKind::kProbe:
      probe_in_flight_ = false;
      breaker_.on_probe_result(response.status == 200);
      log::info("health probe",
                {{"status", response.status}, {"breaker", std::string(breaker_.state_name())}});
      break;
  }
  maybe_finish_drain();
  pump();
}

core::RetryPolicy Engine::retry_policy(const BatchSpec& spec) {
  return core::RetryPolicy{spec.retry.max_attempts, core::from_seconds(spec.retry.max_elapsed_s),
                           core::BackoffPolicy{core::from_seconds(spec.retry.initial_delay_s),
                                               core::from_seconds(spec.retry.max_delay_s), 2.0}};
}

void Engine::requeue_control_after(const Pending& p, core::Duration delay) {
  std::weak_ptr<bool> alive = alive_;
  auto pending = std::make_shared<Pending>(p);
  timers_.schedule(clock_.now() + delay, [this, alive, pending] {
    if (alive.expired()) return;
    control_.push_back(pending);
    pump();
  });
}

void Engine::handle_resolve(Pending& p, const prefect::HttpResponse& r,
                            const prefect::Classification& c) {
  auto it = batches_.find(p.batch);
  if (it == batches_.end()) return;
  Batch& b = *it->second;
  DeploymentSlot& slot = b.slots[p.slot];
  auto fail = [&](const std::string& message) {
    slot.state = DeploymentSlot::State::kFailed;
    slot.error = "deployment '" + slot.text + "': " + message;
    auto waiting = std::move(slot.waiting);
    slot.waiting.clear();
    for (int64_t idx : waiting) launch_failed(b, idx, slot.error);
  };
  if (c.verdict == prefect::Verdict::kOk) {
    auto d = prefect::parse_deployment(r.body);
    if (!d) {
      fail("Prefect's answer is not a deployment");
      return;
    }
    slot.state = DeploymentSlot::State::kResolved;
    slot.id = d->id;
    auto waiting = std::move(slot.waiting);
    slot.waiting.clear();
    for (int64_t idx : waiting) make_ready(b, idx);
    return;
  }
  if (c.verdict == prefect::Verdict::kPermanent) {
    fail(c.message);
    return;
  }
  if (c.verdict == prefect::Verdict::kCsrfInvalid) api_.invalidate_csrf_token();
  const auto now = clock_.now();
  if (slot.attempts == 0) slot.first_attempt = now;
  slot.attempts += 1;
  if (c.transient) slot.transient += 1;
  const core::RetryPolicy policy = retry_policy(b.spec);
  auto delay =
      core::retry_delay(policy.backoff, std::min(slot.attempts, 30), random_, c.retry_after);
  if (c.verdict != prefect::Verdict::kCsrfInvalid &&
      !policy.may_retry(slot.attempts - slot.transient, slot.first_attempt, now, delay)) {
    fail("gave up after " + std::to_string(slot.attempts) + " attempts: " + c.message);
    return;
  }
  metrics_.retries(c.reason).Increment();
  requeue_control_after(p, delay);
}

void Engine::handle_create(Pending& p, const prefect::HttpResponse& r,
                           const prefect::Classification& c) {
  scheduler_.on_request_done(p.batch);
  auto it = batches_.find(p.batch);
  if (it == batches_.end()) return;
  Batch& b = *it->second;
  const int64_t idx = p.indexes.front();
  b.items[idx].in_request = false;
  switch (c.verdict) {
    case prefect::Verdict::kOk: {
      auto run = prefect::parse_flow_run(r.body);
      if (!run) {
        prefect::Classification bad{prefect::Verdict::kRetryable,
                                    "bad_answer",
                                    "Prefect's answer to create_flow_run has no run id",
                                    {},
                                    /*transient=*/true};
        retry_or_fail(b, idx, bad);
        return;
      }
      b.items[idx].flow_run_state = run->state_name;
      launched(b, idx, run->id, r.status == 200);
      return;
    }
    case prefect::Verdict::kPermanent:
      launch_failed(b, idx, c.message);
      return;
    case prefect::Verdict::kCsrfInvalid:
      api_.invalidate_csrf_token();
      requeue_without_attempt(b, idx, core::Duration(0));
      return;
    default:
      if (prefect::may_have_created(r)) b.items[idx].in_doubt = true;
      retry_or_fail(b, idx, c);
  }
}

void Engine::handle_bulk(Pending& p, const prefect::HttpResponse& r,
                         const prefect::Classification& c) {
  scheduler_.on_request_done(p.batch);
  auto it = batches_.find(p.batch);
  if (it == batches_.end()) return;
  Batch& b = *it->second;
  for (int64_t idx : p.indexes) b.items[idx].in_request = false;
  if (prefect::is_missing_bulk_endpoint(r)) {
    // A server without the bulk endpoint: fall back to single creates from now on.
    if (bulk_supported_) log::warn("Prefect has no bulk create endpoint; using single creates");
    bulk_supported_ = false;
    for (int64_t idx : p.indexes) requeue_without_attempt(b, idx, core::Duration(0));
    return;
  }
  if (c.verdict == prefect::Verdict::kCsrfInvalid) {
    api_.invalidate_csrf_token();
    for (int64_t idx : p.indexes) requeue_without_attempt(b, idx, core::Duration(0));
    return;
  }
  if (c.verdict == prefect::Verdict::kOk) {
    auto results = prefect::parse_bulk_results(r.body);
    if (!results || results->size() != p.indexes.size()) {
      prefect::Classification bad{prefect::Verdict::kRetryable,
                                  "bad_answer",
                                  "Prefect's answer to the bulk create does not match the request",
                                  {},
                                  /*transient=*/true};
      for (int64_t idx : p.indexes) retry_or_fail(b, idx, bad);
      return;
    }
    for (size_t i = 0; i < p.indexes.size(); ++i) {
      const auto& res = (*results)[i];
      if (res.created) {
        // The bulk endpoint says CREATED for an idempotency-key match too.
        launched(b, p.indexes[i], res.flow_run_id, false);
      } else {
        // The bulk endpoint reports every error per run, transient ones ("database is
        // locked") too: only a rejection of the run itself is final.
        const prefect::Classification item_c = prefect::classify_bulk_item(res.error);
        if (item_c.unclassified && unclassified_seen_.first(res.error)) {
          log::warn("Prefect gave an error floodgate does not know; treating it as transient",
                    {{"batch_id", b.rec.id}, {"error", res.error}});
        }
        if (item_c.verdict == prefect::Verdict::kPermanent) {
          launch_failed(b, p.indexes[i], item_c.message);
        } else {
          retry_or_fail(b, p.indexes[i], item_c);
        }
      }
    }
    return;
  }
  if (c.verdict == prefect::Verdict::kPermanent) {
    for (int64_t idx : p.indexes) launch_failed(b, idx, c.message);
    return;
  }
  // One failed request is one retry for the budget, however many runs it carried (also when
  // they go out again as single creates after a fallback).
  bool charge = true;
  const bool in_doubt = prefect::may_have_created(r);
  for (int64_t idx : p.indexes) {
    if (in_doubt) b.items[idx].in_doubt = true;
    retry_or_fail(b, idx, c, charge);
    charge = false;
  }
}

void Engine::retry_or_fail(Batch& b, int64_t index, const prefect::Classification& c, bool charge) {
  Item& item = b.items[index];
  const auto now = clock_.now();
  const core::RetryPolicy policy = retry_policy(b.spec);
  // Prefect busy or out of reach (a locked database, a 5xx, a timeout, no connection) is load
  // or an outage, not a verdict on this run: such failures are bounded by max_elapsed_s only.
  if (c.transient) item.unavailable += 1;
  if (c.unclassified && c.reason.rfind("bulk", 0) != 0 && unclassified_seen_.first(c.message)) {
    log::warn("Prefect gave an answer floodgate does not know; treating it as transient",
              {{"batch_id", b.rec.id}, {"error", c.message}});
  }
  auto delay =
      core::retry_delay(policy.backoff, std::min(item.attempts, 30), random_, c.retry_after);
  if (!policy.may_retry(item.attempts - item.unavailable, item.first_attempt, now, delay)) {
    const std::string failure =
        "gave up after " + std::to_string(item.attempts) + " attempts (" +
        std::to_string(item.unavailable) + " transient) in " +
        std::to_string(static_cast<int64_t>(core::to_seconds(now - item.first_attempt))) +
        " s: " + c.message;
    if (item.in_doubt) {
      queue_lookup(b, {index}, failure);  // its run may exist: find out before failing it
      return;
    }
    launch_failed(b, index, failure);
    return;
  }
  metrics_.retries(c.reason).Increment();
  item.last_error = prefect::first_line(c.message);
  if (item.last_error.size() != c.message.size()) {
    log::debug("retrying a launch",
               {{"batch_id", b.rec.id}, {"index", index}, {"error", c.message}});
  }
  if (core::is_final(b.rec.state)) {
    if (item.in_doubt) {
      queue_lookup(b, {index}, "");
      return;
    }
    set_state(b, item, index, ItemState::kSkipped);
    return;
  }
  set_state(b, item, index, ItemState::kRetryWait);
  retries_.push({now + delay, b.key, index, charge});
}

void Engine::requeue_without_attempt(Batch& b, int64_t index, core::Duration delay) {
  Item& item = b.items[index];
  item.attempts = std::max(0, item.attempts - 1);
  if (core::is_final(b.rec.state)) {
    if (item.in_doubt) {
      queue_lookup(b, {index}, "");
      return;
    }
    set_state(b, item, index, ItemState::kSkipped);
    return;
  }
  set_state(b, item, index, ItemState::kRetryWait);
  retries_.push({clock_.now() + delay, b.key, index, false});
}

// ---------------------------------------------------------------------------------------------
// Tracking

void Engine::schedule_tracking() {
  if (track_timer_ || draining_) return;
  std::weak_ptr<bool> alive = alive_;
  track_timer_ = timers_.schedule(clock_.now() + options_.track_interval_min, [this, alive] {
    if (alive.expired()) return;
    track_timer_.reset();
    bool queued_any = false;
    const auto now = clock_.now();
    {
      for (auto& [key, bp] : batches_) {
        Batch& b = *bp;
        // The parent is watched while the batch runs, launched children or not: once it has
        // ended, nothing more is launched under it.
        const bool watch_parent =
            !b.spec.parent_flow_run_id.empty() && !core::is_final(b.rec.state);
        if (!b.spec.track || !b.items_loaded || b.track_outstanding > 0 || now < b.next_track ||
            (b.counts[static_cast<int>(ItemState::kLaunched)] == 0 && !watch_parent)) {
          continue;
        }
        b.track_saw_final = false;
        std::shared_ptr<Pending> p;
        for (size_t i = 0; i < b.items.size(); ++i) {
          const Item& item = b.items[i];
          if (item.state != ItemState::kLaunched || item.flow_run_id.empty()) continue;
          if (!p) {
            p = std::make_shared<Pending>();
            p->kind = ReqKind::kTrack;
            p->batch = key;
          }
          p->indexes.push_back(static_cast<int64_t>(i));
          p->ids.push_back(item.flow_run_id);
          if (p->ids.size() == 200) {
            control_.push_back(std::move(p));
            b.track_outstanding += 1;
            p.reset();
            queued_any = true;
          }
        }
        if (watch_parent) {
          // Prefect only cascades a CANCELLED parent to its children; floodgate applies the
          // batch's on_cancel whenever the parent ends.
          if (!p) {
            p = std::make_shared<Pending>();
            p->kind = ReqKind::kTrack;
            p->batch = key;
          }
          p->indexes.push_back(-1);
          p->ids.push_back(b.spec.parent_flow_run_id);
        }
        if (p) {
          control_.push_back(std::move(p));
          b.track_outstanding += 1;
          queued_any = true;
        }
      }
    }
    if (queued_any) pump();
    schedule_tracking();
  });
}

void Engine::queue_parent_read(Batch& b) {
  if (b.parent_read_outstanding) return;
  b.parent_read_outstanding = true;
  sync_ready(b);
  auto p = std::make_shared<Pending>();
  p->kind = ReqKind::kTrack;
  p->batch = b.key;
  p->parent_only = true;
  p->indexes.push_back(-1);
  p->ids.push_back(b.spec.parent_flow_run_id);
  control_.push_back(std::move(p));
}

void Engine::parent_read(Batch& b, const prefect::FlowRunInfo* run) {
  if (run != nullptr && prefect_final(run->state_type)) {
    if (!core::is_final(b.rec.state)) {
      log::info("parent flow run ended; cancelling the batch (on_cancel applies)",
                {{"batch_id", b.rec.id},
                 {"parent_flow_run_id", run->id},
                 {"parent_state", run->state_type}});
      finish(b, BatchState::kCancelled);
    }
    return;
  }
  b.parent_seen_running = clock_.now();
}

void Engine::handle_track(Pending& p, const prefect::HttpResponse& r,
                          const prefect::Classification& c) {
  auto it = batches_.find(p.batch);
  if (it == batches_.end()) return;
  Batch& b = *it->second;
  if (p.parent_only) {
    b.parent_read_outstanding = false;
    auto runs =
        c.verdict == prefect::Verdict::kOk ? prefect::parse_flow_run_list(r.body) : std::nullopt;
    const prefect::FlowRunInfo* parent = nullptr;
    if (runs) {
      for (const auto& run : *runs) {
        if (run.id == b.spec.parent_flow_run_id) parent = &run;
      }
    }
    if (!runs) {
      // The read failed: launches go on (they meet the same outage with their own retries),
      // and the next launch asks again after kParentRecheck.
      log::debug("parent read failed", {{"batch_id", b.rec.id}, {"error", c.message}});
    }
    parent_read(b, parent);
    sync_ready(b);
    pump();
    return;
  }
  b.track_outstanding = std::max(0, b.track_outstanding - 1);
  auto round_done = [this, &b]() {
    if (b.track_outstanding > 0) return;
    if (b.track_interval == core::Duration(0)) b.track_interval = options_.track_interval_min;
    // While one read covers every child still running, reads are cheap: stretch to 5 s at
    // most (run_deployment's own poll), so the batch's end shows within seconds.
    core::Duration cap = options_.track_interval_max;
    if (b.counts[static_cast<int>(ItemState::kLaunched)] <= 200) {
      cap = std::min<core::Duration>(cap, kOnePageTrackMax);
    }
    cap = std::max<core::Duration>(cap, options_.track_interval_min);
    b.track_interval = b.track_saw_final
                           ? core::Duration(options_.track_interval_min)
                           : std::min<core::Duration>(b.track_interval + b.track_interval / 2, cap);
    b.next_track = clock_.now() + b.track_interval;
  };
  if (c.verdict != prefect::Verdict::kOk) {
    log::debug("tracking read failed", {{"batch_id", b.rec.id}, {"error", c.message}});
    round_done();
    return;
  }
  auto runs = prefect::parse_flow_run_list(r.body);
  if (!runs || !b.items_loaded) {
    round_done();
    return;
  }
  std::unordered_map<std::string, int64_t> index_of;
  for (size_t i = 0; i < p.ids.size(); ++i) index_of.emplace(p.ids[i], p.indexes[i]);
  bool any_final = false;
  for (const auto& run : *runs) {
    auto f = index_of.find(run.id);
    if (f == index_of.end()) continue;
    int64_t idx = f->second;
    if (idx < 0) {
      parent_read(b, &run);
      continue;
    }
    Item& item = b.items[idx];
    if (item.state != ItemState::kLaunched || item.flow_run_id != run.id) continue;
    if (item.flow_run_state != run.state_name) {
      item.flow_run_state = run.state_name;
      mark_dirty(b, idx);
      touch(b);
    }
    if (!prefect_final(run.state_type)) continue;
    any_final = true;
    auto final_state = core::parse_item_state(run.state_type).value_or(ItemState::kFailed);
    if (final_state == ItemState::kCrashed && item.relaunches < b.spec.relaunch_crashed &&
        !core::is_final(b.rec.state)) {
      if (!item.earlier_runs.is_array()) item.earlier_runs = json::array();
      item.earlier_runs.push_back({{"flow_run_id", item.flow_run_id}, {"state", "CRASHED"}});
      item.relaunches += 1;
      item.attempts = 0;
      item.unavailable = 0;
      item.last_error = "run " + item.flow_run_id + " crashed: " + run.state_message;
      item.flow_run_id.clear();
      item.flow_run_state.clear();
      auto specs = store_.load_item_specs(b.rec.id, {idx});
      if (!specs.empty()) item.spec = specs.front().second;
      set_state(b, item, idx, ItemState::kPending);
      make_ready(b, idx);
      continue;
    }
    if (final_state != ItemState::kCompleted && !run.state_message.empty()) {
      item.last_error = run.state_message;
    }
    set_state(b, item, idx, final_state);
  }
  if (any_final) b.track_saw_final = true;
  round_done();
  check_finished(b);
}

void Engine::handle_cancel_child(Pending& p, const prefect::HttpResponse& /*r*/,
                                 const prefect::Classification& c) {
  if (c.verdict == prefect::Verdict::kRetryable || c.verdict == prefect::Verdict::kRateLimited ||
      c.verdict == prefect::Verdict::kCsrfInvalid) {
    if (c.verdict == prefect::Verdict::kCsrfInvalid) api_.invalidate_csrf_token();
    p.attempts += 1;
    if (p.attempts < 8) {
      requeue_control_after(p, core::backoff_delay(core::BackoffPolicy{}, p.attempts, random_));
      return;
    }
  }
  if (c.verdict != prefect::Verdict::kOk) {
    log::warn("could not cancel a child run", {{"flow_run_id", p.child_id}, {"error", c.message}});
    return;
  }
  // The child is on its way to CANCELLED: follow the batch at the fastest cadence again so
  // its items show the end within a second or two, not after a stretched interval.
  auto it = batches_.find(p.batch);
  if (it != batches_.end()) {
    it->second->track_interval = options_.track_interval_min;
    it->second->next_track = std::min(it->second->next_track, clock_.now());
  }
}

// ---------------------------------------------------------------------------------------------
// Runs whose create may have succeeded unseen

void Engine::queue_lookup(Batch& b, const std::vector<int64_t>& indexes,
                          const std::string& failure) {
  if (indexes.empty()) return;
  auto p = std::make_shared<Pending>();
  p->kind = ReqKind::kLookup;
  p->batch = b.key;
  p->failure = failure;
  for (int64_t idx : indexes) {
    Item& item = b.items[idx];
    item.in_request = true;  // the lookup's answer decides, as a create's would
    set_state(b, item, idx, ItemState::kRetryWait);
    p->indexes.push_back(idx);
    p->ids.push_back(idempotency_key(b, idx, item));
  }
  log::info("looking up runs whose create may have succeeded unseen",
            {{"batch_id", b.rec.id}, {"runs", static_cast<int64_t>(indexes.size())}});
  control_.push_back(std::move(p));
  arm_wake(clock_.now());  // sent from the loop, not from inside the caller's state change
}

void Engine::handle_lookup(Pending& p, const prefect::HttpResponse& r,
                           const prefect::Classification& c) {
  auto it = batches_.find(p.batch);
  if (it == batches_.end()) return;
  Batch& b = *it->second;
  auto runs =
      c.verdict == prefect::Verdict::kOk ? prefect::parse_flow_run_list(r.body) : std::nullopt;
  if (!runs) {
    // Nothing is decided until Prefect answers: ask again, backing off up to 30 s.
    p.attempts += 1;
    if (c.verdict == prefect::Verdict::kCsrfInvalid) api_.invalidate_csrf_token();
    log::debug("run lookup failed; asking again", {{"batch_id", b.rec.id}, {"error", c.message}});
    requeue_control_after(p, core::backoff_delay(core::BackoffPolicy{std::chrono::seconds(1),
                                                                     std::chrono::seconds(30), 2.0},
                                                 std::min(p.attempts, 30), random_));
    return;
  }
  std::unordered_map<std::string, const prefect::FlowRunInfo*> by_key;
  for (const auto& run : *runs) by_key.emplace(run.idempotency_key, &run);
  for (size_t i = 0; i < p.indexes.size(); ++i) {
    const int64_t idx = p.indexes[i];
    Item& item = b.items[idx];
    item.in_request = false;
    item.in_doubt = false;
    if (core::is_final(item.state) || item.state == ItemState::kLaunched) continue;
    auto f = by_key.find(p.ids[i]);
    if (f != by_key.end()) {
      log::info("found the run of an unanswered create; following it",
                {{"batch_id", b.rec.id}, {"index", idx}, {"flow_run_id", f->second->id}});
      item.flow_run_state = f->second->state_name;
      launched(b, idx, f->second->id, true);
    } else if (core::is_final(b.rec.state)) {
      set_state(b, item, idx, ItemState::kSkipped);
    } else if (!p.failure.empty()) {
      launch_failed(b, idx, p.failure);
    } else {
      set_state(b, item, idx, ItemState::kPending);
      make_ready(b, idx);
    }
  }
  sync_ready(b);
  check_finished(b);
}

// ---------------------------------------------------------------------------------------------
// State changes

void Engine::set_state(Batch& b, Item& item, int64_t index, ItemState to) {
  if (item.state == to) return;
  b.counts[static_cast<int>(item.state)] -= 1;
  b.counts[static_cast<int>(to)] += 1;
  metrics_.items(item.state).Decrement();
  metrics_.items(to).Increment();
  if (core::is_failure(item.state)) b.failures -= 1;
  if (core::is_failure(to)) b.failures += 1;
  item.state = to;
  if (to != ItemState::kLaunching) mark_dirty(b, index);
  if (b.spec.limits.max_running) sync_ready(b);
  touch(b);
}

void Engine::launched(Batch& b, int64_t index, const std::string& flow_run_id, bool existing) {
  Item& item = b.items[index];
  item.flow_run_id = flow_run_id;
  item.in_doubt = false;
  item.settled = clock_.now();
  item.last_error.clear();
  item.spec.clear();
  item.spec.shrink_to_fit();
  metrics_.launches(existing ? "existing" : "created").Increment();
  set_state(b, item, index, ItemState::kLaunched);
  if (core::is_final(b.rec.state) && b.rec.state != BatchState::kCompleted &&
      b.spec.on_cancel == "cancel_children") {
    // Created by a request that was in flight when the batch ended: cancel it too.
    queue_cancel_child(b, flow_run_id);
  }
  if (!b.spec.track) check_finished(b);
}

void Engine::launch_failed(Batch& b, int64_t index, const std::string& message) {
  Item& item = b.items[index];
  item.in_request = false;
  if (core::is_final(item.state)) return;  // e.g. SKIPPED when the batch failed meanwhile
  item.in_doubt = false;
  item.settled = clock_.now();
  // Prefect's message without the SQL statement and parameters; the full text in the debug log.
  item.last_error = prefect::first_line(message);
  metrics_.launches("failed").Increment();
  set_state(b, item, index, ItemState::kLaunchFailed);
  log::warn("launch failed",
            {{"batch_id", b.rec.id}, {"index", index}, {"error", item.last_error}});
  if (item.last_error.size() != message.size()) {
    log::debug("launch failed (full error)",
               {{"batch_id", b.rec.id}, {"index", index}, {"error", message}});
  }
  check_finished(b);
}

void Engine::touch(Batch& b) {
  b.rec.version += 1;
  b.rec.updated_at_ms = wall_.unix_ms();
  if (!b.dirty) {
    b.dirty = true;
    dirty_batches_.push_back(b.key);
  }
  arm_flush();
  notify_waiters(b);
}

void Engine::mark_dirty(Batch& b, int64_t index) {
  Item& item = b.items[index];
  if (!item.dirty) {
    item.dirty = true;
    dirty_items_.emplace_back(b.key, index);
    if (dirty_items_.size() >= options_.flush_max_items) flush();
  }
  arm_flush();
}

void Engine::set_batch_state(Batch& b, BatchState s) {
  if (b.rec.state == s) return;
  metrics_.batches(b.rec.state).Decrement();
  metrics_.batches(s).Increment();
  if (core::is_final(s)) metrics_.batches_finished(s).Increment();
  b.rec.state = s;
  touch(b);
}

void Engine::check_finished(Batch& b) {
  if (core::is_final(b.rec.state)) return;
  const int64_t allowance = failure_allowance(b.spec, b.rec.total);
  if (b.failures > allowance) {
    log::warn("batch failed: failures beyond tolerance",
              {{"batch_id", b.rec.id}, {"failures", b.failures}, {"tolerated", allowance}});
    finish(b, BatchState::kFailed);
    return;
  }
  if (b.done() == b.rec.total) finish(b, BatchState::kCompleted);
}

void Engine::skip_unlaunched(Batch& b) {
  std::vector<int64_t> in_doubt;
  for (size_t i = 0; i < b.items.size(); ++i) {
    Item& item = b.items[i];
    if (item.in_request) continue;  // its answer decides
    if (item.state == ItemState::kPending || item.state == ItemState::kRetryWait) {
      if (item.in_doubt) {
        in_doubt.push_back(static_cast<int64_t>(i));  // its run may exist: look first
        continue;
      }
      set_state(b, item, static_cast<int64_t>(i), ItemState::kSkipped);
    }
  }
  for (size_t at = 0; at < in_doubt.size(); at += 200) {
    const size_t end = std::min(in_doubt.size(), at + 200);
    queue_lookup(b, std::vector<int64_t>(in_doubt.begin() + at, in_doubt.begin() + end), "");
  }
  b.ready.clear();
  for (auto& s : b.slots) s.waiting.clear();
}

void Engine::finish(Batch& b, BatchState state) {
  if (b.items_loaded) skip_unlaunched(b);
  scheduler_.remove_batch(b.key);
  b.rec.finished_at_ms = wall_.unix_ms();
  b.finished_steady = clock_.now();
  set_batch_state(b, state);
  log::info("batch finished", {{"batch_id", b.rec.id},
                               {"state", std::string(core::to_string(state))},
                               {"failures", b.failures},
                               {"total", b.rec.total}});
  if (b.spec.on_cancel == "cancel_children" && state != BatchState::kCompleted) {
    queue_cancel_children(b);
  }
}

void Engine::queue_cancel_child(Batch& b, const std::string& flow_run_id) {
  auto p = std::make_shared<Pending>();
  p->kind = ReqKind::kCancelChild;
  p->batch = b.key;
  p->child_id = flow_run_id;
  p->transition_id = core::new_uuid(random_);
  control_.push_back(std::move(p));
}

void Engine::queue_cancel_children(Batch& b) {
  if (!b.items_loaded) return;
  for (const Item& item : b.items) {
    if (item.state != ItemState::kLaunched || item.flow_run_id.empty()) continue;
    queue_cancel_child(b, item.flow_run_id);
  }
  pump();
}

void Engine::notify_waiters(Batch& b) {
  if (b.waiters.empty()) return;
  std::vector<std::shared_ptr<Batch::Waiter>> keep;
  json view;
  for (auto& w : b.waiters) {
    if (b.rec.version > w->after) {
      if (view.is_null()) view = batch_view(b);
      timers_.cancel(w->timer);
      auto fn = std::move(w->fn);
      w->fn = nullptr;
      if (fn) fn(view);
    } else {
      keep.push_back(w);
    }
  }
  b.waiters = std::move(keep);
}

// ---------------------------------------------------------------------------------------------
// Persistence

void Engine::arm_flush() {
  if (flush_timer_) return;
  std::weak_ptr<bool> alive = alive_;
  flush_timer_ = timers_.schedule(clock_.now() + options_.flush_interval, [this, alive] {
    if (alive.expired()) return;
    flush_timer_.reset();
    flush();
  });
}

void Engine::flush() {
  if (dirty_items_.empty() && dirty_batches_.empty()) return;
  std::vector<store::ItemUpdate> items;
  items.reserve(dirty_items_.size());
  for (auto [key, index] : dirty_items_) {
    auto it = batches_.find(key);
    if (it == batches_.end() || !it->second->items_loaded) continue;
    Batch& b = *it->second;
    Item& item = b.items[index];
    item.dirty = false;
    store::ItemUpdate u;
    u.batch_id = b.rec.id;
    u.index = index;
    u.state = item.state == ItemState::kLaunching ? ItemState::kPending : item.state;
    u.attempts = item.attempts;
    u.flow_run_id = item.flow_run_id;
    u.flow_run_state = item.flow_run_state;
    u.last_error = item.last_error;
    if (item.relaunches > 0 || item.earlier_runs.is_array() || !item.parent_task_run_id.empty() ||
        item.unavailable > 0 || item.settled > item.first_attempt) {
      json d = {{"relaunches", item.relaunches}, {"earlier_runs", item.earlier_runs}};
      if (!item.parent_task_run_id.empty()) d["parent_task_run_id"] = item.parent_task_run_id;
      if (item.unavailable > 0) d["transient_attempts"] = item.unavailable;
      if (item.settled > item.first_attempt) {
        d["waited_s"] = core::to_seconds(item.settled - item.first_attempt);
      }
      u.detail_json = d.dump();
    }
    items.push_back(std::move(u));
  }
  dirty_items_.clear();
  std::vector<store::BatchUpdate> batches;
  std::vector<Batch*> finals;
  for (uint64_t key : dirty_batches_) {
    auto it = batches_.find(key);
    if (it == batches_.end()) continue;
    Batch& b = *it->second;
    b.dirty = false;
    store::BatchUpdate u;
    u.id = b.rec.id;
    u.state = b.rec.state;
    u.updated_at_ms = b.rec.updated_at_ms;
    u.finished_at_ms = b.rec.finished_at_ms;
    u.version = b.rec.version;
    u.spec_json = engine::to_json(b.spec).dump();
    batches.push_back(std::move(u));
    if (core::is_final(b.rec.state)) finals.push_back(&b);
  }
  dirty_batches_.clear();
  uint64_t seq = writer_.submit(std::move(items), std::move(batches));
  for (Batch* b : finals) b->final_flush_seq = seq;
}

void Engine::tick() {
  update_gauges();
  // Free the items of batches that ended a while ago and are safely written; their runs are
  // then listed from the store.
  const auto now = clock_.now();
  for (auto& [key, bp] : batches_) {
    Batch& b = *bp;
    if (!b.items_loaded || !core::is_final(b.rec.state) || !b.waiters.empty()) continue;
    if (b.spec.track && b.counts[static_cast<int>(ItemState::kLaunched)] > 0) continue;
    if (b.dirty || b.final_flush_seq == 0 || writer_.applied() < b.final_flush_seq) continue;
    if (now - b.finished_steady < std::chrono::seconds(30)) continue;
    bool busy = std::any_of(b.items.begin(), b.items.end(),
                            [](const Item& i) { return i.dirty || i.in_request; });
    if (busy) continue;
    std::vector<Item>().swap(b.items);
    b.items_loaded = false;
  }
  std::weak_ptr<bool> alive = alive_;
  tick_timer_ = timers_.schedule(now + std::chrono::seconds(1), [this, alive] {
    if (alive.expired()) return;
    tick_timer_.reset();
    tick();
  });
}

void Engine::update_gauges() {
  metrics_.in_flight_limit().Set(effective_limit());
  if (const auto* g = dynamic_cast<const core::GradientLimit*>(limit_.get())) {
    metrics_.latency_floor_seconds().Set(g->rtt_noload_seconds());
    metrics_.latency_recent_seconds().Set(g->short_rtt_seconds());
  }
  metrics_.token_bucket_tokens().Set(bucket_.level());
  metrics_.paused_seconds_remaining().Set(core::to_seconds(backoff_.remaining()));
  metrics_.breaker_open().Set(breaker_.state() == core::CircuitBreaker::State::kOpen ? 1 : 0);
  metrics_.set_breaker_state(breaker_.state_name());
  metrics_.retry_budget_tokens().Set(budget_.balance());
  int64_t ready = 0;
  int64_t oldest_ms = 0;
  const int64_t now_ms = wall_.unix_ms();
  for (auto& [key, bp] : batches_) {
    if (core::is_final(bp->rec.state)) continue;
    ready += static_cast<int64_t>(bp->ready.size());
    if (!bp->ready.empty() || !bp->slots.empty()) {
      int64_t age = now_ms - bp->rec.created_at_ms;
      if (bp->counts[static_cast<int>(ItemState::kPending)] +
              bp->counts[static_cast<int>(ItemState::kRetryWait)] >
          0) {
        oldest_ms = std::max(oldest_ms, age);
      }
    }
  }
  ready_total_ = ready;
  std::map<std::string, int64_t> children;
  for (auto& [key, bp] : batches_) {
    Batch& b = *bp;
    int64_t running = 0;
    if (b.items_loaded && b.counts[static_cast<int>(ItemState::kLaunched)] > 0) {
      for (const Item& item : b.items) {
        if (item.state == ItemState::kLaunched && !item.flow_run_state.empty()) {
          children[item.flow_run_state] += 1;
          if (item.flow_run_state == "Running") ++running;
        }
      }
    }
    if (core::is_final(b.rec.state)) {
      metrics_.remove_batch(b.rec.id);
    } else if (b.rec.total > 0) {
      const auto& c = b.counts;
      const int64_t queued = c[static_cast<int>(ItemState::kPending)] +
                             c[static_cast<int>(ItemState::kLaunching)] +
                             c[static_cast<int>(ItemState::kRetryWait)];
      metrics::BatchSample sample{core::to_seconds(clock_.now().time_since_epoch()), b.rec.total,
                                  b.rec.total - queued, b.done()};
      metrics_.update_batch(b.rec.id, sample, running);
    }
  }
  metrics_.set_children(children);
  metrics_.ready_items().Set(static_cast<double>(ready));
  metrics_.oldest_pending_seconds().Set(static_cast<double>(oldest_ms) / 1000.0);
}

// ---------------------------------------------------------------------------------------------
// Drain

void Engine::drain(std::function<void()> done) {
  draining_ = true;
  drain_done_ = std::move(done);
  for (auto* t : {&wake_timer_, &track_timer_}) {
    if (*t) timers_.cancel(**t);
    t->reset();
  }
  wake_at_.reset();
  log::info("draining", {{"in_flight", in_flight_}});
  maybe_finish_drain();
}

void Engine::maybe_finish_drain() {
  if (!draining_ || in_flight_ > 0 || !drain_done_) return;
  flush();
  if (!writer_.caught_up()) {
    // The store is slow or cannot be written: look again shortly instead of blocking this
    // thread, so the drain deadline and a second signal still end the process. Holding the
    // flush timer's slot keeps arm_flush from arming it meanwhile.
    if (flush_timer_) timers_.cancel(*flush_timer_);
    std::weak_ptr<bool> alive = alive_;
    flush_timer_ = timers_.schedule(clock_.now() + std::chrono::milliseconds(50), [this, alive] {
      if (alive.expired()) return;
      flush_timer_.reset();
      maybe_finish_drain();
    });
    return;
  }
  for (auto* t : {&tick_timer_, &flush_timer_}) {
    if (*t) timers_.cancel(**t);
    t->reset();
  }
  for (auto& [key, bp] : batches_) {
    // Answer long-polls now, while the listener can still carry the answers.
    auto waiters = std::move(bp->waiters);
    bp->waiters.clear();
    json view = batch_view(*bp);
    for (auto& w : waiters) {
      timers_.cancel(w->timer);
      auto fn = std::move(w->fn);
      w->fn = nullptr;
      if (fn) fn(view);
    }
  }
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

// ---------------------------------------------------------------------------------------------
// Reads and control

bool Engine::has_batch(const std::string& id) const { return find(id) != nullptr; }

int64_t Engine::batch_version(const std::string& id) const {
  const Batch* b = find(id);
  return b ? b->rec.version : -1;
}

const BatchSpec* Engine::spec_of(const std::string& id) const {
  const Batch* b = find(id);
  return b ? &b->spec : nullptr;
}

json Engine::batch_json(const std::string& id) const {
  const Batch* b = find(id);
  return b ? batch_view(*b) : json();
}

json Engine::stored_batch_json(const store::BatchRecord& record) {
  return stored_batch_json(record, store_.count_items(record.id));
}

json Engine::stored_batch_json(const store::BatchRecord& record, const ItemCounts& counts) {
  Batch b;
  b.rec = record;
  b.spec = spec_from_json(json::parse(record.spec_json, nullptr, false));
  for (int i = 0; i < core::kItemStateCount; ++i) {
    b.counts[i] = counts[i];
    if (core::is_failure(static_cast<ItemState>(i))) b.failures += counts[i];
  }
  return batch_view(b);
}

void Engine::wait_for_change(const std::string& id, int64_t after_version,
                             std::chrono::milliseconds wait, std::function<void(json)> fn) {
  Batch* b = find(id);
  if (b == nullptr) {
    fn(json());
    return;
  }
  if (b->rec.version > after_version || wait.count() <= 0 || draining_) {
    fn(batch_view(*b));
    return;
  }
  auto w = std::make_shared<Batch::Waiter>();
  w->after = after_version;
  w->fn = std::move(fn);
  b->waiters.push_back(w);
  std::weak_ptr<bool> alive = alive_;
  uint64_t key = b->key;
  w->timer = timers_.schedule(clock_.now() + wait, [this, alive, w, key] {
    if (alive.expired() || !w->fn) return;
    auto callback = std::move(w->fn);
    w->fn = nullptr;
    auto it = batches_.find(key);
    if (it == batches_.end()) {
      callback(json());
      return;
    }
    auto& ws = it->second->waiters;
    ws.erase(std::remove(ws.begin(), ws.end(), w), ws.end());
    callback(batch_view(*it->second));
  });
}

std::optional<std::vector<RunView>> Engine::list_runs(const std::string& id,
                                                      std::optional<ItemState> state, int64_t after,
                                                      int limit) const {
  const Batch* b = find(id);
  if (b == nullptr || !b->items_loaded) return std::nullopt;
  std::vector<RunView> out;
  for (int64_t i = std::max<int64_t>(0, after + 1);
       i < static_cast<int64_t>(b->items.size()) && static_cast<int>(out.size()) < limit; ++i) {
    const Item& item = b->items[i];
    if (state && item.state != *state) continue;
    out.push_back(run_view(item, i, clock_.now()));
  }
  return out;
}

void Engine::hold(store::BatchRecord record, const ItemCounts& counts) {
  if (find(record.id) != nullptr) return;
  auto b = std::make_unique<Batch>();
  b->key = next_key_++;
  b->rec = std::move(record);
  b->spec = spec_from_json(json::parse(b->rec.spec_json, nullptr, false));
  b->items_loaded = false;
  for (int i = 0; i < core::kItemStateCount; ++i) {
    b->counts[i] = counts[i];
    metrics_.items(static_cast<ItemState>(i)).Increment(static_cast<double>(counts[i]));
    if (core::is_failure(static_cast<ItemState>(i))) b->failures += counts[i];
  }
  b->finished_steady = clock_.now();
  metrics_.batches(b->rec.state).Increment();
  by_id_[b->rec.id] = b->key;
  batches_[b->key] = std::move(b);
}

std::vector<std::pair<int64_t, json>> Engine::held_batches(std::optional<BatchState> state,
                                                           int64_t after_seq) const {
  std::vector<std::pair<int64_t, json>> out;
  for (const auto& [key, b] : batches_) {
    if (b->rec.seq <= after_seq || (state && b->rec.state != *state)) continue;
    out.emplace_back(b->rec.seq, batch_view(*b));
  }
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  return out;
}

Engine::ControlAnswer Engine::cancel(const std::string& id, std::optional<std::string> on_cancel) {
  Batch* b = find(id);
  if (b == nullptr) return {ControlResult::kNotFound, "no batch with id " + id};
  if (core::is_final(b->rec.state)) {
    return {ControlResult::kConflict,
            "batch is already " + std::string(core::to_string(b->rec.state))};
  }
  if (on_cancel) b->spec.on_cancel = *on_cancel;
  finish(*b, BatchState::kCancelled);
  return {};
}

Engine::ControlAnswer Engine::pause(const std::string& id) {
  Batch* b = find(id);
  if (b == nullptr) return {ControlResult::kNotFound, "no batch with id " + id};
  if (core::is_final(b->rec.state)) {
    return {ControlResult::kConflict,
            "batch is already " + std::string(core::to_string(b->rec.state))};
  }
  scheduler_.set_paused(b->key, true);
  set_batch_state(*b, BatchState::kPaused);
  return {};
}

Engine::ControlAnswer Engine::resume(const std::string& id) {
  Batch* b = find(id);
  if (b == nullptr) return {ControlResult::kNotFound, "no batch with id " + id};
  if (b->rec.state != BatchState::kPaused) {
    return {ControlResult::kConflict,
            "batch is " + std::string(core::to_string(b->rec.state)) + ", not PAUSED"};
  }
  scheduler_.set_paused(b->key, false);
  set_batch_state(*b, BatchState::kRunning);
  pump();
  return {};
}

Engine::ControlAnswer Engine::redrive(const std::string& id) {
  Batch* b = find(id);
  if (b == nullptr) return {ControlResult::kNotFound, "no batch with id " + id};
  if (!b->items_loaded) {
    auto stored = store_.load_items(b->rec.id, true);
    b->items.clear();
    b->slots.clear();
    for (int i = 0; i < core::kItemStateCount; ++i) {
      metrics_.items(static_cast<ItemState>(i)).Decrement(static_cast<double>(b->counts[i]));
    }
    b->counts = {};
    b->failures = 0;
    b->items_loaded = true;
    init_batch(*b, {}, &stored);
  }
  std::vector<int64_t> again;
  for (size_t i = 0; i < b->items.size(); ++i) {
    auto s = b->items[i].state;
    if (s == ItemState::kLaunchFailed || s == ItemState::kFailed || s == ItemState::kCrashed ||
        s == ItemState::kSkipped) {
      again.push_back(static_cast<int64_t>(i));
    }
  }
  if (again.empty()) return {ControlResult::kConflict, "no failed or skipped items to redrive"};
  auto specs = store_.load_item_specs(b->rec.id, again);
  for (auto& [idx, spec] : specs) {
    Item& item = b->items[idx];
    if (item.state == ItemState::kFailed || item.state == ItemState::kCrashed) {
      if (!item.earlier_runs.is_array()) item.earlier_runs = json::array();
      item.earlier_runs.push_back(
          {{"flow_run_id", item.flow_run_id}, {"state", std::string(core::to_string(item.state))}});
      item.relaunches += 1;
      item.flow_run_id.clear();
      item.flow_run_state.clear();
    }
    item.spec = std::move(spec);
    item.attempts = 0;
    item.unavailable = 0;
    set_state(*b, item, idx, ItemState::kPending);
  }
  // Failures of earlier rounds no longer count against the tolerance.
  b->rec.finished_at_ms = 0;
  b->slots.erase(b->slots.begin() + 1, b->slots.end());
  for (auto& s : b->slots) {
    if (s.state == DeploymentSlot::State::kFailed) s.state = DeploymentSlot::State::kUnresolved;
  }
  set_batch_state(*b, BatchState::kRunning);
  scheduler_.add_batch(b->key, quota_of(b->spec));
  for (auto& [idx, spec] : specs) {
    Item& item = b->items[idx];
    item.slot = 0;
    if (item.spec.find("\"deployment\"") != std::string::npos) {
      json j = json::parse(item.spec, nullptr, false);
      if (j.is_object() && j.contains("deployment") && j["deployment"].is_string()) {
        const std::string text = j["deployment"].get<std::string>();
        auto found = std::find_if(b->slots.begin(), b->slots.end(),
                                  [&](const DeploymentSlot& s) { return s.text == text; });
        if (found == b->slots.end()) {
          DeploymentSlot s;
          s.text = text;
          if (auto ref = prefect::parse_deployment_ref(text)) s.ref = *ref;
          b->slots.push_back(std::move(s));
          item.slot = static_cast<uint16_t>(b->slots.size() - 1);
        } else {
          item.slot = static_cast<uint16_t>(found - b->slots.begin());
        }
      }
    }
    make_ready(*b, idx);
  }
  pump();
  return {};
}

Engine::ControlAnswer Engine::update_spec(const std::string& id, const BatchSpec& spec) {
  Batch* b = find(id);
  if (b == nullptr) return {ControlResult::kNotFound, "no batch with id " + id};
  if (core::is_final(b->rec.state)) {
    return {ControlResult::kConflict,
            "batch is already " + std::string(core::to_string(b->rec.state))};
  }
  b->spec = spec;
  scheduler_.update_quota(b->key, quota_of(spec));
  sync_ready(*b);
  touch(*b);
  check_finished(*b);
  pump();
  return {};
}

bool Engine::ready(std::string* why) const {
  if (breaker_.state() == core::CircuitBreaker::State::kOpen) {
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
  for (const auto& [k, b] : batches_) active += core::is_final(b->rec.state) ? 0 : 1;
  return {{"in_flight", in_flight_},
          {"in_flight_limit", effective_limit()},
          {"limit_algorithm", std::string(limit_->name())},
          {"token_bucket_tokens", bucket_.level()},
          {"paused_s", core::to_seconds(backoff_.remaining())},
          {"breaker", std::string(breaker_.state_name())},
          {"bulk", bulk_supported_},
          {"active_batches", active},
          {"ready_items", ready_total_},
          {"pending_retries", retries_.size()},
          {"retry_budget_tokens", budget_.balance()},
          {"batches", batch_views()}};
}

json Engine::batch_views() const {
  // Rates, ETA and running children of active batches, for the status page.
  json out = json::object();
  for (const auto& [k, b] : batches_) {
    if (core::is_final(b->rec.state)) continue;
    auto v = metrics_.batch_view(b->rec.id);
    if (!v) continue;
    out[b->rec.id] = {{"launch_rate", v->launch_rate},
                      {"completion_rate", v->completion_rate},
                      {"eta_s", v->eta_s ? json(*v->eta_s) : json(nullptr)},
                      {"children_running", v->children_running},
                      {"max_running", b->spec.limits.max_running ? json(*b->spec.limits.max_running)
                                                                 : json(nullptr)},
                      {"at_running_cap", b->spec.limits.max_running.has_value() &&
                                             b->running() >= *b->spec.limits.max_running}};
  }
  return out;
}

}  // namespace floodgate::engine
