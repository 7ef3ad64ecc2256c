#include "engine/launch_retries.h"

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <utility>

#include "metrics/log.h"

namespace floodgate::engine {

using core::ItemState;

LaunchRetries::LaunchRetries(core::Clock& clock, core::Random& random, BatchBook& book,
                             DeploymentResolver& resolver, Outbox& outbox, prefect::PrefectApi& api,
                             metrics::Metrics& metrics)
    : clock_(clock),
      random_(random),
      book_(book),
      resolver_(resolver),
      outbox_(outbox),
      api_(api),
      metrics_(metrics) {}

void LaunchRetries::retry_or_fail(Batch& b, int64_t index, const prefect::Classification& c,
                                  bool charge) {
  if (auto delay = plan_retry(b, index, c)) {
    book_.set_state(b, index, ItemState::kRetryWait);
    outbox_.retry_at(clock_.now() + *delay, b.key, index, charge);
  }
}

void LaunchRetries::retry_in_doubt(Batch& b, const std::vector<int64_t>& indexes,
                                   const prefect::Classification& c) {
  // A create that timed out or lost its answer may have made its runs, and on a busy SQLite
  // server it often did (the server waits up to its busy timeout for the write lock, longer
  // than floodgate waits for the answer). Sending the creates again would be more writes to a
  // locked database for runs that exist; one read by key finds them. It goes when the retry
  // would have, so that a create the server was still working on has had time to land.
  std::vector<int64_t> recheck;
  core::Duration delay{0};
  for (int64_t idx : indexes) {
    b.items[idx].in_doubt = true;
    if (auto d = plan_retry(b, idx, c)) {
      recheck.push_back(idx);
      delay = std::max(delay, *d);
    }
  }
  queue_lookup(b, recheck, "", delay);
}

std::optional<core::Duration> LaunchRetries::plan_retry(Batch& b, int64_t index,
                                                        const prefect::Classification& c) {
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
  // The clock skips the time the batch sat at its own max_running cap (see Batch::capped).
  const auto clock_start = b.retry_clock_start(item, now);
  if (!policy.may_retry(item.attempts - item.unavailable, clock_start, now, delay)) {
    const std::string failure =
        "gave up after " + std::to_string(item.attempts) + " attempts (" +
        std::to_string(item.unavailable) + " transient) in " +
        std::to_string(static_cast<int64_t>(core::to_seconds(now - clock_start))) +
        " s: " + c.message;
    if (item.in_doubt) {
      queue_lookup(b, {index}, failure);  // its run may exist: find out before failing it
      return std::nullopt;
    }
    book_.launch_failed(b, index, failure);
    return std::nullopt;
  }
  metrics_.retries(c.reason).Increment();
  item.last_error = prefect::first_line(c.message);
  if (item.last_error.size() != c.message.size()) {
    log::debug("retrying a launch",
               {{"batch_id", b.rec.id}, {"index", index}, {"error", c.message}});
  }
  if (core::is_final(b.rec.state)) {
    end_unlaunched(b, index);
    return std::nullopt;
  }
  return delay;
}

void LaunchRetries::requeue_without_attempt(Batch& b, int64_t index, core::Duration delay) {
  Item& item = b.items[index];
  item.attempts = std::max(0, item.attempts - 1);
  if (core::is_final(b.rec.state)) {
    end_unlaunched(b, index);
    return;
  }
  book_.set_state(b, index, ItemState::kRetryWait);
  outbox_.retry_at(clock_.now() + delay, b.key, index, false);
}

void LaunchRetries::end_unlaunched(Batch& b, int64_t index) {
  if (b.items[index].in_doubt) {
    queue_lookup(b, {index}, "");
    return;
  }
  book_.set_state(b, index, ItemState::kSkipped);
}

void LaunchRetries::on_batch_ending(Batch& b, const std::vector<int64_t>& in_doubt) {
  for (size_t at = 0; at < in_doubt.size(); at += 200) {
    const size_t end = std::min(in_doubt.size(), at + 200);
    queue_lookup(b, std::vector<int64_t>(in_doubt.begin() + at, in_doubt.begin() + end), "");
  }
}

void LaunchRetries::queue_lookup(Batch& b, const std::vector<int64_t>& indexes,
                                 const std::string& failure, core::Duration delay) {
  if (indexes.empty()) return;
  LookUpRuns lookup;
  lookup.batch = b.key;
  lookup.failure = failure;
  for (int64_t idx : indexes) {
    Item& item = b.items[idx];
    item.in_request = true;  // the lookup's answer decides, as a create's would
    book_.set_state(b, idx, ItemState::kRetryWait);
    lookup.indexes.push_back(idx);
    lookup.keys.push_back(idempotency_key(b, idx, item));
  }
  log::info("looking up runs whose create may have succeeded unseen",
            {{"batch_id", b.rec.id}, {"runs", static_cast<int64_t>(indexes.size())}});
  auto request = std::make_shared<Request>(Request{std::move(lookup), this});
  if (delay > core::Duration(0)) {
    outbox_.enqueue_after(std::move(request), delay);
    return;
  }
  outbox_.enqueue(std::move(request));
  outbox_.wake_at(clock_.now());  // sent from the loop, not from inside the caller's change
}

std::optional<prefect::HttpRequest> LaunchRetries::build(Request& request) {
  const auto& lookup = request.as<LookUpRuns>();
  const Batch* b = book_.get(lookup.batch);
  if (b == nullptr) return std::nullopt;
  std::vector<std::string> deployments;
  for (int64_t idx : lookup.indexes) {
    const std::string& id = b->deployments[b->items[idx].deployment].id;
    if (std::find(deployments.begin(), deployments.end(), id) == deployments.end()) {
      deployments.push_back(id);
    }
  }
  return api_.filter_flow_runs_by_keys(lookup.keys, deployments);
}

void LaunchRetries::on_answer(Request& request, const prefect::HttpResponse& response,
                              const prefect::Classification& c) {
  const auto& lookup = request.as<LookUpRuns>();
  Batch* b = book_.get(lookup.batch);
  if (b == nullptr) return;
  auto runs = c.verdict == prefect::Verdict::kOk ? prefect::parse_flow_run_list(response.body)
                                                 : std::nullopt;
  if (!runs) {
    // Nothing is decided until Prefect answers: ask again, backing off up to 30 s.
    request.attempts += 1;
    if (c.verdict == prefect::Verdict::kCsrfInvalid) api_.invalidate_csrf_token();
    log::debug("run lookup failed; asking again", {{"batch_id", b->rec.id}, {"error", c.message}});
    const core::BackoffPolicy policy{std::chrono::seconds(1), std::chrono::seconds(30), 2.0};
    outbox_.enqueue_after(std::make_shared<Request>(request),
                          core::backoff_delay(policy, std::min(request.attempts, 30), random_));
    return;
  }
  settle_lookup(*b, lookup, *runs);
}

void LaunchRetries::settle_lookup(Batch& b, const LookUpRuns& lookup,
                                  const std::vector<prefect::FlowRunInfo>& runs) {
  std::unordered_map<std::string, const prefect::FlowRunInfo*> by_key;
  for (const auto& run : runs) by_key.emplace(run.idempotency_key, &run);
  bool charge = true;  // one retry-budget token for the runs of one request, as for a failed one
  for (size_t i = 0; i < lookup.indexes.size(); ++i) {
    const int64_t idx = lookup.indexes[i];
    Item& item = b.items[idx];
    item.in_request = false;
    item.in_doubt = false;
    if (core::is_final(item.state) || item.state == ItemState::kLaunched) continue;
    auto f = by_key.find(lookup.keys[i]);
    if (f != by_key.end()) {
      log::info("found the run of an unanswered create; following it",
                {{"batch_id", b.rec.id}, {"index", idx}, {"flow_run_id", f->second->id}});
      item.flow_run_state = f->second->state_name;
      book_.launched(b, idx, f->second->id, true);
    } else if (core::is_final(b.rec.state)) {
      book_.set_state(b, idx, ItemState::kSkipped);
    } else if (!lookup.failure.empty()) {
      book_.launch_failed(b, idx, lookup.failure);
    } else {
      // Not created: it goes again, as a retry (it stays in RETRY_WAIT until then).
      outbox_.retry_at(clock_.now(), b.key, idx, charge);
      charge = false;
    }
  }
  resolver_.sync_ready(b);
  book_.check_finished(b);
}

}  // namespace floodgate::engine
