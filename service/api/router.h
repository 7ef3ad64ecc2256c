#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "api/auth.h"
#include "api/batch_request.h"
#include "api/http_server.h"
#include "api/request_guard.h"
#include "core/clock.h"
#include "core/random.h"
#include "core/token_bucket.h"
#include "engine/engine.h"
#include "metrics/metrics.h"
#include "store/store.h"

namespace floodgate::api {

struct ApiOptions {
  RequestLimits limits;
  double max_wait_s = 300;  // cap on long-poll waits
  OriginPolicy origins;     // which Host and Origin headers are answered
  /// API tokens; none (or null) leaves the API open.
  std::shared_ptr<const Authenticator> auth;
  bool public_status = false;  // /metrics and / need no token
  std::string prefect_ui_url;  // status page links to Prefect's UI when set
  /// Requests per second each API token may make (0: no limit); bursts of twice that, at least 2.
  double token_rate = 50;
  const core::Clock* clock = nullptr;  // for the per-token buckets; the steady clock if null
  /// For batches' creation times; the system clock if null.
  const core::WallClock* wall_clock = nullptr;
};

/// floodgate's REST API: routing, validation, JSON mapping. Runs on the listener's threads;
/// everything that touches batches is posted to the engine's thread.
class Router {
 public:
  Router(ApiOptions options, engine::Engine& engine, store::Store& store,
         metrics::Metrics& metrics);

  void handle(ServerRequest request, Responder respond);
  /// Refuse new batches (while draining).
  void stop_accepting() { accepting_ = false; }

 private:
  void post_batch(const ServerRequest& req, const std::string& submitted_by, Responder respond);
  void get_batch(const std::string& id, const ServerRequest& req, Responder respond);
  void list_runs(const std::string& id, const ServerRequest& req, Responder respond);
  void list_batches(const ServerRequest& req, Responder respond);
  void list_batches_by(const std::string& name, std::optional<core::BatchState> state, int limit,
                       int64_t after, Responder respond);
  void control(const std::string& id, const std::string& action, const ServerRequest& req,
               Responder respond);
  void patch_batch(const std::string& id, const ServerRequest& req, Responder respond);
  std::string new_batch_id();
  /// The 415 to send when a JSON body is not declared as application/json (an empty body is
  /// fine unless `required`).
  std::optional<ServerResponse> refuse_body(const ServerRequest& req, bool required) const;

  ApiOptions options_;
  engine::Engine& engine_;
  store::Store& store_;
  metrics::Metrics& metrics_;
  std::atomic<bool> accepting_{true};
  /// Takes one request from the caller's bucket; the seconds to wait when it is empty.
  std::optional<double> over_rate(const std::string& caller);

  core::SteadyClock steady_clock_;
  std::mutex buckets_mutex_;
  std::map<std::string, core::TokenBucket> buckets_;
  const core::WallClock& wall_clock() const {
    return options_.wall_clock != nullptr ? *options_.wall_clock : system_wall_clock_;
  }
  core::SystemWallClock system_wall_clock_;
  std::mutex random_mutex_;
  core::MtRandom random_;  // batch ids; listener threads share it under random_mutex_
};

/// An application/problem+json response (RFC 9457) naming the field at fault.
/// `field` is left out only when absent: an empty name is a real key (a body member named "").
ServerResponse problem(int status, const std::string& detail,
                       const std::optional<std::string>& field = std::nullopt,
                       const std::vector<FieldError>& errors = {});

/// Parses a query string into decoded key/value pairs.
std::map<std::string, std::string> parse_query(const std::string& query);

/// Splits a request path into its non-empty segments (public for the fuzz target).
std::vector<std::string> split_path(const std::string& path);

}  // namespace floodgate::api
