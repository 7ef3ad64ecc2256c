#include "engine/child_tracker.h"

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <utility>

#include "metrics/log.h"
#include "prefect/transient.h"

namespace floodgate::engine {

using core::BatchState;
using core::ItemState;
using nlohmann::json;

namespace {

// Children the tracker reads: launched, or stuck past a deadline and left to the parent (they
// still take their final state when they end).
bool is_followed(ItemState s) { return s == ItemState::kLaunched || s == ItemState::kStuck; }
int64_t followed(const Batch& b) {
  return b.count(ItemState::kLaunched) + b.count(ItemState::kStuck);
}

}  // namespace

ChildTracker::ChildTracker(core::Clock& clock, const core::WallClock& wall, core::Random& random,
                           std::function<std::string()> new_id, TrackOptions options,
                           BatchBook& book, DeploymentResolver& resolver, Outbox& outbox,
                           prefect::PrefectApi& api, metrics::Metrics& metrics)
    : clock_(clock),
      wall_(wall),
      random_(random),
      options_(options),
      book_(book),
      resolver_(resolver),
      outbox_(outbox),
      api_(api),
      metrics_(metrics),
      canceller_(random, std::move(new_id), book, outbox, api, [this](Batch& b) {
        // The children are on their way to CANCELLED: follow the batch at the fastest cadence
        // again so its items show the end within a second or two, not a stretched interval.
        b.track_interval = options_.interval_min;
        b.next_track = std::min(b.next_track, clock_.now());
      }) {}

void ChildTracker::round() {
  bool queued_any = false;
  for (const auto& [key, bp] : book_.batches()) queued_any = queue_reads(*bp) || queued_any;
  if (queued_any) outbox_.dispatch_now();
}

bool ChildTracker::queue_reads(Batch& b) {
  // The parent is watched while the batch runs, launched children or not: once it has ended,
  // nothing more is launched under it.
  const bool watch_parent = !b.spec.parent_flow_run_id.empty() && !core::is_final(b.rec.state);
  if (!b.spec.track || b.track_outstanding > 0 || clock_.now() < b.next_track ||
      (followed(b) == 0 && !watch_parent)) {
    return false;
  }
  b.track_saw_final = false;
  BacklogGate::recount(b);
  ReadRuns read;
  read.batch = b.key;
  auto queue = [&] {
    outbox_.enqueue(std::make_shared<Request>(Request{std::move(read), this}));
    b.track_outstanding += 1;
    read = ReadRuns{};
    read.batch = b.key;
  };
  bool queued = false;
  for (const auto& [i, item] : b.items) {
    if (!is_followed(item.state) || item.flow_run_id.empty() ||
        item.missing_reads >= kMissingReadsForDeleted) {
      continue;
    }
    read.indexes.push_back(i);
    read.ids.push_back(item.flow_run_id);
    if (read.ids.size() == kReadSize) {
      queue();
      queued = true;
    }
  }
  if (watch_parent) {
    // Prefect only cascades a CANCELLED parent to its children; floodgate applies the batch's
    // on_cancel whenever the parent ends.
    read.indexes.push_back(-1);
    read.ids.push_back(b.spec.parent_flow_run_id);
  }
  if (!read.ids.empty()) {
    queue();
    queued = true;
  }
  return queued;
}

bool ChildTracker::parent_seen_recently(const Batch& b) const {
  return clock_.now() - b.parent_seen_running < kParentRecheck;
}

void ChildTracker::queue_parent_read(Batch& b) {
  if (b.parent_read_outstanding) return;
  b.parent_read_outstanding = true;
  resolver_.sync_ready(b);
  ReadRuns read;
  read.batch = b.key;
  read.parent_only = true;
  read.indexes.push_back(-1);
  read.ids.push_back(b.spec.parent_flow_run_id);
  outbox_.enqueue(std::make_shared<Request>(Request{std::move(read), this}));
}

void ChildTracker::parent_read(Batch& b, const prefect::FlowRunInfo* run) {
  if (run != nullptr && prefect::is_final_state_type(run->state_type)) {
    if (!core::is_final(b.rec.state)) {
      log::info("parent flow run ended; cancelling the batch (on_cancel applies)",
                {{"batch_id", b.rec.id},
                 {"parent_flow_run_id", run->id},
                 {"parent_state", run->state_type}});
      book_.finish(b, BatchState::kCancelled);
    }
    return;
  }
  b.parent_seen_running = clock_.now();
}

std::optional<prefect::HttpRequest> ChildTracker::build(Request& request) {
  if (const auto* read = std::get_if<ReadRuns>(&request.payload)) {
    return api_.filter_flow_runs(read->ids);
  }
  return std::nullopt;  // cancels are the canceller's
}

void ChildTracker::on_answer(Request& request, const prefect::HttpResponse& response,
                             const prefect::Classification& c) {
  const auto& read = request.as<ReadRuns>();
  Batch* b = book_.get(read.batch);
  if (b == nullptr) return;
  auto runs = c.verdict == prefect::Verdict::kOk ? prefect::parse_flow_run_list(response.body)
                                                 : std::nullopt;
  if (read.parent_only) {
    on_parent_only(*b, read.ids.front(), runs, c);
    return;
  }
  b->track_outstanding = std::max(0, b->track_outstanding - 1);
  if (c.verdict != prefect::Verdict::kOk) {
    log::debug("tracking read failed", {{"batch_id", b->rec.id}, {"error", c.message}});
  }
  if (!runs) {
    round_done(*b);
    return;
  }
  std::unordered_map<std::string, int64_t> index_of;
  for (size_t i = 0; i < read.ids.size(); ++i) index_of.emplace(read.ids[i], read.indexes[i]);
  bool any_final = false;
  for (const auto& run : *runs) {
    auto f = index_of.find(run.id);
    if (f == index_of.end()) continue;
    if (f->second < 0) {
      parent_read(*b, &run);
    } else if (follow(*b, f->second, run)) {
      any_final = true;
    }
    index_of.erase(f);
  }
  // What is left was not in the answer: deleted in Prefect (or a read that raced its creation).
  for (const auto& [id, index] : index_of) {
    if (index >= 0 && missing(*b, index, id)) any_final = true;
  }
  if (any_final) b->track_saw_final = true;
  round_done(*b);
  // Children that started made room under the batch's backlog limit.
  resolver_.sync_ready(*b);
  book_.check_finished(*b);
}

void ChildTracker::on_parent_only(Batch& b, const std::string& parent_id,
                                  const std::optional<std::vector<prefect::FlowRunInfo>>& runs,
                                  const prefect::Classification& c) {
  b.parent_read_outstanding = false;
  const prefect::FlowRunInfo* parent = nullptr;
  if (runs) {
    for (const auto& run : *runs) {
      if (run.id == parent_id) parent = &run;
    }
  } else {
    // The read failed: launches go on (they meet the same outage with their own retries), and
    // the next launch asks again after kParentRecheck.
    log::debug("parent read failed", {{"batch_id", b.rec.id}, {"error", c.message}});
  }
  parent_read(b, parent);
  resolver_.sync_ready(b);
  outbox_.dispatch_now();
}

bool ChildTracker::follow(Batch& b, int64_t index, const prefect::FlowRunInfo& run) {
  Item* held = b.items.find(index);  // no longer held: it ended meanwhile
  if (held == nullptr) return false;
  Item& item = *held;
  if (!is_followed(item.state) || item.flow_run_id != run.id) return false;
  item.missing_reads = 0;
  if (item.flow_run_state != run.state_name) {
    item.flow_run_state = run.state_name;
    book_.item_changed(b, index);
    book_.batch_changed(b);
  }
  const bool seen_started = item.started_at != core::TimePoint::min();
  const auto breach = check_deadlines(b.spec.deadlines, item, run, clock_.now(), wall_.now());
  if (!seen_started && item.started_at != core::TimePoint::min()) {
    if (gate_ != nullptr) gate_->on_started(b, index);
    if (pacer_ != nullptr && run.state_type != "CRASHED") pacer_->on_started(b);
  }
  if (!prefect::is_final_state_type(run.state_type)) {
    if (breach && item.state == ItemState::kLaunched) give_up(b, index, *breach, &run);
    return false;
  }
  auto final_state = core::parse_item_state(run.state_type).value_or(ItemState::kFailed);
  if (final_state == ItemState::kCrashed && pacer_ != nullptr) {
    pacer_->on_crash(b, seen_started ? std::optional<core::Duration>(clock_.now() - item.started_at)
                                     : std::nullopt);
  }
  if (final_state == ItemState::kCrashed && item.state == ItemState::kLaunched &&
      item.relaunches < relaunch_budget(b.spec) && !core::is_final(b.rec.state) && item.spec) {
    relaunch(b, index, "CRASHED", "run " + item.flow_run_id + " crashed: " + run.state_message);
    return true;
  }
  if (final_state != ItemState::kCompleted && !run.state_message.empty()) {
    item.last_error = run.state_message;
  }
  book_.set_state(b, index, final_state);
  return true;
}

bool ChildTracker::missing(Batch& b, int64_t index, const std::string& flow_run_id) {
  Item* held = b.items.find(index);  // no longer held: it ended meanwhile
  if (held == nullptr) return false;
  Item& item = *held;
  if (!is_followed(item.state) || item.flow_run_id != flow_run_id) return false;
  if (++item.missing_reads < kMissingReadsForDeleted) return false;
  if (item.state == ItemState::kStuck) {
    // Left to the parent already: say it is gone, and stop reading it.
    item.last_error =
        breach_message(Breach::kDeleted, b.spec.deadlines, item, nullptr, clock_.now());
    book_.item_changed(b, index);
    book_.batch_changed(b);
    return false;
  }
  give_up(b, index, Breach::kDeleted, nullptr);
  return true;
}

void ChildTracker::give_up(Batch& b, int64_t index, Breach breach,
                           const prefect::FlowRunInfo* run) {
  Item& item = b.items[index];
  const OnDeadline policy = b.spec.deadlines.on_deadline.value_or(OnDeadline::kReport);
  std::string message = breach_message(breach, b.spec.deadlines, item, run, clock_.now());
  const bool can_relaunch = policy == OnDeadline::kRelaunch &&
                            item.relaunches < relaunch_budget(b.spec) &&
                            !core::is_final(b.rec.state) && item.spec != nullptr;
  const std::string_view action = policy == OnDeadline::kReport ? "report"
                                  : can_relaunch                ? "relaunch"
                                                                : "fail";
  metrics_.child_deadlines(to_string(breach), action).Increment();
  log::warn("child given up", {{"batch_id", b.rec.id},
                               {"index", index},
                               {"flow_run_id", item.flow_run_id},
                               {"reason", std::string(to_string(breach))},
                               {"action", std::string(action)},
                               {"error", message}});
  // A stuck run still exists: cancel it before it is replaced or counted failed, so it cannot
  // start later and do the work twice (or after the parent moved on).
  if (policy != OnDeadline::kReport && breach != Breach::kDeleted) {
    canceller_.cancel(b, item.flow_run_id);
    outbox_.dispatch_now();
  }
  if (can_relaunch) {
    relaunch(b, index, earlier_run_state(breach), std::move(message));
    return;
  }
  if (policy == OnDeadline::kRelaunch) message += "; no relaunch left";
  item.last_error = std::move(message);
  book_.set_state(b, index, policy == OnDeadline::kReport ? ItemState::kStuck : ItemState::kFailed);
}

void ChildTracker::relaunch(Batch& b, int64_t index, std::string_view earlier, std::string reason) {
  // The run's spec stayed in memory while it could still be relaunched (see BatchBook).
  Item& item = b.items[index];
  if (!item.earlier_runs.is_array()) item.earlier_runs = json::array();
  item.earlier_runs.push_back({{"flow_run_id", item.flow_run_id}, {"state", earlier}});
  item.relaunches += 1;
  item.attempts = 0;
  item.unavailable = 0;
  item.last_error = std::move(reason);
  item.flow_run_id.clear();
  item.flow_run_state.clear();
  book_.set_state(b, index, ItemState::kPending);
  resolver_.make_ready(b, index);
}

void ChildTracker::round_done(Batch& b) {
  if (b.track_outstanding > 0) return;
  if (b.track_interval == core::Duration(0)) b.track_interval = options_.interval_min;
  // While one read covers every child still running, reads are cheap: stretch to 5 s at most
  // (run_deployment's own poll), so the batch's end shows within seconds.
  core::Duration cap = options_.interval_max;
  if (followed(b) <= static_cast<int64_t>(kReadSize)) {
    cap = std::min<core::Duration>(cap, kOnePageTrackMax);
  }
  if (b.backlog.held) cap = std::min<core::Duration>(cap, kHeldTrackMax);
  cap = std::max<core::Duration>(cap, options_.interval_min);
  b.track_interval = b.track_saw_final
                         ? core::Duration(options_.interval_min)
                         : std::min<core::Duration>(b.track_interval + b.track_interval / 2, cap);
  b.next_track = clock_.now() + b.track_interval;
}

void ChildTracker::on_item_state(Batch& b, int64_t index, ItemState /*from*/, ItemState to) {
  // Created by a request that was in flight when the batch ended: cancel it too.
  if (to == ItemState::kLaunched && core::is_final(b.rec.state) &&
      b.rec.state != BatchState::kCompleted && b.spec.on_cancel == OnCancel::kCancelChildren) {
    canceller_.cancel(b, b.items[index].flow_run_id);
  }
}

void ChildTracker::on_batch_finished(Batch& b) {
  if (b.spec.on_cancel != OnCancel::kCancelChildren || b.rec.state == BatchState::kCompleted) {
    return;
  }
  for (const auto& [index, item] : b.items) {
    if (item.state != ItemState::kLaunched || item.flow_run_id.empty()) continue;
    canceller_.cancel(b, item.flow_run_id);
  }
  outbox_.dispatch_now();
}

}  // namespace floodgate::engine
