#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "store/store.h"

namespace floodgate::store {

class PgConnection;
class PgPool;

/// The shared store: batches and items in a PostgreSQL database, reached through a small pool
/// of libpq connections. The schema is brought up to date at open (see postgres_schema.h).
///
/// Several floodgateds may share one database (and schema): with a replica id the store keeps
/// leases (see leases.h), holds the batches it inserts and writes only the batches it holds.
/// Updates in apply() that name an unknown batch or item, or a batch another replica holds, are
/// skipped (see skipped_updates()); only database failures throw.
class PostgresStore final : public Store {
 public:
  struct Options {
    size_t connections = 4;  // the pool's size: one writer at a time plus concurrent readers
    // This replica's id for work sharing; "" for none (no leases, no fencing: tools, tests).
    std::string replica_id;
    std::chrono::milliseconds lease_ttl{15000};
  };

  /// Connects to the libpq URL `url` ("postgresql://user:pass@host:port/db?sslmode=...") and
  /// migrates the schema. Throws StoreError ("cannot open PostgreSQL database at URL: reason",
  /// the password never shown).
  PostgresStore(const std::string& url, Options options);
  explicit PostgresStore(const std::string& url) : PostgresStore(url, Options{}) {}
  ~PostgresStore() override;
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

  InsertResult insert_batch(const BatchRecord& batch,
                            const std::vector<ItemRecord>& items) override;
  InsertResult insert_pending_batch(const BatchRecord& batch,
                                    const std::vector<std::string>& run_specs) override;
  void apply(const std::vector<ItemUpdate>& items,
             const std::vector<BatchUpdate>& batches) override;
  std::optional<BatchRecord> get_batch(const std::string& id) override;
  std::vector<BatchRecord> list_batches(std::optional<core::BatchState> state, int64_t after_seq,
                                        int limit) override;
  std::vector<BatchRecord> load_unfinished_batches() override;
  std::vector<ItemRecord> load_items(const std::string& batch_id, bool with_spec) override;
  std::vector<ItemRecord> list_items(const std::string& batch_id,
                                     std::optional<core::ItemState> state, int64_t after_index,
                                     int limit) override;
  std::array<int64_t, core::kItemStateCount> count_items(const std::string& batch_id) override;
  std::vector<ItemRecord> pending_page(const std::string& batch_id, int64_t after, int64_t before,
                                       int limit) override;
  std::vector<std::pair<int64_t, std::string>> load_item_specs(
      const std::string& batch_id, const std::vector<int64_t>& indexes) override;

  Leases* leases() override;

  /// The schema version of the open database (the highest row of schema_migrations).
  int schema_version();
  /// How many item and batch updates apply() skipped because their batch or item is unknown.
  int64_t skipped_updates() const { return skipped_updates_.load(std::memory_order_relaxed); }

  AppendResult append_items(const AppendRequest& request,
                            const std::vector<std::string>& run_specs) override;
  SealResult seal_batch(const std::string& batch_id) override;

 private:
  /// Applies one batch update inside apply()'s transaction; false when it changed nothing (an
  /// unknown batch, or one another replica holds).
  bool apply_batch_update(class PgConnection& conn, const BatchUpdate& u);
  /// insert_batch() from `items`, or (when null) from `run_specs` as PENDING items.
  InsertResult insert_rows(const BatchRecord& batch, const std::vector<ItemRecord>* items,
                           const std::vector<std::string>* run_specs);
  const std::string url_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<class PgLeases> leases_;  // null without a replica id
  // Writes go one at a time, as with SQLite: the engine has one writer anyway, and it keeps two
  // applies from taking row locks in different orders.
  std::mutex write_mutex_;
  std::atomic<int64_t> skipped_updates_{0};
};

}  // namespace floodgate::store
