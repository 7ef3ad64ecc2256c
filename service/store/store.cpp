#include "store/store.h"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <unordered_map>
#include <utility>

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

InsertResult Store::insert_pending_batch(const BatchRecord& batch,
                                         const std::vector<std::string>& run_specs) {
  std::vector<ItemRecord> items(run_specs.size());
  for (size_t i = 0; i < items.size(); ++i) {
    items[i].index = static_cast<int64_t>(i);
    items[i].spec_json = run_specs[i];
  }
  return insert_batch(batch, items);
}

namespace {

// Puts the specs read for `items` (by index) into them.
void add_specs(Store& store, const std::string& batch_id, std::vector<ItemRecord>& items) {
  std::vector<int64_t> indexes;
  indexes.reserve(items.size());
  for (const auto& item : items) indexes.push_back(item.index);
  std::unordered_map<int64_t, std::string> specs;
  for (auto& [index, text] : store.load_item_specs(batch_id, indexes)) {
    specs.emplace(index, std::move(text));
  }
  for (auto& item : items) {
    if (auto it = specs.find(item.index); it != specs.end()) item.spec_json = std::move(it->second);
  }
}

}  // namespace

std::vector<ItemRecord> Store::items_in_states(const std::string& batch_id,
                                               const std::vector<core::ItemState>& states,
                                               bool with_spec) {
  constexpr int kPage = 10000;
  std::vector<ItemRecord> out;
  for (const auto state : states) {
    int64_t after = -1;
    while (true) {
      auto page = list_items(batch_id, state, after, kPage);
      if (page.empty()) break;
      after = page.back().index;
      const bool last = static_cast<int>(page.size()) < kPage;
      if (with_spec) add_specs(*this, batch_id, page);
      out.insert(out.end(), std::make_move_iterator(page.begin()),
                 std::make_move_iterator(page.end()));
      if (last) break;
    }
  }
  std::sort(out.begin(), out.end(),
            [](const ItemRecord& x, const ItemRecord& y) { return x.index < y.index; });
  return out;
}

std::vector<ItemRecord> Store::pending_page(const std::string& batch_id, int64_t after,
                                            int64_t before, int limit) {
  auto page = list_items(batch_id, core::ItemState::kPending, after, limit);
  while (!page.empty() && page.back().index >= before) page.pop_back();
  add_specs(*this, batch_id, page);
  return page;
}

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
