#pragma once

// A thin RAII layer over the SQLite C API, private to the store component: only the store's
// .cpp files include this header, so nothing outside sees <sqlite3.h>.

#include <sqlite3.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace floodgate::store {

/// One SQLite connection and its cache of prepared statements. Not thread-safe by itself:
/// whoever uses it holds mutex() meanwhile.
class SqliteConnection {
 public:
  /// Opens `path` (":memory:" for a private in-memory database) with sqlite3_open_v2 `flags`
  /// and sets the busy timeout. Throws StoreError naming the path and the reason.
  SqliteConnection(const std::string& path, int flags);
  ~SqliteConnection();
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  std::mutex& mutex() { return mutex_; }
  const std::string& path() const { return path_; }
  sqlite3* handle() const { return db_; }

  /// The prepared statement for `sql`, compiled on first use and reused afterwards.
  /// `sql` must outlive the connection (a string literal).
  sqlite3_stmt* prepare(std::string_view sql, std::string_view what);

  /// Runs SQL that returns no rows (may hold several statements); not cached.
  void exec(const char* sql, std::string_view what);

  /// Runs a PRAGMA (or any one-row query) and returns the first column of its first row as
  /// text, "" when it returns no row.
  std::string query_text(const char* sql, std::string_view what);

  /// Throws StoreError with what was being done and SQLite's own message for `rc`.
  [[noreturn]] void fail(int rc, std::string_view what) const;

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  std::mutex mutex_;
  std::unordered_map<std::string_view, sqlite3_stmt*> statements_;
};

/// A cached statement borrowed for one use; resets it when it goes out of scope, which also
/// ends the read transaction a SELECT holds open (a WAL reader that is never reset would keep
/// seeing an old snapshot and block checkpoints).
class Statement {
 public:
  Statement(SqliteConnection& conn, std::string_view sql, std::string_view what);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based, as in SQLite. Text is bound without a copy: it must stay alive
  // until the statement is stepped.
  void bind(int param, int64_t value);
  void bind(int param, std::string_view value);
  void bind(int param, const std::string& value) { bind(param, std::string_view(value)); }
  void bind(int param, const std::optional<std::string>& value);  // NULL when empty
  void bind_null(int param);

  /// Steps once: true when a row is ready, false when the statement is done.
  bool step();
  /// Steps a statement that returns no rows, then resets it for the next use.
  void run();
  /// Makes the statement ready to be bound and stepped again.
  void reset();

  // Columns are 0-based, as in SQLite.
  int64_t column_int64(int col) const;
  std::string column_text(int col) const;
  std::optional<std::string> column_optional_text(int col) const;

  /// Rows changed by the last INSERT, UPDATE or DELETE on this connection.
  int64_t changes() const;

 private:
  SqliteConnection& conn_;
  sqlite3_stmt* stmt_;
  std::string_view what_;
};

/// A transaction that rolls back when it goes out of scope without commit().
class Transaction {
 public:
  enum class Mode {
    kDeferred,   // a read snapshot; takes the write lock on the first write
    kImmediate,  // takes the write lock at once, so a check-then-insert cannot race
  };
  Transaction(SqliteConnection& conn, Mode mode, std::string_view what);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit();

 private:
  SqliteConnection& conn_;
  std::string_view what_;
  bool open_ = true;
};

/// synchronous=FULL for a scope (an accepted batch or chunk: the API answers 201 only after the
/// commit, and the client then forgets the request), NORMAL again after. SQLite refuses to
/// change the level inside a transaction, so this guard wraps the Transaction.
class FullSyncScope {
 public:
  explicit FullSyncScope(SqliteConnection& conn);
  ~FullSyncScope();
  FullSyncScope(const FullSyncScope&) = delete;
  FullSyncScope& operator=(const FullSyncScope&) = delete;

 private:
  SqliteConnection& conn_;
};

}  // namespace floodgate::store
