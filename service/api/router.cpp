#include "api/router.h"

#include <charconv>
#include <limits>
#include <memory>

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

std::optional<int64_t> parse_int(const std::string& s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_double(const std::string& s) {
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    if (used != s.size()) return std::nullopt;
    return v;
  } catch (...) {
    return std::nullopt;
  }
}

// Reads the paging parameters `limit` and `after`; the answer to send when one is bad.
std::optional<ServerResponse> read_page(const std::map<std::string, std::string>& q,
                                        int64_t min_after, int& limit, int64_t& after) {
  if (auto it = q.find("limit"); it != q.end()) {
    auto v = parse_int(it->second);
    if (!v || *v < 1 || *v > 1000) {
      return problem(400, "limit must be a whole number from 1 to 1000", "limit");
    }
    limit = static_cast<int>(*v);
  }
  if (auto it = q.find("after"); it != q.end() && !it->second.empty()) {
    auto v = parse_int(it->second);
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
            {"last_error", v.last_error.empty() ? json() : json(v.last_error)}};
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
  return v;
}

}  // namespace

ServerResponse problem(int status, const std::string& detail, const std::string& field,
                       const std::vector<FieldError>& errors) {
  json j = {{"type", "about:blank"},
            {"title", title_for(status)},
            {"status", status},
            {"detail", detail}};
  if (!field.empty()) j["field"] = field;
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

void Router::handle(ServerRequest req, Responder respond_raw) {
  auto parts = split_path(req.path);
  std::string route = "other";
  // Count every answer by route template and status.
  auto respond = [this, respond_raw, &route](ServerResponse r) {
    metrics_.api_requests(route, r.status).Increment();
    respond_raw(std::move(r));
  };
  auto route_respond = [this, respond_raw](std::string name) {
    return [this, respond_raw, name](ServerResponse r) {
      metrics_.api_requests(name, r.status).Increment();
      respond_raw(std::move(r));
    };
  };
  auto method_not_allowed = [&](const char* allow) {
    ServerResponse r = problem(405, "method " + req.method + " is not allowed on " + req.path);
    r.headers["Allow"] = allow;
    respond(std::move(r));
  };
  try {
    if (parts.empty()) {
      route = "/";
      if (req.method != "GET") return method_not_allowed("GET");
      ServerResponse r;
      r.content_type = "text/html; charset=utf-8";
      r.body = status_page_html();
      return respond(std::move(r));
    }
    if (parts.size() == 1 && parts[0] == "healthz") {
      if (req.method != "GET" && req.method != "HEAD") {
        route = "/healthz";
        return method_not_allowed("GET");
      }
      route = "/healthz";
      return respond(json_response(200, {{"status", "ok"}}));
    }
    if (parts.size() == 1 && parts[0] == "readyz") {
      if (req.method != "GET" && req.method != "HEAD") {
        route = "/readyz";
        return method_not_allowed("GET");
      }
      engine_.post([this, r = route_respond("/readyz")] {
        std::string why;
        bool ok = engine_.ready(&why);
        json body = {{"status", ok ? "ready" : "not ready"}, {"engine", engine_.status_json()}};
        if (!ok) body["reason"] = why;
        r(json_response(ok ? 200 : 503, body));
      });
      return;
    }
    if (parts.size() == 1 && parts[0] == "metrics") {
      if (req.method != "GET" && req.method != "HEAD") {
        route = "/metrics";
        return method_not_allowed("GET");
      }
      route = "/metrics";
      ServerResponse r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = metrics_.serialize();
      return respond(std::move(r));
    }
    if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "batches") {
      if (parts.size() == 2) {
        route = "/v1/batches";
        if (req.method == "POST") return post_batch(req, route_respond(route));
        if (req.method == "GET") return list_batches(req, route_respond(route));
        return method_not_allowed("GET, POST");
      }
      const std::string id = parts[2];
      if (parts.size() == 3) {
        route = "/v1/batches/{id}";
        if (req.method == "GET") return get_batch(id, req, route_respond(route));
        if (req.method == "PATCH") return patch_batch(id, req, route_respond(route));
        return method_not_allowed("GET, PATCH");
      }
      if (parts.size() == 4 && parts[3] == "runs") {
        route = "/v1/batches/{id}/runs";
        if (req.method != "GET") return method_not_allowed("GET");
        return list_runs(id, req, route_respond(route));
      }
      if (parts.size() == 4 && (parts[3] == "cancel" || parts[3] == "pause" ||
                                parts[3] == "resume" || parts[3] == "redrive")) {
        route = "/v1/batches/{id}/" + parts[3];
        if (req.method != "POST") return method_not_allowed("POST");
        return control(id, parts[3], req, route_respond(route));
      }
    }
    respond(problem(404, "no such endpoint: " + req.method + " " + req.path));
  } catch (const std::exception& e) {
    log::error("request failed", {{"path", req.path}, {"error", e.what()}});
    respond(problem(500, std::string("internal error: ") + e.what()));
  }
}

void Router::post_batch(const ServerRequest& req, Responder respond) {
  if (!accepting_) return respond(problem(503, "floodgate is shutting down; submit again later"));
  auto ct = req.headers.find("content-type");
  if (ct != req.headers.end() && ct->second.find("json") == std::string::npos) {
    return respond(problem(
        415, "the body must be JSON (Content-Type: application/json), not " + ct->second, "body"));
  }
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::parse_error& e) {
    return respond(problem(400, std::string("body is not valid JSON: ") + e.what(), "body"));
  }
  std::vector<FieldError> errors;
  auto parsed = parse_batch_request(body, options_.limits, errors);
  body = json();  // free the parsed tree before the store copies
  if (!parsed) {
    const auto& first = errors.front();
    int status = first.field == "body" ? 400 : 422;
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
    auto v = parse_double(it->second);
    if (!v || *v < 0 || *v > options_.max_wait_s) {
      return respond(problem(400,
                             "wait_s must be a number of seconds from 0 to " +
                                 std::to_string(static_cast<int>(options_.max_wait_s)),
                             "wait_s"));
    }
    wait_s = *v;
  }
  if (auto it = q.find("after_version"); it != q.end()) {
    after = parse_int(it->second);
    if (!after)
      return respond(problem(400, "after_version must be a whole number", "after_version"));
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

void Router::control(const std::string& id, const std::string& action, const ServerRequest& req,
                     Responder respond) {
  std::optional<std::string> on_cancel;
  if (!req.body.empty()) {
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
      on_cancel = body["on_cancel"].get<std::string>();
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
