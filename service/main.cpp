// floodgated: launches Prefect deployment runs in batches through layered limits.

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "api/auth.h"
#include "api/router.h"
#include "app/config.h"
#include "app/replica_keeper.h"
#include "app/replica_peers.h"
#include "engine/asio_timer_queue.h"
#include "engine/engine.h"
#include "http/beast_server.h"
#include "http/cpprest_client.h"
#include "http/proxy.h"
#include "http/thread_pool.h"
#include "http/url_redact.h"
#include "metrics/log.h"
#include "metrics/metrics.h"
#include "store/database_url.h"
#include "store/leases.h"
#include "store/store.h"

extern char** environ;

namespace {

std::map<std::string, std::string> environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

/// The API tokens the configuration names (none: authentication off). Throws with a message
/// that names the file and line, never a secret.
std::vector<floodgate::api::ApiToken> load_tokens(const floodgate::Config& cfg) {
  if (!cfg.api_tokens.empty()) {
    return floodgate::api::parse_api_tokens(cfg.api_tokens, "FLOODGATE_API_TOKENS");
  }
  if (cfg.api_tokens_file.empty()) return {};
  std::ifstream in(cfg.api_tokens_file);
  if (!in) throw std::runtime_error("cannot read --api-tokens-file " + cfg.api_tokens_file);
  std::stringstream text;
  text << in.rdbuf();
  return floodgate::api::parse_api_tokens(text.str(), cfg.api_tokens_file);
}

/// The connection limit that fits the open-file limit: raises the soft limit as far as the
/// hard one allows, then keeps room for the store, logs and connections toward Prefect.
size_t connection_limit(int wanted, int max_in_flight) {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0) return static_cast<size_t>(wanted);
  if (files.rlim_cur < files.rlim_max) {
    rlimit raised = files;
    raised.rlim_cur = files.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) files = raised;
  }
  const rlim_t reserve = 64 + static_cast<rlim_t>(max_in_flight);
  if (files.rlim_cur == RLIM_INFINITY || files.rlim_cur >= reserve + static_cast<rlim_t>(wanted)) {
    return static_cast<size_t>(wanted);
  }
  const auto fits = files.rlim_cur > reserve + 16 ? files.rlim_cur - reserve : 16;
  floodgate::log::warn("--max-connections lowered to fit the open-file limit",
                       {{"max_connections", wanted},
                        {"open_file_limit", static_cast<int64_t>(files.rlim_cur)},
                        {"now", static_cast<int64_t>(fits)}});
  return static_cast<size_t>(fits);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// A replica's id among the replicas of a shared store: new for each process, so a replica that
// restarts is a new one and claims its old batches like any other (after their leases end, or
// at once after a clean stop), never twice.
std::string replica_id() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "floodgated");
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", rd());
  return std::string(host) + "-" + suffix;
}

// Where the other replicas reach this one's API.
std::string advertise_url(const floodgate::Config& cfg) {
  if (!cfg.advertise_url.empty()) return cfg.advertise_url;
  std::string host = cfg.listen_host;
  if (host.empty() || host == "0.0.0.0" || host == "::") {
    char name[256] = {};
    host = gethostname(name, sizeof name - 1) == 0 && name[0] != '\0' ? name : "localhost";
  }
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return (cfg.tls_cert.empty() ? "http://" : "https://") + host + ":" +
         std::to_string(cfg.listen_port);
}

// A fifth of the TTL, at most a second: a replica that died is noticed soon after its lease.
std::chrono::milliseconds keeper_interval(const floodgate::store::Leases& leases) {
  return std::min<std::chrono::milliseconds>(std::chrono::seconds(1), leases.ttl() / 5);
}

floodgate::http::ClientOptions client_options(const floodgate::Config& cfg) {
  floodgate::http::ClientOptions opts;
  opts.base_url = cfg.prefect_api_url;
  opts.connect_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(cfg.connect_timeout_s * 1000));
  opts.request_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(cfg.request_timeout_s * 1000));
  opts.max_response_bytes = cfg.max_prefect_response_bytes;
  opts.verify_tls = cfg.tls_verify;
  opts.ca_file = cfg.ca_file;
  opts.proxy_url =
      floodgate::http::select_proxy(cfg.prefect_api_url, floodgate::http::proxy_environment());
  return opts;
}

floodgate::engine::EngineOptions engine_options(const floodgate::Config& cfg,
                                                std::chrono::milliseconds request_timeout) {
  floodgate::engine::EngineOptions eopts;
  auto& d = eopts.dispatch;
  d.rate = cfg.rate;
  d.burst = cfg.burst;
  d.max_in_flight = cfg.max_in_flight;
  d.min_in_flight = std::min(cfg.min_in_flight, cfg.max_in_flight);
  d.initial_in_flight = std::clamp(16, d.min_in_flight, cfg.max_in_flight);
  d.adaptive = cfg.adaptive;
  d.limit_algorithm = cfg.limit_algorithm;
  eopts.request_timeout = request_timeout;
  eopts.use_bulk = cfg.bulk;
  eopts.max_body_bytes = cfg.max_prefect_body_bytes;
  d.retry_budget_ratio = cfg.retry_budget_ratio;
  eopts.deadlines.start_s = cfg.start_deadline_s;
  if (cfg.max_backlog >= 0) eopts.max_backlog = cfg.max_backlog;
  eopts.deadlines.run_s = cfg.run_deadline_s;
  eopts.deadlines.on_deadline = floodgate::engine::parse_on_deadline(cfg.on_deadline);
  return eopts;
}

floodgate::api::ApiOptions api_options(const floodgate::Config& cfg,
                                       std::shared_ptr<const floodgate::api::Authenticator> auth,
                                       const floodgate::core::WallClock& wall_clock) {
  floodgate::api::ApiOptions aopts;
  aopts.limits.max_runs = cfg.max_runs_per_batch;
  aopts.limits.max_depth = cfg.max_json_depth;
  aopts.limits.max_run_bytes = cfg.max_run_bytes;
  aopts.origins.allowed_hosts = cfg.allowed_hosts;
  aopts.origins.allowed_origins = cfg.allowed_origins;
  aopts.auth = std::move(auth);
  aopts.public_status = cfg.public_status;
  aopts.token_rate = cfg.token_rate;
  aopts.origins.tls = !cfg.tls_cert.empty();
  aopts.prefect_ui_url = cfg.prefect_ui_url;
  aopts.wall_clock = &wall_clock;
  return aopts;
}

/// What the process does on signals and on its own clock while it serves: SIGHUP re-reads the
/// tokens, SIGTERM or SIGINT drains and stops (a second one stops at once), and an API without
/// tokens beyond loopback is warned about every minute.
class ProcessControl {
 public:
  ProcessControl(boost::asio::io_context& io, const floodgate::Config& cfg,
                 floodgate::api::Authenticator& auth, floodgate::api::Router& router,
                 floodgate::engine::Engine& engine)
      : io_(io),
        cfg_(cfg),
        auth_(auth),
        router_(router),
        engine_(engine),
        insecure_warning_(io),
        hangup_(io, SIGHUP),
        signals_(io, SIGTERM, SIGINT),
        drain_deadline_(io) {}

  void start(bool open_network) {
    if (open_network) warn_insecure({});
    hangup_.async_wait([this](const auto& ec, int) { reload_tokens(ec); });
    signals_.async_wait([this](const auto& ec, int sig) { on_stop_signal(ec, sig); });
  }

  void cancel() {
    insecure_warning_.cancel();
    hangup_.cancel();
  }

 private:
  void warn_insecure(const boost::system::error_code& ec) {
    if (ec || auth_.enabled()) return;
    floodgate::log::warn(
        "the API has no tokens and listens beyond loopback (--insecure-no-auth): "
        "anyone who reaches it can launch runs",
        {{"listen", cfg_.listen_host}});
    insecure_warning_.expires_after(std::chrono::minutes(1));
    insecure_warning_.async_wait([this](const auto& e) { warn_insecure(e); });
  }

  // A bad file keeps the tokens in use.
  void reload_tokens(const boost::system::error_code& ec) {
    if (ec) return;
    try {
      auth_.set_tokens(load_tokens(cfg_));
      floodgate::log::info("API tokens reloaded",
                           {{"api_tokens", static_cast<int64_t>(auth_.size())}});
    } catch (const std::exception& e) {
      floodgate::log::error("API tokens not reloaded; the previous ones stay in use",
                            {{"error", e.what()}});
    }
    hangup_.async_wait([this](const auto& e, int) { reload_tokens(e); });
  }

  void on_stop_signal(const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (stopping_) {
      floodgate::log::warn("second signal: stopping at once", {{"signal", sig}});
      io_.stop();
      return;
    }
    stopping_ = true;
    floodgate::log::info("signal received: draining", {{"signal", sig}});
    router_.stop_accepting();
    drain_deadline_.expires_after(
        std::chrono::milliseconds(static_cast<int64_t>(cfg_.drain_timeout_s * 1000)));
    drain_deadline_.async_wait([this](const boost::system::error_code& e) {
      if (!e) {
        floodgate::log::warn("drain timed out; stopping with requests still in flight");
        io_.stop();
      }
    });
    engine_.drain([this] {
      // Give the listener a moment to send the answers to long-polls released by the drain.
      drain_deadline_.expires_after(std::chrono::milliseconds(250));
      drain_deadline_.async_wait([this](const boost::system::error_code&) { io_.stop(); });
      signals_.cancel();
    });
    signals_.async_wait([this](const auto& e, int s) { on_stop_signal(e, s); });
  }

  boost::asio::io_context& io_;
  const floodgate::Config& cfg_;
  floodgate::api::Authenticator& auth_;
  floodgate::api::Router& router_;
  floodgate::engine::Engine& engine_;
  boost::asio::steady_timer insecure_warning_;
  boost::asio::signal_set hangup_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer drain_deadline_;
  bool stopping_ = false;
};

void log_started(const floodgate::Config& cfg, const floodgate::http::ClientOptions& client_opts,
                 const floodgate::api::Authenticator& auth) {
  using floodgate::http::redact_url;
  floodgate::log::info("floodgated started",
                       {{"version", FLOODGATE_VERSION},
                        {"listen", cfg.listen_host + ":" + std::to_string(cfg.listen_port)},
                        {"tls", !cfg.tls_cert.empty()},
                        {"prefect_api_url", redact_url(cfg.prefect_api_url)},
                        {"db", floodgate::store::redact_database_url(cfg.db)},
                        {"rate", cfg.rate_text},
                        {"max_in_flight", cfg.max_in_flight},
                        {"adaptive", cfg.adaptive},
                        {"proxy", client_opts.proxy_url.empty() ? "none" : "set"},
                        {"api_tokens", static_cast<int64_t>(auth.size())}});
}

floodgate::http::ServerOptions server_options(const floodgate::Config& cfg) {
  using std::chrono::milliseconds;
  floodgate::http::ServerOptions o{cfg.listen_host,      cfg.listen_port, cfg.max_body_bytes,
                                   cfg.max_parse_memory, cfg.tls_cert,    cfg.tls_key};
  o.header_timeout = milliseconds(static_cast<int64_t>(cfg.header_timeout_s * 1000));
  o.body_timeout = milliseconds(static_cast<int64_t>(cfg.body_timeout_s * 1000));
  o.idle_timeout = milliseconds(static_cast<int64_t>(cfg.idle_timeout_s * 1000));
  o.max_connections = connection_limit(cfg.max_connections, cfg.max_in_flight);
  o.threads = static_cast<size_t>(cfg.http_threads);
  return o;
}

/// The parts of a replica of a shared store; empty for a store of one process (SQLite).
struct Replication {
  std::unique_ptr<floodgate::app::ReplicaKeeper> keeper;
  std::unique_ptr<floodgate::app::ReplicaPeers> peers;
};

Replication start_replication(const floodgate::Config& cfg, floodgate::store::Store& store,
                              floodgate::engine::Engine& engine,
                              floodgate::metrics::Metrics& metrics,
                              const floodgate::http::ClientOptions& client_opts) {
  using namespace floodgate;
  Replication r;
  store::Leases* leases = store.leases();
  if (leases == nullptr) return r;
  r.keeper = std::make_unique<app::ReplicaKeeper>(
      store, *leases, engine, metrics,
      app::ReplicaKeeper::Options{advertise_url(cfg), keeper_interval(*leases)},
      [leases](std::vector<std::string>) {
        // Its in-memory state is behind the store's now: stop at once, and let the others
        // take the rest of its batches without waiting for their leases to end.
        try {
          leases->release_all();
        } catch (const std::exception&) {
        }
        log::error("stopping: a batch this replica held is held by another replica now");
        std::_Exit(3);
      });
  r.peers = std::make_unique<app::ReplicaPeers>(
      *r.keeper, *leases,
      [client_opts](const std::string& url) {
        http::ClientOptions o;
        o.base_url = url;
        o.connect_timeout = client_opts.connect_timeout;
        o.ca_file = client_opts.ca_file;
        o.verify_tls = client_opts.verify_tls;
        return http::make_cpprest_client(o);
      },
      // Longer than the longest long-poll (300 s) a forwarded request may carry.
      std::chrono::seconds(330));
  return r;
}

int run(const floodgate::Config& cfg) {
  using namespace floodgate;
  log::set_level(cfg.log_level);
  auto auth = std::make_shared<api::Authenticator>();
  auth->set_tokens(load_tokens(cfg));
  const bool open_network = !auth->enabled() && !is_loopback(cfg.listen_host);
  if (open_network && !cfg.insecure_no_auth) {
    throw std::runtime_error("refusing to serve an API without tokens on " + cfg.listen_host +
                             ": give --api-tokens-file (or FLOODGATE_API_TOKENS), listen on "
                             "loopback, or pass --insecure-no-auth true");
  }
  http::init_http_threads(static_cast<size_t>(cfg.http_threads));

  const std::string replica = replica_id();
  auto store = store::open_store(
      cfg.db, replica, std::chrono::milliseconds(static_cast<int64_t>(cfg.lease_ttl_s * 1000)));
  store::Leases* leases = store->leases();
  metrics::Metrics metrics(FLOODGATE_VERSION);
  const http::ClientOptions client_opts = client_options(cfg);
  auto client = http::make_cpprest_client(client_opts);

  boost::asio::io_context io(1);
  prefect::Credentials creds{cfg.prefect_api_key, cfg.prefect_auth_string};
  // The engine's only sources of time and randomness, and its only timers.
  core::SteadyClock clock;
  core::SystemWallClock wall_clock;
  std::random_device seed_source;
  core::MtRandom random((static_cast<uint64_t>(seed_source()) << 32) ^ seed_source());
  engine::AsioTimerQueue timers(io);
  engine::Engine engine({clock, wall_clock, random, timers},
                        engine_options(cfg, client_opts.request_timeout), *store, *client, creds,
                        metrics);

  // Replicas sharing a PostgreSQL store: leases, heartbeats, the budget's shares, forwarding.
  Replication replication = start_replication(cfg, *store, engine, metrics, client_opts);
  api::ApiOptions aopts = api_options(cfg, auth, wall_clock);
  aopts.peers = replication.peers.get();
  api::Router router(std::move(aopts), engine, *store, metrics);
  auto server = http::make_http_server(server_options(cfg),
                                       [&router](api::ServerRequest req, api::Responder respond) {
                                         router.handle(std::move(req), std::move(respond));
                                       });

  engine.post([&engine, shared = leases != nullptr] { engine.start(!shared); });
  if (replication.keeper) replication.keeper->start();
  server->start();
  log_started(cfg, client_opts, *auth);
  ProcessControl control(io, cfg, *auth, router, engine);
  control.start(open_network);
  io.run();
  control.cancel();
  // Everything is written (or the drain gave up): the other replicas may take over at once.
  if (replication.keeper) replication.keeper->stop(true);
  server->stop();
  log::info("floodgated stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  floodgate::Config cfg;
  try {
    cfg = floodgate::parse_config(std::vector<std::string>(argv + 1, argv + argc), environment());
  } catch (const floodgate::ConfigError& e) {
    std::cerr << "floodgated: " << e.what() << "\n";
    return 2;
  }
  if (cfg.show_help) {
    std::cout << floodgate::usage();
    return 0;
  }
  if (cfg.show_version) {
    std::cout << "floodgated " << FLOODGATE_VERSION << "\n";
    return 0;
  }
  try {
    return run(cfg);
  } catch (const std::exception& e) {
    std::cerr << "floodgated: " << e.what() << "\n";
    return 1;
  }
}
