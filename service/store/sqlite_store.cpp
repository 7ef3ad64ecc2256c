#include "store/sqlite_store.h"

#include <array>
#include <charconv>
#include <mutex>
#include <string_view>

#include "store/append_rules.h"
#include "store/queries.h"
#include "store/sqlite_connection.h"
#include "store/sqlite_schema.h"
#include "store/wal_checkpointer.h"

namespace floodgate::store {
namespace {

constexpr std::string_view kMemory = ":memory:";

// "Floo": tells a floodgate database from another application's SQLite file.
constexpr int kApplicationId = 0x466C6F6F;

// Leaves the WAL file at most this big after a checkpoint; a 100k-item batch would otherwise
// leave a WAL of tens of MB on disk for good.
constexpr const char* kJournalSizeLimit = "PRAGMA journal_size_limit = 67108864";

// Page cache of the writer, at most 64 MiB. With SQLite's default of 2 MB the insert of a 100k-item
// batch (about 25 MB of pages) spills pages to the WAL in mid-transaction and reads them back;
// the larger cache cut its CPU time by about a third.
constexpr const char* kWriterCacheSize = "PRAGMA cache_size = -65536";

// The seq cache only saves an index probe per update; bounding it keeps a long-running
// service from holding every batch id it ever saw.
constexpr size_t kSeqCacheMax = 4096;

// The queries the PostgreSQL store runs too are in queries.cpp; these are SQLite's own.
constexpr std::string_view kInsertItem =
    "INSERT INTO items (batch_seq, idx, state, attempts, flow_run_id, flow_run_state, "
    "last_error, detail, spec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
constexpr std::string_view kSeqOf = "SELECT seq FROM batches WHERE id = ?1";
constexpr std::string_view kUpdateItem =
    "UPDATE items SET state = ?3, attempts = ?4, flow_run_id = ?5, flow_run_state = ?6, "
    "last_error = ?7, detail = ?8 WHERE batch_seq = ?1 AND idx = ?2";
constexpr std::string_view kItemSpec = "SELECT spec FROM items WHERE batch_seq = ?1 AND idx = ?2";

std::string_view sql(Query query) { return query_text(SqlDialect::kSqlite, query); }

BatchRecord read_batch(const Statement& stmt) {
  BatchRecord b;
  b.seq = stmt.column_int64(0);
  b.id = stmt.column_text(1);
  b.spec_json = stmt.column_text(2);
  b.state = stored_batch_state(stmt.column_text(3), "batch " + b.id);
  b.total = stmt.column_int64(4);
  b.created_at_ms = stmt.column_int64(5);
  b.updated_at_ms = stmt.column_int64(6);
  b.finished_at_ms = stmt.column_int64(7);
  b.version = stmt.column_int64(8);
  b.idempotency_key = stmt.column_optional_text(9);
  b.submitted_by = stmt.column_text(10);
  b.sealed = stmt.column_int64(11) != 0;
  return b;
}

ItemRecord read_item(const Statement& stmt, const std::string& batch_id, bool with_spec) {
  ItemRecord item;
  item.index = stmt.column_int64(0);
  const std::string state = stmt.column_text(1);
  const auto parsed = core::parse_item_state(state);
  if (!parsed) {
    throw StoreError("item " + std::to_string(item.index) + " of batch " + batch_id +
                     " has unknown state '" + state + "' stored");
  }
  item.state = *parsed;
  item.attempts = static_cast<int32_t>(stmt.column_int64(2));
  item.flow_run_id = stmt.column_text(3);
  item.flow_run_state = stmt.column_text(4);
  item.last_error = stmt.column_text(5);
  item.detail_json = stmt.column_text(6);
  if (with_spec) item.spec_json = stmt.column_text(7);
  return item;
}

int parse_pragma_int(const std::string& text, std::string_view pragma) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw StoreError("unexpected value '" + text + "' of PRAGMA " + std::string(pragma));
  }
  return value;
}

// Durability. In WAL mode, synchronous=NORMAL syncs the WAL only at checkpoints: a commit
// survives the process dying (kill -9, OOM kill, crash) because it already sits in the OS page
// cache, but not a power loss or kernel panic. That is the right trade for item progress
// (apply), which is frequent, and whose loss on power failure is harmless: relaunches reuse the
// deterministic idempotency keys and tracking re-reads the children's states from Prefect.
// An accepted batch is different: the API answers 201 only after insert_batch returns and
// the client then forgets the request, so insert_batch commits with synchronous=FULL (one
// fsync of the WAL, which also covers every earlier NORMAL commit): FullSyncScope.
}  // namespace

SqliteStore::SqliteStore(const std::string& path) {
  const bool in_memory = path == kMemory;
  writer_ = std::make_unique<SqliteConnection>(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  try {
    // SQLite quietly opens a file it may not write (permissions, an immutable or read-only
    // mounted file) read-only; floodgate would then accept batches it can never record.
    if (sqlite3_db_readonly(writer_->handle(), "main") == 1) {
      throw StoreError(
          "the database file is read-only (check its permissions, its directory's, whether it "
          "is immutable (lsattr) and whether its file system is mounted read-only); floodgate "
          "needs to write it");
    }
    configure_writer();
    migrate();
    if (!in_memory) {
      // A second connection on a private in-memory database would see another, empty
      // database, so ":memory:" reads go through the writer.
      reader_ = std::make_unique<SqliteConnection>(path, SQLITE_OPEN_READWRITE);
      reader_->exec("PRAGMA query_only = ON", "making the read connection read-only");
      checkpointer_ = std::make_unique<WalCheckpointer>(*writer_, path);
    }
  } catch (const StoreError& e) {
    throw StoreError("cannot open SQLite database at " + path + ": " + e.what());
  }
}

SqliteStore::~SqliteStore() {
  // The writer closes last, so it runs the final checkpoint and removes the WAL file.
  checkpointer_.reset();
  reader_.reset();
  writer_.reset();
}

void SqliteStore::configure_writer() {
  SqliteConnection& db = *writer_;
  const std::string mode = db.query_text("PRAGMA journal_mode = WAL", "switching to WAL mode");
  const std::string expected = db.path() == kMemory ? "memory" : "wal";
  if (mode != expected) {
    throw StoreError("journal_mode is '" + mode + "' instead of '" + expected +
                     "' (WAL needs shared memory: is the file on a network file system?)");
  }
  db.exec("PRAGMA synchronous = NORMAL", "setting synchronous = NORMAL");
  db.exec("PRAGMA foreign_keys = ON", "enabling foreign keys");
  db.exec(kJournalSizeLimit, "setting journal_size_limit");
  db.exec(kWriterCacheSize, "setting cache_size");
}

void SqliteStore::migrate() {
  SqliteConnection& db = *writer_;
  // Immediate: two processes opening a new file at once must not both create the schema.
  Transaction tx(db, Transaction::Mode::kImmediate, "checking the schema version");
  const int version = parse_pragma_int(db.query_text("PRAGMA user_version", "reading user_version"),
                                       "user_version");
  const int app_id = parse_pragma_int(
      db.query_text("PRAGMA application_id", "reading application_id"), "application_id");
  if (version == 0) {
    const std::string tables =
        db.query_text("SELECT count(*) FROM sqlite_schema", "reading the schema");
    if (tables != "0") {
      throw StoreError("it is not a floodgate database: it holds tables of another program");
    }
  } else if (app_id != kApplicationId) {
    throw StoreError("it is not a floodgate database (application_id " + std::to_string(app_id) +
                     ")");
  }
  if (version > kSchemaVersion) {
    throw StoreError("its schema version " + std::to_string(version) +
                     " is newer than this floodgate supports (" + std::to_string(kSchemaVersion) +
                     "); run a newer floodgate");
  }
  if (version == kSchemaVersion) return;  // the destructor ends the transaction
  for (int v = version; v < kSchemaVersion; ++v) {
    const std::string step = "upgrading the schema to version " + std::to_string(v + 1);
    db.exec(kSqliteMigrations[static_cast<size_t>(v)], step);
    if (v + 1 < 3) continue;
    Statement record(db,
                     "INSERT INTO schema_migrations (version, name, applied_at) "
                     "VALUES (?1, ?2, CAST(strftime('%s', 'now') AS INTEGER) * 1000)",
                     step);
    record.bind(1, int64_t{v + 1});
    record.bind(2, std::string_view(kSqliteMigrationNames[static_cast<size_t>(v - 2)]));
    record.run();
  }
  // PRAGMA takes no bound parameters; both values are our own integers.
  db.exec(("PRAGMA application_id = " + std::to_string(kApplicationId)).c_str(),
          "setting application_id");
  db.exec(("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str(),
          "setting user_version");
  tx.commit();
}

SqliteConnection& SqliteStore::reader() { return reader_ ? *reader_ : *writer_; }

std::optional<int64_t> SqliteStore::writer_seq_of(const std::string& id) {
  if (auto it = seq_cache_.find(id); it != seq_cache_.end()) return it->second;
  Statement stmt(*writer_, kSeqOf, "looking up a batch");
  stmt.bind(1, id);
  if (!stmt.step()) return std::nullopt;
  const int64_t seq = stmt.column_int64(0);
  if (seq_cache_.size() >= kSeqCacheMax) seq_cache_.clear();
  seq_cache_.emplace(id, seq);
  return seq;
}

InsertResult SqliteStore::insert_batch(const BatchRecord& batch,
                                       const std::vector<ItemRecord>& items) {
  return insert_rows(batch, &items, nullptr);
}

InsertResult SqliteStore::insert_pending_batch(const BatchRecord& batch,
                                               const std::vector<std::string>& run_specs) {
  return insert_rows(batch, nullptr, &run_specs);
}

InsertResult SqliteStore::insert_rows(const BatchRecord& batch,
                                      const std::vector<ItemRecord>* items,
                                      const std::vector<std::string>* run_specs) {
  std::lock_guard lock(writer_->mutex());
  SqliteConnection& db = *writer_;
  const std::string what = "inserting batch " + batch.id;
  FullSyncScope full_sync(db);
  Transaction tx(db, Transaction::Mode::kImmediate, what);

  if (batch.idempotency_key) {
    Statement by_key(db, sql(Query::kBatchByKey), what);
    by_key.bind(1, *batch.idempotency_key);
    if (by_key.step()) return InsertResult{false, by_key.column_text(0)};
  }

  Statement insert(db, sql(Query::kInsertBatch), what);
  insert.bind(1, batch.id);
  insert.bind(2, batch.spec_json);
  insert.bind(3, core::to_string(batch.state));
  insert.bind(4, batch.total);
  insert.bind(5, batch.created_at_ms);
  insert.bind(6, batch.updated_at_ms);
  insert.bind(7, batch.finished_at_ms);
  insert.bind(8, batch.version);
  insert.bind(9, batch.idempotency_key);
  insert.bind(10, batch.submitted_by);
  insert.bind(11, int64_t{batch.sealed ? 1 : 0});
  insert.run();
  const int64_t seq = sqlite3_last_insert_rowid(db.handle());

  Statement insert_item(db, kInsertItem, what);
  insert_item.bind(1, seq);
  static const ItemRecord kPendingItem;
  const size_t n = items != nullptr ? items->size() : run_specs->size();
  for (size_t i = 0; i < n; ++i) {
    const ItemRecord& item = items != nullptr ? (*items)[i] : kPendingItem;
    insert_item.bind(2, items != nullptr ? item.index : static_cast<int64_t>(i));
    insert_item.bind(3, core::to_string(item.state));
    insert_item.bind(4, int64_t{item.attempts});
    insert_item.bind(5, item.flow_run_id);
    insert_item.bind(6, item.flow_run_state);
    insert_item.bind(7, item.last_error);
    insert_item.bind(8, item.detail_json);
    insert_item.bind(9, items != nullptr ? item.spec_json : (*run_specs)[i]);
    insert_item.run();
  }
  tx.commit();

  if (seq_cache_.size() >= kSeqCacheMax) seq_cache_.clear();
  seq_cache_.insert_or_assign(batch.id, seq);
  return InsertResult{true, batch.id};
}

void SqliteStore::apply(const std::vector<ItemUpdate>& items,
                        const std::vector<BatchUpdate>& batches) {
  if (items.empty() && batches.empty()) return;
  std::lock_guard lock(writer_->mutex());
  SqliteConnection& db = *writer_;
  Transaction tx(db, Transaction::Mode::kImmediate, "applying updates");
  int64_t skipped = 0;

  if (!items.empty()) {
    Statement update(db, kUpdateItem, "updating items");
    // Updates usually come grouped by batch; skip the map lookup while the batch repeats.
    const std::string* last_id = nullptr;
    std::optional<int64_t> seq;
    for (const ItemUpdate& u : items) {
      if (last_id == nullptr || *last_id != u.batch_id) {
        seq = writer_seq_of(u.batch_id);
        last_id = &u.batch_id;
      }
      if (!seq) {
        ++skipped;
        continue;
      }
      update.bind(1, *seq);
      update.bind(2, u.index);
      update.bind(3, core::to_string(u.state));
      update.bind(4, int64_t{u.attempts});
      update.bind(5, u.flow_run_id);
      update.bind(6, u.flow_run_state);
      update.bind(7, u.last_error);
      update.bind(8, u.detail_json);
      update.step();
      if (update.changes() == 0) ++skipped;
      update.reset();
    }
  }

  if (!batches.empty()) {
    Statement update(db, sql(Query::kUpdateBatch), "updating batches");
    for (const BatchUpdate& u : batches) {
      update.bind(1, u.id);
      update.bind(2, core::to_string(u.state));
      update.bind(3, u.updated_at_ms);
      update.bind(4, u.finished_at_ms);
      update.bind(5, u.version);
      update.bind(6, u.spec_json);
      update.step();
      const bool changed = update.changes() > 0;
      if (!changed) ++skipped;
      update.reset();
      if (changed && u.skip_pending_from) {
        Statement skip(db, sql(Query::kSkipPendingFrom), "skipping items");
        skip.bind(1, u.id);
        skip.bind(2, *u.skip_pending_from);
        skip.run();
      }
    }
  }

  tx.commit();
  if (skipped > 0) skipped_updates_.fetch_add(skipped, std::memory_order_relaxed);
}

std::optional<BatchRecord> SqliteStore::get_batch(const std::string& id) {
  SqliteConnection& db = reader();
  std::lock_guard lock(db.mutex());
  Statement stmt(db, sql(Query::kGetBatch), "reading a batch");
  stmt.bind(1, id);
  if (!stmt.step()) return std::nullopt;
  return read_batch(stmt);
}

std::vector<BatchRecord> SqliteStore::list_batches(std::optional<core::BatchState> state,
                                                   int64_t after_seq, int limit) {
  SqliteConnection& db = reader();
  std::lock_guard lock(db.mutex());
  Statement stmt(db, sql(state ? Query::kListBatchesInState : Query::kListBatches),
                 "listing batches");
  stmt.bind(1, after_seq);
  stmt.bind(2, int64_t{limit});
  if (state) stmt.bind(3, core::to_string(*state));
  std::vector<BatchRecord> result;
  while (stmt.step()) result.push_back(read_batch(stmt));
  return result;
}

std::vector<BatchRecord> SqliteStore::load_unfinished_batches() {
  SqliteConnection& db = reader();
  std::lock_guard lock(db.mutex());
  Statement stmt(db, sql(Query::kUnfinishedBatches), "loading unfinished batches");
  std::vector<BatchRecord> result;
  while (stmt.step()) result.push_back(read_batch(stmt));
  return result;
}

std::vector<ItemRecord> SqliteStore::load_items(const std::string& batch_id, bool with_spec) {
  SqliteConnection& db = reader();
  std::lock_guard lock(db.mutex());
  Statement stmt(db, sql(with_spec ? Query::kLoadItemsWithSpec : Query::kLoadItems),
                 "loading items");
  stmt.bind(1, batch_id);
  std::vector<ItemRecord> result;
  while (stmt.step()) result.push_back(read_item(stmt, batch_id, with_spec));
  return result;
}

std::vector<ItemRecord> SqliteStore::list_items(const std::string& batch_id,
                                                std::optional<core::ItemState> state,
                                                int64_t after_index, int limit) {
  SqliteConnection& db = reader();
  std::lock_guard lock(db.mutex());
  Statement stmt(db, sql(state ? Query::kListItemsInState : Query::kListItems), "listing items");
  stmt.bind(1, batch_id);
  stmt.bind(2, after_index);
  stmt.bind(3, int64_t{limit});
  if (state) stmt.bind(4, core::to_string(*state));
  std::vector<ItemRecord> result;
  while (stmt.step()) result.push_back(read_item(stmt, batch_id, false));
  return result;
}

std::vector<ItemRecord> SqliteStore::pending_page(const std::string& batch_id, int64_t after,
                                                  int64_t before, int limit) {
  SqliteConnection& db = reader();
  std::lock_guard lock(db.mutex());
  Statement stmt(db, sql(Query::kPendingPage), "reading items to launch");
  stmt.bind(1, batch_id);
  stmt.bind(2, after);
  stmt.bind(3, before);
  stmt.bind(4, int64_t{limit});
  std::vector<ItemRecord> result;
  while (stmt.step()) result.push_back(read_item(stmt, batch_id, true));
  return result;
}

std::array<int64_t, core::kItemStateCount> SqliteStore::count_items(const std::string& batch_id) {
  std::array<int64_t, core::kItemStateCount> counts{};
  SqliteConnection& db = reader();
  std::lock_guard lock(db.mutex());
  Statement stmt(db, sql(Query::kCountItems), "counting items");
  stmt.bind(1, batch_id);
  while (stmt.step()) {
    const std::string state = stmt.column_text(0);
    const auto parsed = core::parse_item_state(state);
    if (!parsed) {
      throw StoreError("batch " + batch_id + " has items in unknown state '" + state + "'");
    }
    counts[static_cast<size_t>(*parsed)] = stmt.column_int64(1);
  }
  return counts;
}

std::vector<std::pair<int64_t, std::string>> SqliteStore::load_item_specs(
    const std::string& batch_id, const std::vector<int64_t>& indexes) {
  std::vector<std::pair<int64_t, std::string>> result;
  if (indexes.empty()) return result;
  SqliteConnection& db = reader();
  std::lock_guard lock(db.mutex());
  // One snapshot for the seq lookup and every spec read.
  Transaction tx(db, Transaction::Mode::kDeferred, "loading item specs");
  int64_t seq = 0;
  {
    Statement seq_of(db, kSeqOf, "loading item specs");
    seq_of.bind(1, batch_id);
    if (!seq_of.step()) return result;
    seq = seq_of.column_int64(0);
  }
  Statement stmt(db, kItemSpec, "loading item specs");
  stmt.bind(1, seq);
  result.reserve(indexes.size());
  for (const int64_t index : indexes) {
    stmt.bind(2, index);
    if (stmt.step()) result.emplace_back(index, stmt.column_text(0));
    stmt.reset();
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Chunked appends

namespace {

constexpr std::string_view kBatchForAppend =
    "SELECT seq, state, total, sealed FROM batches WHERE id = ?1";
constexpr std::string_view kRecordChunk =
    "INSERT INTO batch_chunks (batch_seq, idempotency_key, first_index, count, body_hash, "
    "created_at) VALUES (?1, ?2, ?3, ?4, ?5, CAST(strftime('%s', 'now') AS INTEGER) * 1000)";
constexpr std::string_view kSealedOf = "SELECT sealed FROM batches WHERE id = ?1";

}  // namespace

// The batch and the chunk under the request's key, as an append finds them; nullopt for an
// unknown batch. `seq` gets the batch's seq.
static std::optional<AppendFound> read_for_append(SqliteConnection& db,
                                                  const AppendRequest& request,
                                                  const std::string& what, int64_t& seq) {
  AppendFound found;
  {
    Statement batch(db, kBatchForAppend, what);
    batch.bind(1, request.batch_id);
    if (!batch.step()) return std::nullopt;
    seq = batch.column_int64(0);
    found = AppendFound(stored_batch_state(batch.column_text(1), what), batch.column_int64(3) != 0,
                        batch.column_int64(2));
  }
  if (request.idempotency_key) {
    Statement chunk(db, sql(Query::kChunkByKey), what);
    chunk.bind(1, seq);
    chunk.bind(2, *request.idempotency_key);
    if (chunk.step()) {
      found.chunk_found = true;
      found.chunk_first = chunk.column_int64(0);
      found.chunk_count = chunk.column_int64(1);
      found.chunk_hash = chunk.column_text(2);
    }
  }
  return found;
}

AppendResult SqliteStore::append_items(const AppendRequest& request,
                                       const std::vector<std::string>& run_specs) {
  std::lock_guard lock(writer_->mutex());
  SqliteConnection& db = *writer_;
  const std::string what = "appending runs to batch " + request.batch_id;
  // Accepted runs, like an accepted batch: the API answers 201 only after this returns.
  FullSyncScope full_sync(db);
  Transaction tx(db, Transaction::Mode::kImmediate, what);

  int64_t seq = 0;
  const std::optional<AppendFound> found = read_for_append(db, request, what, seq);
  if (!found) return AppendResult{};  // kNotFound
  if (auto settled = settle_append(request, *found)) return *settled;
  AppendResult result;
  result.total = found->total;
  result.first_index = result.total;
  result.count = static_cast<int64_t>(run_specs.size());
  Statement insert_item(db, kInsertItem, what);
  insert_item.bind(1, seq);
  const std::string pending(core::to_string(core::ItemState::kPending));  // bound, not copied
  insert_item.bind(3, pending);
  insert_item.bind(4, int64_t{0});
  for (int col = 5; col <= 8; ++col) insert_item.bind(col, std::string_view());  // none yet
  for (size_t i = 0; i < run_specs.size(); ++i) {
    insert_item.bind(2, result.first_index + static_cast<int64_t>(i));
    insert_item.bind(9, run_specs[i]);
    insert_item.run();
  }
  {
    Statement grow(db, sql(Query::kGrowTotal), what);
    grow.bind(1, seq);
    grow.bind(2, result.count);
    grow.run();
  }
  if (request.idempotency_key) {
    Statement record(db, kRecordChunk, what);
    record.bind(1, seq);
    record.bind(2, *request.idempotency_key);
    record.bind(3, result.first_index);
    record.bind(4, result.count);
    record.bind(5, request.body_hash);
    record.run();
  }
  tx.commit();
  result.total += result.count;
  result.outcome = AppendOutcome::kAppended;
  return result;
}

SealResult SqliteStore::seal_batch(const std::string& batch_id) {
  std::lock_guard lock(writer_->mutex());
  SqliteConnection& db = *writer_;
  const std::string what = "sealing batch " + batch_id;
  FullSyncScope full_sync(db);
  Transaction tx(db, Transaction::Mode::kImmediate, what);
  {
    Statement sealed(db, kSealedOf, what);
    sealed.bind(1, batch_id);
    if (!sealed.step()) return SealResult::kNotFound;
    if (sealed.column_int64(0) != 0) return SealResult::kAlreadySealed;
  }
  Statement seal(db, sql(Query::kSeal), what);
  seal.bind(1, batch_id);
  seal.run();
  tx.commit();
  return SealResult::kSealed;
}

}  // namespace floodgate::store
