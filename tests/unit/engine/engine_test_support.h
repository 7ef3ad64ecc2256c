#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>  // mkdtemp

#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/random.h"
#include "core/time_format.h"
#include "core/timer_queue.h"
#include "engine/batch_spec.h"
#include "engine/engine.h"
#include "metrics/metrics.h"
#include "prefect/http_client.h"
#include "store/store.h"

namespace floodgate::engine::testing {

using nlohmann::json;
using prefect::HttpRequest;
using prefect::HttpResponse;

inline HttpResponse answer(int status, json body = json::object(), prefect::Headers headers = {}) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  r.headers = std::move(headers);
  return r;
}
inline HttpResponse transport_error(bool timed_out, std::string error = "connection reset") {
  HttpResponse r;
  r.status = 0;
  r.timed_out = timed_out;
  r.error = timed_out ? "request timed out" : std::move(error);
  return r;
}

/// A scripted stand-in for Prefect's REST API: answers at once like a small Prefect (deployments,
/// idempotent creates, bulk creates, task runs, filter reads, set_state), unless a scripted
/// answer for the request's path comes first; keeps every request for inspection.
class FakePrefect final : public prefect::HttpClient {
 public:
  struct Run {
    std::string id;
    std::string deployment_id;
    std::string idempotency_key;
    std::string parent_task_run_id;
    std::string state_type = "SCHEDULED";
    std::string state_name = "Scheduled";
    std::string state_message;
    json parameters;
    // Prefect's created and start_time (set when it first enters RUNNING), on `wall`.
    std::optional<std::chrono::system_clock::time_point> created;
    std::optional<std::chrono::system_clock::time_point> start_time;
  };
  /// A scripted answer: `apply` still carries out the request (the answer is then lost on the
  /// way back); `hold` keeps the request unanswered until release().
  struct Scripted {
    std::string method;
    std::string path_part;
    HttpResponse response;
    bool apply = false;
    bool hold = false;
  };

  void send(HttpRequest request, std::function<void(HttpResponse)> done) override {
    requests.push_back(request);
    for (auto it = script_.begin(); it != script_.end(); ++it) {
      if (it->method != request.method || request.path.find(it->path_part) == std::string::npos) {
        continue;
      }
      Scripted s = std::move(*it);
      script_.erase(it);
      if (s.hold) {
        held.push_back({std::move(request), std::move(done)});
        return;
      }
      if (s.apply) (void)serve(request);
      done(std::move(s.response));
      return;
    }
    if ((hold_all && request.path != "/health") ||
        (!hold_path.empty() && request.path.find(hold_path) != std::string::npos)) {
      held.push_back({std::move(request), std::move(done)});
      return;
    }
    if (down && request.method == "POST") {
      done(answer(503, {{"detail", "Service Unavailable"}}));
      return;
    }
    done(serve(request));
  }

  /// The next request whose method is `method` and path contains `path_part` gets `response`.
  void script(std::string method, std::string path_part, HttpResponse response,
              bool apply = false) {
    script_.push_back({std::move(method), std::move(path_part), std::move(response), apply, false});
  }
  void hold_next(std::string method, std::string path_part) {
    script_.push_back({std::move(method), std::move(path_part), {}, false, true});
  }
  /// Answers the held requests as Prefect would (or with `response` when given).
  void release_all(std::optional<HttpResponse> response = std::nullopt) {
    auto h = std::move(held);
    held.clear();
    for (auto& [req, done] : h) done(response ? *response : serve(req));
  }

  std::vector<HttpRequest> sent(const std::string& method, const std::string& path_part) const {
    std::vector<HttpRequest> out;
    for (const auto& r : requests) {
      if (r.method == method && r.path.find(path_part) != std::string::npos) out.push_back(r);
    }
    return out;
  }
  /// The flow run ids named by cancel requests, single (set_state) and bulk (bulk_set_state).
  std::vector<std::string> cancel_targets() const {
    std::vector<std::string> out;
    for (const auto& r : requests) {
      if (r.method != "POST") continue;
      if (r.path == "/flow_runs/bulk_set_state") {
        const json body = json::parse(r.body);  // kept: the loop walks into it
        for (const auto& id : body["flow_runs"]["id"]["any_"]) out.push_back(id);
      } else if (r.path.rfind("/flow_runs/", 0) == 0 &&
                 r.path.find("/set_state") != std::string::npos) {
        out.push_back(r.path.substr(11, r.path.find("/set_state") - 11));
      }
    }
    return out;
  }
  /// Create requests, single and bulk, as the list of run bodies they carried.
  std::vector<json> create_bodies() const {
    std::vector<json> out;
    for (const auto& r : requests) {
      if (r.method != "POST" || r.path.find("/create_flow_run") == std::string::npos) continue;
      json b = json::parse(r.body);
      if (b.is_array()) {
        for (auto& e : b) out.push_back(e);
      } else {
        out.push_back(b);
      }
    }
    return out;
  }
  size_t creates() const {
    size_t n = 0;
    for (const auto& r : requests) {
      if (r.method == "POST" && r.path.find("/create_flow_run") != std::string::npos) ++n;
    }
    return n;
  }

  void set_run_state(const std::string& id, const std::string& type,
                     const std::string& message = "") {
    Run& r = runs.at(id);
    if (type == "RUNNING" && !r.start_time && wall != nullptr) r.start_time = server_now();
    r.state_type = type;
    r.state_name = type.substr(0, 1) + lower(type.substr(1));
    r.state_message = message;
  }
  /// Runs in creation order.
  std::vector<Run*> runs_in_order() {
    std::vector<Run*> out;
    for (auto& id : order) out.push_back(&runs.at(id));
    return out;
  }

  std::vector<HttpRequest> requests;
  std::vector<std::pair<HttpRequest, std::function<void(HttpResponse)>>> held;
  std::map<std::string, Run> runs;
  std::vector<std::string> order;
  std::map<std::string, std::string> by_key;
  std::map<std::string, std::string> deployments{{"flow/dep", "dep-1"}, {"flow/other", "dep-2"}};
  int task_runs = 0;
  // Stamps runs with created and start_time as Prefect does (none without it), on this clock
  // moved by `server_skew` (Prefect's server clock off from floodgate's host).
  const core::WallClock* wall = nullptr;
  std::chrono::system_clock::duration server_skew{};
  bool hold_all = false;
  std::string hold_path;         // requests whose path contains it are held too
  bool down = false;             // 503 to every write (POST)
  bool bulk_endpoint = true;     // false: 404 Not Found on the bulk path
  std::string reject_parameter;  // a create whose parameters contain this key gets 422
  size_t max_body_bytes = 0;     // a larger request body gets 413, as a proxy in front answers
  bool bulk_set_state = true;    // false: 405 on bulk_set_state, as before Prefect 3.6.16
  // A run body for which this says true is not created: "database is locked", per run in a
  // bulk answer, or as the 503 Prefect answers a single create with.
  std::function<bool(const json& body)> lock_item;

 private:
  static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  std::chrono::system_clock::time_point server_now() const { return wall->now() + server_skew; }
  // As Prefect 3 writes times: microseconds, UTC, "Z".
  static json time_json(const std::optional<std::chrono::system_clock::time_point>& t) {
    if (!t) return nullptr;
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(t->time_since_epoch()).count();
    std::string s = core::format_time_ms(us / 1000);
    const std::string micros = std::to_string(1000 + us % 1000).substr(1);
    return s.insert(s.size() - 1, micros);
  }
  json run_json(const Run& r) const {
    json j = {
        {"id", r.id},
        {"idempotency_key", r.idempotency_key},
        {"deployment_id", r.deployment_id},
        {"parent_task_run_id", r.parent_task_run_id},
        {"state", {{"type", r.state_type}, {"name", r.state_name}, {"message", r.state_message}}}};
    if (wall != nullptr) {
      j["created"] = time_json(r.created);
      j["start_time"] = time_json(r.start_time);
    }
    return j;
  }
  // One create: {status, run}; status 201 new, 200 an idempotency-key match, 422 rejected.
  std::pair<int, const Run*> create(const std::string& deployment_id, const json& body) {
    if (!reject_parameter.empty() && body.contains("parameters") &&
        body["parameters"].contains(reject_parameter)) {
      return {422, nullptr};
    }
    const std::string key = body.value("idempotency_key", "");
    if (auto it = by_key.find(key); !key.empty() && it != by_key.end()) {
      return {200, &runs.at(it->second)};
    }
    Run r;
    r.id = "run-" + std::to_string(order.size() + 1);
    r.deployment_id = deployment_id;
    r.idempotency_key = key;
    r.parent_task_run_id = body.value("parent_task_run_id", "");
    r.parameters = body.value("parameters", json::object());
    if (wall != nullptr) r.created = server_now();
    order.push_back(r.id);
    if (!key.empty()) by_key[key] = r.id;
    auto [it, ok] = runs.emplace(r.id, std::move(r));
    return {201, &it->second};
  }
  HttpResponse serve(const HttpRequest& req) {
    const std::string& p = req.path;
    if (max_body_bytes > 0 && req.body.size() > max_body_bytes) {
      return answer(413, {{"detail", "Request Entity Too Large"}});
    }
    if (p.rfind("/csrf-token", 0) == 0) return answer(404, {{"detail", "Not Found"}});
    if (p == "/health") return answer(200, true);
    if (req.method == "GET" && p.rfind("/deployments/name/", 0) == 0) {
      auto it = deployments.find(p.substr(18));
      if (it == deployments.end()) return answer(404, {{"detail", "Deployment not found"}});
      return answer(200, {{"id", it->second}, {"name", p.substr(p.rfind('/') + 1)}});
    }
    const std::string bulk_suffix = "/create_flow_run/bulk";
    if (req.method == "POST" && p.size() > bulk_suffix.size() &&
        p.compare(p.size() - bulk_suffix.size(), bulk_suffix.size(), bulk_suffix) == 0) {
      if (!bulk_endpoint) return answer(404, {{"detail", "Not Found"}});
      const std::string dep = p.substr(13, p.size() - 13 - bulk_suffix.size());
      json results = json::array();
      for (const auto& b : json::parse(req.body)) {
        if (lock_item && lock_item(b)) {
          // How Prefect on SQLite reports one contended run of a bulk create.
          results.push_back({{"status", "FAILED"},
                             {"error",
                              "(sqlite3.OperationalError) database is locked\n[SQL: INSERT INTO "
                              "flow_run ...]\n[parameters: ...]"}});
          continue;
        }
        auto [status, run] = create(dep, b);
        if (run) {
          results.push_back({{"flow_run_id", run->id}, {"status", "CREATED"}});
        } else {
          results.push_back({{"status", "FAILED"}, {"error", "ValidationError: bad parameters"}});
        }
      }
      return answer(201, {{"results", results}});
    }
    const std::string single_suffix = "/create_flow_run";
    if (req.method == "POST" && p.size() > single_suffix.size() &&
        p.compare(p.size() - single_suffix.size(), single_suffix.size(), single_suffix) == 0) {
      const std::string dep = p.substr(13, p.size() - 13 - single_suffix.size());
      const json body = json::parse(req.body);
      if (lock_item && lock_item(body)) {
        return answer(503,
                      {{"exception_message", "(sqlite3.OperationalError) database is locked"}});
      }
      auto [status, run] = create(dep, body);
      if (!run) return answer(422, {{"detail", "parameters do not match the schema"}});
      return answer(status, run_json(*run));
    }
    if (req.method == "POST" && p == "/task_runs/") {
      task_runs += 1;
      return answer(201, {{"id", "task-" + std::to_string(task_runs)}});
    }
    if (req.method == "POST" && p == "/flow_runs/filter") {
      const json filter = json::parse(req.body)["flow_runs"];
      json out = json::array();
      if (filter.contains("idempotency_key")) {  // a lookup of creates that got no answer
        for (const auto& key : filter["idempotency_key"]["any_"]) {
          auto it = by_key.find(key.get<std::string>());
          if (it != by_key.end()) out.push_back(run_json(runs.at(it->second)));
        }
        return answer(200, out);
      }
      for (const auto& id : filter["id"]["any_"]) {
        auto it = runs.find(id.get<std::string>());
        if (it != runs.end()) out.push_back(run_json(it->second));
      }
      return answer(200, out);
    }
    if (req.method == "POST" && p == "/flow_runs/bulk_set_state") {
      if (!bulk_set_state) return answer(405, {{"detail", "Method Not Allowed"}});
      json results = json::array();
      const json body = json::parse(req.body);  // kept: the loop walks into it
      for (const auto& id : body["flow_runs"]["id"]["any_"]) {
        auto it = runs.find(id.get<std::string>());
        if (it == runs.end()) continue;  // a deleted run is simply absent
        set_run_state(it->first, "CANCELLED");
        results.push_back({{"flow_run_id", it->first}, {"status", "ACCEPT"}});
      }
      return answer(200, {{"results", results}});
    }
    if (req.method == "POST" && p.rfind("/flow_runs/", 0) == 0 &&
        p.find("/set_state") != std::string::npos) {
      const std::string id = p.substr(11, p.find("/set_state") - 11);
      auto it = runs.find(id);
      if (it == runs.end()) return answer(404, {{"detail", "Flow run not found"}});
      set_run_state(id, "CANCELLED");
      return answer(201, {{"status", "ACCEPT"}});
    }
    return answer(404, {{"detail", "Not Found"}});
  }

  std::deque<Scripted> script_;
};

/// A fresh temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "floodgate-engine-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// An engine on simulated time with a fake Prefect and a SQLite store in a temporary folder.
class EngineHarness {
 public:
  explicit EngineHarness(EngineOptions options = defaults())
      : options_(std::move(options)),
        store_(store::open_store("sqlite://" + dir_.file("floodgate.db"))) {
    prefect.wall = &wall;
  }
  ~EngineHarness() { engine.reset(); }

  static EngineOptions defaults() {
    EngineOptions o;
    o.dispatch.adaptive = false;
    o.dispatch.max_in_flight = 16;
    o.track_interval_min = std::chrono::seconds(1);
    o.track_interval_max = std::chrono::seconds(15);
    return o;
  }

  /// Starts (or restarts, after stop()) the engine on the same store.
  void start() {
    engine = std::make_unique<Engine>(EngineRuntime{clock, wall, random, timers}, options_, *store_,
                                      prefect, prefect::Credentials{}, metrics);
    engine->start();
    settle();
  }
  /// Drops the engine as a crash would, after its store writes are done.
  void stop() { engine.reset(); }

  /// Accepts a batch of `n` runs as the API does; run i gets `run_spec(i)`.
  std::string submit(
      BatchSpec spec, int n, const std::function<json(int)>& run_spec = [](int i) {
        return json{{"parameters", {{"i", i}}}};
      }) {
    engine->apply_defaults(spec);
    store::BatchRecord rec;
    rec.id = "batch-" + std::to_string(++batches_);
    rec.spec_json = to_json(spec).dump();
    rec.total = n;
    rec.created_at_ms = rec.updated_at_ms = wall.unix_ms();
    rec.version = 1;
    rec.sealed = submit_sealed;
    std::vector<std::string> specs;
    for (int i = 0; i < n; ++i) specs.push_back(run_spec(i).dump());
    store_->insert_pending_batch(rec, specs);
    engine->add_batch(rec, std::move(spec));
    settle();
    return rec.id;
  }

  /// Redrives batch `id` as the API does: reads from the store what the engine asks for.
  Engine::ControlAnswer redrive(const std::string& id) {
    RedriveReads reads;
    for (int round = 0; round < 3; ++round) {
      auto a = engine->redrive(id, reads);
      if (a.result != ControlResult::kReadFirst) return a;
      reads = RedriveReads{};
      reads.evictions = a.needs.evictions;
      if (a.needs.items) reads.items = store_->items_in_states(id, kRedrivableStates, true);
      reads.specs = store_->load_item_specs(id, a.needs.specs);
    }
    return engine->redrive(id, reads);
  }

  void settle() { timers.run_ready(); }
  void advance(core::Duration d) { timers.advance(d); }

  json batch(const std::string& id) const { return engine->batch_json(id); }
  std::string state(const std::string& id) const { return batch(id)["state"]; }
  int64_t count(const std::string& id, const std::string& item_state) const {
    return batch(id)["counts"][item_state].get<int64_t>();
  }
  /// Every run of the batch as the API lists them: the store's rows with what the engine holds
  /// newer (the engine's store writes are applied first).
  std::vector<RunView> runs(const std::string& id) {
    std::vector<RunView> stored;
    for (const auto& r : store_->list_items(id, std::nullopt, -1, -1)) {
      stored.push_back(run_view(r));
    }
    return engine->overlay_runs(id, std::nullopt, -1, 1000000, std::move(stored));
  }
  store::Store& store() { return *store_; }

  core::SimulatedClock clock;
  core::SimulatedWallClock wall{clock};
  core::FixedRandom random{0.5};
  core::ManualTimerQueue timers{clock};
  FakePrefect prefect;
  bool submit_sealed = true;  // false: submit() makes batches that take appended runs
  metrics::Metrics metrics{"test"};
  std::unique_ptr<Engine> engine;

 private:
  EngineOptions options_;
  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  int batches_ = 0;
};

inline BatchSpec spec_for(std::string deployment = "flow/dep") {
  BatchSpec s;
  s.deployment = std::move(deployment);
  s.track = false;
  s.retry.initial_delay_s = 1;
  s.retry.max_delay_s = 10;
  return s;
}

/// spec_for() launching at most `per_s` runs a second, in grants of at most `burst`.
inline BatchSpec paced_spec(double per_s, double burst) {
  BatchSpec s = spec_for();
  s.limits.launches_per_second = per_s;
  s.limits.burst = burst;
  return s;
}

}  // namespace floodgate::engine::testing
