#pragma once

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>

namespace floodgate::store::testing {

/// The variable naming the throw-away server the PostgreSQL tests use.
inline constexpr const char* kPgUrlVariable = "FLOODGATE_TEST_PG_URL";

/// The URL of the test server, or nullopt when FLOODGATE_TEST_PG_URL is unset.
inline std::optional<std::string> pg_test_url() {
  const char* url = std::getenv(kPgUrlVariable);
  if (url == nullptr || *url == '\0') return std::nullopt;
  return std::string(url);
}

/// True under CI (CI=true or CI=1), where a missing server fails the tests instead of skipping.
inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::string(ci) == "true" || std::string(ci) == "1");
}

inline std::string pg_unavailable_reason() {
  return std::string(kPgUrlVariable) +
         " is not set, so the PostgreSQL store tests cannot run. Start a throw-away server "
         "with `scripts/pg-cluster.sh start` and export " +
         kPgUrlVariable + "=$(scripts/pg-cluster.sh url)" +
         (running_in_ci() ? " (CI=true: failing instead of skipping)" : " (skipped)");
}

/// Skips the test outside CI, fails it under CI, when no server is configured.
#define FLOODGATE_REQUIRE_PG()                                              \
  do {                                                                      \
    if (!::floodgate::store::testing::pg_test_url()) {                      \
      if (::floodgate::store::testing::running_in_ci()) {                   \
        FAIL() << ::floodgate::store::testing::pg_unavailable_reason();     \
      }                                                                     \
      GTEST_SKIP() << ::floodgate::store::testing::pg_unavailable_reason(); \
    }                                                                       \
  } while (false)

/// A raw libpq connection, as an operator would use psql.
class RawPg {
 public:
  explicit RawPg(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) ADD_FAILURE() << PQerrorMessage(conn_);
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);  // DROP ... CASCADE notes
  }
  ~RawPg() { PQfinish(conn_); }
  RawPg(const RawPg&) = delete;
  RawPg& operator=(const RawPg&) = delete;

  /// Every row's columns joined with '|', rows joined with '\n'; "" on error (reported).
  std::string query(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    std::string out;
    const ExecStatusType status = PQresultStatus(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
    } else {
      for (int row = 0; row < PQntuples(r); ++row) {
        if (row > 0) out += '\n';
        for (int col = 0; col < PQnfields(r); ++col) {
          if (col > 0) out += '|';
          out += PQgetisnull(r, row, col) ? "NULL" : PQgetvalue(r, row, col);
        }
      }
    }
    PQclear(r);
    return out;
  }
  void exec(const std::string& sql) { query(sql); }
  PGconn* handle() const { return conn_; }

 private:
  PGconn* conn_;
};

/// `url` with a libpq option added to its query string.
inline std::string with_option(const std::string& url, const std::string& option) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + option;
}

/// A fresh schema in the test database for one test, dropped with everything in it. Stores
/// opened on url() create their tables there (search_path), so tests never see each other.
class PgTestSchema {
 public:
  explicit PgTestSchema(const std::string& base_url)
      : name_("fg_test_" + std::to_string(getpid()) + "_" + std::to_string(next_id())),
        base_url_(base_url),
        url_(with_option(with_option(base_url, "options=-csearch_path%3D" + name_),
                         "application_name=" + name_)) {
    RawPg(base_url_).exec("CREATE SCHEMA " + name_);
  }
  ~PgTestSchema() {
    if (std::getenv("FLOODGATE_TEST_PG_KEEP") == nullptr) {
      RawPg(base_url_).exec("DROP SCHEMA " + name_ + " CASCADE");
    }
  }
  PgTestSchema(const PgTestSchema&) = delete;
  PgTestSchema& operator=(const PgTestSchema&) = delete;

  const std::string& name() const { return name_; }
  /// The test database's URL with this schema first on the search_path, and the schema's name
  /// as application_name (so a test can find its own sessions in pg_stat_activity).
  const std::string& url() const { return url_; }

  /// Ends every session opened with url(), as a server restart would, and waits until the
  /// server has let them go.
  void terminate_sessions() const {
    RawPg admin(base_url_);
    const std::string mine = "application_name = '" + name_ + "' AND pid <> pg_backend_pid()";
    admin.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " + mine);
    for (int i = 0; i < 500; ++i) {
      if (admin.query("SELECT count(*) FROM pg_stat_activity WHERE " + mine) == "0") return;
      usleep(10'000);
    }
    ADD_FAILURE() << "sessions of " << name_ << " still there";
  }

 private:
  static int next_id() {
    static std::atomic<int> id{0};
    return id.fetch_add(1);
  }
  std::string name_;
  std::string base_url_;
  std::string url_;
};

}  // namespace floodgate::store::testing
