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

using Apply = std::function<void(Config&, const std::string&, const std::string&)>;

// Options whose value is stored as given.
template <typename T>
Option text(const char* flag, const char* help, T Config::*field) {
  return {flag, help,
          [field](Config& c, const std::string&, const std::string& v) { c.*field = v; }};
}

// Options that take a decimal number from `lo` to `hi`.
template <typename T>
Option number(const char* flag, const char* help, T Config::*field, double lo, double hi) {
  return {flag, help, [field, lo, hi](Config& c, const std::string& n, const std::string& v) {
            c.*field = static_cast<T>(parse_number(n, v, lo, hi));
          }};
}

// Options that take a whole number from `lo` to `hi`.
template <typename T>
Option whole(const char* flag, const char* help, T Config::*field, int lo, int hi) {
  return {flag, help, [field, lo, hi](Config& c, const std::string& n, const std::string& v) {
            c.*field = static_cast<T>(parse_int(n, v, lo, hi));
          }};
}

Option flag_option(const char* flag, const char* help, bool Config::*field) {
  return {flag, help, [field](Config& c, const std::string& n, const std::string& v) {
            c.*field = parse_bool(n, v);
          }};
}

// A rate such as 50/s, 600/min or off; `apply` stores it.
Apply rate(std::function<void(Config&, double, const std::string&)> store) {
  return [store](Config& c, const std::string& n, const std::string& v) {
    auto r = core::TokenBucket::parse_rate(v);
    if (!r || *r < 0) {
      throw ConfigError(n + ": '" + v + "' is not a rate (use e.g. 50/s, 600/min or off)");
    }
    store(c, *r, v);
  };
}

// An http:// or https:// URL without trailing slashes; empty when `optional`. `shown` is what
// an error message may print of it (never a secret).
Apply http_url(std::string Config::*field, bool optional,
               std::function<std::string(const std::string&)> shown) {
  return [field, optional, shown](Config& c, const std::string& n, const std::string& v) {
    if (!(optional && v.empty()) && v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0) {
      throw ConfigError(n + ": '" + shown(v) + "' is not an http:// or https:// URL");
    }
    std::string& url = c.*field;
    url = v;
    while (!url.empty() && url.back() == '/') url.pop_back();
  };
}

// One of the words in `allowed`, listed in the error as `words`.
Apply one_of(std::string Config::*field, std::vector<std::string> allowed, std::string words) {
  return [field, allowed, words](Config& c, const std::string& n, const std::string& v) {
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      throw ConfigError(n + ": '" + v + "' is not " + words);
    }
    c.*field = v;
  };
}

void apply_max_backlog(Config& c, const std::string& n, const std::string& v) {
  c.max_backlog = v == "auto" ? -1 : parse_int(n, v, 0, 10000000);
}

void apply_listen(Config& c, const std::string& n, const std::string& v) {
  auto colon = v.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw ConfigError(n + ": '" + v + "' is not HOST:PORT");
  c.listen_host = v.substr(0, colon);
  if (c.listen_host.size() > 2 && c.listen_host.front() == '[') {
    c.listen_host = c.listen_host.substr(1, c.listen_host.size() - 2);
  }
  c.listen_port = static_cast<uint16_t>(parse_int(n, v.substr(colon + 1), 1, 65535));
}

void apply_allowed_origins(Config& c, const std::string& n, const std::string& v) {
  c.allowed_origins = parse_list(v);
  for (const auto& o : c.allowed_origins) {
    if ((o.rfind("http://", 0) != 0 && o.rfind("https://", 0) != 0) ||
        o.find('/', o.find("://") + 3) != std::string::npos) {
      throw ConfigError(n + ": '" + o + "' is not an origin like https://host[:port]");
    }
  }
}

// Where Prefect is and how to sign in.
void add_prefect_access_options(std::vector<Option>& out) {
  auto as_given = [](const std::string& v) { return v; };
  out.insert(
      out.end(),
      {
          {"prefect-api-url", "Prefect API root, e.g. http://127.0.0.1:4200/api (PREFECT_API_URL)",
           http_url(&Config::prefect_api_url, false, http::redact_url)},
          {"prefect-ui-url",
           "Prefect UI root, e.g. http://127.0.0.1:4200; the status page links runs to it (none)",
           http_url(&Config::prefect_ui_url, true, as_given)},
          text("prefect-api-key", "Prefect API key, sent as Bearer (PREFECT_API_KEY)",
               &Config::prefect_api_key),
          {"prefect-api-auth-string",
           "user:password for Basic auth; wins over the key "
           "(PREFECT_API_AUTH_STRING)",
           [](Config& c, const std::string& n, const std::string& v) {
             if (!v.empty() && v.find(':') == std::string::npos) {
               throw ConfigError(n + ": must look like user:password");
             }
             c.prefect_auth_string = v;
           }},
      });
}

// How fast and how much floodgate asks of Prefect.
void add_request_limit_options(std::vector<Option>& out) {
  out.insert(
      out.end(),
      {
          {"rate", "token bucket refill for all requests to Prefect: N/s, N/min or off (off)",
           rate([](Config& c, double r, const std::string& v) {
             c.rate = r;
             c.rate_text = v;
           })},
          number("burst", "token bucket size in requests (default: one second of --rate)",
                 &Config::burst, 1, 1e9),
          whole("max-in-flight", "ceiling of the in-flight request limit (256)",
                &Config::max_in_flight, 1, 100000),
          whole("min-in-flight", "floor of the adaptive in-flight limit (1)",
                &Config::min_in_flight, 1, 100000),
          flag_option(
              "adaptive",
              "adapt the in-flight limit to Prefect's latency and errors: true|false (true)",
              &Config::adaptive),
          {"limit-algorithm", "adaptive algorithm: gradient|aimd (gradient)",
           one_of(&Config::limit_algorithm, {"gradient", "aimd"}, "gradient or aimd")},
          number("connect-timeout", "seconds to connect to Prefect (10)",
                 &Config::connect_timeout_s, 0.1, 600),
          number("request-timeout", "seconds for a whole request to Prefect (30)",
                 &Config::request_timeout_s, 0.1, 3600),
          number(
              "max-prefect-response-bytes",
              "largest answer body read from Prefect; a larger one is a transient error (16777216)",
              &Config::max_prefect_response_bytes, 4096, 1e10),
          number("max-prefect-body-bytes",
                 "largest bulk create body sent to Prefect: bulks are packed by bytes as well "
                 "as count, and halve it after a 413 (4194304, below Prefect Cloud's 5 MiB)",
                 &Config::max_prefect_body_bytes, 65536, 1e10),
          flag_option("bulk",
                      "use Prefect's bulk create endpoint when it has one: true|false (true)",
                      &Config::bulk),
      });
}

// What the REST API accepts and from whom.
void add_api_options(std::vector<Option>& out) {
  out.insert(
      out.end(),
      {
          number("max-body-bytes", "largest request body accepted (16777216)",
                 &Config::max_body_bytes, 1024, 1e10),
          whole("max-runs-per-batch",
                "most runs in one request (100000; send larger batches in chunks)",
                &Config::max_runs_per_batch, 1, 10000000),
          whole("max-json-depth",
                "deepest nesting of objects and lists in a request body, the body itself included "
                "(64)",
                &Config::max_json_depth, 4, 1000),
          number("max-run-bytes", "largest JSON text of one run in a batch (1048576)",
                 &Config::max_run_bytes, 1024, 1e10),
          number("max-parse-memory",
                 "bytes all requests being read and parsed may hold at once, each body counted 3 "
                 "times; beyond it 503 (268435456)",
                 &Config::max_parse_memory, 1024 * 1024, 1e13),
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
           apply_allowed_origins},
          text("api-tokens-file",
               "file of API tokens, one 'SCOPE NAME TOKEN' a line (SCOPE read or write, '#' "
               "comments); re-read on SIGHUP. Without tokens the API is open, and only on loopback",
               &Config::api_tokens_file),
          text("api-tokens",
               "API token lines as in --api-tokens-file (use the variable, not the flag)",
               &Config::api_tokens),
          flag_option("insecure-no-auth",
                      "allow a non-loopback --listen without API tokens: true|false (false; warns "
                      "every minute)",
                      &Config::insecure_no_auth),
          flag_option("public-status",
                      "serve /metrics and the status page / without a token: true|false (false)",
                      &Config::public_status),
          {"token-rate",
           "requests each API token may make: N/s, N/min or off; bursts of twice that, at least 2 "
           "(50/s)",
           rate([](Config& c, double r, const std::string&) { c.token_rate = r; })},
      });
}

// How the listener serves: TLS, and how long and how many connections it keeps.
void add_listener_options(std::vector<Option>& out) {
  out.insert(
      out.end(),
      {
          text("tls-cert", "PEM certificate chain: serve the API over https (with --tls-key)",
               &Config::tls_cert),
          text("tls-key", "PEM private key for --tls-cert", &Config::tls_key),
          number("header-timeout",
                 "seconds a request's head may take from its first byte (a new connection's: "
                 "from the accept, TLS handshake included); then the connection is closed (10)",
                 &Config::header_timeout_s, 0.1, 3600),
          number("body-timeout",
                 "seconds a request's body may take after its head, and a client to take the "
                 "answer; then the connection is closed (60)",
                 &Config::body_timeout_s, 0.1, 3600),
          number("idle-timeout",
                 "seconds a kept-alive connection may wait for its next request (60)",
                 &Config::idle_timeout_s, 0.1, 3600),
          whole("max-connections",
                "connections open at once; more are answered 503 and closed (1000; lowered to "
                "fit the process's open-file limit)",
                &Config::max_connections, 1, 1000000),
      });
}

// What a batch that does not say otherwise gets for its children.
void add_child_options(std::vector<Option>& out) {
  out.insert(
      out.end(),
      {
          number("start-deadline-s",
                 "default seconds a child may take from its creation to its start (RUNNING); "
                 "0 for none (0)",
                 &Config::start_deadline_s, 0, 30.0 * 24 * 3600),
          number("run-deadline-s", "default seconds a child may run before it ends; 0 for none (0)",
                 &Config::run_deadline_s, 0, 30.0 * 24 * 3600),
          {"on-deadline",
           "default for a child past a deadline or deleted in Prefect: report (STUCK, left to "
           "the parent), fail (cancel, FAILED) or relaunch (cancel, launch again) (report)",
           one_of(&Config::on_deadline, {"report", "fail", "relaunch"},
                  "report, fail or relaunch")},
          {"max-backlog",
           "default limit on a batch's children created and not yet started: auto (derived "
           "from the rate workers start them), a number, or 0 for no backlog gating (auto)",
           apply_max_backlog},
      });
}

// The retry budget, TLS to Prefect, logging, threads and shutdown.
void add_runtime_options(std::vector<Option>& out) {
  out.insert(
      out.end(),
      {
          number("retry-budget-ratio", "retries allowed as a fraction of first attempts (0.2)",
                 &Config::retry_budget_ratio, 0, 10),
          flag_option("tls-verify", "verify Prefect's TLS certificate: true|false (true)",
                      &Config::tls_verify),
          text("ca-file", "extra CA bundle for Prefect's certificate", &Config::ca_file),
          {"log-level", "debug|info|warn|error (info)",
           one_of(&Config::log_level, {"debug", "info", "warn", "error"},
                  "debug, info, warn or error")},
          whole("http-threads",
                "threads for HTTP I/O: the Prefect client's and, as many, the listener's (8)",
                &Config::http_threads, 1, 256),
          number("drain-timeout", "seconds SIGTERM waits for requests in flight (60)",
                 &Config::drain_timeout_s, 0, 3600),
      });
}

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = [] {
    std::vector<Option> out = {
        {"listen", "HOST:PORT to serve the REST API, /metrics and the status page (127.0.0.1:8080)",
         apply_listen}};
    add_prefect_access_options(out);
    out.push_back({"db",
                   "store URL: sqlite:///abs/path.db, sqlite://./rel.db, or "
                   "postgresql://user:pass@host:port/db?sslmode=... (sqlite://./floodgate.db)",
                   [](Config& c, const std::string& n, const std::string& v) {
                     if (v.rfind("sqlite://", 0) != 0 && v.rfind("postgresql://", 0) != 0 &&
                         v.rfind("postgres://", 0) != 0) {
                       throw ConfigError(n + ": '" + store::redact_database_url(v) +
                                         "' is not a sqlite:// or postgresql:// URL");
                     }
                     c.db = v;
                   }});
    out.push_back(text("advertise-url",
                       "with a postgresql:// store: this replica's API as the other replicas "
                       "reach it, to forward requests for the batches it holds "
                       "(http://LISTEN, with the host name for 0.0.0.0)",
                       &Config::advertise_url));
    out.push_back(number("lease-ttl-s",
                         "with a postgresql:// store: seconds a replica's batches wait after its "
                         "last heartbeat before another replica takes them over (15)",
                         &Config::lease_ttl_s, 2, 3600));
    add_request_limit_options(out);
    add_api_options(out);
    add_listener_options(out);
    add_child_options(out);
    add_runtime_options(out);
    return out;
  }();
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

namespace {

// Where an option's value comes from and what it is.
struct Chosen {
  std::string source;  // what a message names: "--rate", "FLOODGATE_RATE", "PREFECT_API_URL"
  std::string value;
};
using ChosenValues = std::map<std::string, Chosen>;  // by flag

// Values from the environment: FLOODGATE_* over Prefect's own variables.
void choose_from_env(const std::map<std::string, std::string>& env, ChosenValues& chosen) {
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
}

// Values from the command line, over the environment's; notes --help and --version in `c`.
void choose_from_args(const std::vector<std::string>& args, Config& c, ChosenValues& chosen) {
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
}

// Settings each fine alone but not together.
void check_combinations(const Config& c, const ChosenValues& chosen) {
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
}

}  // namespace

Config parse_config(const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env) {
  Config c;
  // Settle what each option's value is before parsing any: a flag overrides FLOODGATE_*, which
  // overrides Prefect's own variable, and an overridden value is never looked at.
  ChosenValues chosen;
  choose_from_env(env, chosen);
  choose_from_args(args, c, chosen);
  for (const auto& o : options()) {
    auto it = chosen.find(o.flag);
    if (it != chosen.end()) o.apply(c, it->second.source, it->second.value);
  }
  check_combinations(c, chosen);
  return c;
}

}  // namespace floodgate
