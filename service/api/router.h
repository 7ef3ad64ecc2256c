#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/auth.h"
#include "api/batch_commands.h"
#include "api/batch_queries.h"
#include "api/batch_request.h"
#include "api/http_server.h"
#include "api/peers.h"
#include "api/request_guard.h"
#include "api/routes.h"
#include "api/store_reader.h"
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
  /// The other replicas when the store is shared (PostgreSQL); null for one process.
  Peers* peers = nullptr;
};

/// floodgate's REST API: routing, Host and Origin checks, tokens and their rate limits, and the
/// metrics of every answer. Runs on the listener's threads; reads of batches go to BatchQueries,
/// changes to BatchCommands.
class Router {
 public:
  Router(ApiOptions options, engine::Engine& engine, store::Store& store,
         metrics::Metrics& metrics);

  void handle(ServerRequest request, Responder respond);
  /// Refuse new batches (while draining).
  void stop_accepting() { commands_.stop_accepting(); }

 private:
  /// What the router answers itself before any endpoint runs: a refusal (Host, unknown path,
  /// token, rate, method, Origin) or OPTIONS' answer. Sets the caller's token name.
  std::optional<ServerResponse> early_answer(const ServerRequest& req, const Route& route,
                                             std::string& caller_name);
  /// Checks the request's token and its rate; the refusal, if any.
  std::optional<ServerResponse> authenticate(const ServerRequest& req, std::string& caller_name);
  /// Takes one request from the caller's bucket; the seconds to wait when it is empty.
  std::optional<double> over_rate(const std::string& caller);
  void dispatch(const ServerRequest& req, const std::vector<std::string>& parts, const Route& route,
                const std::string& caller_name, const Responder& respond);

  ApiOptions options_;
  engine::Engine& engine_;
  metrics::Metrics& metrics_;
  core::SteadyClock steady_clock_;
  core::SystemWallClock system_wall_clock_;
  std::mutex buckets_mutex_;
  std::map<std::string, core::TokenBucket> buckets_;
  core::MtRandom random_;  // batch ids
  BatchQueries queries_;
  BatchCommands commands_;
  // Last, so destroyed first: it finishes the reads still queued while what they use exists.
  StoreReader reads_;
};

}  // namespace floodgate::api
