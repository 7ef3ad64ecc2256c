#include "api/router.h"

#include <chrono>
#include <cmath>
#include <random>

#include "api/health_routes.h"
#include "api/problem.h"
#include "api/request_target.h"
#include "api/status_page.h"
#include "metrics/log.h"

namespace floodgate::api {

namespace {

const core::WallClock& wall_clock_of(const ApiOptions& options, const core::WallClock& fallback) {
  return options.wall_clock != nullptr ? *options.wall_clock : fallback;
}

}  // namespace

Router::Router(ApiOptions options, engine::Engine& engine, store::Store& store,
               metrics::Metrics& metrics)
    : options_(std::move(options)),
      engine_(engine),
      metrics_(metrics),
      random_((static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}()),
      queries_(engine, store, reads_, options_.max_wait_s, options_.peers),
      commands_(engine, store, reads_, options_.limits, wall_clock_of(options_, system_wall_clock_),
                random_, options_.peers) {}

std::optional<double> Router::over_rate(const std::string& caller) {
  if (options_.token_rate <= 0) return std::nullopt;
  const core::Clock& clock = options_.clock != nullptr ? *options_.clock : steady_clock_;
  std::lock_guard lock(buckets_mutex_);
  auto it = buckets_.find(caller);
  if (it == buckets_.end()) {
    it = buckets_
             .emplace(std::piecewise_construct, std::forward_as_tuple(caller),
                      std::forward_as_tuple(clock, options_.token_rate,
                                            std::max(2.0, 2 * options_.token_rate)))
             .first;
  }
  if (it->second.try_consume()) return std::nullopt;
  return std::max(1.0, std::chrono::duration<double>(it->second.time_until()).count());
}

void Router::handle(ServerRequest req, Responder respond_raw) {
  const auto parts = split_path(req.path);
  const Route route = route_of(parts);
  // Count every answer by route template and status.
  const auto started = std::chrono::steady_clock::now();
  Responder respond = [this, respond_raw, name = route.name, started](ServerResponse r) {
    metrics_.api_requests(name, r.status).Increment();
    metrics_.api_request_duration(name).Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    respond_raw(std::move(r));
  };
  try {
    std::string caller_name;
    if (auto early = early_answer(req, route, caller_name)) return respond(std::move(*early));
    dispatch(req, parts, route, caller_name, respond);
  } catch (const std::exception& e) {
    log::error("request failed", {{"path", req.path.substr(0, 200)}, {"error", e.what()}});
    respond(problem(500, std::string("internal error: ") + e.what()));
  }
}

std::optional<ServerResponse> Router::early_answer(const ServerRequest& req, const Route& route,
                                                   std::string& caller_name) {
  if (auto bad = host_problem(req.headers, options_.origins)) return problem(403, *bad, "Host");
  if (!route.found) return problem(404, "no such endpoint: " + req.method + " " + req.path);
  if (options_.auth && options_.auth->enabled() && !is_open_route(route, options_.public_status) &&
      req.method != "OPTIONS") {
    if (auto refused = authenticate(req, caller_name)) return refused;
  }
  if (req.method == "OPTIONS") {
    // Says what the endpoint takes and grants nothing: no Access-Control-* headers.
    ServerResponse r;
    r.status = 204;
    r.content_type.clear();
    r.headers["Allow"] = route.allow + ", OPTIONS";
    return r;
  }
  if (!allows(route, req.method)) {
    ServerResponse r = problem(405, "method " + req.method.substr(0, 20) + " is not allowed on " +
                                        req.path.substr(0, 200));
    r.headers["Allow"] = route.allow;
    return r;
  }
  if (changes_state(req.method)) {
    if (auto bad = origin_problem(req.headers, options_.origins)) {
      return problem(403, *bad, "Origin");
    }
  }
  return std::nullopt;
}

std::optional<ServerResponse> Router::authenticate(const ServerRequest& req,
                                                   std::string& caller_name) {
  auto it = req.headers.find("authorization");
  const Caller caller = options_.auth->identify(it == req.headers.end() ? nullptr : &it->second);
  if (caller.result != Caller::Result::kOk) {
    const bool missing = caller.result == Caller::Result::kMissing;
    ServerResponse r =
        problem(401,
                missing ? "this endpoint needs an API token: Authorization: Bearer TOKEN"
                        : "the API token is not valid",
                "Authorization");
    r.headers["WWW-Authenticate"] = missing ? "Bearer realm=\"floodgate\""
                                            : "Bearer realm=\"floodgate\", error=\"invalid_token\"";
    return r;
  }
  if (changes_state(req.method) && caller.scope == Scope::kRead) {
    return problem(403, "the token " + caller.name + " may only read", "Authorization");
  }
  caller_name = caller.name;
  if (auto wait = over_rate(caller.name)) {
    ServerResponse r = problem(429, "the token " + caller.name + " makes more than " +
                                        std::to_string(static_cast<int64_t>(options_.token_rate)) +
                                        " requests a second (--token-rate); slow down");
    r.headers["Retry-After"] = std::to_string(static_cast<int64_t>(std::ceil(*wait)));
    return r;
  }
  return std::nullopt;
}

void Router::dispatch(const ServerRequest& req, const std::vector<std::string>& parts,
                      const Route& route, const std::string& caller_name,
                      const Responder& respond) {
  if (auto page = status_page_response(parts, options_.prefect_ui_url)) {
    return respond(std::move(page->response));
  }
  if (route.name == "/healthz") return respond(health_answer());
  if (route.name == "/readyz") return answer_readiness(engine_, options_.peers, respond);
  if (route.name == "/metrics") return respond(metrics_answer(metrics_));
  if (route.name == "/v1/batches") {
    if (req.method == "POST") return commands_.submit(req, caller_name, respond);
    return queries_.list_batches(req, respond);
  }
  const std::string& id = parts[2];
  if (route.name == "/v1/batches/{id}") {
    if (req.method == "PATCH") return commands_.patch(id, req, respond);
    return queries_.get_batch(id, req, respond);
  }
  if (route.name == "/v1/batches/{id}/runs") {
    if (req.method == "POST") return commands_.append_runs(id, req, respond);
    return queries_.list_runs(id, req, respond);
  }
  if (route.name == "/v1/batches/{id}/seal") return commands_.seal(id, req, respond);
  commands_.control(id, parts[3], req, respond);
}

}  // namespace floodgate::api
