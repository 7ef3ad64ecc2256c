#include "store/store.h"

#include <algorithm>
#include <cctype>
#include <string_view>

#include "store/database_url.h"
#include "store/postgres_store.h"
#include "store/sqlite_store.h"

namespace floodgate::store {
namespace {

constexpr std::string_view kAcceptedForms =
    "expected sqlite:///absolute/path.db, sqlite://./relative.db, sqlite://relative.db, "
    "sqlite://:memory: or postgresql://user:password@host:port/database";

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

AppendResult Store::append_items(const AppendRequest& /*request*/,
                                 const std::vector<std::string>& /*run_specs*/) {
  throw StoreError("this store does not append runs to a batch");
}

SealResult Store::seal_batch(const std::string& /*batch_id*/) {
  throw StoreError("this store does not seal batches");
}

std::unique_ptr<Store> open_store(const std::string& url, const std::string& replica_id,
                                  std::chrono::milliseconds lease_ttl) {
  if (url.empty()) throw StoreError("no database URL given; " + std::string(kAcceptedForms));
  const size_t scheme_end = url.find("://");
  const std::string scheme =
      scheme_end == std::string::npos ? std::string() : lowercase(url.substr(0, scheme_end));

  if (scheme == "sqlite") {
    const std::string path = url.substr(scheme_end + 3);
    if (path.empty()) {
      throw StoreError("database URL '" + url + "' names no file; " + std::string(kAcceptedForms));
    }
    if (path.find_first_of("?#") != std::string::npos) {
      throw StoreError("database URL '" + url +
                       "': SQLite URLs take no query or fragment (remove what follows '?' or "
                       "'#'); " +
                       std::string(kAcceptedForms));
    }
    // "sqlite:///abs" leaves "/abs"; "sqlite://./rel" and "sqlite://rel" leave a path relative
    // to the working directory; ":memory:" is SQLite's own name for a private database.
    return std::make_unique<SqliteStore>(path);
  }
  if (scheme == "postgresql" || scheme == "postgres") {
    // libpq reads the URL itself, so its options (sslmode, connect_timeout, ...) pass through;
    // it knows the scheme only in lower case.
    PostgresStore::Options options;
    options.replica_id = replica_id;
    options.lease_ttl = lease_ttl;
    return std::make_unique<PostgresStore>(scheme + url.substr(scheme_end), options);
  }
  throw StoreError("unsupported database URL '" + redact_database_url(url) + "'; " +
                   std::string(kAcceptedForms));
}

}  // namespace floodgate::store
