#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/sqlite_schema.h"
#include "store/store.h"

namespace floodgate::store {

class SqliteConnection;
class WalCheckpointer;

/// The embedded store: one SQLite file in WAL mode, one writer connection plus one read-only
/// connection so that reads never wait behind a long insert, and a background thread that
/// checkpoints the WAL so that commits never wait for it.
///
/// Limits follow SQLite: `limit` < 0 means no limit. Updates in apply() that name an unknown
/// batch or item are skipped (see skipped_updates()); only database failures throw.
class SqliteStore final : public Store {
 public:
  /// Schema version this build writes (kept in PRAGMA user_version, which decides; each
  /// migration also leaves a row in the schema_migrations table, for people and tools).
  static constexpr int kSchemaVersion = kSqliteSchemaVersion;

  /// Opens or creates the database file at `path` (":memory:" for a private in-memory
  /// database) and brings its schema up to date. The parent directory must exist.
  /// Throws StoreError ("cannot open SQLite database at PATH: reason").
  explicit SqliteStore(const std::string& path);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

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

  /// How many item and batch updates apply() skipped because their batch or item is unknown.
  int64_t skipped_updates() const { return skipped_updates_.load(std::memory_order_relaxed); }

  AppendResult append_items(const AppendRequest& request,
                            const std::vector<std::string>& run_specs) override;
  SealResult seal_batch(const std::string& batch_id) override;

 private:
  /// insert_batch() from `items`, or (when null) from `run_specs` as PENDING items.
  InsertResult insert_rows(const BatchRecord& batch, const std::vector<ItemRecord>* items,
                           const std::vector<std::string>* run_specs);
  void configure_writer();
  void migrate();
  /// The seq of batch `id` as seen by the writer, or nullopt; caller holds the writer's mutex.
  std::optional<int64_t> writer_seq_of(const std::string& id);
  /// The connection for reads: the read-only one, or the writer for ":memory:".
  SqliteConnection& reader();

  std::unique_ptr<SqliteConnection> writer_;
  std::unique_ptr<SqliteConnection> reader_;            // null for ":memory:"
  std::unique_ptr<WalCheckpointer> checkpointer_;       // null for ":memory:"
  std::unordered_map<std::string, int64_t> seq_cache_;  // guarded by writer_->mutex()
  std::atomic<int64_t> skipped_updates_{0};
};

}  // namespace floodgate::store
