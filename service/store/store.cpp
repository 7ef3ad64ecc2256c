#include "store/store.h"

#include <algorithm>
#include <cctype>
#include <string_view>

#include "store/sqlite_store.h"

namespace floodgate::store {
namespace {

constexpr std::string_view kAcceptedForms =
    "expected sqlite:///absolute/path.db, sqlite://./relative.db, sqlite://relative.db, "
    "sqlite://:memory: or postgresql://user@host/database";

// Hides the password of "scheme://user:password@host/..." so it never lands in a log line.
std::string redact(std::string_view url) {
  const size_t authority = url.find("://");
  if (authority == std::string_view::npos) return std::string(url);
  const size_t start = authority + 3;
  const size_t end = std::min(url.find_first_of("/?#", start), url.size());
  const size_t at = url.rfind('@', end == 0 ? 0 : end - 1);
  if (at == std::string_view::npos || at < start) return std::string(url);
  const size_t colon = url.find(':', start);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  std::string out(url.substr(0, colon + 1));
  out += "***";
  out += url.substr(at);
  return out;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

std::unique_ptr<Store> open_store(const std::string& url) {
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
    throw StoreError("PostgreSQL store is not built in yet (database URL '" + redact(url) +
                     "'); use a sqlite:// URL for now");
  }
  throw StoreError("unsupported database URL '" + redact(url) + "'; " +
                   std::string(kAcceptedForms));
}

}  // namespace floodgate::store
