#include "engine/launcher.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "metrics/log.h"
#include "prefect/transient.h"

namespace floodgate::engine {

using core::BatchState;
using core::ItemState;
using nlohmann::json;

bool stale_in_ready(const Item& item) {
  return item.in_request || core::is_final(item.state) || item.state == ItemState::kLaunched ||
         item.state == ItemState::kLaunching;
}

Launcher::Launcher(core::Clock& clock, bool use_bulk, prefect::BulkLimits bulk, BatchBook& book,
                   DeploymentResolver& resolver, LaunchRetries& retries, SubflowLinker& linker,
                   ChildTracker& tracker, core::LaunchScheduler& scheduler,
                   prefect::PrefectApi& api)
    : clock_(clock),
      bulk_(bulk),
      bulk_supported_(use_bulk),
      book_(book),
      resolver_(resolver),
      retries_(retries),
      linker_(linker),
      tracker_(tracker),
      scheduler_(scheduler),
      api_(api) {}

int Launcher::max_items() const {
  return bulk_supported_ ? static_cast<int>(std::max<size_t>(1, bulk_.max_items)) : 1;
}

bool Launcher::retry_wanted(uint64_t batch, int64_t index) const {
  const Batch* b = book_.get(batch);
  if (b == nullptr || core::is_final(b->rec.state)) return false;
  const Item* item = b->items.find(index);
  return item != nullptr && item->state == ItemState::kRetryWait && !item->in_request;
}

void Launcher::retry_ready(uint64_t batch, int64_t index) {
  if (Batch* b = book_.get(batch)) resolver_.make_ready(*b, index);
}

std::optional<size_t> Launcher::unplaced_in_grant(const Batch& b, int items) const {
  // Under a parent each child is two writes: its placeholder task run, then its create.
  // Placeholders go first, for up to a grant's worth of items; the creates of those then go
  // together in one bulk request: 1 + 1/n writes per child instead of 2, which matters most to
  // a server that takes one write at a time (SQLite).
  int placed = 0;
  for (size_t i = 0; i < b.ready.size() && placed < items; ++i) {
    const Item* item = b.items.find(b.ready[i]);  // not held: it ended and left memory
    if (item == nullptr || stale_in_ready(*item)) continue;
    if (item->parent_task_run_id.empty()) return i;
    ++placed;
  }
  return std::nullopt;
}

std::optional<Launch> Launcher::launch(const core::LaunchScheduler::Grant& grant) {
  Batch& b = *book_.get(grant.batch);
  const bool under_parent = !b.spec.parent_flow_run_id.empty();
  if (under_parent && b.spec.track && !tracker_.parent_seen_recently(b)) {
    // Has the parent ended? Ask before launching under it (one read of one id).
    scheduler_.cancel(grant);
    tracker_.queue_parent_read(b);
    return std::nullopt;
  }
  if (under_parent && grant.items > 1) {
    if (auto unplaced = unplaced_in_grant(b, grant.items)) {
      const int64_t idx = b.ready[*unplaced];
      b.ready.erase(b.ready.begin() + static_cast<std::ptrdiff_t>(*unplaced));
      // One launch, one per-batch rate token: the rest of the grant's go back.
      scheduler_.refund(b.key, grant.items - 1);
      return linker_.placeholder(b, idx);
    }
  }
  std::vector<int64_t> indexes;
  int deployment = -1;
  while (!b.ready.empty() && static_cast<int>(indexes.size()) < grant.items) {
    const int64_t idx = b.ready.front();
    const Item* item = b.items.find(idx);  // not held: it ended and left memory
    if (item == nullptr || stale_in_ready(*item)) {
      b.ready.pop_front();
      continue;
    }
    if (deployment >= 0 && item->deployment != deployment) break;
    const bool needs_placeholder = under_parent && item->parent_task_run_id.empty();
    if (needs_placeholder && !indexes.empty()) break;
    deployment = item->deployment;
    b.ready.pop_front();
    if (needs_placeholder) return linker_.placeholder(b, idx);
    indexes.push_back(idx);
  }
  if (indexes.empty()) {
    scheduler_.on_request_done(b.key);
    scheduler_.set_ready(b.key, 0);
    return std::nullopt;  // the scheduler's view was stale; the loop tries again
  }
  return create(b, std::move(indexes));
}

std::vector<std::string> Launcher::create_bodies(const Batch& b,
                                                 const std::vector<int64_t>& indexes) const {
  static const json kNoFields = json::object();
  std::vector<std::string> bodies;
  bodies.reserve(indexes.size());
  for (int64_t idx : indexes) {
    const Item& item = b.items[idx];
    prefect::CreateContext ctx;
    ctx.batch_tags = &b.spec.tags;
    ctx.batch_tag = b.batch_tag;
    const std::string key = idempotency_key(b, idx, item);  // ctx refers to it
    ctx.idempotency_key = key;
    ctx.parent_task_run_id = item.parent_task_run_id;
    bodies.push_back(
        prefect::build_create_body(item.spec ? item.spec->fields : kNoFields, ctx).dump());
  }
  return bodies;
}

Launch Launcher::create(Batch& b, std::vector<int64_t> indexes) {
  const std::string& deployment_id = b.deployments[b.items[indexes.front()].deployment].id;
  const auto now = clock_.now();
  if (b.rec.state == BatchState::kQueued) book_.set_batch_state(b, BatchState::kRunning);
  std::vector<std::string> bodies = create_bodies(b, indexes);
  if (indexes.size() > 1) {
    // Packed by bytes as well as count (a proxy or Prefect Cloud answers 413 beyond its body
    // limit, failing every run of the request): what does not fit goes back to the front of
    // the queue, in order, with its rate tokens.
    std::vector<size_t> sizes;
    for (const auto& body : bodies) sizes.push_back(body.size());
    const size_t keep = prefect::pack_bulk(sizes, bulk_).front().count;
    if (keep < indexes.size()) {
      for (size_t i = indexes.size(); i-- > keep;) b.ready.push_front(indexes[i]);
      scheduler_.refund(b.key, static_cast<int>(indexes.size() - keep));
      indexes.resize(keep);
      bodies.resize(keep);
    }
  }
  bool first_attempt = false;
  for (int64_t idx : indexes) {
    Item& item = b.items[idx];
    if (item.attempts == 0) {
      item.first_attempt = now;
      item.capped_at_first = b.capped_time(now);
      first_attempt = true;
    }
    item.attempts += 1;
    item.in_request = true;
    book_.set_state(b, idx, ItemState::kLaunching);
  }
  resolver_.sync_ready(b);
  auto request = std::make_shared<Request>();
  request->owner = this;
  prefect::HttpRequest http;
  if (indexes.size() == 1) {
    request->payload = CreateRun{b.key, indexes.front()};
    http = api_.create_flow_run(deployment_id, bodies[0]);
  } else {
    std::string body = prefect::encode_bulk(bodies, {0, bodies.size(), 0, false});
    request->payload = CreateRuns{b.key, std::move(indexes), body.size()};
    http = api_.create_flow_run_bulk(deployment_id, std::move(body));
  }
  return Launch{std::move(request), std::move(http), first_attempt};
}

std::optional<prefect::HttpRequest> Launcher::build(Request& /*request*/) {
  return std::nullopt;  // creates go out as launches, never from the control queue
}

namespace {

const std::vector<int64_t>& indexes_of(const Request& request, std::vector<int64_t>& one) {
  if (const auto* single = std::get_if<CreateRun>(&request.payload)) {
    one = {single->index};
    return one;
  }
  return request.as<CreateRuns>().indexes;
}

uint64_t batch_of(const Request& request) {
  if (const auto* single = std::get_if<CreateRun>(&request.payload)) return single->batch;
  return request.as<CreateRuns>().batch;
}

}  // namespace

bool Launcher::resend_stale(Request& request) {
  scheduler_.on_request_done(batch_of(request));
  Batch* b = book_.get(batch_of(request));
  if (b == nullptr) return true;
  std::vector<int64_t> one;
  for (int64_t idx : indexes_of(request, one)) {
    b->items[idx].in_request = false;
    retries_.requeue_without_attempt(*b, idx, std::chrono::milliseconds(20));
  }
  return true;
}

void Launcher::on_answer(Request& request, const prefect::HttpResponse& response,
                         const prefect::Classification& c) {
  scheduler_.on_request_done(batch_of(request));
  Batch* b = book_.get(batch_of(request));
  if (b == nullptr) return;
  std::vector<int64_t> one;
  const auto& indexes = indexes_of(request, one);
  for (int64_t idx : indexes) b->items[idx].in_request = false;
  if (std::holds_alternative<CreateRun>(request.payload)) {
    on_create(*b, indexes.front(), response, c);
  } else {
    on_bulk(*b, request.as<CreateRuns>(), response, c);
  }
}

void Launcher::on_create(Batch& b, int64_t idx, const prefect::HttpResponse& r,
                         const prefect::Classification& c) {
  switch (c.verdict) {
    case prefect::Verdict::kOk: {
      auto run = prefect::parse_flow_run(r.body);
      if (!run) {
        prefect::Classification bad{prefect::Verdict::kRetryable,
                                    "bad_answer",
                                    "Prefect's answer to create_flow_run has no run id",
                                    {},
                                    /*transient=*/true};
        retries_.retry_or_fail(b, idx, bad);
        return;
      }
      b.items[idx].flow_run_state = run->state_name;
      book_.launched(b, idx, run->id, r.status == 200);
      return;
    }
    case prefect::Verdict::kPermanent:
      book_.launch_failed(b, idx, c.message);
      return;
    case prefect::Verdict::kCsrfInvalid:
      api_.invalidate_csrf_token();
      retries_.requeue_without_attempt(b, idx, core::Duration(0));
      return;
    default:
      if (prefect::may_have_created(r)) {
        retries_.retry_in_doubt(b, {idx}, c);  // looked up before it is sent again
        return;
      }
      retries_.retry_or_fail(b, idx, c);
  }
}

void Launcher::on_bulk(Batch& b, const CreateRuns& request, const prefect::HttpResponse& r,
                       const prefect::Classification& c) {
  const std::vector<int64_t>& indexes = request.indexes;
  if (r.status == 413) return on_bulk_too_large(b, request);
  if (prefect::is_missing_bulk_endpoint(r)) {
    // A server without the bulk endpoint: fall back to single creates from now on.
    if (bulk_supported_) log::warn("Prefect has no bulk create endpoint; using single creates");
    bulk_supported_ = false;
    for (int64_t idx : indexes) retries_.requeue_without_attempt(b, idx, core::Duration(0));
    return;
  }
  if (c.verdict == prefect::Verdict::kCsrfInvalid) {
    api_.invalidate_csrf_token();
    for (int64_t idx : indexes) retries_.requeue_without_attempt(b, idx, core::Duration(0));
    return;
  }
  if (c.verdict == prefect::Verdict::kOk) {
    on_bulk_results(b, indexes, r);
    return;
  }
  if (c.verdict == prefect::Verdict::kPermanent) {
    for (int64_t idx : indexes) book_.launch_failed(b, idx, c.message);
    return;
  }
  if (prefect::may_have_created(r)) {
    // Its runs may exist: one lookup of their keys before any is sent again.
    retries_.retry_in_doubt(b, indexes, c);
    return;
  }
  // One failed request is one retry for the budget, however many runs it carried (also when
  // they go out again as single creates after a fallback).
  bool charge = true;
  for (int64_t idx : indexes) {
    retries_.retry_or_fail(b, idx, c, charge);
    charge = false;
  }
}

void Launcher::on_bulk_too_large(Batch& b, const CreateRuns& request) {
  const size_t budget = std::max<size_t>(1, request.body_bytes / 2);
  if (budget < bulk_.max_bytes) {
    bulk_.max_bytes = budget;
    log::warn("Prefect refused a bulk create as too large; packing bulks into fewer bytes",
              {{"bytes", static_cast<int64_t>(request.body_bytes)},
               {"max_bytes", static_cast<int64_t>(budget)}});
  }
  for (int64_t idx : request.indexes) {
    retries_.requeue_without_attempt(b, idx, core::Duration(0));
  }
}

void Launcher::on_bulk_results(Batch& b, const std::vector<int64_t>& indexes,
                               const prefect::HttpResponse& r) {
  auto results = prefect::parse_bulk_results(r.body);
  if (!results || results->size() != indexes.size()) {
    prefect::Classification bad{prefect::Verdict::kRetryable,
                                "bad_answer",
                                "Prefect's answer to the bulk create does not match the request",
                                {},
                                /*transient=*/true};
    for (int64_t idx : indexes) retries_.retry_or_fail(b, idx, bad);
    return;
  }
  for (size_t i = 0; i < indexes.size(); ++i) {
    const auto& res = (*results)[i];
    if (res.created) {
      // The bulk endpoint says CREATED for an idempotency-key match too.
      book_.launched(b, indexes[i], res.flow_run_id, false);
      continue;
    }
    // The bulk endpoint reports every error per run, transient ones ("database is locked")
    // too: only a rejection of the run itself is final.
    const prefect::Classification item_c = prefect::classify_bulk_item(res.error);
    if (item_c.unclassified && retries_.first_unclassified(res.error)) {
      log::warn("Prefect gave an error floodgate does not know; treating it as transient",
                {{"batch_id", b.rec.id}, {"error", res.error}});
    }
    if (item_c.verdict == prefect::Verdict::kPermanent) {
      book_.launch_failed(b, indexes[i], item_c.message);
    } else {
      retries_.retry_or_fail(b, indexes[i], item_c);
    }
  }
}

}  // namespace floodgate::engine
