// Behaviour that needs a real file: WAL, durability across close, kill -9, several connections,
// schema versions, and the timing of large batches.

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "store/sqlite_store.h"
#include "store_test_support.h"

namespace floodgate::store {
namespace {

using core::BatchState;
using core::ItemState;
using testing::make_batch;
using testing::make_items;
using testing::Stopwatch;
using testing::TempDir;

// Direct access with the C API, as an operator would with the sqlite3 shell.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) ADD_FAILURE() << sqlite3_errmsg(db_);
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void exec(const std::string& sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << (error ? error : "?");
    }
    sqlite3_free(error);
  }
  // Every row's columns joined with '|', rows joined with '\n'.
  std::string query(const std::string& sql) {
    std::string out;
    char* error = nullptr;
    auto collect = [](void* arg, int n, char** values, char**) {
      auto* text = static_cast<std::string*>(arg);
      if (!text->empty()) *text += '\n';
      for (int i = 0; i < n; ++i) {
        if (i > 0) *text += '|';
        *text += values[i] ? values[i] : "NULL";
      }
      return 0;
    };
    if (sqlite3_exec(db_, sql.c_str(), collect, &out, &error) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << (error ? error : "?");
    }
    sqlite3_free(error);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

TEST(SqliteFileDeathTest, KillDashNineLosesNothingAccepted) {
  TempDir dir;
  const std::string path = dir.file("killed.db");
  auto first = make_items(1000);
  first[5].flow_run_id = "run-5";
  EXPECT_EXIT(
      {
        SqliteStore store(path);
        store.insert_batch(make_batch("accepted", 1000, "key"), first);
        ItemUpdate u;
        u.batch_id = "accepted";
        u.index = 6;
        u.state = ItemState::kLaunched;
        u.flow_run_id = "run-6";
        store.apply({u}, {});
        // No destructor, no checkpoint: the commits sit only in the WAL.
        raise(SIGKILL);
      },
      ::testing::KilledBySignal(SIGKILL), "");

  SqliteStore reopened(path);
  const auto batch = reopened.get_batch("accepted");
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->idempotency_key, std::optional<std::string>("key"));
  const auto items = reopened.load_items("accepted", true);
  ASSERT_EQ(items.size(), 1000u);
  EXPECT_EQ(items[5].flow_run_id, "run-5");
  EXPECT_EQ(items[6].flow_run_id, "run-6");
  EXPECT_EQ(items[6].state, ItemState::kLaunched);
  EXPECT_EQ(items[999].spec_json, first[999].spec_json);
  EXPECT_FALSE(reopened.insert_batch(make_batch("again", 0, "key"), {}).inserted);
}

TEST(SqliteFileTest, UsesWalJournal) {
  TempDir dir;
  SqliteStore store(dir.file("wal.db"));
  store.insert_batch(make_batch("b"), make_items(10));
  EXPECT_TRUE(std::filesystem::exists(dir.file("wal.db-wal")));
  EXPECT_EQ(RawDb(dir.file("wal.db")).query("PRAGMA journal_mode"), "wal");
  // The constructor refuses a database in any journal mode but the one it asked for.
  EXPECT_NO_THROW(SqliteStore(":memory:"));
}

TEST(SqliteFileTest, DataOutlivesTheStore) {
  TempDir dir;
  const std::string path = dir.file("durable.db");
  const auto items = make_items(50);
  int64_t seq = 0;
  {
    SqliteStore store(path);
    auto b = make_batch("b", 50, "k");
    b.state = BatchState::kRunning;
    store.insert_batch(b, items);
    ItemUpdate u;
    u.batch_id = "b";
    u.index = 49;
    u.state = ItemState::kCrashed;
    u.attempts = 2;
    u.flow_run_id = "r49";
    u.flow_run_state = "Crashed";
    u.last_error = "infrastructure failed";
    u.detail_json = R"({"earlier_runs":["r48"]})";
    BatchUpdate bu;
    bu.id = "b";
    bu.state = BatchState::kFailed;
    bu.updated_at_ms = 5;
    bu.finished_at_ms = 6;
    bu.version = 9;
    bu.spec_json = R"({"changed":true})";
    store.apply({u}, {bu});
    seq = store.get_batch("b")->seq;
  }
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));  // checkpointed on close

  SqliteStore store(path);
  const auto b = store.get_batch("b");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->seq, seq);
  EXPECT_EQ(b->state, BatchState::kFailed);
  EXPECT_EQ(b->spec_json, R"({"changed":true})");
  EXPECT_EQ(b->total, 50);
  EXPECT_EQ(b->updated_at_ms, 5);
  EXPECT_EQ(b->finished_at_ms, 6);
  EXPECT_EQ(b->version, 9);
  const auto got = store.load_items("b", true);
  ASSERT_EQ(got.size(), 50u);
  EXPECT_EQ(got[49].state, ItemState::kCrashed);
  EXPECT_EQ(got[49].attempts, 2);
  EXPECT_EQ(got[49].flow_run_id, "r49");
  EXPECT_EQ(got[49].flow_run_state, "Crashed");
  EXPECT_EQ(got[49].last_error, "infrastructure failed");
  EXPECT_EQ(got[49].detail_json, R"({"earlier_runs":["r48"]})");
  EXPECT_EQ(got[49].spec_json, items[49].spec_json);
  EXPECT_FALSE(store.insert_batch(make_batch("b2", 0, "k"), {}).inserted);
  // seq keeps growing after a reopen (AUTOINCREMENT never reuses).
  store.insert_batch(make_batch("later"), {});
  EXPECT_GT(store.get_batch("later")->seq, seq);
}

TEST(SqliteFileTest, WalIsCheckpointedInTheBackground) {
  TempDir dir;
  const std::string path = dir.file("ckpt.db");
  SqliteStore store(path);
  store.insert_batch(make_batch("b", 30'000), make_items(30'000));
  // The commit leaves the pages in the WAL; only a checkpoint copies them into the file.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::filesystem::file_size(path) < 1'000'000 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(std::filesystem::file_size(path), 1'000'000u) << "the WAL was never checkpointed";
}

TEST(SqliteFileTest, TwoStoresOnOneFileInsertOneKeyOnce) {
  // Two stores on one file stand for two processes: only SQLite's locking keeps them apart.
  TempDir dir;
  SqliteStore a(dir.file("shared.db"));
  SqliteStore b(dir.file("shared.db"));
  for (int round = 0; round < 10; ++round) {
    const std::string key = "k" + std::to_string(round);
    InsertResult ra;
    InsertResult rb;
    std::thread ta([&] { ra = a.insert_batch(make_batch("a" + key, 200, key), make_items(200)); });
    std::thread tb([&] { rb = b.insert_batch(make_batch("b" + key, 200, key), make_items(200)); });
    ta.join();
    tb.join();
    EXPECT_NE(ra.inserted, rb.inserted) << "round " << round;
    EXPECT_EQ(ra.batch_id, rb.batch_id);
    // Each sees the other's commit at once.
    EXPECT_TRUE(a.get_batch(ra.batch_id).has_value());
    EXPECT_TRUE(b.get_batch(ra.batch_id).has_value());
  }
}

TEST(SqliteFileTest, StatesAreStoredByName) {
  TempDir dir;
  const std::string path = dir.file("readable.db");
  {
    SqliteStore store(path);
    auto b = make_batch("b", 2);
    b.state = BatchState::kRunning;
    store.insert_batch(b, make_items(2));
    ItemUpdate u;
    u.batch_id = "b";
    u.index = 1;
    u.state = ItemState::kRetryWait;
    store.apply({u}, {});
  }
  RawDb raw(path);
  EXPECT_EQ(raw.query("SELECT id, state FROM batches"), "b|RUNNING");
  EXPECT_EQ(raw.query("SELECT idx, state FROM items ORDER BY idx"), "0|PENDING\n1|RETRY_WAIT");
  EXPECT_EQ(raw.query("PRAGMA user_version"), std::to_string(SqliteStore::kSchemaVersion));
}

TEST(SqliteFileTest, StateFilteredListingUsesTheStateIndex) {
  TempDir dir;
  const std::string path = dir.file("plan.db");
  SqliteStore store(path);
  RawDb raw(path);
  const std::string plan = raw.query(
      "EXPLAIN QUERY PLAN SELECT idx FROM items WHERE batch_seq = 1 AND state = 'FAILED' "
      "AND idx > 5 ORDER BY idx LIMIT 10");
  EXPECT_NE(plan.find("items_by_state"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;  // no sort step
}

TEST(SqliteFileTest, CountingItemsReadsOnlyTheStateIndex) {
  TempDir dir;
  const std::string path = dir.file("plan.db");
  SqliteStore store(path);
  RawDb raw(path);
  const std::string plan = raw.query(
      "EXPLAIN QUERY PLAN SELECT state, count(*) FROM items WHERE batch_seq = 1 GROUP BY state");
  EXPECT_NE(plan.find("COVERING INDEX items_by_state"), std::string::npos) << plan;
}

TEST(SqliteFileTest, SchemaVersionIsCheckedOnOpen) {
  TempDir dir;
  const std::string path = dir.file("versions.db");
  { SqliteStore created(path); }
  EXPECT_EQ(RawDb(path).query("PRAGMA user_version"), std::to_string(SqliteStore::kSchemaVersion));
  RawDb(path).exec("PRAGMA user_version = 99");
  try {
    SqliteStore store(path);
    FAIL() << "expected StoreError";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 99 is newer"), std::string::npos)
        << e.what();
  }
}

TEST(SqliteFileTest, MigrationsAreRecordedInSchemaMigrations) {
  TempDir dir;
  const std::string path = dir.file("ledger.db");
  SqliteStore(path).insert_batch(make_batch("b"), {});
  SqliteStore(path).insert_batch(make_batch("c"), {});  // reopening migrates nothing
  RawDb raw(path);
  EXPECT_EQ(raw.query("SELECT version, name FROM schema_migrations ORDER BY version"),
            "1|batches and items\n2|batches.submitted_by\n3|schema_migrations\n"
            "4|chunked appends: batches.sealed, batch_chunks");
  EXPECT_EQ(raw.query("SELECT count(*) FROM schema_migrations WHERE version = 3 AND "
                      "applied_at > 1700000000000"),
            "1");
}

// A file written by a floodgate of schema version 2 (before schema_migrations existed) opens,
// keeps its batches and gains the ledger.
TEST(SqliteFileTest, UpgradesAVersion2Database) {
  TempDir dir;
  const std::string path = dir.file("v2.db");
  {
    RawDb raw(path);
    raw.exec(R"sql(
CREATE TABLE batches (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, spec TEXT NOT NULL,
  state TEXT NOT NULL, total INTEGER NOT NULL, created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL, finished_at INTEGER NOT NULL DEFAULT 0,
  version INTEGER NOT NULL DEFAULT 0, idempotency_key TEXT UNIQUE);
CREATE INDEX batches_by_state ON batches (state, seq);
CREATE TABLE items (
  batch_seq INTEGER NOT NULL REFERENCES batches (seq), idx INTEGER NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  flow_run_id TEXT NOT NULL DEFAULT '', flow_run_state TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '', spec TEXT NOT NULL,
  PRIMARY KEY (batch_seq, idx)) WITHOUT ROWID;
CREATE INDEX items_by_state ON items (batch_seq, state, idx);
ALTER TABLE batches ADD COLUMN submitted_by TEXT NOT NULL DEFAULT '';
INSERT INTO batches (id, spec, state, total, created_at, updated_at, submitted_by)
  VALUES ('old', '{}', 'RUNNING', 1, 1, 1, 'team-a');
INSERT INTO items (batch_seq, idx, state, spec) VALUES (1, 0, 'LAUNCHED', '{"name":"x"}');
PRAGMA application_id = 1181511535;
PRAGMA user_version = 2;
)sql");
  }
  SqliteStore store(path);
  EXPECT_EQ(RawDb(path).query("PRAGMA user_version"), "4");
  const auto old = store.get_batch("old");
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->submitted_by, "team-a");
  EXPECT_TRUE(old->sealed);  // batches from before chunked appends took all their runs at once
  EXPECT_EQ(store.load_items("old", true).at(0).spec_json, R"({"name":"x"})");
  EXPECT_EQ(RawDb(path).query("SELECT version, applied_at > 0 FROM schema_migrations "
                              "ORDER BY version"),
            "1|0\n2|0\n3|1\n4|1");
}

TEST(SqliteFileTest, RefusesAnotherProgramsDatabase) {
  TempDir dir;
  const std::string path = dir.file("other.db");
  RawDb(path).exec("CREATE TABLE accounts (id INTEGER PRIMARY KEY)");
  try {
    SqliteStore store(path);
    FAIL() << "expected StoreError";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("not a floodgate database"), std::string::npos)
        << e.what();
  }
}

// Prints timings; asserts none (shared CI machines vary too much).
TEST(SqliteFileTest, LargeBatchTiming) {
  TempDir dir;
  SqliteStore store(dir.file("large.db"));
  constexpr int64_t kItems = 100'000;
  const auto items = make_items(kItems);
  auto report = [](const char* what, const Stopwatch& sw, double divisor = 1) {
    std::printf("[ timing   ] %-34s wall %8.3f ms  cpu %8.3f ms\n", what, sw.wall_ms() / divisor,
                sw.cpu_ms() / divisor);
  };

  Stopwatch sw;
  ASSERT_TRUE(store.insert_batch(make_batch("large", kItems), items).inserted);
  report("insert_batch(100k items)", sw);
  RecordProperty("insert_100k_ms", static_cast<int>(sw.wall_ms()));

  sw.restart();
  const auto loaded = store.load_items("large", true);
  report("load_items(100k, with spec)", sw);
  ASSERT_EQ(loaded.size(), static_cast<size_t>(kItems));

  sw.restart();
  EXPECT_EQ(store.load_items("large", false).size(), static_cast<size_t>(kItems));
  report("load_items(100k, without spec)", sw);

  std::vector<ItemUpdate> updates;
  for (int64_t i = 0; i < 10'000; ++i) {
    ItemUpdate u;
    u.batch_id = "large";
    u.index = i * 7 % kItems;
    u.state = ItemState::kLaunched;
    u.attempts = 1;
    u.flow_run_id = "0b8e6a2c-5f1d-4c3e-9a7b-" + std::to_string(100000000000 + i);
    u.flow_run_state = "Scheduled";
    updates.push_back(u);
  }
  BatchUpdate bu;
  bu.id = "large";
  bu.state = BatchState::kRunning;
  bu.version = 1;
  sw.restart();
  store.apply(updates, {bu});
  report("apply(10k item updates)", sw);
  RecordProperty("apply_10k_ms", static_cast<int>(sw.wall_ms()));

  sw.restart();
  const auto page = store.list_items("large", ItemState::kLaunched, 50'000, 200);
  report("list_items(state filter, 200)", sw);
  EXPECT_EQ(page.size(), 200u);

  sw.restart();
  const auto counts = store.count_items("large");
  report("count_items(100k)", sw);
  EXPECT_EQ(counts[static_cast<size_t>(ItemState::kLaunched)], 10'000);

  // Small transactions, as the API and the engine issue them one by one.
  constexpr int kSmall = 50;
  sw.restart();
  for (int i = 0; i < kSmall; ++i) {
    store.insert_batch(make_batch("small-" + std::to_string(i), 1), make_items(1));
  }
  report("insert_batch(1 item), each", sw, kSmall);
  sw.restart();
  for (int i = 0; i < kSmall; ++i) {
    ItemUpdate u;
    u.batch_id = "large";
    u.index = i;
    u.state = ItemState::kCompleted;
    store.apply({u}, {});
  }
  report("apply(1 update), each", sw, kSmall);
}

}  // namespace
}  // namespace floodgate::store
