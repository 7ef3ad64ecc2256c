#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace floodgate {

/// A setting that cannot be used; the message names it.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// floodgated's settings, from flags, then FLOODGATE_* variables, then Prefect's own.
struct Config {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8080;
  std::string prefect_api_url = "http://127.0.0.1:4200/api";
  std::string prefect_api_key;
  std::string prefect_ui_url;  // empty: the status page links nowhere
  std::string prefect_auth_string;
  std::string db = "sqlite://./floodgate.db";
  double rate = 0;  // requests/s; 0 = no token bucket
  std::string rate_text = "off";
  double burst = 0;
  int max_in_flight = 256;
  int min_in_flight = 1;
  bool adaptive = true;
  std::string limit_algorithm = "gradient";
  double connect_timeout_s = 10;
  double request_timeout_s = 30;
  size_t max_prefect_response_bytes = 16 * 1024 * 1024;
  // Below Prefect Cloud's 5 MiB request limit (prefect::kDefaultMaxPrefectBodyBytes).
  size_t max_prefect_body_bytes = 4 * 1024 * 1024;
  bool bulk = true;
  size_t max_body_bytes = 16 * 1024 * 1024;
  size_t max_runs_per_batch = 100000;
  int max_json_depth = 64;
  size_t max_run_bytes = 1024 * 1024;
  size_t max_parse_memory = 256 * 1024 * 1024;
  std::vector<std::string> allowed_hosts;    // beyond IP literals and localhost
  std::vector<std::string> allowed_origins;  // beyond the service's own
  std::string api_tokens_file;
  std::string api_tokens;  // token lines given directly (FLOODGATE_API_TOKENS)
  bool insecure_no_auth = false;
  bool public_status = false;  // /metrics and / without a token
  std::string tls_cert;        // serve https with this PEM chain and --tls-key
  std::string tls_key;
  double header_timeout_s = 10;  // the listener's limits (see http::ServerOptions)
  double body_timeout_s = 60;
  double idle_timeout_s = 60;
  int max_connections = 1000;
  double token_rate = 50;  // requests/s per API token; 0 = no limit
  double retry_budget_ratio = 0.2;
  double start_deadline_s = 0;  // a batch's defaults for its children; 0: no deadline
  double run_deadline_s = 0;
  std::string on_deadline = "report";
  int max_backlog = -1;  // a batch's default limits.max_backlog; -1: derived ("auto"), 0: none
  bool tls_verify = true;
  std::string ca_file;
  std::string log_level = "info";
  int http_threads = 8;
  double drain_timeout_s = 60;
  std::string advertise_url;  // "" = derived from --listen
  double lease_ttl_s = 15;
  bool show_help = false;
  bool show_version = false;
};

/// Parses argv and the environment. Throws ConfigError naming the bad setting.
Config parse_config(const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env);

/// The --help text.
std::string usage();

}  // namespace floodgate
