#include "engine/deployment_resolver.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/backlog_gate.h"
#include "engine/start_pacer.h"

namespace floodgate::engine {

core::RetryPolicy retry_policy(const BatchSpec& spec) {
  return core::RetryPolicy{spec.retry.max_attempts, core::from_seconds(spec.retry.max_elapsed_s),
                           core::BackoffPolicy{core::from_seconds(spec.retry.initial_delay_s),
                                               core::from_seconds(spec.retry.max_delay_s), 2.0}};
}

DeploymentResolver::DeploymentResolver(core::Clock& clock, core::Random& random, BatchBook& book,
                                       core::LaunchScheduler& scheduler, Outbox& outbox,
                                       prefect::PrefectApi& api, metrics::Metrics& metrics)
    : clock_(clock),
      random_(random),
      book_(book),
      scheduler_(scheduler),
      outbox_(outbox),
      api_(api),
      metrics_(metrics) {}

void DeploymentResolver::make_ready(Batch& b, int64_t index) {
  Item& item = b.items[index];
  BatchDeployment& d = b.deployments[item.deployment];
  switch (d.state) {
    case BatchDeployment::State::kResolved:
      b.ready.push_back(index);
      break;
    case BatchDeployment::State::kFailed:
      book_.launch_failed(b, index, d.error);
      return;
    case BatchDeployment::State::kUnresolved: {
      d.state = BatchDeployment::State::kResolving;
      auto r = std::make_shared<Request>();
      r->payload = ResolveDeployment{b.key, item.deployment};
      r->owner = this;
      outbox_.enqueue(std::move(r));
      [[fallthrough]];
    }
    case BatchDeployment::State::kResolving:
      d.waiting.push_back(index);
      break;
  }
  sync_ready(b);
}

void DeploymentResolver::sync_ready(Batch& b) {
  if (!scheduler_.has_batch(b.key)) return;
  int64_t ready = b.parent_read_outstanding ? 0 : static_cast<int64_t>(b.ready.size());
  int64_t room = std::numeric_limits<int64_t>::max();
  // Launch only while fewer than max_running (or the start pace's cap) are not yet final...
  if (auto cap = running_cap(b)) room = std::max<int64_t>(0, *cap - b.running());
  // ... and fewer than max_backlog wait to start.
  const auto limit = max_backlog(b, clock_.now());
  const int64_t backlog_room =
      limit ? std::max<int64_t>(0, *limit - backlog(b)) : std::numeric_limits<int64_t>::max();
  b.backlog.limit = limit;
  b.backlog.held = ready > 0 && backlog_room < std::min(ready, room);
  room = std::min(room, backlog_room);
  b.set_capped(room == 0 && ready > 0, clock_.now());
  scheduler_.set_ready(b.key, std::min(ready, room));
}

void DeploymentResolver::on_item_state(Batch& b, int64_t /*index*/, core::ItemState /*from*/,
                                       core::ItemState /*to*/) {
  if (running_cap(b) || backlog_gated(b)) sync_ready(b);
}

void DeploymentResolver::on_batch_ending(Batch& b, const std::vector<int64_t>& /*in_doubt*/) {
  scheduler_.remove_batch(b.key);
}

std::optional<prefect::HttpRequest> DeploymentResolver::build(Request& request) {
  const auto& r = request.as<ResolveDeployment>();
  const Batch* b = book_.get(r.batch);
  if (b == nullptr) return std::nullopt;
  return api_.read_deployment(b->deployments[r.deployment].ref);
}

void DeploymentResolver::fail(Batch& b, BatchDeployment& d, const std::string& message) {
  d.state = BatchDeployment::State::kFailed;
  d.error = "deployment '" + d.text + "': " + message;
  auto waiting = std::move(d.waiting);
  d.waiting.clear();
  for (int64_t idx : waiting) book_.launch_failed(b, idx, d.error);
}

void DeploymentResolver::release(Batch& b, BatchDeployment& d) {
  auto waiting = std::move(d.waiting);
  d.waiting.clear();
  for (int64_t idx : waiting) make_ready(b, idx);
}

void DeploymentResolver::on_answer(Request& request, const prefect::HttpResponse& response,
                                   const prefect::Classification& c) {
  const auto& r = request.as<ResolveDeployment>();
  Batch* b = book_.get(r.batch);
  if (b == nullptr) return;
  BatchDeployment& d = b->deployments[r.deployment];
  if (c.verdict == prefect::Verdict::kOk) {
    auto found = prefect::parse_deployment(response.body);
    if (!found) {
      fail(*b, d, "Prefect's answer is not a deployment");
      return;
    }
    d.state = BatchDeployment::State::kResolved;
    d.id = found->id;
    release(*b, d);
    return;
  }
  if (c.verdict == prefect::Verdict::kPermanent) {
    fail(*b, d, c.message);
    return;
  }
  if (c.verdict == prefect::Verdict::kCsrfInvalid) api_.invalidate_csrf_token();
  const auto now = clock_.now();
  if (d.attempts == 0) d.first_attempt = now;
  d.attempts += 1;
  if (c.transient) d.transient += 1;
  const core::RetryPolicy policy = retry_policy(b->spec);
  auto delay = core::retry_delay(policy.backoff, std::min(d.attempts, 30), random_, c.retry_after);
  if (c.verdict != prefect::Verdict::kCsrfInvalid &&
      !policy.may_retry(d.attempts - d.transient, d.first_attempt, now, delay)) {
    fail(*b, d, "gave up after " + std::to_string(d.attempts) + " attempts: " + c.message);
    return;
  }
  metrics_.retries(c.reason).Increment();
  outbox_.enqueue_after(std::make_shared<Request>(request), delay);
}

}  // namespace floodgate::engine
