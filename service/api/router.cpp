#include "api/router.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "api/json_scan.h"
#include "api/request_guard.h"
#include "api/status_page.h"
#include "engine/time_format.h"
#include "metrics/log.h"

namespace floodgate::api {

using nlohmann::json;

namespace {

const char* title_for(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 500:
      return "Internal Server Error";
    case 429:
      return "Too Many Requests";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

ServerResponse json_response(int status, const json& body) {
  ServerResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Reads the paging parameters `limit` and `after`; the answer to send when one is bad.
std::optional<ServerResponse> read_page(const std::map<std::string, std::string>& q,
                                        int64_t min_after, int& limit, int64_t& after) {
  if (auto it = q.find("limit"); it != q.end()) {
    auto v = parse_whole(it->second);
    if (!v || *v < 1 || *v > 1000) {
      return problem(400, "limit must be a whole number from 1 to 1000", "limit");
    }
    limit = static_cast<int>(*v);
  }
  if (auto it = q.find("after"); it != q.end() && !it->second.empty()) {
    auto v = parse_whole(it->second);
    if (!v || *v < min_after) return problem(400, "after must be a cursor from \"next\"", "after");
    after = *v;
  }
  return std::nullopt;
}

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

engine::RunView view_of(const store::ItemRecord& r) {
  engine::RunView v;
  v.index = r.index;
  v.state = r.state;
  v.flow_run_id = r.flow_run_id;
  v.flow_run_state = r.flow_run_state;
  v.attempts = r.attempts;
  v.last_error = r.last_error;
  v.detail_json = r.detail_json;
  if (!r.detail_json.empty()) {
    json d = json::parse(r.detail_json, nullptr, false);
    if (d.is_object()) {
      v.transient_attempts = d.value("transient_attempts", 0);
      v.waited_s = d.value("waited_s", 0.0);
    }
  }
  return v;
}

}  // namespace

ServerResponse problem(int status, const std::string& detail,
                       const std::optional<std::string>& field,
                       const std::vector<FieldError>& errors) {
  json j = {{"type", "about:blank"},
            {"title", title_for(status)},
            {"status", status},
            {"detail", detail}};
  if (field) j["field"] = *field;
  if (!errors.empty()) {
    json list = json::array();
    for (const auto& e : errors) list.push_back({{"field", e.field}, {"message", e.message}});
    j["errors"] = std::move(list);
  }
  ServerResponse r = json_response(status, j);
  r.content_type = "application/problem+json";
  return r;
}

std::map<std::string, std::string> parse_query(const std::string& query) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  while (i <= query.size()) {
    size_t j = query.find('&', i);
    if (j == std::string::npos) j = query.size();
    std::string_view part(query.data() + i, j - i);
    if (!part.empty()) {
      size_t eq = part.find('=');
      if (eq == std::string_view::npos) {
        out[url_decode(part)] = "";
      } else {
        out[url_decode(part.substr(0, eq))] = url_decode(part.substr(eq + 1));
      }
    }
    i = j + 1;
  }
  return out;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

Router::Router(ApiOptions options, engine::Engine& engine, store::Store& store,
               metrics::Metrics& metrics)
    : options_(options),
      engine_(engine),
      store_(store),
      metrics_(metrics),
      random_(std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32)) {}

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

std::string Router::new_batch_id() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::lock_guard<std::mutex> lock(random_mutex_);
  uint64_t a = random_();
  uint64_t b = random_();
  std::string s(36, '-');
  int bit = 0;
  for (int i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    uint64_t& src = bit < 64 ? a : b;
    int v = static_cast<int>((src >> (bit % 64)) & 15);
    bit += 4;
    if (i == 14) v = 4;
    if (i == 19) v = 8 | (v & 3);
    s[i] = kHex[v];
  }
  return s;
}

namespace {

/// Which endpoint a path names and the methods it declares.
struct Route {
  std::string name = "other";  // the metrics label: the path's template
  std::string allow;           // declared methods, as an Allow header lists them
  bool found = false;
};

Route route_of(const std::vector<std::string>& parts) {
  auto make = [](std::string name, std::string allow) {
    return Route{std::move(name), std::move(allow), true};
  };
  if (parts.empty()) return make("/", "GET");
  if (parts.size() == 1 && (parts[0] == "status.js" || parts[0] == "status.css")) {
    return make("/" + parts[0], "GET");
  }
  if (parts.size() == 1 &&
      (parts[0] == "healthz" || parts[0] == "readyz" || parts[0] == "metrics")) {
    return make("/" + parts[0], "GET");
  }
  if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "batches") {
    if (parts.size() == 2) return make("/v1/batches", "GET, POST");
    if (parts.size() == 3) return make("/v1/batches/{id}", "GET, PATCH");
    if (parts.size() == 4 && parts[3] == "runs") return make("/v1/batches/{id}/runs", "GET");
    if (parts.size() == 4 && (parts[3] == "cancel" || parts[3] == "pause" || parts[3] == "resume" ||
                              parts[3] == "redrive")) {
      return make("/v1/batches/{id}/" + parts[3], "POST");
    }
  }
  return Route{};
}

bool allows(const Route& route, const std::string& method) {
  if (method == "HEAD") return route.allow.find("GET") != std::string::npos;
  size_t pos = 0;
  while (pos < route.allow.size()) {
    size_t end = route.allow.find(',', pos);
    if (end == std::string::npos) end = route.allow.size();
    if (route.allow.compare(pos, end - pos, method) == 0) return true;
    pos = end + 2;
  }
  return false;
}

bool changes_state(const std::string& method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

}  // namespace

std::optional<ServerResponse> Router::refuse_body(const ServerRequest& req, bool required) const {
  auto ct = req.headers.find("content-type");
  if (!required && req.body.empty()) return std::nullopt;
  if (ct == req.headers.end()) {
    return problem(415, "the body must be JSON sent as Content-Type: application/json", "body");
  }
  if (!is_json_media_type(ct->second)) {
    return problem(415,
                   "the body must be JSON sent as Content-Type: application/json (optionally "
                   "with charset=utf-8), not " +
                       ct->second.substr(0, 200),
                   "body");
  }
  return std::nullopt;
}

void Router::handle(ServerRequest req, Responder respond_raw) {
  const auto parts = split_path(req.path);
  const Route route = route_of(parts);
  // Count every answer by route template and status.
  const auto started = std::chrono::steady_clock::now();
  auto respond = [this, respond_raw, name = route.name, started](ServerResponse r) {
    metrics_.api_requests(name, r.status).Increment();
    metrics_.api_request_duration(name).Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    respond_raw(std::move(r));
  };
  try {
    if (auto bad = host_problem(req.headers, options_.origins)) {
      return respond(problem(403, *bad, "Host"));
    }
    if (!route.found)
      return respond(problem(404, "no such endpoint: " + req.method + " " + req.path));
    std::string caller_name;
    const bool open_route =
        route.name == "/healthz" || route.name == "/readyz" || route.name == "/status.js" ||
        route.name == "/status.css" ||
        (options_.public_status && (route.name == "/" || route.name == "/metrics"));
    if (options_.auth && options_.auth->enabled() && !open_route && req.method != "OPTIONS") {
      auto it = req.headers.find("authorization");
      const Caller caller =
          options_.auth->identify(it == req.headers.end() ? nullptr : &it->second);
      if (caller.result != Caller::Result::kOk) {
        const bool missing = caller.result == Caller::Result::kMissing;
        ServerResponse r =
            problem(401,
                    missing ? "this endpoint needs an API token: Authorization: Bearer TOKEN"
                            : "the API token is not valid",
                    "Authorization");
        r.headers["WWW-Authenticate"] = missing
                                            ? "Bearer realm=\"floodgate\""
                                            : "Bearer realm=\"floodgate\", error=\"invalid_token\"";
        return respond(std::move(r));
      }
      if (changes_state(req.method) && caller.scope == Scope::kRead) {
        return respond(
            problem(403, "the token " + caller.name + " may only read", "Authorization"));
      }
      caller_name = caller.name;
      if (auto wait = over_rate(caller.name)) {
        ServerResponse r =
            problem(429, "the token " + caller.name + " makes more than " +
                             std::to_string(static_cast<int64_t>(options_.token_rate)) +
                             " requests a second (--token-rate); slow down");
        r.headers["Retry-After"] = std::to_string(static_cast<int64_t>(std::ceil(*wait)));
        return respond(std::move(r));
      }
    }
    if (req.method == "OPTIONS") {
      // Says what the endpoint takes and grants nothing: no Access-Control-* headers.
      ServerResponse r;
      r.status = 204;
      r.content_type.clear();
      r.headers["Allow"] = route.allow + ", OPTIONS";
      return respond(std::move(r));
    }
    if (!allows(route, req.method)) {
      ServerResponse r = problem(405, "method " + req.method.substr(0, 20) + " is not allowed on " +
                                          req.path.substr(0, 200));
      r.headers["Allow"] = route.allow;
      return respond(std::move(r));
    }
    if (changes_state(req.method)) {
      if (auto bad = origin_problem(req.headers, options_.origins)) {
        return respond(problem(403, *bad, "Origin"));
      }
    }
    if (auto page = status_page_response(parts, options_.prefect_ui_url)) {
      return respond(std::move(page->response));
    }
    if (route.name == "/healthz") return respond(json_response(200, {{"status", "ok"}}));
    if (route.name == "/readyz") {
      engine_.post([this, respond] {
        std::string why;
        bool ok = engine_.ready(&why);
        json body = {{"status", ok ? "ready" : "not ready"}, {"engine", engine_.status_json()}};
        if (!ok) body["reason"] = why;
        respond(json_response(ok ? 200 : 503, body));
      });
      return;
    }
    if (route.name == "/metrics") {
      ServerResponse r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = metrics_.serialize();
      return respond(std::move(r));
    }
    if (route.name == "/v1/batches") {
      if (req.method == "POST") return post_batch(req, caller_name, respond);
      return list_batches(req, respond);
    }
    const std::string& id = parts[2];
    if (route.name == "/v1/batches/{id}") {
      if (req.method == "PATCH") return patch_batch(id, req, respond);
      return get_batch(id, req, respond);
    }
    if (route.name == "/v1/batches/{id}/runs") return list_runs(id, req, respond);
    return control(id, parts[3], req, respond);
  } catch (const std::exception& e) {
    log::error("request failed", {{"path", req.path.substr(0, 200)}, {"error", e.what()}});
    respond(problem(500, std::string("internal error: ") + e.what()));
  }
}

void Router::post_batch(const ServerRequest& req, const std::string& submitted_by,
                        Responder respond) {
  if (!accepting_) return respond(problem(503, "floodgate is shutting down; submit again later"));
  if (auto bad = refuse_body(req, true)) return respond(std::move(*bad));
  std::vector<FieldError> errors;
  auto parsed = parse_batch_request(std::string_view(req.body), options_.limits, errors);
  if (!parsed) {
    const auto& first = errors.front();
    int status = first.malformed || first.field == "body" ? 400 : 422;
    return respond(problem(status, first.field + ": " + first.message, first.field, errors));
  }
  std::optional<std::string> idem;
  if (auto it = req.headers.find("idempotency-key"); it != req.headers.end()) {
    if (it->second.empty() || it->second.size() > 255) {
      return respond(
          problem(400, "Idempotency-Key header must be 1 to 255 characters", "Idempotency-Key"));
    }
    idem = it->second;
  }

  store::BatchRecord rec;
  rec.id = new_batch_id();
  rec.spec_json = engine::to_json(parsed->spec).dump();
  rec.state = core::BatchState::kQueued;
  rec.total = static_cast<int64_t>(parsed->run_specs.size());
  rec.created_at_ms = rec.updated_at_ms = engine::wall_ms();
  rec.version = 1;
  rec.idempotency_key = idem;
  rec.submitted_by = submitted_by;

  std::vector<store::ItemRecord> items(parsed->run_specs.size());
  for (size_t i = 0; i < items.size(); ++i) {
    items[i].index = static_cast<int64_t>(i);
    items[i].spec_json = std::move(parsed->run_specs[i]);
  }
  store::InsertResult result;
  try {
    result = store_.insert_batch(rec, items);
  } catch (const std::exception& e) {
    log::error("could not store a batch", {{"error", e.what()}});
    return respond(problem(503, std::string("could not store the batch: ") + e.what()));
  }
  if (!result.inserted) {
    engine_.post([this, id = result.batch_id, respond] {
      json view = engine_.batch_json(id);
      if (view.is_null()) {
        auto rec2 = store_.get_batch(id);
        if (rec2) view = engine_.stored_batch_json(*rec2);
      }
      ServerResponse r = json_response(200, view);
      r.headers["Location"] = "/v1/batches/" + id;
      respond(std::move(r));
    });
    return;
  }
  if (auto stored = store_.get_batch(rec.id)) rec.seq = stored->seq;
  // Take the specs back from the records: the engine keeps them until each run exists.
  std::vector<std::string> specs(items.size());
  for (size_t i = 0; i < items.size(); ++i) specs[i] = std::move(items[i].spec_json);
  items.clear();
  items.shrink_to_fit();
  auto shared_specs = std::make_shared<std::vector<std::string>>(std::move(specs));
  auto spec = std::make_shared<engine::BatchSpec>(std::move(parsed->spec));
  engine_.post([this, rec, spec, shared_specs, respond]() mutable {
    std::string id = rec.id;
    engine_.add_batch(std::move(rec), std::move(*spec), std::move(*shared_specs));
    ServerResponse r = json_response(201, engine_.batch_json(id));
    r.headers["Location"] = "/v1/batches/" + id;
    respond(std::move(r));
  });
}

void Router::get_batch(const std::string& id, const ServerRequest& req, Responder respond) {
  auto q = parse_query(req.query);
  double wait_s = 0;
  std::optional<int64_t> after;
  if (auto it = q.find("wait_s"); it != q.end()) {
    auto v = parse_decimal(it->second);
    if (!v || *v < 0 || *v > options_.max_wait_s) {
      return respond(problem(400,
                             "wait_s must be a number of seconds from 0 to " +
                                 std::to_string(static_cast<int>(options_.max_wait_s)),
                             "wait_s"));
    }
    wait_s = *v;
  }
  if (auto it = q.find("after_version"); it != q.end()) {
    after = parse_whole(it->second);
    if (!after) {
      return respond(problem(400, "after_version must be a whole number of at most 18 digits",
                             "after_version"));
    }
  }
  engine_.post([this, id, wait_s, after, respond] {
    if (!engine_.has_batch(id)) {
      auto rec = store_.get_batch(id);
      if (!rec) return respond(problem(404, "no batch with id " + id, "id"));
      return respond(json_response(200, engine_.stored_batch_json(*rec)));
    }
    int64_t after_version = after.value_or(wait_s > 0 ? engine_.batch_version(id) : -1);
    engine_.wait_for_change(id, after_version,
                            std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000)),
                            [respond, id](json view) {
                              if (view.is_null()) {
                                respond(problem(404, "no batch with id " + id, "id"));
                              } else {
                                respond(json_response(200, view));
                              }
                            });
  });
}

void Router::list_runs(const std::string& id, const ServerRequest& req, Responder respond) {
  auto q = parse_query(req.query);
  std::optional<core::ItemState> state;
  int limit = 100;
  int64_t after = -1;
  if (auto it = q.find("state"); it != q.end()) {
    state = core::parse_item_state(it->second);
    if (!state) {
      return respond(problem(400,
                             "state must be one of PENDING, LAUNCHING, RETRY_WAIT, LAUNCHED, "
                             "COMPLETED, FAILED, CRASHED, CANCELLED, LAUNCH_FAILED, SKIPPED",
                             "state"));
    }
  }
  if (auto bad = read_page(q, -1, limit, after)) return respond(std::move(*bad));
  engine_.post([this, id, state, limit, after, respond] {
    // One more than asked tells whether another page exists.
    auto runs = engine_.list_runs(id, state, after, limit + 1);
    std::vector<engine::RunView> views;
    if (runs) {
      views = std::move(*runs);
    } else {
      if (!store_.get_batch(id)) return respond(problem(404, "no batch with id " + id, "id"));
      for (const auto& r : store_.list_items(id, state, after, limit + 1)) {
        views.push_back(view_of(r));
      }
    }
    const bool more = static_cast<int>(views.size()) > limit;
    if (more) views.pop_back();
    json list = json::array();
    for (const auto& v : views) list.push_back(run_json(v));
    json next = more ? json(std::to_string(views.back().index)) : json();
    respond(json_response(200, {{"runs", std::move(list)}, {"next", next}}));
  });
}

void Router::list_batches(const ServerRequest& req, Responder respond) {
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
    std::map<int64_t, json> found;
    for (const auto& rec : *records) {
      if (engine_.has_batch(rec.id)) continue;
      found.emplace(rec.seq, engine_.stored_batch_json(rec));
    }
    for (auto& [seq, view] : engine_.held_batches(state, after)) {
      if (seq <= bound) found.emplace(seq, std::move(view));
    }
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
    respond(json_response(200, {{"batches", std::move(list)}, {"next", next}}));
  });
}

void Router::list_batches_by(const std::string& name, std::optional<core::BatchState> state,
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
    json list = json::array();
    json next;
    int64_t last = 0;
    bool more = false;
    for (const auto& rec : *matched) {
      json view =
          engine_.has_batch(rec.id) ? engine_.batch_json(rec.id) : engine_.stored_batch_json(rec);
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
      next = std::to_string(matched->back().seq);
    }
    respond(json_response(200, {{"batches", std::move(list)}, {"next", next}}));
  });
}

void Router::control(const std::string& id, const std::string& action, const ServerRequest& req,
                     Responder respond) {
  std::optional<engine::OnCancel> on_cancel;
  if (auto bad = refuse_body(req, false)) return respond(std::move(*bad));
  if (!req.body.empty()) {
    if (auto bad = check_json(req.body, options_.limits.max_depth)) {
      return respond(problem(400, bad->field + ": " + bad->message,
                             bad->field.empty() ? std::nullopt : std::optional(bad->field)));
    }
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return respond(problem(400, "body must be a JSON object (or empty)", "body"));
    }
    for (auto it = body.begin(); it != body.end(); ++it) {
      if (action == "cancel" && it.key() == "on_cancel") continue;
      return respond(problem(422, it.key() + ": unknown field", it.key()));
    }
    if (body.contains("on_cancel")) {
      if (!body["on_cancel"].is_string() ||
          (body["on_cancel"] != "abandon" && body["on_cancel"] != "cancel_children")) {
        return respond(
            problem(422, "on_cancel: must be \"abandon\" or \"cancel_children\"", "on_cancel"));
      }
      on_cancel = engine::parse_on_cancel(body["on_cancel"].get<std::string>());
    }
  }
  engine_.post([this, id, action, on_cancel, respond] {
    if (action == "redrive" && !engine_.has_batch(id)) engine_.hold(id);
    if (!engine_.has_batch(id)) {
      auto rec = store_.get_batch(id);
      if (!rec) return respond(problem(404, "no batch with id " + id, "id"));
      return respond(
          problem(409, "batch " + id + " is already " + std::string(core::to_string(rec->state))));
    }
    engine::Engine::ControlAnswer a;
    if (action == "cancel") a = engine_.cancel(id, on_cancel);
    if (action == "pause") a = engine_.pause(id);
    if (action == "resume") a = engine_.resume(id);
    if (action == "redrive") a = engine_.redrive(id);
    switch (a.result) {
      case engine::Engine::ControlResult::kOk:
        return respond(json_response(200, engine_.batch_json(id)));
      case engine::Engine::ControlResult::kNotFound:
        return respond(problem(404, a.message, "id"));
      case engine::Engine::ControlResult::kConflict:
        return respond(problem(409, "cannot " + action + ": " + a.message));
    }
  });
}

void Router::patch_batch(const std::string& id, const ServerRequest& req, Responder respond) {
  if (auto bad = refuse_body(req, true)) return respond(std::move(*bad));
  if (auto bad = check_json(req.body, options_.limits.max_depth)) {
    return respond(problem(400, bad->field + ": " + bad->message,
                           bad->field.empty() ? std::nullopt : std::optional(bad->field)));
  }
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) return respond(problem(400, "body is not valid JSON", "body"));
  auto shared = std::make_shared<json>(std::move(body));
  engine_.post([this, id, shared, respond] {
    const engine::BatchSpec* current = engine_.spec_of(id);
    if (current == nullptr) {
      auto rec = store_.get_batch(id);
      if (!rec) return respond(problem(404, "no batch with id " + id, "id"));
      return respond(
          problem(409, "batch " + id + " is already " + std::string(core::to_string(rec->state))));
    }
    engine::BatchSpec next = *current;
    std::vector<FieldError> errors;
    if (!apply_batch_patch(*shared, next, errors)) {
      const auto& first = errors.front();
      return respond(problem(first.field == "body" ? 400 : 422, first.field + ": " + first.message,
                             first.field, errors));
    }
    auto a = engine_.update_spec(id, next);
    if (a.result != engine::Engine::ControlResult::kOk) {
      return respond(problem(409, "cannot change the batch: " + a.message));
    }
    respond(json_response(200, engine_.batch_json(id)));
  });
}

}  // namespace floodgate::api
