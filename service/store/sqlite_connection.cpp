#include "store/sqlite_connection.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "store/store.h"

namespace floodgate::store {
namespace {

constexpr int kBusyTimeoutMs = 5000;

// Explains a failed open in terms an operator can act on; SQLite itself only says
// "unable to open database file".
std::string open_failure_reason(const std::string& path, sqlite3* db, int rc) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path file(path);
  const fs::path parent = file.has_parent_path() ? file.parent_path() : fs::path(".");
  if (!fs::exists(parent, ec)) {
    return "directory " + parent.string() + " does not exist (floodgate does not create it)";
  }
  if (!fs::is_directory(parent, ec)) return parent.string() + " is not a directory";
  if (fs::is_directory(file, ec)) return "it is a directory";
  std::string reason = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const int sys_errno = db != nullptr ? sqlite3_system_errno(db) : 0;
  if (sys_errno != 0) reason += std::string(" (") + std::strerror(sys_errno) + ")";
  return reason;
}

}  // namespace

SqliteConnection::SqliteConnection(const std::string& path, int flags) : path_(path) {
  // This SQLite is built with URI file names on: keep a relative "file:x.db" a plain name.
  const std::string name = path.starts_with("file:") ? "./" + path : path;
  // The store serialises access to each connection with its own mutex.
  const int rc = sqlite3_open_v2(name.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string reason = open_failure_reason(path, db_, rc);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw StoreError("cannot open SQLite database at " + path + ": " + reason);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
}

SqliteConnection::~SqliteConnection() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

sqlite3_stmt* SqliteConnection::prepare(std::string_view sql, std::string_view what) {
  if (auto it = statements_.find(sql); it != statements_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) fail(rc, what);
  statements_.emplace(sql, stmt);
  return stmt;
}

void SqliteConnection::exec(const char* sql, std::string_view what) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(rc, what);
}

std::string SqliteConnection::query_text(const char* sql, std::string_view what) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) fail(rc, what);
  std::string result;
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    if (text != nullptr) result.assign(text, static_cast<size_t>(sqlite3_column_bytes(stmt, 0)));
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_OK;
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_OK) fail(rc, what);
  return result;
}

void SqliteConnection::fail(int rc, std::string_view what) const {
  // errmsg describes the most recent failure on the connection, which may not be `rc` when
  // the failure was reported by a later call (commit after a failed step); say both.
  std::string message = "SQLite error while ";
  message.append(what);
  message += ": ";
  message += sqlite3_errmsg(db_);
  const char* code_text = sqlite3_errstr(rc);
  if (code_text != nullptr && message.find(code_text) == std::string::npos) {
    message += std::string(" (") + code_text + ")";
  }
  message += " [code " + std::to_string(rc) + ", database " + path_ + "]";
  throw StoreError(message);
}

Statement::Statement(SqliteConnection& conn, std::string_view sql, std::string_view what)
    : conn_(conn), stmt_(conn.prepare(sql, what)), what_(what) {}

Statement::~Statement() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

void Statement::bind(int param, int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, param, value);
  if (rc != SQLITE_OK) conn_.fail(rc, what_);
}

void Statement::bind(int param, std::string_view value) {
  // A null data() would bind NULL, not "".
  const char* data = value.data() != nullptr ? value.data() : "";
  const int rc =
      sqlite3_bind_text(stmt_, param, data, static_cast<int>(value.size()), SQLITE_STATIC);
  if (rc != SQLITE_OK) conn_.fail(rc, what_);
}

void Statement::bind(int param, const std::optional<std::string>& value) {
  if (value) {
    bind(param, std::string_view(*value));
  } else {
    bind_null(param);
  }
}

void Statement::bind_null(int param) {
  const int rc = sqlite3_bind_null(stmt_, param);
  if (rc != SQLITE_OK) conn_.fail(rc, what_);
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  conn_.fail(rc, what_);
}

void Statement::run() {
  step();
  reset();
}

void Statement::reset() { sqlite3_reset(stmt_); }

int64_t Statement::column_int64(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string Statement::column_text(int col) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  if (text == nullptr) return {};
  return {text, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
}

std::optional<std::string> Statement::column_optional_text(int col) const {
  if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
  return column_text(col);
}

int64_t Statement::changes() const { return sqlite3_changes64(conn_.handle()); }

Transaction::Transaction(SqliteConnection& conn, Mode mode, std::string_view what)
    : conn_(conn), what_(what) {
  Statement begin(conn_, mode == Mode::kImmediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED", what_);
  begin.run();
}

Transaction::~Transaction() {
  if (!open_) return;
  // Rolling back cannot usefully fail here; a failed statement may already have ended the
  // transaction, which is fine.
  if (sqlite3_get_autocommit(conn_.handle()) == 0) {
    sqlite3_exec(conn_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

void Transaction::commit() {
  Statement commit(conn_, "COMMIT", what_);
  commit.run();
  open_ = false;
}

FullSyncScope::FullSyncScope(SqliteConnection& conn) : conn_(conn) {
  Statement(conn_, "PRAGMA synchronous = FULL", "setting synchronous = FULL").run();
}

FullSyncScope::~FullSyncScope() {
  // Failing here would only leave the connection at FULL: slower, never less safe.
  sqlite3_exec(conn_.handle(), "PRAGMA synchronous = NORMAL", nullptr, nullptr, nullptr);
}

}  // namespace floodgate::store
