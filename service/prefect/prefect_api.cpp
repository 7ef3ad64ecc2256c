#include "prefect/prefect_api.h"

#include <algorithm>
#include <cctype>

#include "core/global_backoff.h"
#include "core/time_format.h"
#include "prefect/bulk_cancel.h"

namespace floodgate::prefect {

using nlohmann::json;

std::string base64_encode(std::string_view in) {
  static constexpr char kTable[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                 static_cast<uint8_t>(in[i + 2]);
    out += kTable[(n >> 18) & 63];
    out += kTable[(n >> 12) & 63];
    out += kTable[(n >> 6) & 63];
    out += kTable[n & 63];
  }
  if (i < in.size()) {
    uint32_t n = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) n |= static_cast<uint8_t>(in[i + 1]) << 8;
    out += kTable[(n >> 18) & 63];
    out += kTable[(n >> 12) & 63];
    out += i + 1 < in.size() ? kTable[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string authorization_header(const Credentials& credentials) {
  if (!credentials.auth_string.empty()) return "Basic " + base64_encode(credentials.auth_string);
  if (!credentials.api_key.empty()) return "Bearer " + credentials.api_key;
  return {};
}

std::string percent_encode_segment(std::string_view segment) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : segment) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

namespace {

std::string detail_text(const json& detail) {
  if (detail.is_string()) return detail.get<std::string>();
  if (detail.is_array()) {
    // FastAPI validation errors: [{"loc": [...], "msg": "...", "type": "..."}]
    std::string out;
    for (const auto& e : detail) {
      if (!out.empty()) out += "; ";
      if (e.is_object()) {
        std::string loc;
        if (e.contains("loc") && e["loc"].is_array()) {
          for (const auto& part : e["loc"]) {
            if (!loc.empty()) loc += ".";
            loc += part.is_string() ? part.get<std::string>() : part.dump();
          }
        }
        std::string msg = e.value("msg", e.dump());
        out += loc.empty() ? msg : loc + ": " + msg;
      } else {
        out += e.dump();
      }
    }
    return out;
  }
  return detail.dump();
}

}  // namespace

std::string error_message(int status, const std::string& body) {
  std::string text;
  json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("detail")) {
    text = detail_text(j["detail"]);
  } else if (!j.is_discarded() && j.is_object() && j.contains("exception_detail")) {
    text = detail_text(j["exception_detail"]);
  } else {
    text = body.substr(0, 500);
  }
  std::string out = "Prefect answered " + std::to_string(status);
  if (!text.empty()) out += ": " + text;
  return out;
}

Classification classify(const HttpResponse& response,
                        std::chrono::system_clock::time_point wall_now) {
  Classification c;
  const int s = response.status;
  if (s == 0) {
    c.verdict = Verdict::kRetryable;
    c.transient = true;
    c.reason = response.timed_out ? "timeout" : "connection";
    c.message = response.error.empty() ? std::string("no answer from Prefect") : response.error;
    return c;
  }
  if (s >= 200 && s < 300) return c;
  c.message = error_message(s, response.body);
  c.reason = "http_" + std::to_string(s);
  std::string retry_after = response.header("Retry-After");
  if (!retry_after.empty()) c.retry_after = core::parse_retry_after(retry_after, wall_now);
  if (s == 429 || (s == 503 && c.retry_after)) {
    c.verdict = Verdict::kRateLimited;
    c.transient = true;
  } else if (s == 408 || (s >= 500 && s < 600)) {
    c.verdict = Verdict::kRetryable;
    c.transient = true;
  } else if (s == 403 && c.message.find("CSRF") != std::string::npos) {
    c.verdict = Verdict::kCsrfInvalid;
  } else if (s >= 400 && s < 500) {
    c.verdict = Verdict::kPermanent;
  } else {
    // 1xx, 3xx or no HTTP status at all: nothing says the run is refused.
    c.verdict = Verdict::kRetryable;
    c.transient = true;
    c.unclassified = true;
  }
  return c;
}

std::optional<DeploymentRef> parse_deployment_ref(std::string_view text) {
  DeploymentRef ref;
  if (is_uuid(text)) {
    ref.id = std::string(text);
    return ref;
  }
  auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 >= text.size() ||
      text.find('/', slash + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  ref.flow_name = std::string(text.substr(0, slash));
  ref.name = std::string(text.substr(slash + 1));
  return ref;
}

std::optional<Deployment> parse_deployment(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string()) {
    return std::nullopt;
  }
  Deployment d;
  d.id = j["id"].get<std::string>();
  if (j.contains("flow_id") && j["flow_id"].is_string()) d.flow_id = j["flow_id"];
  if (j.contains("name") && j["name"].is_string()) d.name = j["name"];
  return d;
}

namespace {
std::string str_or_empty(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
}  // namespace

std::optional<FlowRunInfo> parse_flow_run(const json& j) {
  if (!j.is_object()) return std::nullopt;
  FlowRunInfo info;
  info.id = str_or_empty(j, "id");
  if (info.id.empty()) return std::nullopt;
  info.idempotency_key = str_or_empty(j, "idempotency_key");
  info.state_type = str_or_empty(j, "state_type");
  info.state_name = str_or_empty(j, "state_name");
  auto st = j.find("state");
  if (st != j.end() && st->is_object()) {
    if (info.state_type.empty()) info.state_type = str_or_empty(*st, "type");
    if (info.state_name.empty()) info.state_name = str_or_empty(*st, "name");
    info.state_message = str_or_empty(*st, "message");
  }
  info.created = core::parse_time(str_or_empty(j, "created"));
  info.start_time = core::parse_time(str_or_empty(j, "start_time"));
  return info;
}

std::optional<FlowRunInfo> parse_flow_run(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return parse_flow_run(j);
}

std::optional<std::vector<FlowRunInfo>> parse_flow_run_list(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return std::nullopt;
  std::vector<FlowRunInfo> out;
  out.reserve(j.size());
  for (const auto& e : j) {
    auto info = parse_flow_run(e);
    if (!info) return std::nullopt;
    out.push_back(std::move(*info));
  }
  return out;
}

std::optional<std::vector<BulkResult>> parse_bulk_results(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("results") || !j["results"].is_array()) {
    return std::nullopt;
  }
  std::vector<BulkResult> out;
  for (const auto& r : j["results"]) {
    if (!r.is_object()) return std::nullopt;
    BulkResult b;
    b.flow_run_id = str_or_empty(r, "flow_run_id");
    b.created = str_or_empty(r, "status") == "CREATED";
    auto e = r.find("error");
    if (e != r.end() && !e->is_null()) b.error = e->is_string() ? e->get<std::string>() : e->dump();
    if (b.created && b.flow_run_id.empty()) return std::nullopt;
    out.push_back(std::move(b));
  }
  return out;
}

json build_create_body(const json& run_spec, const CreateContext& ctx) {
  json body = json::object();
  body["parameters"] = run_spec.contains("parameters") ? run_spec["parameters"] : json::object();
  json tags = json::array();
  auto add_tag = [&tags](const std::string& t) {
    if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  };
  if (ctx.batch_tags != nullptr) {
    for (const auto& t : *ctx.batch_tags) add_tag(t);
  }
  if (auto it = run_spec.find("tags"); it != run_spec.end() && it->is_array()) {
    for (const auto& t : *it) add_tag(t.get<std::string>());
  }
  if (!ctx.batch_tag.empty()) add_tag(std::string(ctx.batch_tag));
  body["tags"] = std::move(tags);
  for (const char* key : {"name", "work_queue_name"}) {
    if (auto it = run_spec.find(key); it != run_spec.end() && !it->is_null()) body[key] = *it;
  }
  if (auto it = run_spec.find("job_variables"); it != run_spec.end() && !it->is_null()) {
    body["job_variables"] = *it;
  }
  body["idempotency_key"] = std::string(ctx.idempotency_key);
  if (!ctx.parent_task_run_id.empty()) {
    body["parent_task_run_id"] = std::string(ctx.parent_task_run_id);
  }
  return body;
}

json build_placeholder_body(const PlaceholderContext& ctx) {
  std::string slug;
  for (char c : ctx.deployment_name) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
      slug += static_cast<char>(std::tolower(u));
    } else if (!slug.empty() && slug.back() != '-') {
      slug += '-';
    }
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return {{"flow_run_id", ctx.parent_flow_run_id},
          {"task_key", "prefect.deployments.flow_runs.run_deployment." + slug},
          {"dynamic_key", ctx.dynamic_key},
          {"name", ctx.deployment_name + "-" + std::to_string(ctx.index)},
          {"state", {{"type", "PENDING"}, {"name", "Pending"}}},
          {"task_inputs", json::object()},
          {"tags", ctx.tags != nullptr ? json(*ctx.tags) : json::array()},
          {"empirical_policy", {{"retries", 0}, {"retry_delay", 0}}}};
}

bool is_missing_bulk_endpoint(const HttpResponse& response) {
  return (response.status == 404 && response.body.find("Not Found") != std::string::npos) ||
         response.status == 405;
}

PrefectApi::PrefectApi(Credentials credentials, std::string csrf_client_id)
    : authorization_(authorization_header(credentials)),
      csrf_client_id_(std::move(csrf_client_id)) {}

HttpRequest PrefectApi::make(std::string method, std::string path, std::string body) const {
  HttpRequest r;
  const bool mutating = method != "GET";
  r.method = std::move(method);
  r.path = std::move(path);
  r.body = std::move(body);
  r.timeout = timeout_;
  if (!authorization_.empty()) r.headers.emplace_back("Authorization", authorization_);
  if (!r.body.empty()) r.headers.emplace_back("Content-Type", "application/json");
  if (mutating && csrf_ == Csrf::kEnabled) {
    r.headers.emplace_back("Prefect-Csrf-Token", csrf_token_);
    r.headers.emplace_back("Prefect-Csrf-Client", csrf_client_id_);
  }
  return r;
}

HttpRequest PrefectApi::read_deployment(const DeploymentRef& ref) const {
  if (!ref.id.empty()) return make("GET", "/deployments/" + percent_encode_segment(ref.id), "");
  return make("GET",
              "/deployments/name/" + percent_encode_segment(ref.flow_name) + "/" +
                  percent_encode_segment(ref.name),
              "");
}

HttpRequest PrefectApi::create_flow_run(const std::string& deployment_id, std::string body) const {
  return make("POST", "/deployments/" + deployment_id + "/create_flow_run", std::move(body));
}

HttpRequest PrefectApi::create_flow_run_bulk(const std::string& deployment_id,
                                             std::string body) const {
  return make("POST", "/deployments/" + deployment_id + "/create_flow_run/bulk", std::move(body));
}

HttpRequest PrefectApi::filter_flow_runs(const std::vector<std::string>& ids) const {
  json body = {{"flow_runs", {{"id", {{"any_", ids}}}}},
               {"limit", static_cast<int>(std::min<size_t>(ids.size(), 200))},
               {"offset", 0},
               {"sort", "ID_DESC"}};
  return make("POST", "/flow_runs/filter", body.dump());
}

HttpRequest PrefectApi::filter_flow_runs_by_keys(
    const std::vector<std::string>& keys, const std::vector<std::string>& deployment_ids) const {
  json runs = {{"idempotency_key", {{"any_", keys}}}};
  if (!deployment_ids.empty()) runs["deployment_id"] = {{"any_", deployment_ids}};
  json body = {{"flow_runs", runs},
               {"limit", static_cast<int>(std::clamp<size_t>(keys.size(), 1, 200))},
               {"offset", 0},
               {"sort", "ID_DESC"}};
  return make("POST", "/flow_runs/filter", body.dump());
}

HttpRequest PrefectApi::cancel_flow_run(const std::string& flow_run_id,
                                        const std::string& transition_id,
                                        const std::string& message) const {
  json body = {{"state",
                {{"type", "CANCELLING"},
                 {"name", "Cancelling"},
                 {"message", message},
                 {"state_details", {{"transition_id", transition_id}}}}},
               {"force", false}};
  return make("POST", "/flow_runs/" + flow_run_id + "/set_state", body.dump());
}

HttpRequest PrefectApi::cancel_flow_runs_bulk(const std::vector<std::string>& flow_run_ids,
                                              const std::string& transition_id,
                                              const std::string& message) const {
  return make("POST", "/flow_runs/bulk_set_state",
              build_bulk_cancel_body(flow_run_ids, transition_id, message));
}

HttpRequest PrefectApi::create_task_run(const json& body) const {
  return make("POST", "/task_runs/", body.dump());
}

HttpRequest PrefectApi::read_flow_run(const std::string& flow_run_id) const {
  return make("GET", "/flow_runs/" + flow_run_id, "");
}

HttpRequest PrefectApi::health() const {
  HttpRequest r = make("GET", "/health", "");
  r.timeout = std::min(timeout_, std::chrono::milliseconds(10000));
  return r;
}

HttpRequest PrefectApi::csrf_token() const {
  return make("GET", "/csrf-token?client=" + percent_encode_segment(csrf_client_id_), "");
}

bool PrefectApi::on_csrf_response(const HttpResponse& response) {
  if (response.status == 422 || response.status == 404) {
    csrf_ = Csrf::kDisabled;  // CSRF protection is off, or a server too old to have it
    return true;
  }
  if (response.status != 200) return false;
  json j = json::parse(response.body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("token") || !j["token"].is_string()) {
    return false;
  }
  csrf_token_ = j["token"].get<std::string>();
  csrf_ = Csrf::kEnabled;
  return true;
}

}  // namespace floodgate::prefect
