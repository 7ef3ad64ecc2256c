#include "app/config.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace floodgate {
namespace {

using Args = std::vector<std::string>;
using Env = std::map<std::string, std::string>;

// The ConfigError message parse_config throws, or "" when it does not throw.
std::string error_of(const Args& args, const Env& env = {}) {
  try {
    parse_config(args, env);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

void expect_error_naming(const Args& args, const Env& env, const std::string& name) {
  std::string message = error_of(args, env);
  std::string where;
  for (const auto& a : args) where += a + " ";
  for (const auto& [k, v] : env) where += k + "=" + v + " ";
  ASSERT_FALSE(message.empty()) << "no ConfigError for " << where;
  EXPECT_NE(message.find(name), std::string::npos)
      << "message '" << message << "' does not name " << name << " (" << where << ")";
}

// ---------------------------------------------------------------------------------------------
// Defaults and forms

TEST(ConfigTest, DefaultsSuitASelfHostedServer) {
  Config c = parse_config({}, {});
  EXPECT_EQ(c.listen_host, "127.0.0.1");
  EXPECT_EQ(c.listen_port, 8080);
  EXPECT_EQ(c.prefect_api_url, "http://127.0.0.1:4200/api");
  EXPECT_EQ(c.db, "sqlite://./floodgate.db");
  EXPECT_TRUE(c.prefect_api_key.empty());
  EXPECT_TRUE(c.prefect_auth_string.empty());
  EXPECT_EQ(c.rate, 0);
  EXPECT_EQ(c.rate_text, "off");
  EXPECT_TRUE(c.adaptive);
  EXPECT_GE(c.max_in_flight, 100);  // no low fixed ceiling
  EXPECT_LE(c.min_in_flight, c.max_in_flight);
  EXPECT_FALSE(c.show_help);
  EXPECT_FALSE(c.show_version);
  // Bulk creates must stay below Prefect Cloud's 5 MiB request limit.
  EXPECT_LT(c.max_prefect_body_bytes, 5u * 1024 * 1024);
  EXPECT_EQ(c.max_backlog, -1);  // backlog gating on, its limit derived
  EXPECT_EQ(parse_config({"--max-backlog=auto"}, {}).max_backlog, -1);
  EXPECT_EQ(parse_config({"--max-backlog=0"}, {}).max_backlog, 0);
}

TEST(ConfigTest, FlagWithSeparateValue) {
  Config c = parse_config(
      {"--listen", "0.0.0.0:9090", "--db", "sqlite:///var/lib/fg.db", "--max-in-flight", "64"}, {});
  EXPECT_EQ(c.listen_host, "0.0.0.0");
  EXPECT_EQ(c.listen_port, 9090);
  EXPECT_EQ(c.db, "sqlite:///var/lib/fg.db");
  EXPECT_EQ(c.max_in_flight, 64);
}

TEST(ConfigTest, FlagWithEqualsValue) {
  Config c = parse_config({"--listen=0.0.0.0:9090", "--max-in-flight=64", "--adaptive=false",
                           "--prefect-api-url=http://prefect:4200/api"},
                          {});
  EXPECT_EQ(c.listen_host, "0.0.0.0");
  EXPECT_EQ(c.listen_port, 9090);
  EXPECT_EQ(c.max_in_flight, 64);
  EXPECT_FALSE(c.adaptive);
  EXPECT_EQ(c.prefect_api_url, "http://prefect:4200/api");
}

TEST(ConfigTest, EqualsValueMayBeEmptyOrHoldEquals) {
  Config c = parse_config({"--prefect-api-key=abc==", "--ca-file="}, {});
  EXPECT_EQ(c.prefect_api_key, "abc==");
  EXPECT_EQ(c.ca_file, "");
}

TEST(ConfigTest, EveryFlagIsAccepted) {
  Config c =
      parse_config({"--listen=[::]:81",
                    "--prefect-api-url=https://api.prefect.cloud/api/accounts/a/workspaces/w",
                    "--prefect-api-key=pnu_1",
                    "--prefect-api-auth-string=u:p",
                    "--db=postgresql://u@h/db",
                    "--rate=600/min",
                    "--burst=20",
                    "--max-in-flight=50",
                    "--min-in-flight=5",
                    "--adaptive=true",
                    "--limit-algorithm=aimd",
                    "--connect-timeout=2.5",
                    "--request-timeout=45",
                    "--bulk=false",
                    "--max-prefect-body-bytes=1048576",
                    "--max-body-bytes=1048576",
                    "--max-runs-per-batch=500",
                    "--retry-budget-ratio=0.5",
                    "--start-deadline-s=600",
                    "--run-deadline-s=3600",
                    "--on-deadline=relaunch",
                    "--max-backlog=50",
                    "--tls-verify=no",
                    "--ca-file=/etc/ca.pem",
                    "--log-level=debug",
                    "--http-threads=4",
                    "--drain-timeout=5"},
                   {});
  EXPECT_EQ(c.listen_host, "::");
  EXPECT_EQ(c.listen_port, 81);
  EXPECT_EQ(c.prefect_api_url, "https://api.prefect.cloud/api/accounts/a/workspaces/w");
  EXPECT_EQ(c.prefect_api_key, "pnu_1");
  EXPECT_EQ(c.prefect_auth_string, "u:p");
  EXPECT_EQ(c.db, "postgresql://u@h/db");
  EXPECT_DOUBLE_EQ(c.rate, 10);
  EXPECT_EQ(c.rate_text, "600/min");
  EXPECT_DOUBLE_EQ(c.burst, 20);
  EXPECT_EQ(c.max_in_flight, 50);
  EXPECT_EQ(c.min_in_flight, 5);
  EXPECT_TRUE(c.adaptive);
  EXPECT_EQ(c.limit_algorithm, "aimd");
  EXPECT_DOUBLE_EQ(c.connect_timeout_s, 2.5);
  EXPECT_DOUBLE_EQ(c.request_timeout_s, 45);
  EXPECT_FALSE(c.bulk);
  EXPECT_EQ(c.max_prefect_body_bytes, 1048576u);
  EXPECT_EQ(c.max_body_bytes, 1048576u);
  EXPECT_EQ(c.max_runs_per_batch, 500u);
  EXPECT_DOUBLE_EQ(c.retry_budget_ratio, 0.5);
  EXPECT_DOUBLE_EQ(c.start_deadline_s, 600);
  EXPECT_DOUBLE_EQ(c.run_deadline_s, 3600);
  EXPECT_EQ(c.on_deadline, "relaunch");
  EXPECT_EQ(c.max_backlog, 50);
  EXPECT_FALSE(c.tls_verify);
  EXPECT_EQ(c.ca_file, "/etc/ca.pem");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.http_threads, 4);
  EXPECT_DOUBLE_EQ(c.drain_timeout_s, 5);
}

TEST(ConfigTest, ListenerLimits) {
  Config d = parse_config({}, {});
  EXPECT_DOUBLE_EQ(d.header_timeout_s, 10);
  EXPECT_DOUBLE_EQ(d.body_timeout_s, 60);
  EXPECT_DOUBLE_EQ(d.idle_timeout_s, 60);
  EXPECT_EQ(d.max_connections, 1000);
  Config c = parse_config({"--header-timeout=0.5", "--body-timeout", "2", "--max-connections=7"},
                          {{"FLOODGATE_IDLE_TIMEOUT", "3"}});
  EXPECT_DOUBLE_EQ(c.header_timeout_s, 0.5);
  EXPECT_DOUBLE_EQ(c.body_timeout_s, 2);
  EXPECT_DOUBLE_EQ(c.idle_timeout_s, 3);
  EXPECT_EQ(c.max_connections, 7);
  for (const auto* bad :
       {"--header-timeout=0", "--body-timeout=-1", "--idle-timeout=x", "--max-connections=0"}) {
    EXPECT_THROW(parse_config({bad}, {}), ConfigError) << bad;
  }
  const auto text = usage();
  for (const auto* flag :
       {"--header-timeout", "--body-timeout", "--idle-timeout", "--max-connections"}) {
    EXPECT_NE(text.find(flag), std::string::npos) << flag;
  }
}

TEST(ConfigTest, HelpAndVersion) {
  EXPECT_TRUE(parse_config({"--help"}, {}).show_help);
  EXPECT_TRUE(parse_config({"-h"}, {}).show_help);
  EXPECT_TRUE(parse_config({"--version"}, {}).show_version);
  Config c = parse_config({"--help", "--listen", "1.2.3.4:5"}, {});
  EXPECT_TRUE(c.show_help);
  EXPECT_EQ(c.listen_port, 5);
}

TEST(ConfigTest, LaterFlagWins) {
  Config c = parse_config({"--max-in-flight", "10", "--max-in-flight=20"}, {});
  EXPECT_EQ(c.max_in_flight, 20);
}

// ---------------------------------------------------------------------------------------------
// --listen

TEST(ConfigTest, ListenForms) {
  struct Case {
    const char* value;
    const char* host;
    uint16_t port;
  };
  for (const Case& k :
       {Case{"127.0.0.1:8080", "127.0.0.1", 8080}, Case{"0.0.0.0:1", "0.0.0.0", 1},
        Case{"localhost:65535", "localhost", 65535}, Case{"[::1]:80", "::1", 80},
        Case{"[::]:8080", "::", 8080}, Case{"my-host.internal:443", "my-host.internal", 443}}) {
    Config c = parse_config({"--listen", k.value}, {});
    EXPECT_EQ(c.listen_host, k.host) << k.value;
    EXPECT_EQ(c.listen_port, k.port) << k.value;
  }
}

TEST(ConfigTest, BadListenValues) {
  for (const char* bad : {"localhost", ":8080", "host:", "host:0", "host:65536", "host:http",
                          "host:80.5", "host:-1", "[::1]", ""}) {
    expect_error_naming({"--listen", bad}, {}, "--listen");
    expect_error_naming({"--listen=" + std::string(bad)}, {}, "--listen");
    // An empty variable counts as unset.
    if (*bad != '\0') expect_error_naming({}, {{"FLOODGATE_LISTEN", bad}}, "FLOODGATE_LISTEN");
  }
}

// ---------------------------------------------------------------------------------------------
// --rate

TEST(ConfigTest, Rates) {
  Config per_second = parse_config({"--rate", "50/s"}, {});
  EXPECT_DOUBLE_EQ(per_second.rate, 50);
  EXPECT_EQ(per_second.rate_text, "50/s");

  Config per_minute = parse_config({"--rate", "600/min"}, {});
  EXPECT_DOUBLE_EQ(per_minute.rate, 10);
  EXPECT_EQ(per_minute.rate_text, "600/min");

  Config off = parse_config({"--rate", "off"}, {});
  EXPECT_EQ(off.rate, 0);

  Config plan = parse_config({"--rate=625/min"}, {});  // a Prefect Cloud plan
  EXPECT_NEAR(plan.rate, 625.0 / 60, 1e-12);

  Config bare = parse_config({"--rate", "7"}, {});
  EXPECT_DOUBLE_EQ(bare.rate, 7);
}

TEST(ConfigTest, OffAfterARateTurnsItOff) {
  Config c = parse_config({"--rate", "off"}, {{"FLOODGATE_RATE", "50/s"}});
  EXPECT_EQ(c.rate, 0);
  EXPECT_EQ(c.rate_text, "off");
}

// ---------------------------------------------------------------------------------------------
// Environment

TEST(ConfigTest, FloodgateVariables) {
  Env env = {{"FLOODGATE_LISTEN", "[::1]:9000"},
             {"FLOODGATE_DB", "postgres://fg@db/fg"},
             {"FLOODGATE_RATE", "50/s"},
             {"FLOODGATE_BURST", "100"},
             {"FLOODGATE_MAX_IN_FLIGHT", "32"},
             {"FLOODGATE_ADAPTIVE", "off"},
             {"FLOODGATE_PREFECT_API_URL", "http://prefect:4200/api/"},
             {"FLOODGATE_PREFECT_API_KEY", "key-from-floodgate"},
             {"FLOODGATE_LOG_LEVEL", "warn"},
             {"FLOODGATE_HTTP_THREADS", "2"}};
  Config c = parse_config({}, env);
  EXPECT_EQ(c.listen_host, "::1");
  EXPECT_EQ(c.listen_port, 9000);
  EXPECT_EQ(c.db, "postgres://fg@db/fg");
  EXPECT_DOUBLE_EQ(c.rate, 50);
  EXPECT_DOUBLE_EQ(c.burst, 100);
  EXPECT_EQ(c.max_in_flight, 32);
  EXPECT_FALSE(c.adaptive);
  EXPECT_EQ(c.prefect_api_url, "http://prefect:4200/api");  // trailing slash dropped
  EXPECT_EQ(c.prefect_api_key, "key-from-floodgate");
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_EQ(c.http_threads, 2);
}

TEST(ConfigTest, PrefectVariablesAreTheFallback) {
  Env env = {{"PREFECT_API_URL", "https://api.prefect.cloud/api/accounts/a/workspaces/w"},
             {"PREFECT_API_KEY", "pnu_prefect"},
             {"PREFECT_API_AUTH_STRING", "admin:secret"}};
  Config c = parse_config({}, env);
  EXPECT_EQ(c.prefect_api_url, "https://api.prefect.cloud/api/accounts/a/workspaces/w");
  EXPECT_EQ(c.prefect_api_key, "pnu_prefect");
  EXPECT_EQ(c.prefect_auth_string, "admin:secret");
}

TEST(ConfigTest, PrecedenceFlagsThenFloodgateThenPrefect) {
  Env all = {{"PREFECT_API_URL", "http://prefect-env/api"},
             {"FLOODGATE_PREFECT_API_URL", "http://floodgate-env/api"},
             {"PREFECT_API_KEY", "k-prefect"},
             {"FLOODGATE_PREFECT_API_KEY", "k-floodgate"},
             {"PREFECT_API_AUTH_STRING", "p:prefect"},
             {"FLOODGATE_PREFECT_API_AUTH_STRING", "f:floodgate"}};
  Config env_only = parse_config({}, all);
  EXPECT_EQ(env_only.prefect_api_url, "http://floodgate-env/api");
  EXPECT_EQ(env_only.prefect_api_key, "k-floodgate");
  EXPECT_EQ(env_only.prefect_auth_string, "f:floodgate");

  Config flags = parse_config({"--prefect-api-url", "http://flag/api", "--prefect-api-key",
                               "k-flag", "--prefect-api-auth-string", "x:flag"},
                              all);
  EXPECT_EQ(flags.prefect_api_url, "http://flag/api");
  EXPECT_EQ(flags.prefect_api_key, "k-flag");
  EXPECT_EQ(flags.prefect_auth_string, "x:flag");

  Config prefect_only = parse_config({}, {{"PREFECT_API_URL", "http://prefect-env/api"}});
  EXPECT_EQ(prefect_only.prefect_api_url, "http://prefect-env/api");
}

TEST(ConfigTest, FlagBeatsFloodgateVariable) {
  Config c = parse_config({"--max-in-flight", "12", "--rate=5/s"},
                          {{"FLOODGATE_MAX_IN_FLIGHT", "99"}, {"FLOODGATE_RATE", "50/s"}});
  EXPECT_EQ(c.max_in_flight, 12);
  EXPECT_DOUBLE_EQ(c.rate, 5);
  EXPECT_EQ(c.rate_text, "5/s");
}

TEST(ConfigTest, EmptyVariablesAreUnset) {
  Config c = parse_config({}, {{"FLOODGATE_RATE", ""},
                               {"FLOODGATE_LISTEN", ""},
                               {"PREFECT_API_URL", ""},
                               {"PREFECT_API_AUTH_STRING", ""}});
  EXPECT_EQ(c.rate, 0);
  EXPECT_EQ(c.listen_port, 8080);
  EXPECT_EQ(c.prefect_api_url, "http://127.0.0.1:4200/api");
}

TEST(ConfigTest, UnrelatedVariablesAreIgnored) {
  Config c = parse_config({}, {{"PATH", "/usr/bin"}, {"FLOODGATE_NOT_A_FLAG", "x"}});
  EXPECT_EQ(c.listen_port, 8080);
}

// ---------------------------------------------------------------------------------------------
// Bad values name the flag or variable

struct BadValue {
  const char* flag;
  const char* value;
};

const std::vector<BadValue>& bad_values() {
  static const std::vector<BadValue> kBad = {
      {"listen", "nohost"},
      {"prefect-api-url", "ftp://prefect/api"},
      {"prefect-api-url", "prefect:4200/api"},
      {"prefect-api-auth-string", "no-colon"},
      {"db", "mysql://db"},
      {"db", "./floodgate.db"},
      {"rate", "fast"},
      {"rate", "-5/s"},
      {"rate", "5/day"},
      {"rate", "5/"},
      {"burst", "0"},
      {"max-backlog", "-1"},
      {"max-backlog", "some"},
      {"burst", "lots"},
      {"max-in-flight", "0"},
      {"max-in-flight", "100001"},
      {"max-in-flight", "2.5"},
      {"max-in-flight", "ten"},
      {"min-in-flight", "0"},
      {"adaptive", "maybe"},
      {"limit-algorithm", "vegas"},
      {"connect-timeout", "0"},
      {"connect-timeout", "601"},
      {"request-timeout", "0.01"},
      {"request-timeout", "3601"},
      {"request-timeout", "nan"},
      {"request-timeout", "inf"},
      {"bulk", "2"},
      {"max-prefect-body-bytes", "1000"},
      {"max-body-bytes", "1000"},
      {"max-runs-per-batch", "0"},
      {"max-runs-per-batch", "10000001"},
      {"retry-budget-ratio", "-0.1"},
      {"retry-budget-ratio", "10.5"},
      {"tls-verify", "sometimes"},
      {"log-level", "trace"},
      {"http-threads", "0"},
      {"http-threads", "257"},
      {"drain-timeout", "-1"},
      {"drain-timeout", "3601"},
      {"drain-timeout", "5s"},
  };
  return kBad;
}

std::string env_name_of(const std::string& flag) {
  std::string out = "FLOODGATE_";
  for (char c : flag) out += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

TEST(ConfigTest, BadFlagValuesNameTheFlag) {
  for (const BadValue& b : bad_values()) {
    const std::string flag = std::string("--") + b.flag;
    expect_error_naming({flag, b.value}, {}, flag);
    expect_error_naming({flag + "=" + b.value}, {}, flag);
  }
}

TEST(ConfigTest, BadVariableValuesNameTheVariable) {
  for (const BadValue& b : bad_values()) {
    const std::string name = env_name_of(b.flag);
    expect_error_naming({}, {{name, b.value}}, name);
  }
}

TEST(ConfigTest, BadPrefectVariablesNameTheVariable) {
  expect_error_naming({}, {{"PREFECT_API_URL", "localhost:4200/api"}}, "PREFECT_API_URL");
  expect_error_naming({}, {{"PREFECT_API_AUTH_STRING", "justauser"}}, "PREFECT_API_AUTH_STRING");
}

TEST(ConfigTest, NumbersMustBeDecimal) {
  // strtod also reads hexadecimal and skips leading blanks; neither is a decimal number.
  expect_error_naming({"--max-in-flight", "0x10"}, {}, "--max-in-flight");
  expect_error_naming({"--listen", "127.0.0.1:0x1F90"}, {}, "--listen");
  expect_error_naming({"--burst", " 5"}, {}, "--burst");
}

TEST(ConfigTest, UnknownFlag) {
  expect_error_naming({"--max-inflight", "5"}, {}, "--max-inflight");
  expect_error_naming({"--max-inflight=5"}, {}, "--max-inflight");
}

TEST(ConfigTest, MissingValue) { expect_error_naming({"--db"}, {}, "--db"); }

TEST(ConfigTest, BadDatabaseUrlErrorHidesThePassword) {
  const std::string error = error_of({"--db", "mysql://fg:s3cret@db/fg?password=s3cret"});
  EXPECT_NE(error.find("--db"), std::string::npos) << error;
  EXPECT_EQ(error.find("s3cret"), std::string::npos) << error;
  EXPECT_NE(error.find("mysql://fg:***@db/fg?password=***"), std::string::npos) << error;
  EXPECT_EQ(parse_config({"--db", "postgres://fg:pw@db:5432/fg?sslmode=require"}, {}).db,
            "postgres://fg:pw@db:5432/fg?sslmode=require");
}

TEST(ConfigTest, StrayArgument) {
  expect_error_naming({"serve"}, {}, "serve");
  expect_error_naming({"-v"}, {}, "-v");
}

TEST(ConfigTest, MinAboveMaxInFlight) {
  std::string message = error_of({"--min-in-flight", "10", "--max-in-flight", "5"});
  EXPECT_NE(message.find("--min-in-flight"), std::string::npos) << message;
  EXPECT_NE(message.find("--max-in-flight"), std::string::npos) << message;
  // A fixed limit has no floor to check.
  Config c =
      parse_config({"--min-in-flight", "10", "--max-in-flight", "5", "--adaptive", "false"}, {});
  EXPECT_EQ(c.max_in_flight, 5);
}

TEST(ConfigTest, BooleanSpellings) {
  for (const char* yes : {"true", "TRUE", "1", "yes", "on", "On"}) {
    EXPECT_TRUE(parse_config({"--bulk", yes}, {}).bulk) << yes;
  }
  for (const char* no : {"false", "False", "0", "no", "off", "OFF"}) {
    EXPECT_FALSE(parse_config({"--bulk", no}, {}).bulk) << no;
  }
}

TEST(ConfigTest, EmptyAuthStringFlagClearsTheVariable) {
  Config c = parse_config({"--prefect-api-auth-string="}, {{"PREFECT_API_AUTH_STRING", "u:p"}});
  EXPECT_EQ(c.prefect_auth_string, "");
}

TEST(ConfigTest, ApiUrlTrailingSlashesAreDropped) {
  Config c = parse_config({"--prefect-api-url", "http://h:4200/api//"}, {});
  EXPECT_EQ(c.prefect_api_url, "http://h:4200/api");
}

TEST(ConfigTest, UsageListsEveryFlagAndVariable) {
  const std::string text = usage();
  for (const char* flag : {"listen",
                           "prefect-api-url",
                           "prefect-api-key",
                           "prefect-api-auth-string",
                           "db",
                           "rate",
                           "burst",
                           "max-in-flight",
                           "min-in-flight",
                           "adaptive",
                           "limit-algorithm",
                           "connect-timeout",
                           "request-timeout",
                           "bulk",
                           "max-prefect-body-bytes",
                           "max-body-bytes",
                           "max-runs-per-batch",
                           "retry-budget-ratio",
                           "tls-verify",
                           "ca-file",
                           "log-level",
                           "http-threads",
                           "drain-timeout"}) {
    EXPECT_NE(text.find(std::string("--") + flag), std::string::npos) << flag;
    EXPECT_NE(text.find(env_name_of(flag)), std::string::npos) << flag;
  }
  EXPECT_NE(text.find("--help"), std::string::npos);
}

TEST(ConfigTest, AnOverriddenBadValueIsNeverRead) {
  Config c = parse_config({"--rate", "5/s"}, {{"FLOODGATE_RATE", "fast"}});
  EXPECT_DOUBLE_EQ(c.rate, 5.0);
  c = parse_config({}, {{"PREFECT_API_URL", "not a url"},
                        {"FLOODGATE_PREFECT_API_URL", "http://prefect:4200/api"}});
  EXPECT_EQ(c.prefect_api_url, "http://prefect:4200/api");
}

TEST(ConfigTest, ConflictingBoundsNameWhereTheyCameFrom) {
  expect_error_naming({"--max-in-flight", "4"}, {{"FLOODGATE_MIN_IN_FLIGHT", "8"}},
                      "FLOODGATE_MIN_IN_FLIGHT");
  expect_error_naming({"--min-in-flight", "8", "--max-in-flight", "4"}, {}, "--max-in-flight");
}

}  // namespace
}  // namespace floodgate
