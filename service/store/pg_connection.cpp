#include "store/pg_connection.h"

#include <array>
#include <charconv>
#include <utility>

#include "store/store.h"

namespace floodgate::store {
namespace {

// The password the URL carries (user:password@ or ?password=), to scrub from messages.
std::string password_of(const std::string& url) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  PQfreemem(error);
  std::string password;
  if (options == nullptr) return password;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr) password = o->val;
  }
  PQconninfoFree(options);
  return password;
}

std::string scrub(std::string message, const std::string& password) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  if (password.empty()) return message;
  for (size_t at = message.find(password); at != std::string::npos;
       at = message.find(password, at)) {
    message.replace(at, password.size(), "***");
  }
  return message;
}

// Length of the valid UTF-8 sequence at text[i], or 0 when it is not valid (or a NUL byte).
size_t utf8_sequence_length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t min = 0;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  uint32_t code = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return n;
}

bool is_valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) - 1u < 0x7Fu) {  // ASCII but NUL
      ++i;
      continue;
    }
    const size_t n = utf8_sequence_length(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

}  // namespace

std::string valid_utf8(std::string_view text) {
  if (is_valid_utf8(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_sequence_length(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

void append_array_element(std::string& out, std::string_view text) {
  const std::string valid = valid_utf8(text);
  out += '"';
  for (const char c : valid) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append_copy_field(std::string& out, std::string_view text) {
  const std::string valid = valid_utf8(text);
  for (const char c : valid) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
}

PgParams& PgParams::add(int64_t value) {
  values_.emplace_back(std::to_string(value));
  return *this;
}

PgParams& PgParams::add(std::string_view value) {
  values_.emplace_back(valid_utf8(value));
  return *this;
}

PgParams& PgParams::add(const std::optional<std::string>& value) {
  if (!value) return add_null();
  return add(std::string_view(*value));
}

PgParams& PgParams::add_null() {
  values_.emplace_back(std::nullopt);
  return *this;
}

std::vector<const char*> PgParams::pointers() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (const auto& v : values_) out.push_back(v ? v->c_str() : nullptr);
  return out;
}

std::string PgResult::text(int row, int col) const {
  const char* value = PQgetvalue(result_, row, col);
  return std::string(value, static_cast<size_t>(PQgetlength(result_, row, col)));
}

std::optional<std::string> PgResult::optional_text(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return text(row, col);
}

int64_t PgResult::int64(int row, int col) const {
  const char* value = PQgetvalue(result_, row, col);
  const size_t length = static_cast<size_t>(PQgetlength(result_, row, col));
  int64_t out = 0;
  const auto [end, ec] = std::from_chars(value, value + length, out);
  if (ec != std::errc() || end != value + length) {
    throw StoreError("unexpected integer '" + std::string(value, length) + "' from PostgreSQL");
  }
  return out;
}

int64_t PgResult::changed() const {
  const char* text = PQcmdTuples(result_);
  int64_t out = 0;
  std::from_chars(text, text + std::char_traits<char>::length(text), out);
  return out;
}

PgConnection::PgConnection(const std::string& url) : password_(password_of(url)) {
  // Keywords after "dbname" override what the URL says; those before it are defaults the URL
  // may change. client_encoding is ours: every string floodgate stores is UTF-8.
  const std::array<const char*, 5> keywords = {"application_name", "connect_timeout", "dbname",
                                               "client_encoding", nullptr};
  const std::array<const char*, 5> values = {"floodgated", "10", url.c_str(), "UTF8", nullptr};
  conn_ = PQconnectdbParams(keywords.data(), values.data(), 1);
  if (conn_ == nullptr) throw StoreError("out of memory connecting to PostgreSQL");
  if (PQstatus(conn_) != CONNECTION_OK) {
    const std::string message = scrub(PQerrorMessage(conn_), password_);
    PQfinish(conn_);
    conn_ = nullptr;
    throw StoreError(message);
  }
  // libpq prints notices (and the server's farewell on a closed connection) to stderr by
  // default; floodgate's failures surface as StoreErrors instead.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
}

PgConnection::~PgConnection() { PQfinish(conn_); }

bool PgConnection::still_open() {
  if (PQconsumeInput(conn_) == 0) return false;
  // A notice or the server's farewell (an error) may have arrived; nothing is waited for.
  while (PGresult* r = PQgetResult(conn_)) PQclear(r);
  return healthy();
}

bool PgConnection::in_transaction() const { return PQtransactionStatus(conn_) != PQTRANS_IDLE; }

void PgConnection::fail(std::string_view what, const PGresult* result) const {
  std::string message = result != nullptr ? PQresultErrorMessage(result) : "";
  if (message.empty()) message = PQerrorMessage(conn_);
  throw StoreError(std::string(what) + ": " + scrub(std::move(message), password_));
}

PgResult PgConnection::check(PGresult* result, std::string_view what) const {
  PgResult owned(result);
  const ExecStatusType status = result == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_COPY_IN) {
    fail(what, result);
  }
  return owned;
}

PgResult PgConnection::exec(std::string_view sql, std::string_view what) {
  return check(PQexec(conn_, std::string(sql).c_str()), what);
}

PgResult PgConnection::run(std::string_view sql, const PgParams& params, std::string_view what) {
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = "fg" + std::to_string(prepared_.size());
    check(PQprepare(conn_, name.c_str(), std::string(sql).c_str(), 0, nullptr), what);
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  const auto values = params.pointers();
  return check(
      PQexecPrepared(conn_, it->second.c_str(), params.size(), values.data(), nullptr, nullptr, 0),
      what);
}

void PgConnection::copy_in(std::string_view copy_sql, const std::string& rows,
                           std::string_view what) {
  check(PQexec(conn_, std::string(copy_sql).c_str()), what);
  // Sent in slices so that libpq's output buffer stays small for a large batch.
  constexpr size_t kSlice = 1 << 20;
  for (size_t at = 0; at < rows.size(); at += kSlice) {
    const size_t n = std::min(kSlice, rows.size() - at);
    if (PQputCopyData(conn_, rows.data() + at, static_cast<int>(n)) != 1) {
      PQputCopyEnd(conn_, "floodgate could not send the rows");
      while (PGresult* r = PQgetResult(conn_)) PQclear(r);
      fail(what);
    }
  }
  if (PQputCopyEnd(conn_, nullptr) != 1) fail(what);
  // The COPY's own result, then the null that ends the command.
  PGresult* result = PQgetResult(conn_);
  PgResult owned(result);
  while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
  if (result == nullptr || PQresultStatus(result) != PGRES_COMMAND_OK) fail(what, result);
}

PgPool::Lease PgPool::acquire() {
  std::unique_lock lock(mutex_);
  freed_.wait(lock, [&] { return !idle_.empty() || open_ < size_; });
  while (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    if (conn->still_open()) return Lease(*this, std::move(conn));
    --open_;  // closed by the server while idle: make a new one instead
  }
  ++open_;
  lock.unlock();
  try {
    return Lease(*this, std::make_unique<PgConnection>(url_));
  } catch (...) {
    lock.lock();
    --open_;
    freed_.notify_one();
    throw;
  }
}

void PgPool::give_back(std::unique_ptr<PgConnection> conn) {
  // A connection that broke, or was left inside a transaction by an exception that escaped
  // the rollback, is not lent again.
  if (conn && (!conn->healthy() || conn->in_transaction())) conn.reset();
  std::lock_guard lock(mutex_);
  if (conn) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  freed_.notify_one();
}

PgTransaction::PgTransaction(PgConnection& conn, std::string_view what, std::string_view begin)
    : conn_(conn), what_(what) {
  conn_.exec(begin, what_);
}

PgTransaction::~PgTransaction() {
  if (!open_) return;
  // A failed rollback leaves the connection in a transaction; the pool then drops it.
  try {
    conn_.exec("ROLLBACK", what_);
  } catch (const StoreError&) {
  }
}

void PgTransaction::commit() {
  conn_.exec("COMMIT", what_);
  open_ = false;
}

}  // namespace floodgate::store
