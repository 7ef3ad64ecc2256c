#pragma once

// A thin RAII layer over libpq, private to the store component: only the store's .cpp files
// include this header, so nothing outside sees <libpq-fe.h>.

#include <libpq-fe.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace floodgate::store {

/// Text parameters for one statement ($1, $2, ...); an unset value is SQL NULL.
class PgParams {
 public:
  PgParams& add(int64_t value);
  PgParams& add(std::string_view value);
  PgParams& add(const std::string& value) { return add(std::string_view(value)); }
  PgParams& add(const char* value) { return add(std::string_view(value)); }
  PgParams& add(const std::optional<std::string>& value);
  PgParams& add_null();

  int size() const { return static_cast<int>(values_.size()); }
  /// Pointers into the parameters, valid while this object lives and is not changed.
  std::vector<const char*> pointers() const;

 private:
  std::vector<std::optional<std::string>> values_;
};

/// One result of a statement; frees it when it goes out of scope.
class PgResult {
 public:
  explicit PgResult(PGresult* result) : result_(result) {}
  PgResult(PgResult&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
  PgResult& operator=(PgResult&&) = delete;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult() { PQclear(result_); }

  int rows() const { return PQntuples(result_); }
  bool is_null(int row, int col) const { return PQgetisnull(result_, row, col) == 1; }
  std::string text(int row, int col) const;
  std::optional<std::string> optional_text(int row, int col) const;
  int64_t int64(int row, int col) const;
  /// Rows an INSERT, UPDATE or DELETE changed.
  int64_t changed() const;

 private:
  PGresult* result_;
};

/// One connection to PostgreSQL and the statements prepared on it. Not thread-safe by itself:
/// one thread uses it at a time (PgPool hands it out).
class PgConnection {
 public:
  /// Connects with the libpq URL `url` ("postgresql://..." or "postgres://...", its options
  /// such as sslmode passed through). Throws StoreError with libpq's reason, the password
  /// scrubbed.
  explicit PgConnection(const std::string& url);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  /// False once the server closed the connection or it broke.
  bool healthy() const { return PQstatus(conn_) == CONNECTION_OK; }
  /// Reads what the server sent meanwhile without waiting, so that an idle connection the
  /// server closed (a restart, pg_terminate_backend) shows as broken before it is used.
  bool still_open();
  /// True while a transaction is open (or failed and not yet rolled back).
  bool in_transaction() const;

  /// Runs SQL without parameters (may hold several statements). Throws StoreError.
  PgResult exec(std::string_view sql, std::string_view what);
  /// Runs `sql` with parameters as a named prepared statement, prepared on first use.
  /// `sql` must outlive the connection (a string literal). Throws StoreError.
  PgResult run(std::string_view sql, const PgParams& params, std::string_view what);
  /// Sends rows in COPY text format to a "COPY ... FROM STDIN" statement. Throws StoreError.
  void copy_in(std::string_view copy_sql, const std::string& rows, std::string_view what);

  /// Throws StoreError with what was being done and libpq's message.
  [[noreturn]] void fail(std::string_view what, const PGresult* result = nullptr) const;

 private:
  PgResult check(PGresult* result, std::string_view what) const;

  PGconn* conn_ = nullptr;
  std::string password_;                                        // scrubbed from error messages
  std::unordered_map<std::string_view, std::string> prepared_;  // sql -> statement name
};

/// Up to `size` connections shared by threads; a broken connection is dropped when it comes
/// back and a new one is made on the next demand, so the store recovers from a server restart.
class PgPool {
 public:
  PgPool(std::string url, size_t size) : url_(std::move(url)), size_(size) {}

  /// A connection borrowed for one use; goes back to the pool when it goes out of scope.
  class Lease {
   public:
    Lease(PgPool& pool, std::unique_ptr<PgConnection> conn) : pool_(pool), conn_(std::move(conn)) {}
    ~Lease() { pool_.give_back(std::move(conn_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    PgConnection* operator->() const { return conn_.get(); }
    PgConnection& operator*() const { return *conn_; }

   private:
    PgPool& pool_;
    std::unique_ptr<PgConnection> conn_;
  };

  /// Waits for a free connection, connecting a new one when fewer than `size` exist.
  Lease acquire();

 private:
  void give_back(std::unique_ptr<PgConnection> conn);

  const std::string url_;
  const size_t size_;
  std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<PgConnection>> idle_;  // guarded by mutex_
  size_t open_ = 0;                                  // guarded by mutex_: idle + lent out
};

/// A transaction on one connection that rolls back when it goes out of scope without commit().
class PgTransaction {
 public:
  /// Sends `begin` (a BEGIN, possibly followed by SET LOCAL ... in the same round trip).
  PgTransaction(PgConnection& conn, std::string_view what, std::string_view begin = "BEGIN");
  ~PgTransaction();
  PgTransaction(const PgTransaction&) = delete;
  PgTransaction& operator=(const PgTransaction&) = delete;

  void commit();

 private:
  PgConnection& conn_;
  std::string_view what_;
  bool open_ = true;
};

/// `text` as one element of a PostgreSQL array literal: quoted, with '"' and '\' escaped.
void append_array_element(std::string& out, std::string_view text);
/// `text` as one field of a COPY text-format row: '\', tab, newline and CR escaped.
void append_copy_field(std::string& out, std::string_view text);
/// `text` with invalid UTF-8 and NUL bytes replaced by U+FFFD: PostgreSQL rejects both in text.
std::string valid_utf8(std::string_view text);

}  // namespace floodgate::store
