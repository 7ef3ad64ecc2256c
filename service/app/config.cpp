#include "app/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>

#include "core/token_bucket.h"
#include "http/url_redact.h"
#include "store/database_url.h"

namespace floodgate {

namespace {

struct Option {
  const char* flag;  // without the leading "--"
  const char* help;
  std::function<void(Config&, const std::string&, const std::string&)> apply;
};

std::string env_name(const std::string& flag) {
  std::string out = "FLOODGATE_";
  for (char c : flag) out += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

double parse_number(const std::string& name, const std::string& v, double lo, double hi) {
  // Plain decimal only: std::stod would also take hexadecimal and leading blanks.
  const bool decimal =
      !v.empty() && v.find_first_not_of("0123456789.eE+-") == std::string::npos &&
      (std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '.' || v[0] == '-');
  try {
    if (!decimal) throw std::invalid_argument(v);
    size_t used = 0;
    double d = std::stod(v, &used);
    if (used == v.size() && std::isfinite(d) && d >= lo && d <= hi) return d;
  } catch (...) {
  }
  throw ConfigError(name + ": '" + v + "' is not a number from " + std::to_string(lo) + " to " +
                    std::to_string(hi));
}

int parse_int(const std::string& name, const std::string& v, int lo, int hi) {
  double d = parse_number(name, v, lo, hi);
  if (std::floor(d) != d) throw ConfigError(name + ": '" + v + "' is not a whole number");
  return static_cast<int>(d);
}

std::vector<std::string> parse_list(const std::string& v) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= v.size()) {
    size_t j = v.find(',', i);
    if (j == std::string::npos) j = v.size();
    std::string item = v.substr(i, j - i);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    i = j + 1;
  }
  return out;
}

bool parse_bool(const std::string& name, const std::string& v) {
  std::string l = v;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  if (l == "true" || l == "1" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "0" || l == "no" || l == "off") return false;
  throw ConfigError(name + ": '" + v + "' is not true or false");
}

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {"listen", "HOST:PORT to serve the REST API, /metrics and the status page (127.0.0.1:8080)",
       [](Config& c, const std::string& n, const std::string& v) {
         auto colon = v.rfind(':');
         if (colon == std::string::npos || colon == 0) {
           throw ConfigError(n + ": '" + v + "' is not HOST:PORT");
         }
         c.listen_host = v.substr(0, colon);
         if (c.listen_host.size() > 2 && c.listen_host.front() == '[') {
           c.listen_host = c.listen_host.substr(1, c.listen_host.size() - 2);
         }
         c.listen_port = static_cast<uint16_t>(parse_int(n, v.substr(colon + 1), 1, 65535));
       }},
      {"prefect-api-url", "Prefect API root, e.g. http://127.0.0.1:4200/api (PREFECT_API_URL)",
       [](Config& c, const std::string& n, const std::string& v) {
         if (v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0) {
           throw ConfigError(n + ": '" + http::redact_url(v) +
                             "' is not an http:// or https:// URL");
         }
         c.prefect_api_url = v;
         while (!c.prefect_api_url.empty() && c.prefect_api_url.back() == '/') {
           c.prefect_api_url.pop_back();
         }
       }},
      {"prefect-ui-url",
       "Prefect UI root, e.g. http://127.0.0.1:4200; the status page links runs to it (none)",
       [](Config& c, const std::string& n, const std::string& v) {
         if (!v.empty() && v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0) {
           throw ConfigError(n + ": '" + v + "' is not an http:// or https:// URL");
         }
         c.prefect_ui_url = v;
         while (!c.prefect_ui_url.empty() && c.prefect_ui_url.back() == '/') {
           c.prefect_ui_url.pop_back();
         }
       }},
      {"prefect-api-key", "Prefect API key, sent as Bearer (PREFECT_API_KEY)",
       [](Config& c, const std::string&, const std::string& v) { c.prefect_api_key = v; }},
      {"prefect-api-auth-string",
       "user:password for Basic auth; wins over the key "
       "(PREFECT_API_AUTH_STRING)",
       [](Config& c, const std::string& n, const std::string& v) {
         if (!v.empty() && v.find(':') == std::string::npos) {
           throw ConfigError(n + ": must look like user:password");
         }
         c.prefect_auth_string = v;
       }},
      {"db",
       "store URL: sqlite:///abs/path.db, sqlite://./rel.db, or "
       "postgresql://user:pass@host:port/db?sslmode=... (sqlite://./floodgate.db)",
       [](Config& c, const std::string& n, const std::string& v) {
         if (v.rfind("sqlite://", 0) != 0 && v.rfind("postgresql://", 0) != 0 &&
             v.rfind("postgres://", 0) != 0) {
           throw ConfigError(n + ": '" + store::redact_database_url(v) +
                             "' is not a sqlite:// or postgresql:// URL");
         }
         c.db = v;
       }},
      {"rate", "token bucket refill for all requests to Prefect: N/s, N/min or off (off)",
       [](Config& c, const std::string& n, const std::string& v) {
         auto r = core::TokenBucket::parse_rate(v);
         if (!r || *r < 0) {
           throw ConfigError(n + ": '" + v + "' is not a rate (use e.g. 50/s, 600/min or off)");
         }
         c.rate = *r;
         c.rate_text = v;
       }},
      {"burst", "token bucket size in requests (default: one second of --rate)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.burst = parse_number(n, v, 1, 1e9);
       }},
      {"max-in-flight", "ceiling of the in-flight request limit (256)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.max_in_flight = parse_int(n, v, 1, 100000);
       }},
      {"min-in-flight", "floor of the adaptive in-flight limit (1)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.min_in_flight = parse_int(n, v, 1, 100000);
       }},
      {"adaptive", "adapt the in-flight limit to Prefect's latency and errors: true|false (true)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.adaptive = parse_bool(n, v);
       }},
      {"limit-algorithm", "adaptive algorithm: gradient|aimd (gradient)",
       [](Config& c, const std::string& n, const std::string& v) {
         if (v != "gradient" && v != "aimd") {
           throw ConfigError(n + ": '" + v + "' is not gradient or aimd");
         }
         c.limit_algorithm = v;
       }},
      {"connect-timeout", "seconds to connect to Prefect (10)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.connect_timeout_s = parse_number(n, v, 0.1, 600);
       }},
      {"request-timeout", "seconds for a whole request to Prefect (30)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.request_timeout_s = parse_number(n, v, 0.1, 3600);
       }},
      {"max-prefect-response-bytes",
       "largest answer body read from Prefect; a larger one is a transient error (16777216)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.max_prefect_response_bytes = static_cast<size_t>(parse_number(n, v, 4096, 1e10));
       }},
      {"max-prefect-body-bytes",
       "largest request body meant for Prefect, for packing bulk creates by bytes as well as "
       "count; checked, not yet applied (4194304, below Prefect Cloud's 5 MiB)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.max_prefect_body_bytes = static_cast<size_t>(parse_number(n, v, 65536, 1e10));
       }},
      {"bulk", "use Prefect's bulk create endpoint when it has one: true|false (true)",
       [](Config& c, const std::string& n, const std::string& v) { c.bulk = parse_bool(n, v); }},
      {"max-body-bytes", "largest request body accepted (16777216)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.max_body_bytes = static_cast<size_t>(parse_number(n, v, 1024, 1e10));
       }},
      {"max-runs-per-batch", "most runs in one batch (100000)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.max_runs_per_batch = static_cast<size_t>(parse_int(n, v, 1, 10000000));
       }},
      {"max-json-depth",
       "deepest nesting of objects and lists in a request body, the body itself included (64)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.max_json_depth = parse_int(n, v, 4, 1000);
       }},
      {"max-run-bytes", "largest JSON text of one run in a batch (1048576)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.max_run_bytes = static_cast<size_t>(parse_number(n, v, 1024, 1e10));
       }},
      {"max-parse-memory",
       "bytes all requests being read and parsed may hold at once, each body counted 3 times; "
       "beyond it 503 (268435456)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.max_parse_memory = static_cast<size_t>(parse_number(n, v, 1024 * 1024, 1e13));
       }},
      {"allowed-hosts",
       "comma-separated host names the Host header may carry beside IP addresses and localhost "
       "(\".example.com\" takes subdomains, \"*\" any); needed for DNS names when listening "
       "on 0.0.0.0",
       [](Config& c, const std::string&, const std::string& v) {
         c.allowed_hosts = parse_list(v);
       }},
      {"allowed-origins",
       "comma-separated web origins (https://ui.example.com) that may call state-changing "
       "endpoints beside the service's own",
       [](Config& c, const std::string& n, const std::string& v) {
         c.allowed_origins = parse_list(v);
         for (const auto& o : c.allowed_origins) {
           if ((o.rfind("http://", 0) != 0 && o.rfind("https://", 0) != 0) ||
               o.find('/', o.find("://") + 3) != std::string::npos) {
             throw ConfigError(n + ": '" + o + "' is not an origin like https://host[:port]");
           }
         }
       }},
      {"api-tokens-file",
       "file of API tokens, one 'SCOPE NAME TOKEN' a line (SCOPE read or write, '#' comments); "
       "re-read on SIGHUP. Without tokens the API is open, and only on loopback",
       [](Config& c, const std::string&, const std::string& v) { c.api_tokens_file = v; }},
      {"api-tokens", "API token lines as in --api-tokens-file (use the variable, not the flag)",
       [](Config& c, const std::string&, const std::string& v) { c.api_tokens = v; }},
      {"insecure-no-auth",
       "allow a non-loopback --listen without API tokens: true|false (false; warns every minute)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.insecure_no_auth = parse_bool(n, v);
       }},
      {"public-status", "serve /metrics and the status page / without a token: true|false (false)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.public_status = parse_bool(n, v);
       }},
      {"tls-cert", "PEM certificate chain: serve the API over https (with --tls-key)",
       [](Config& c, const std::string&, const std::string& v) { c.tls_cert = v; }},
      {"tls-key", "PEM private key for --tls-cert",
       [](Config& c, const std::string&, const std::string& v) { c.tls_key = v; }},
      {"header-timeout",
       "seconds a request's head may take from its first byte (a new connection's: from the "
       "accept, TLS handshake included); then the connection is closed (10)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.header_timeout_s = parse_number(n, v, 0.1, 3600);
       }},
      {"body-timeout",
       "seconds a request's body may take after its head, and a client to take the answer; then "
       "the connection is closed (60)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.body_timeout_s = parse_number(n, v, 0.1, 3600);
       }},
      {"idle-timeout", "seconds a kept-alive connection may wait for its next request (60)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.idle_timeout_s = parse_number(n, v, 0.1, 3600);
       }},
      {"max-connections",
       "connections open at once; more are answered 503 and closed (1000; lowered to fit the "
       "process's open-file limit)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.max_connections = parse_int(n, v, 1, 1000000);
       }},
      {"token-rate",
       "requests each API token may make: N/s, N/min or off; bursts of twice that, at least 2 "
       "(50/s)",
       [](Config& c, const std::string& n, const std::string& v) {
         auto r = core::TokenBucket::parse_rate(v);
         if (!r || *r < 0) {
           throw ConfigError(n + ": '" + v + "' is not a rate (use e.g. 50/s, 600/min or off)");
         }
         c.token_rate = *r;
       }},
      {"retry-budget-ratio", "retries allowed as a fraction of first attempts (0.2)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.retry_budget_ratio = parse_number(n, v, 0, 10);
       }},
      {"tls-verify", "verify Prefect's TLS certificate: true|false (true)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.tls_verify = parse_bool(n, v);
       }},
      {"ca-file", "extra CA bundle for Prefect's certificate",
       [](Config& c, const std::string&, const std::string& v) { c.ca_file = v; }},
      {"log-level", "debug|info|warn|error (info)",
       [](Config& c, const std::string& n, const std::string& v) {
         if (v != "debug" && v != "info" && v != "warn" && v != "error") {
           throw ConfigError(n + ": '" + v + "' is not debug, info, warn or error");
         }
         c.log_level = v;
       }},
      {"http-threads",
       "threads for HTTP I/O: the Prefect client's and, as many, the listener's (8)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.http_threads = parse_int(n, v, 1, 256);
       }},
      {"drain-timeout", "seconds SIGTERM waits for requests in flight (60)",
       [](Config& c, const std::string& n, const std::string& v) {
         c.drain_timeout_s = parse_number(n, v, 0, 3600);
       }},
  };
  return kOptions;
}

}  // namespace

std::string usage() {
  std::string out =
      "usage: floodgated [--flag value | --flag=value]...\n"
      "Launches Prefect deployment runs in batches through layered limits.\n\n";
  for (const auto& o : options()) {
    std::string line = "  --" + std::string(o.flag);
    line.resize(std::max<size_t>(line.size() + 1, 28), ' ');
    out += line + o.help + "\n" + std::string(28, ' ') + "env " + env_name(o.flag) + "\n";
  }
  out += "  --help, --version\n";
  return out;
}

Config parse_config(const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env) {
  Config c;
  // Settle what each option's value is before parsing any: a flag overrides FLOODGATE_*, which
  // overrides Prefect's own variable, and an overridden value is never looked at.
  struct Chosen {
    std::string source;  // what a message names: "--rate", "FLOODGATE_RATE", "PREFECT_API_URL"
    std::string value;
  };
  std::map<std::string, Chosen> chosen;
  auto env_get = [&](const std::string& k) -> const std::string* {
    auto it = env.find(k);
    return it == env.end() || it->second.empty() ? nullptr : &it->second;
  };
  static const std::map<std::string, std::string> kPrefectFallback = {
      {"prefect-api-url", "PREFECT_API_URL"},
      {"prefect-api-key", "PREFECT_API_KEY"},
      {"prefect-api-auth-string", "PREFECT_API_AUTH_STRING"}};
  for (const auto& o : options()) {
    if (auto fb = kPrefectFallback.find(o.flag); fb != kPrefectFallback.end()) {
      if (auto v = env_get(fb->second)) chosen[o.flag] = {fb->second, *v};
    }
    std::string name = env_name(o.flag);
    if (auto v = env_get(name)) chosen[o.flag] = {name, *v};
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      c.show_help = true;
      continue;
    }
    if (a == "--version") {
      c.show_version = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) throw ConfigError("unexpected argument '" + a + "' (see --help)");
    std::string flag = a.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    auto it = std::find_if(options().begin(), options().end(),
                           [&](const Option& o) { return flag == o.flag; });
    if (it == options().end()) throw ConfigError("unknown flag --" + flag + " (see --help)");
    if (!has_value) {
      if (i + 1 >= args.size()) throw ConfigError("--" + flag + " needs a value");
      value = args[++i];
    }
    chosen[it->flag] = {"--" + flag, value};
  }
  for (const auto& o : options()) {
    auto it = chosen.find(o.flag);
    if (it != chosen.end()) o.apply(c, it->second.source, it->second.value);
  }
  auto source_of = [&](const char* flag) {
    auto it = chosen.find(flag);
    return it == chosen.end() ? std::string("--") + flag + " (default)" : it->second.source;
  };
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    throw ConfigError("--tls-cert and --tls-key go together: give both or neither");
  }
  if (!c.api_tokens_file.empty() && !c.api_tokens.empty()) {
    throw ConfigError(source_of("api-tokens-file") + " and " + source_of("api-tokens") +
                      " are both set; give the tokens in one place");
  }
  if (c.adaptive && c.min_in_flight > c.max_in_flight) {
    throw ConfigError(source_of("min-in-flight") + " (" + std::to_string(c.min_in_flight) +
                      ") must not exceed " + source_of("max-in-flight") + " (" +
                      std::to_string(c.max_in_flight) + ")");
  }
  return c;
}

}  // namespace floodgate
