#include "engine/batch_book.h"

#include <limits>
#include <utility>

#include "metrics/log.h"
#include "prefect/transient.h"

namespace floodgate::engine {

using core::BatchState;
using core::ItemState;
using nlohmann::json;

namespace {

// What the store keeps of an item beyond its columns (relaunches, placeholder, waits).
void restore_detail(Item& item, const std::string& detail_json) {
  if (detail_json.empty()) return;
  json d = json::parse(detail_json, nullptr, false);
  if (!d.is_object()) return;
  item.relaunches = d.value("relaunches", 0);
  if (d.contains("earlier_runs")) item.earlier_runs = d["earlier_runs"];
  item.parent_task_run_id = d.value("parent_task_run_id", "");
  item.unavailable = d.value("transient_attempts", 0);
  if (d.contains("waited_s") && d["waited_s"].is_number()) {
    item.settled = item.first_attempt + core::from_seconds(d["waited_s"].get<double>());
  }
}

// Whether a run may still be launched again after it exists: a crash, a deadline or a deletion
// within the relaunch budget.
bool may_relaunch(const Batch& b, const Item& item) {
  return b.spec.track && item.relaunches < relaunch_budget(b.spec);
}

// What an item not (re)launched when its batch ends becomes: SKIPPED, or, when it waited for a
// relaunch, what became of its last run (CRASHED, or FAILED after a deadline or a deletion).
ItemState unlaunched_end(const Item& item) {
  if (item.relaunches == 0 || !item.flow_run_id.empty() || !item.earlier_runs.is_array() ||
      item.earlier_runs.empty()) {
    return ItemState::kSkipped;
  }
  const auto& last = item.earlier_runs.back();
  return last.value("state", "") == "CRASHED" ? ItemState::kCrashed : ItemState::kFailed;
}

}  // namespace

uint16_t deployment_index(Batch& b, const std::string& text) {
  for (size_t i = 0; i < b.deployments.size(); ++i) {
    if (b.deployments[i].text == text) return static_cast<uint16_t>(i);
  }
  BatchDeployment d;
  d.text = text;
  if (auto ref = prefect::parse_deployment_ref(text)) {
    d.ref = *ref;
  } else {
    d.state = BatchDeployment::State::kFailed;
    d.error = "deployment '" + text + "' is neither \"flow/deployment\" nor an id";
  }
  b.deployments.push_back(std::move(d));
  return static_cast<uint16_t>(b.deployments.size() - 1);
}

std::string idempotency_key(const Batch& b, int64_t index, const Item& item) {
  std::string key = item.spec ? item.spec->idempotency_key : std::string();
  if (key.empty()) key = "floodgate:" + b.rec.id + ":" + std::to_string(index);
  if (item.relaunches > 0) key += ":r" + std::to_string(item.relaunches);
  return key;
}

BatchBook::BatchBook(core::Clock& clock, core::WallClock& wall, metrics::Metrics& metrics)
    : clock_(clock), wall_(wall), metrics_(metrics) {}

Batch* BatchBook::find(const std::string& id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : batches_.at(it->second).get();
}
const Batch* BatchBook::find(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : batches_.at(it->second).get();
}
Batch* BatchBook::get(uint64_t key) {
  auto it = batches_.find(key);
  return it == batches_.end() ? nullptr : it->second.get();
}
const Batch* BatchBook::get(uint64_t key) const {
  auto it = batches_.find(key);
  return it == batches_.end() ? nullptr : it->second.get();
}

Batch& BatchBook::add(store::BatchRecord record, BatchSpec spec) {
  auto b = std::make_unique<Batch>();
  b->key = next_key_++;
  b->rec = std::move(record);
  b->spec = std::move(spec);
  b->batch_tag = "floodgate-batch:" + b->rec.id;
  Batch& ref = *b;
  by_id_[ref.rec.id] = ref.key;
  batches_[ref.key] = std::move(b);
  return ref;
}

std::vector<int64_t> BatchBook::load_items(Batch& b, const std::vector<std::string>& run_specs) {
  b.items.clear();
  b.counts = {};
  b.failures = 0;
  b.unpaged = 0;
  b.page_cursor = static_cast<int64_t>(run_specs.size());
  if (b.deployments.empty()) deployment_index(b, b.spec.deployment);
  std::vector<int64_t> to_launch;
  to_launch.reserve(run_specs.size());
  for (size_t i = 0; i < run_specs.size(); ++i) {
    Item& item = b.items.hold(static_cast<int64_t>(i));
    item.spec = std::make_unique<RunSpec>(parse_run_spec(run_specs[i]));
    if (!item.spec->deployment.empty()) {
      item.deployment = deployment_index(b, item.spec->deployment);
    }
    to_launch.push_back(static_cast<int64_t>(i));
  }
  b.counts[static_cast<int>(ItemState::kPending)] = static_cast<int64_t>(run_specs.size());
  return to_launch;
}

void BatchBook::start_paging(Batch& b) {
  b.items.clear();
  b.counts = {};
  b.failures = 0;
  b.counts[static_cast<int>(ItemState::kPending)] = b.rec.total;
  b.unpaged = b.rec.total;
  b.page_cursor = 0;
  if (b.deployments.empty()) deployment_index(b, b.spec.deployment);
}

std::vector<int64_t> BatchBook::hold_items(Batch& b, const std::vector<store::ItemRecord>& stored) {
  if (b.deployments.empty()) deployment_index(b, b.spec.deployment);
  std::vector<int64_t> to_launch;
  for (const auto& rec : stored) {
    if (b.items.find(rec.index) != nullptr) continue;  // held: memory is newer than the store
    Item& item = b.items.hold(rec.index);
    item.state = rec.state;
    item.attempts = rec.attempts;
    item.flow_run_id = rec.flow_run_id;
    item.flow_run_state = rec.flow_run_state;
    item.last_error = rec.last_error;
    // Steady time does not survive a restart: max_elapsed_s counts again from now.
    item.first_attempt = clock_.now();
    restore_detail(item, rec.detail_json);
    if (item.state == ItemState::kLaunching || item.state == ItemState::kRetryWait) {
      // In flight or waiting when the process stopped: send again with the same key.
      b.counts[static_cast<int>(item.state)] -= 1;
      b.counts[static_cast<int>(ItemState::kPending)] += 1;
      item.state = ItemState::kPending;
    }
    // The steady clock does not survive a restart: the deadlines count from the run's own times
    // in Prefect, from the first read on (until then, from now).
    if (item.state == ItemState::kLaunched || item.state == ItemState::kStuck) {
      item.launched_at = clock_.now();
      item.times_from_prefect = true;
    }
    const bool keep_spec = item.state == ItemState::kPending ||
                           (item.state == ItemState::kLaunched && may_relaunch(b, item)) ||
                           (core::is_failure(item.state) && item.state != ItemState::kStuck) ||
                           item.state == ItemState::kSkipped;
    if (keep_spec && !rec.spec_json.empty()) {
      item.spec = std::make_unique<RunSpec>(parse_run_spec(rec.spec_json));
      if (!item.spec->deployment.empty()) {
        item.deployment = deployment_index(b, item.spec->deployment);
      }
    }
    if (item.state == ItemState::kPending && item.spec) to_launch.push_back(rec.index);
  }
  return to_launch;
}

void BatchBook::set_counts(Batch& b, const std::array<int64_t, core::kItemStateCount>& counts) {
  b.counts = counts;
  b.failures = 0;
  // Items to redrive are in the store only: a redrive reads them.
  b.redrivable_evictions = 0;
  for (auto s : kRedrivableStates) b.redrivable_evictions += static_cast<uint64_t>(b.count(s));
  for (int i = 0; i < core::kItemStateCount; ++i) {
    if (core::is_failure(static_cast<ItemState>(i))) b.failures += counts[i];
  }
}

void BatchBook::announce(Batch& b) {
  for (auto* o : observers_) o->on_batch_held(b);
}

void BatchBook::items_reloaded(Batch& b, const std::array<int64_t, core::kItemStateCount>& before) {
  for (auto* o : observers_) o->on_items_reloaded(b, before);
}

bool BatchBook::evictable(const Batch& b, const Item& item) {
  if (item.dirty || item.in_request || item.in_doubt) return false;
  switch (item.state) {
    case ItemState::kPending:
    case ItemState::kLaunching:
    case ItemState::kRetryWait:
      return false;
    case ItemState::kLaunched:
      // Followed, or to be cancelled with its batch.
      if (b.spec.track) return false;
      return b.spec.on_cancel != OnCancel::kCancelChildren || core::is_final(b.rec.state);
    case ItemState::kStuck:
      return !b.spec.track;  // still followed: it may yet end
    default:
      return true;
  }
}

void BatchBook::evict(Batch& b, int64_t index) {
  const Item* item = b.items.find(index);
  if (item == nullptr || !evictable(b, *item)) return;
  if (is_redrivable(item->state)) b.redrivable_evictions += 1;
  b.items.erase(index);
}

void BatchBook::bump_version(Batch& b) {
  b.rec.version += 1;
  b.rec.updated_at_ms = wall_.unix_ms();
}

void BatchBook::notify_changed(Batch& b) {
  for (auto* o : observers_) o->on_batch_changed(b);
}

void BatchBook::set_state(Batch& b, int64_t index, ItemState to) {
  Item& item = b.items[index];
  const ItemState from = item.state;
  if (from == to) return;
  b.counts[static_cast<int>(from)] -= 1;
  b.counts[static_cast<int>(to)] += 1;
  if (core::is_failure(from)) b.failures -= 1;
  if (core::is_failure(to)) b.failures += 1;
  item.state = to;
  bump_version(b);
  for (auto* o : observers_) o->on_item_state(b, index, from, to);
  // LAUNCHING is written as PENDING: nothing to write until the answer.
  if (to != ItemState::kLaunching) {
    for (auto* o : observers_) o->on_item_changed(b, index);
  }
  notify_changed(b);
}

void BatchBook::launched(Batch& b, int64_t index, const std::string& flow_run_id, bool existing) {
  Item& item = b.items[index];
  item.flow_run_id = flow_run_id;
  item.in_doubt = false;
  item.settled = clock_.now();
  item.launched_at = item.settled;
  item.started_at = core::TimePoint::min();
  // A run a create found by its key may be older than this process: its times come from Prefect.
  item.times_from_prefect = existing;
  if (b.first_launch == core::TimePoint::min()) b.first_launch = item.settled;
  item.missing_reads = 0;
  item.last_error.clear();
  if (!may_relaunch(b, item)) item.spec.reset();
  metrics_.launches(existing ? "existing" : "created").Increment();
  set_state(b, index, ItemState::kLaunched);
  if (!b.spec.track) check_finished(b);
}

void BatchBook::launch_failed(Batch& b, int64_t index, const std::string& message) {
  Item& item = b.items[index];
  item.in_request = false;
  if (core::is_final(item.state)) return;  // e.g. SKIPPED when the batch failed meanwhile
  item.in_doubt = false;
  item.settled = clock_.now();
  // Prefect's message without the SQL statement and parameters; the full text in the debug log.
  item.last_error = prefect::first_line(message);
  metrics_.launches("failed").Increment();
  set_state(b, index, ItemState::kLaunchFailed);
  log::warn("launch failed",
            {{"batch_id", b.rec.id}, {"index", index}, {"error", item.last_error}});
  if (item.last_error.size() != message.size()) {
    log::debug("launch failed (full error)",
               {{"batch_id", b.rec.id}, {"index", index}, {"error", message}});
  }
  check_finished(b);
}

void BatchBook::batch_changed(Batch& b) {
  bump_version(b);
  notify_changed(b);
}

void BatchBook::item_changed(Batch& b, int64_t index) {
  for (auto* o : observers_) o->on_item_changed(b, index);
}

void BatchBook::set_batch_state(Batch& b, BatchState s) {
  const BatchState from = b.rec.state;
  if (from == s) return;
  b.rec.state = s;
  bump_version(b);
  for (auto* o : observers_) o->on_batch_state(b, from, s);
  notify_changed(b);
}

void BatchBook::check_finished(Batch& b) {
  if (core::is_final(b.rec.state)) return;
  int64_t allowance = failure_allowance(b.spec, b.rec.total);
  if (!b.rec.sealed && b.spec.tolerated_failure_percentage > 0) {
    // While runs may still be appended, a percentage counts against a total that is still to
    // grow: only a fixed count, which more runs cannot raise, fails the batch before its seal.
    allowance = b.spec.tolerated_failure_count.value_or(std::numeric_limits<int64_t>::max());
  }
  if (b.failures > allowance) {
    log::warn("batch failed: failures beyond tolerance",
              {{"batch_id", b.rec.id}, {"failures", b.failures}, {"tolerated", allowance}});
    finish(b, BatchState::kFailed);
    return;
  }
  // An unsealed batch waits for more runs even when every item so far is done.
  if (b.rec.sealed && b.done() == b.rec.total) finish(b, BatchState::kCompleted);
}

void BatchBook::finish(Batch& b, BatchState state) {
  std::vector<int64_t> in_doubt;
  std::vector<int64_t> unlaunched;
  for (auto& [index, item] : b.items) {
    if (item.in_request) continue;  // its answer decides
    if (item.state != ItemState::kPending && item.state != ItemState::kRetryWait) continue;
    if (item.in_doubt) {
      in_doubt.push_back(index);  // its run may exist: look first
      continue;
    }
    unlaunched.push_back(index);
  }
  for (int64_t index : unlaunched) set_state(b, index, unlaunched_end(b.items[index]));
  skip_unpaged(b, b.page_cursor);
  for (auto* o : observers_) o->on_batch_ending(b, in_doubt);
  b.ready.clear();
  for (auto& d : b.deployments) d.waiting.clear();
  b.rec.finished_at_ms = wall_.unix_ms();
  b.finished_steady = clock_.now();
  set_batch_state(b, state);
  log::info("batch finished", {{"batch_id", b.rec.id},
                               {"state", std::string(core::to_string(state))},
                               {"failures", b.failures},
                               {"total", b.rec.total}});
  for (auto* o : observers_) o->on_batch_finished(b);
}

void BatchBook::append_items(Batch& b, int64_t first_index, int64_t n) {
  if (first_index != b.rec.total) {
    // Appends reach the engine in the order the store took them, so this does not happen; the
    // runs are in the store all the same and a restart picks them up.
    log::error("appended runs do not follow the batch's items; left to a restart",
               {{"batch_id", b.rec.id}, {"first_index", first_index}, {"total", b.rec.total}});
    return;
  }
  const auto before = b.counts;
  b.counts[static_cast<int>(ItemState::kPending)] += n;
  b.unpaged += n;
  b.rec.total += n;
  items_reloaded(b, before);
  batch_changed(b);
  log::info(
      "runs appended",
      {{"batch_id", b.rec.id}, {"first_index", first_index}, {"count", n}, {"total", b.rec.total}});
  // The batch ended (cancelled, failed) between the API's look and the store's append.
  if (core::is_final(b.rec.state)) skip_unpaged(b, first_index);
}

void BatchBook::skip_unpaged(Batch& b, int64_t from_index) {
  if (b.unpaged == 0) return;
  const auto before = b.counts;
  b.counts[static_cast<int>(ItemState::kPending)] -= b.unpaged;
  b.counts[static_cast<int>(ItemState::kSkipped)] += b.unpaged;
  b.redrivable_evictions += static_cast<uint64_t>(b.unpaged);  // SKIPPED in the store only
  b.unpaged = 0;
  b.page_cursor = b.rec.total;
  b.skip_unpaged_from = std::min(b.skip_unpaged_from.value_or(from_index), from_index);
  items_reloaded(b, before);
  batch_changed(b);
}

void BatchBook::seal(Batch& b) {
  if (b.rec.sealed) return;
  b.rec.sealed = true;
  log::info("batch sealed", {{"batch_id", b.rec.id}, {"total", b.rec.total}});
  batch_changed(b);
  check_finished(b);
}

}  // namespace floodgate::engine
