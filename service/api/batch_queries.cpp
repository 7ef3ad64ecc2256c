#include "api/batch_queries.h"

#include <chrono>
#include <limits>
#include <map>
#include <memory>
#include <vector>

#include "api/problem.h"
#include "api/request_guard.h"
#include "api/request_target.h"
#include "api/stored_batches.h"

namespace floodgate::api {

using nlohmann::json;
using Query = std::map<std::string, std::string>;

namespace {

json run_json(const engine::RunView& v) {
  json j = {{"index", v.index},
            {"state", std::string(core::to_string(v.state))},
            {"flow_run_id", v.flow_run_id.empty() ? json() : json(v.flow_run_id)},
            {"flow_run_state", v.flow_run_state.empty() ? json() : json(v.flow_run_state)},
            {"attempts", v.attempts},
            {"last_error", v.last_error.empty() ? json() : json(v.last_error)},
            {"transient_attempts", v.transient_attempts},
            {"waited_s", v.waited_s}};
  if (!v.detail_json.empty()) {
    json d = json::parse(v.detail_json, nullptr, false);
    if (d.is_object() && d.contains("earlier_runs") && d["earlier_runs"].is_array()) {
      j["earlier_runs"] = d["earlier_runs"];
    }
    if (d.is_object() && d.contains("parent_task_run_id")) {
      j["parent_task_run_id"] = d["parent_task_run_id"];
    }
  }
  return j;
}

// A page of runs from up to `limit` + 1 views: one more than asked tells whether another exists.
// `covered_to`: the views are every run up to this index, and more may follow it.
ServerResponse runs_page(std::vector<engine::RunView> views, int limit,
                         std::optional<int64_t> covered_to) {
  const bool more = static_cast<int>(views.size()) > limit;
  if (more) views.pop_back();
  json list = json::array();
  for (const auto& v : views) list.push_back(run_json(v));
  json next = more         ? json(std::to_string(views.back().index))
              : covered_to ? json(std::to_string(*covered_to))
                           : json();
  return json_response(200, {{"runs", std::move(list)}, {"next", next}});
}

// Reads `wait_s` and `after_version` of a long-poll; the 400 to send when one is bad.
std::optional<ServerResponse> read_wait(const Query& q, double max_wait_s, double& wait_s,
                                        std::optional<int64_t>& after) {
  if (auto it = q.find("wait_s"); it != q.end()) {
    auto v = parse_decimal(it->second);
    if (!v || *v < 0 || *v > max_wait_s) {
      return problem(400,
                     "wait_s must be a number of seconds from 0 to " +
                         std::to_string(static_cast<int>(max_wait_s)),
                     "wait_s");
    }
    wait_s = *v;
  }
  if (auto it = q.find("after_version"); it != q.end()) {
    after = parse_whole(it->second);
    if (!after) {
      return problem(400, "after_version must be a whole number of at most 18 digits",
                     "after_version");
    }
  }
  return std::nullopt;
}

// Batches the store listed (not held by the engine) and those the engine holds, merged by seq
// into one page. `bound`: the last seq the store's page covers when it was full.
ServerResponse batches_page(std::map<int64_t, json> found, bool store_full, int64_t bound,
                            int limit) {
  json list = json::array();
  json next;
  for (auto& [seq, view] : found) {
    if (static_cast<int>(list.size()) == limit) break;
    list.push_back(std::move(view));
    next = std::to_string(seq);
  }
  if (static_cast<int>(found.size()) <= limit) {
    next = store_full ? json(std::to_string(bound)) : json();
  }
  return json_response(200, {{"batches", std::move(list)}, {"next", next}});
}

// A page of the batches one token submitted: `matched`, their records in seq order (more than
// `limit` when the scan stopped early), `held` the engine's views of them (null where it does
// not hold one, read from the store here).
ServerResponse submitter_page(store::Store& store, const std::vector<store::BatchRecord>& matched,
                              std::vector<json> held, std::optional<core::BatchState> state,
                              int limit, bool scan_stopped) {
  json list = json::array();
  json next;
  int64_t last = 0;
  bool more = false;
  for (size_t i = 0; i < matched.size(); ++i) {
    const auto& rec = matched[i];
    json& view = held[i];
    if (view.is_null()) {
      if (state && rec.state != *state) continue;
      view = stored_batch_view(store, rec);
    }
    if (state && view.value("state", "") != core::to_string(*state)) continue;
    if (static_cast<int>(list.size()) == limit) {
      more = true;
      break;
    }
    list.push_back(std::move(view));
    last = rec.seq;
  }
  if (more) {
    next = std::to_string(last);
  } else if (scan_stopped) {
    next = std::to_string(matched.back().seq);
  }
  return json_response(200, {{"batches", std::move(list)}, {"next", next}});
}

}  // namespace

void BatchQueries::get_batch(const std::string& id, const ServerRequest& req, Responder respond) {
  double wait_s = 0;
  std::optional<int64_t> after;
  if (auto bad = read_wait(parse_query(req.query), max_wait_s_, wait_s, after)) {
    return respond(std::move(*bad));
  }
  engine_.post([this, id, wait_s, after, req, respond] {
    if (!engine_.has_batch(id)) {
      // Another replica's batch is answered by that replica, long-polls included.
      return route_to_holder(peers_, reads_, id, req, respond, [this, id](const Responder& answer) {
        auto rec = store_.get_batch(id);
        if (!rec) return answer(no_such_batch(id));
        answer(json_response(200, stored_batch_view(store_, *rec)));
      });
    }
    int64_t after_version = after.value_or(wait_s > 0 ? engine_.batch_version(id) : -1);
    engine_.wait_for_change(
        id, after_version, std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000)),
        [respond, id](json view) {
          respond(view.is_null() ? no_such_batch(id) : json_response(200, view));
        });
  });
}

void BatchQueries::list_runs(const std::string& id, const ServerRequest& req, Responder respond) {
  auto q = parse_query(req.query);
  std::optional<core::ItemState> state;
  int limit = 100;
  int64_t after = -1;
  if (auto it = q.find("state"); it != q.end()) {
    state = core::parse_item_state(it->second);
    if (!state) {
      return respond(problem(400,
                             "state must be one of PENDING, LAUNCHING, RETRY_WAIT, LAUNCHED, "
                             "COMPLETED, FAILED, CRASHED, CANCELLED, LAUNCH_FAILED, SKIPPED, STUCK",
                             "state"));
    }
  }
  if (auto bad = read_page(q, -1, limit, after)) return respond(std::move(*bad));
  // The store first, then what the engine holds newer of the batch (when it holds it).
  reads_.post(respond, [this, id, state, limit, after](const Responder& answer) {
    if (!store_.get_batch(id)) return answer(no_such_batch(id));
    std::vector<engine::RunView> views;
    for (const auto& r : store_.list_items(id, state, after, limit + 1)) {
      views.push_back(engine::run_view(r));
    }
    // A full page covers the runs up to its last one; the held ones may change which of them
    // are shown, not where the next page starts.
    std::optional<int64_t> covered_to;
    if (static_cast<int>(views.size()) > limit) covered_to = views.back().index;
    auto stored = std::make_shared<std::vector<engine::RunView>>(std::move(views));
    engine_.post([this, id, state, limit, after, stored, covered_to, answer] {
      auto runs = engine_.overlay_runs(id, state, after, limit, std::move(*stored));
      answer(runs_page(std::move(runs), limit, covered_to));
    });
  });
}

void BatchQueries::list_batches(const ServerRequest& req, Responder respond) {
  auto q = parse_query(req.query);
  std::optional<core::BatchState> state;
  int limit = 100;
  int64_t after = 0;
  if (auto it = q.find("state"); it != q.end()) {
    state = core::parse_batch_state(it->second);
    if (!state) {
      return respond(
          problem(400, "state must be one of QUEUED, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED",
                  "state"));
    }
  }
  if (auto bad = read_page(q, 0, limit, after)) return respond(std::move(*bad));
  if (auto it = q.find("submitted_by"); it != q.end()) {
    return list_batches_by(it->second, state, limit, after, std::move(respond));
  }
  // The store's state can trail the engine's by one flush, so batches the engine holds are
  // judged by the engine's state; the store answers for the rest.
  auto records = std::make_shared<std::vector<store::BatchRecord>>(
      store_.list_batches(state, after, limit + 1));
  engine_.post([this, records, limit, state, after, respond] {
    const bool store_full = static_cast<int>(records->size()) > limit;
    const int64_t bound = store_full ? records->back().seq : std::numeric_limits<int64_t>::max();
    auto found = std::make_shared<std::map<int64_t, json>>();
    for (auto& [seq, view] : engine_.held_batches(state, after)) {
      if (seq <= bound) found->emplace(seq, std::move(view));
    }
    auto stored = std::make_shared<std::vector<store::BatchRecord>>();
    for (auto& rec : *records) {
      if (!engine_.has_batch(rec.id)) stored->push_back(std::move(rec));
    }
    reads_.post(respond, [this, found, stored, store_full, bound, limit](const Responder& answer) {
      for (const auto& rec : *stored) found->emplace(rec.seq, stored_batch_view(store_, rec));
      answer(batches_page(std::move(*found), store_full, bound, limit));
    });
  });
}

void BatchQueries::list_batches_by(const std::string& name, std::optional<core::BatchState> state,
                                   int limit, int64_t after, Responder respond) {
  // Who submitted a batch is known to the store only: scan it in pages for that name.
  constexpr int kPage = 1000;
  auto matched = std::make_shared<std::vector<store::BatchRecord>>();
  int64_t cursor = after;
  while (static_cast<int>(matched->size()) <= limit) {
    auto page = store_.list_batches(std::nullopt, cursor, kPage);
    for (auto& rec : page) {
      if (rec.submitted_by == name) matched->push_back(std::move(rec));
    }
    if (static_cast<int>(page.size()) < kPage) break;
    cursor = page.back().seq;
  }
  const bool scan_stopped = static_cast<int>(matched->size()) > limit;
  engine_.post([this, matched, limit, state, scan_stopped, respond] {
    // The engine's view of the batches it holds; the others are read from the store below.
    auto held = std::make_shared<std::vector<json>>();
    for (const auto& rec : *matched) held->push_back(engine_.batch_json(rec.id));
    reads_.post(
        respond, [this, matched, held, state, limit, scan_stopped](const Responder& answer) {
          answer(submitter_page(store_, *matched, std::move(*held), state, limit, scan_stopped));
        });
  });
}

}  // namespace floodgate::api
