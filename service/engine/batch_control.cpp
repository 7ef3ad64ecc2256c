#include "engine/batch_control.h"

#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/start_pacer.h"

namespace floodgate::engine {

using core::BatchState;
using core::ItemState;
using nlohmann::json;

namespace {

// The answer that asks for reads first: the batch's items in a state a redrive launches again
// (some of them may no longer be held), and the specs of `missing` (held without their spec).
ControlAnswer read_first(const Batch& b, std::vector<int64_t> missing) {
  ControlAnswer answer{ControlResult::kReadFirst, "the batch's items must be read from the store"};
  answer.needs.items = b.redrivable_evictions > 0;
  answer.needs.specs = std::move(missing);
  answer.needs.evictions = b.redrivable_evictions;
  return answer;
}

// The run specs `reads` brought, by index. Specs never change, so any read of them is current.
std::unordered_map<int64_t, const std::string*> specs_read(const RedriveReads& reads) {
  std::unordered_map<int64_t, const std::string*> found;
  if (reads.items) {
    for (const auto& item : *reads.items) found[item.index] = &item.spec_json;
  }
  for (const auto& [index, text] : reads.specs) found[index] = &text;
  return found;
}

}  // namespace

BatchControl::BatchControl(core::Clock& clock, BatchBook& book, DeploymentResolver& resolver,
                           core::LaunchScheduler& scheduler, Outbox& outbox)
    : clock_(clock), book_(book), resolver_(resolver), scheduler_(scheduler), outbox_(outbox) {}

Batch* BatchControl::active(const std::string& id, ControlAnswer& answer) {
  Batch* b = book_.find(id);
  if (b == nullptr) {
    answer = {ControlResult::kNotFound, "no batch with id " + id};
    return nullptr;
  }
  if (core::is_final(b->rec.state)) {
    answer = {ControlResult::kConflict,
              "batch is already " + std::string(core::to_string(b->rec.state))};
    return nullptr;
  }
  return b;
}

ControlAnswer BatchControl::cancel(const std::string& id, std::optional<OnCancel> on_cancel) {
  ControlAnswer answer;
  Batch* b = active(id, answer);
  if (b == nullptr) return answer;
  if (on_cancel) b->spec.on_cancel = *on_cancel;
  book_.finish(*b, BatchState::kCancelled);
  return answer;
}

ControlAnswer BatchControl::pause(const std::string& id) {
  ControlAnswer answer;
  Batch* b = active(id, answer);
  if (b == nullptr) return answer;
  scheduler_.set_paused(b->key, true);
  book_.set_batch_state(*b, BatchState::kPaused);
  return answer;
}

ControlAnswer BatchControl::resume(const std::string& id) {
  Batch* b = book_.find(id);
  if (b == nullptr) return {ControlResult::kNotFound, "no batch with id " + id};
  if (b->rec.state != BatchState::kPaused) {
    return {ControlResult::kConflict,
            "batch is " + std::string(core::to_string(b->rec.state)) + ", not PAUSED"};
  }
  scheduler_.set_paused(b->key, false);
  book_.set_batch_state(*b, BatchState::kRunning);
  outbox_.dispatch_now();
  return {};
}

ControlAnswer BatchControl::update_spec(const std::string& id, const BatchSpec& spec) {
  ControlAnswer answer;
  Batch* b = active(id, answer);
  if (b == nullptr) return answer;
  b->spec = spec;
  scheduler_.update_quota(b->key, effective_quota(*b));
  resolver_.sync_ready(*b);
  book_.batch_changed(*b);
  book_.check_finished(*b);
  outbox_.dispatch_now();
  return answer;
}

void BatchControl::hold(store::BatchRecord record,
                        const std::array<int64_t, core::kItemStateCount>& counts) {
  if (book_.find(record.id) != nullptr) return;
  BatchSpec spec = spec_from_json(json::parse(record.spec_json, nullptr, false));
  Batch& b = book_.add(std::move(record), std::move(spec));
  book_.set_counts(b, counts);
  b.finished_steady = clock_.now();
  book_.announce(b);
}

ControlAnswer BatchControl::take_specs(Batch& b, const RedriveReads& reads,
                                       std::vector<int64_t>& again) {
  std::vector<int64_t> missing;
  for (const auto& [index, item] : b.items) {
    if (!is_redrivable(item.state)) continue;
    again.push_back(index);
    // Runs that ended FAILED or CRASHED no longer hold their spec in memory.
    if (!item.spec) missing.push_back(index);
  }
  if (missing.empty()) return {};
  const auto found = specs_read(reads);
  bool unread = false;
  for (int64_t idx : missing) {
    auto it = found.find(idx);
    if (it == found.end()) {
      unread = true;
    } else if (it->second->empty()) {
      return {ControlResult::kConflict,
              "the store holds no run spec for item " + std::to_string(idx)};
    }
  }
  // Asked again rather than left out: an item that failed since the read is redriven too. All
  // missing specs are asked for, since nothing of a read is kept until the redrive applies.
  if (unread) return read_first(b, std::move(missing));
  for (int64_t idx : missing) {
    b.items[idx].spec = std::make_unique<RunSpec>(parse_run_spec(*found.at(idx)));
  }
  return {};
}

void BatchControl::relaunch(Batch& b, int64_t index) {
  Item& item = b.items[index];
  if (item.state == ItemState::kFailed || item.state == ItemState::kCrashed) {
    if (!item.earlier_runs.is_array()) item.earlier_runs = json::array();
    item.earlier_runs.push_back(
        {{"flow_run_id", item.flow_run_id}, {"state", std::string(core::to_string(item.state))}});
    item.relaunches += 1;
    item.flow_run_id.clear();
    item.flow_run_state.clear();
  }
  item.attempts = 0;
  item.unavailable = 0;
  book_.set_state(b, index, ItemState::kPending);
}

ControlAnswer BatchControl::redrive(const std::string& id, const RedriveReads& reads) {
  Batch* b = book_.find(id);
  if (b == nullptr) return {ControlResult::kNotFound, "no batch with id " + id};
  if (b->redrivable_evictions > 0) {
    // Some items to redrive are in the store only. Items evicted since the read may have been
    // read before their last write: read again.
    if (!reads.items || reads.evictions != b->redrivable_evictions) return read_first(*b, {});
    for (int64_t idx : book_.hold_items(*b, *reads.items)) resolver_.make_ready(*b, idx);
  }
  std::vector<int64_t> again;
  ControlAnswer answer = take_specs(*b, reads, again);
  if (answer.result != ControlResult::kOk) return answer;
  if (again.empty()) return {ControlResult::kConflict, "no failed or skipped items to redrive"};
  restart(*b, again);
  return {};
}

void BatchControl::restart(Batch& b, const std::vector<int64_t>& again) {
  for (int64_t idx : again) relaunch(b, idx);
  // Failures of earlier rounds no longer count against the tolerance.
  b.rec.finished_at_ms = 0;
  b.deployments.erase(b.deployments.begin() + 1, b.deployments.end());
  for (auto& d : b.deployments) {
    if (d.state == BatchDeployment::State::kFailed) d.state = BatchDeployment::State::kUnresolved;
  }
  book_.set_batch_state(b, BatchState::kRunning);
  scheduler_.add_batch(b.key, effective_quota(b));
  for (int64_t idx : again) {
    Item& item = b.items[idx];
    item.deployment =
        item.spec->deployment.empty() ? 0 : deployment_index(b, item.spec->deployment);
    resolver_.make_ready(b, idx);
  }
  outbox_.dispatch_now();
}

}  // namespace floodgate::engine
