#include "engine/subflow_linker.h"

#include <algorithm>
#include <memory>
#include <string>

namespace floodgate::engine {

using core::BatchState;
using core::ItemState;
using nlohmann::json;

SubflowLinker::SubflowLinker(core::Clock& clock, BatchBook& book, DeploymentResolver& resolver,
                             LaunchRetries& retries, core::LaunchScheduler& scheduler,
                             prefect::PrefectApi& api)
    : clock_(clock),
      book_(book),
      resolver_(resolver),
      retries_(retries),
      scheduler_(scheduler),
      api_(api) {}

Launch SubflowLinker::placeholder(Batch& b, int64_t index) {
  // The dynamic key names the batch too, so two batches from one parent never share a
  // placeholder.
  Item& item = b.items[index];
  const BatchDeployment& d = b.deployments[item.deployment];
  prefect::PlaceholderContext ctx;
  ctx.parent_flow_run_id = b.spec.parent_flow_run_id;
  ctx.deployment_name = d.ref.id.empty() ? d.ref.flow_name + "/" + d.ref.name : d.text;
  ctx.dynamic_key = "floodgate:" + b.rec.id + ":" + std::to_string(index);
  ctx.index = index;
  ctx.tags = &b.spec.tags;
  json body = prefect::build_placeholder_body(ctx);
  if (b.rec.state == BatchState::kQueued) book_.set_batch_state(b, BatchState::kRunning);
  const bool first = item.attempts == 0;
  if (first) {
    item.first_attempt = clock_.now();
    item.capped_at_first = b.capped_time(item.first_attempt);
  }
  item.attempts += 1;
  item.in_request = true;
  book_.set_state(b, index, ItemState::kLaunching);
  resolver_.sync_ready(b);
  auto request = std::make_shared<Request>(Request{CreatePlaceholder{b.key, index}, this});
  return Launch{std::move(request), api_.create_task_run(body), first};
}

std::optional<prefect::HttpRequest> SubflowLinker::build(Request& /*request*/) {
  return std::nullopt;  // placeholders go out as launches, never from the control queue
}

bool SubflowLinker::resend_stale(Request& request) {
  const auto& p = request.as<CreatePlaceholder>();
  scheduler_.on_request_done(p.batch);
  if (Batch* b = book_.get(p.batch)) {
    b->items[p.index].in_request = false;
    retries_.requeue_without_attempt(*b, p.index, std::chrono::milliseconds(20));
  }
  return true;
}

void SubflowLinker::on_answer(Request& request, const prefect::HttpResponse& response,
                              const prefect::Classification& c) {
  const auto& p = request.as<CreatePlaceholder>();
  scheduler_.on_request_done(p.batch);
  Batch* b = book_.get(p.batch);
  if (b == nullptr) return;
  b->items[p.index].in_request = false;
  if (c.verdict == prefect::Verdict::kOk) {
    json j = json::parse(response.body, nullptr, false);
    if (j.is_object() && j.contains("id") && j["id"].is_string()) {
      linked(*b, p.index, j["id"].get<std::string>());
      return;
    }
    prefect::Classification bad{prefect::Verdict::kRetryable,
                                "bad_answer",
                                "Prefect's answer to the task run create has no id",
                                {},
                                /*transient=*/true};
    retries_.retry_or_fail(*b, p.index, bad);
    return;
  }
  if (c.verdict == prefect::Verdict::kPermanent) {
    book_.launch_failed(*b, p.index,
                        "could not create the placeholder task run in parent flow run " +
                            b->spec.parent_flow_run_id + ": " + c.message);
    return;
  }
  if (c.verdict == prefect::Verdict::kCsrfInvalid) {
    api_.invalidate_csrf_token();
    retries_.requeue_without_attempt(*b, p.index, core::Duration(0));
    return;
  }
  retries_.retry_or_fail(*b, p.index, c);
}

void SubflowLinker::linked(Batch& b, int64_t index, const std::string& task_run_id) {
  Item& item = b.items[index];
  item.parent_task_run_id = task_run_id;
  // The placeholder is not a launch attempt of the child.
  item.attempts = std::max(0, item.attempts - 1);
  if (core::is_final(b.rec.state)) {
    book_.set_state(b, index, ItemState::kSkipped);
    book_.check_finished(b);
    return;
  }
  book_.set_state(b, index, ItemState::kPending);
  book_.item_changed(b, index);
  b.ready.push_front(index);
  // The placeholder and the create are one launch: the create, next in line, gets the
  // per-batch rate token back instead of waiting for another.
  scheduler_.refund(b.key, 1);
  resolver_.sync_ready(b);
}

}  // namespace floodgate::engine
