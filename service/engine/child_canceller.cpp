#include "engine/child_canceller.h"

#include <utility>
#include <vector>

#include "core/backoff.h"
#include "metrics/log.h"
#include "prefect/bulk_cancel.h"

namespace floodgate::engine {

namespace {
constexpr const char* kMessage = "Cancelled by floodgate: batch cancelled or failed";
}  // namespace

ChildCanceller::ChildCanceller(core::Random& random, std::function<std::string()> new_id,
                               BatchBook& book, Outbox& outbox, prefect::PrefectApi& api,
                               std::function<void(Batch&)> on_accepted)
    : random_(random),
      new_id_(std::move(new_id)),
      book_(book),
      outbox_(outbox),
      api_(api),
      on_accepted_(std::move(on_accepted)) {}

void ChildCanceller::cancel(Batch& b, const std::string& flow_run_id) {
  if (!bulk_) return queue_single(b.key, flow_run_id);
  if (auto open = open_[b.key].lock()) {
    auto& ids = open->as<CancelChildren>().flow_run_ids;
    if (ids.size() < prefect::kMaxBulkSetState) {
      ids.push_back(flow_run_id);
      return;
    }
  }
  auto request =
      std::make_shared<Request>(Request{CancelChildren{b.key, {flow_run_id}, new_id_()}, this});
  open_[b.key] = request;
  outbox_.enqueue(std::move(request));
}

void ChildCanceller::queue_single(uint64_t batch, const std::string& flow_run_id) {
  outbox_.enqueue(
      std::make_shared<Request>(Request{CancelChild{batch, flow_run_id, new_id_()}, this}));
}

std::optional<prefect::HttpRequest> ChildCanceller::build(Request& request) {
  if (const auto* one = std::get_if<CancelChild>(&request.payload)) {
    return api_.cancel_flow_run(one->flow_run_id, one->transition_id, kMessage);
  }
  const auto& bulk = request.as<CancelChildren>();
  if (auto it = open_.find(bulk.batch); it != open_.end() && it->second.lock().get() == &request) {
    open_.erase(it);  // on its way: later cancels start a new one
  }
  if (!bulk_) {
    // The server was found without bulk_set_state after this was queued.
    for (const auto& id : bulk.flow_run_ids) queue_single(bulk.batch, id);
    return std::nullopt;
  }
  return api_.cancel_flow_runs_bulk(bulk.flow_run_ids, bulk.transition_id, kMessage);
}

bool ChildCanceller::retry(Request& request, const prefect::Classification& c) {
  if (c.verdict != prefect::Verdict::kRetryable && c.verdict != prefect::Verdict::kRateLimited &&
      c.verdict != prefect::Verdict::kCsrfInvalid) {
    return false;
  }
  if (c.verdict == prefect::Verdict::kCsrfInvalid) api_.invalidate_csrf_token();
  request.attempts += 1;
  if (request.attempts >= 8) return false;
  // The same transition id: Prefect rejects a retried cancel where the first one applied.
  outbox_.enqueue_after(std::make_shared<Request>(request),
                        core::backoff_delay(core::BackoffPolicy{}, request.attempts, random_));
  return true;
}

void ChildCanceller::on_answer(Request& request, const prefect::HttpResponse& response,
                               const prefect::Classification& c) {
  const auto* bulk = std::get_if<CancelChildren>(&request.payload);
  if (bulk != nullptr && prefect::is_missing_bulk_set_state(response)) {
    if (bulk_) log::warn("Prefect has no bulk_set_state; cancelling children one by one");
    bulk_ = false;
    for (const auto& id : bulk->flow_run_ids) queue_single(bulk->batch, id);
    outbox_.dispatch_now();
    return;
  }
  if (retry(request, c)) return;
  const uint64_t batch = bulk != nullptr ? bulk->batch : request.as<CancelChild>().batch;
  if (c.verdict != prefect::Verdict::kOk) {
    log::warn("could not cancel child runs",
              {{"runs", bulk != nullptr ? static_cast<int64_t>(bulk->flow_run_ids.size()) : 1},
               {"flow_run_id", bulk != nullptr ? bulk->flow_run_ids.front()
                                               : request.as<CancelChild>().flow_run_id},
               {"error", c.message}});
    return;
  }
  if (bulk != nullptr) {
    // Each run is proposed CANCELLING on its own; one already final answers REJECT or ABORT,
    // and a deleted one is simply absent.
    int64_t refused = 0;
    for (const auto& r : prefect::parse_bulk_set_state(response.body)
                             .value_or(std::vector<prefect::BulkSetStateResult>{})) {
      if (r.status != "ACCEPT") ++refused;
    }
    if (refused > 0) {
      log::debug("Prefect did not cancel some children (ended already?)", {{"runs", refused}});
    }
  }
  if (Batch* b = book_.get(batch)) on_accepted_(*b);
}

}  // namespace floodgate::engine
