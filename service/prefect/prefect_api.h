#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "prefect/http_client.h"

namespace floodgate::prefect {

/// Credentials as Prefect's own client reads them; the auth string wins over the key.
struct Credentials {
  std::string api_key;      // PREFECT_API_KEY -> Bearer
  std::string auth_string;  // PREFECT_API_AUTH_STRING "user:pass" -> Basic
};

/// The Authorization header value for the credentials, or "" when there are none.
std::string authorization_header(const Credentials& credentials);

std::string base64_encode(std::string_view in);
/// Percent-encodes one URL path segment (RFC 3986 unreserved characters stay).
std::string percent_encode_segment(std::string_view segment);
bool is_uuid(std::string_view s);

/// How floodgate must treat an answer from Prefect.
enum class Verdict {
  kOk,           // 2xx
  kRetryable,    // transport error, timeout, 408, 5xx: retry with backoff
  kRateLimited,  // 429 (or 503 with Retry-After): retry, and slow all traffic down
  kPermanent,    // 400, 404, 409, 422 and other 4xx: fail the item with Prefect's message
  kCsrfInvalid,  // 403 about the CSRF token: fetch a new token, then retry at no cost
};

struct Classification {
  Verdict verdict = Verdict::kOk;
  std::string reason;   // short label for metrics: "timeout", "connection", "http_503", ...
  std::string message;  // for humans: Prefect's own detail, or the transport error
  std::optional<core::Duration> retry_after;
  // Prefect said "not now", not "no" (transport error, timeout, 408, 429, 5xx, database
  // contention): waited out within max_elapsed_s, never counted against max_attempts.
  bool transient = false;
  // An answer none of the rules recognise, treated as transient; logged in full once.
  bool unclassified = false;
};

/// Sorts a response into a verdict; `wall_now` resolves an HTTP-date Retry-After.
Classification classify(const HttpResponse& response,
                        std::chrono::system_clock::time_point wall_now);

/// Prefect's error text from a response body ({"detail": ...}), prefixed with the status.
std::string error_message(int status, const std::string& body);

/// A deployment named "flow/deployment" or by id.
struct DeploymentRef {
  std::string flow_name;
  std::string name;
  std::string id;
  std::string display() const { return id.empty() ? flow_name + "/" + name : id; }
};
/// Parses "flow/deployment" (exactly one '/') or a UUID; nullopt otherwise.
std::optional<DeploymentRef> parse_deployment_ref(std::string_view text);

struct Deployment {
  std::string id;
  std::string flow_id;
  std::string name;
};
std::optional<Deployment> parse_deployment(const std::string& body);

/// A flow run as returned by create_flow_run or the filter endpoint.
struct FlowRunInfo {
  std::string id;
  std::string state_type;
  std::string state_name;
  std::string state_message;
  std::string idempotency_key;
  // Prefect's `created` and `start_time` (when it first entered RUNNING), on the wall clock of
  // Prefect's server; none when absent or null.
  std::optional<std::chrono::system_clock::time_point> created;
  std::optional<std::chrono::system_clock::time_point> start_time;
};
std::optional<FlowRunInfo> parse_flow_run(const nlohmann::json& j);
std::optional<FlowRunInfo> parse_flow_run(const std::string& body);
std::optional<std::vector<FlowRunInfo>> parse_flow_run_list(const std::string& body);

/// One element of the bulk create answer.
struct BulkResult {
  std::string flow_run_id;
  bool created = false;
  std::string error;
};
std::optional<std::vector<BulkResult>> parse_bulk_results(const std::string& body);

/// What floodgate adds to each child it creates.
struct CreateContext {
  const std::vector<std::string>* batch_tags = nullptr;
  std::string_view batch_tag;        // names the batch, e.g. "floodgate-batch:ID"
  std::string_view idempotency_key;  // deterministic per item and attempt
  std::string_view parent_task_run_id;
};
/// The create_flow_run body for one run spec (parameters, name, tags, job_variables,
/// work_queue_name) as accepted by the REST API.
nlohmann::json build_create_body(const nlohmann::json& run_spec, const CreateContext& ctx);

/// What the placeholder task run of a child under a parent flow run is made of.
struct PlaceholderContext {
  std::string parent_flow_run_id;
  std::string deployment_name;  // "flow/deployment", or the id as the user wrote it
  std::string dynamic_key;      // unique per batch and item
  int64_t index = 0;
  const std::vector<std::string>* tags = nullptr;
};
/// The task run body that stands in the parent for one child, as run_deployment(as_subflow=True)
/// makes it: the child is then created with the task run as its parent_task_run_id.
nlohmann::json build_placeholder_body(const PlaceholderContext& ctx);

/// An answer to a bulk create that says the server has no bulk endpoint (older Prefect).
bool is_missing_bulk_endpoint(const HttpResponse& response);

/// Builds requests to one Prefect API: paths, bodies, auth and CSRF headers.
class PrefectApi {
 public:
  PrefectApi(Credentials credentials, std::string csrf_client_id);

  HttpRequest read_deployment(const DeploymentRef& ref) const;
  HttpRequest create_flow_run(const std::string& deployment_id, std::string body) const;
  HttpRequest create_flow_run_bulk(const std::string& deployment_id, std::string body) const;
  HttpRequest filter_flow_runs(const std::vector<std::string>& ids) const;
  /// The runs of the given deployments that carry one of `keys` as idempotency key (at most
  /// 200 keys): finds a run whose create timed out or lost its answer.
  HttpRequest filter_flow_runs_by_keys(const std::vector<std::string>& keys,
                                       const std::vector<std::string>& deployment_ids) const;
  HttpRequest cancel_flow_run(const std::string& flow_run_id, const std::string& transition_id,
                              const std::string& message) const;
  /// POST /flow_runs/bulk_set_state cancelling up to 50 runs (bulk_cancel.h; servers >= 3.6.16).
  HttpRequest cancel_flow_runs_bulk(const std::vector<std::string>& flow_run_ids,
                                    const std::string& transition_id,
                                    const std::string& message) const;
  HttpRequest create_task_run(const nlohmann::json& body) const;
  HttpRequest read_flow_run(const std::string& flow_run_id) const;
  HttpRequest health() const;
  HttpRequest csrf_token() const;

  /// CSRF state: unknown until the first token request answers.
  enum class Csrf { kUnknown, kDisabled, kEnabled };
  Csrf csrf() const { return csrf_; }
  /// Applies the answer to csrf_token(); false when the answer was not understood.
  bool on_csrf_response(const HttpResponse& response);
  void invalidate_csrf_token() { csrf_ = Csrf::kUnknown; }

  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  HttpRequest make(std::string method, std::string path, std::string body) const;

  std::string authorization_;
  std::string csrf_client_id_;
  std::string csrf_token_;
  Csrf csrf_ = Csrf::kUnknown;
  std::chrono::milliseconds timeout_{std::chrono::seconds(30)};
};

}  // namespace floodgate::prefect
