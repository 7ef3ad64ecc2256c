// The store contract (store_contract_test.cpp) on PostgreSQL, and what only the PostgreSQL
// store does: migrations under an advisory lock, reconnecting, the password
// kept out of messages. Needs a server: FLOODGATE_TEST_PG_URL (scripts/pg-cluster.sh); without
// it every test here is skipped with the reason printed, or fails under CI.

#include "store/postgres_store.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pg_test_support.h"
#include "store/postgres_schema.h"
#include "store/store.h"
#include "store_contract.h"
#include "store_test_support.h"

namespace floodgate::store::testing {
namespace {

using core::BatchState;
using core::ItemState;

// Without a replica id: no leases, no fencing (the store contract's view).
PostgresStore::Options shared() { return PostgresStore::Options{}; }

class PgFixture final : public StoreFixture {
 public:
  explicit PgFixture(const std::string& url) : schema_(url) {}
  std::unique_ptr<Store> open() override {
    return std::make_unique<PostgresStore>(schema_.url(), shared());
  }
  int64_t skipped_updates(Store& store) override {
    return dynamic_cast<PostgresStore&>(store).skipped_updates();
  }

 private:
  PgTestSchema schema_;
};

StoreFixtureOrReason make_postgres() {
  const auto url = pg_test_url();
  if (!url) return {nullptr, pg_unavailable_reason(), running_in_ci()};
  return {std::make_unique<PgFixture>(*url), "", false};
}

INSTANTIATE_TEST_SUITE_P(Postgres, StoreContractTest,
                         ::testing::Values(StoreBackend{"Postgres", &make_postgres}), backend_name);

// Prints once, at the start, why nothing below runs.
class ReasonPrinter : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!pg_test_url()) std::fprintf(stderr, "[ postgres ] %s\n", pg_unavailable_reason().c_str());
  }
};
const auto* const kReasonPrinter = ::testing::AddGlobalTestEnvironment(new ReasonPrinter);

std::string error_of(const std::string& url, PostgresStore::Options options = shared()) {
  try {
    PostgresStore store(url, options);
  } catch (const StoreError& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FLOODGATE_REQUIRE_PG();
    schema_ = std::make_unique<PgTestSchema>(*pg_test_url());
  }
  const std::string& url() const { return schema_->url(); }
  std::string query(const std::string& sql) { return RawPg(url()).query(sql); }

  std::unique_ptr<PgTestSchema> schema_;
};

TEST_F(PostgresStoreTest, MigrationsCreateTheTablesAndRecordThemselves) {
  PostgresStore store(url(), shared());
  EXPECT_EQ(store.schema_version(), kPostgresSchemaVersion);
  EXPECT_EQ(query("SELECT version, name, applied_at <= now() FROM schema_migrations "
                  "ORDER BY version"),
            "1|batches and items|t\n2|chunked appends: batches.sealed, batch_chunks|t\n"
            "3|replicas and leases|t\n4|followed children of ended batches|t");
  // Without a replica id nobody holds what the store inserts.
  store.insert_batch(make_batch("b", 1), make_items(1));
  EXPECT_EQ(query("SELECT owner_id, lease_expires_at FROM batches"), "NULL|NULL");
  EXPECT_EQ(query("SELECT id, state FROM batches"), "b|QUEUED");
  EXPECT_EQ(query("SELECT idx, state FROM items"), "0|PENDING");
}

TEST_F(PostgresStoreTest, ReopeningKeepsTheDataAndMigratesNothing) {
  PostgresStore(url(), shared()).insert_batch(make_batch("b", 3, "key"), make_items(3));
  PostgresStore again(url(), shared());
  EXPECT_EQ(again.load_items("b", true).size(), 3u);
  EXPECT_FALSE(again.insert_batch(make_batch("c", 0, "key"), {}).inserted);
  EXPECT_EQ(query("SELECT count(*) FROM schema_migrations"),
            std::to_string(kPostgresSchemaVersion));
}

TEST_F(PostgresStoreTest, ReplicasStartingAtOnceMigrateOnce) {
  constexpr int kStarts = 6;
  std::vector<std::string> errors(kStarts);
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int i = 0; i < kStarts; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      errors[static_cast<size_t>(i)] = error_of(url());
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "(no error)");
  EXPECT_EQ(query("SELECT count(*), max(version) FROM schema_migrations"),
            std::to_string(kPostgresSchemaVersion) + "|" + std::to_string(kPostgresSchemaVersion));
}

TEST_F(PostgresStoreTest, RefusesANewerSchema) {
  PostgresStore(url(), shared());
  query("INSERT INTO schema_migrations (version, name) VALUES (99, 'from the future')");
  const std::string error = error_of(url());
  EXPECT_TRUE(contains(error, "schema version 99 is newer than this floodgate supports")) << error;
}

TEST_F(PostgresStoreTest, RefusesAnotherProgramsTables) {
  query("CREATE TABLE batches (x integer)");
  EXPECT_TRUE(contains(error_of(url()), "already holds a table named batches or items"))
      << error_of(url());
}

TEST_F(PostgresStoreTest, RefusesAnotherProgramsMigrationLedger) {
  // golang-migrate's table of the same name.
  query("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)");
  EXPECT_TRUE(contains(error_of(url()), "another program's schema_migrations table"))
      << error_of(url());
}

TEST_F(PostgresStoreTest, ThePasswordNeverShowsInErrors) {
  const std::string wrong = "Wrong-Pass-4711";
  for (const std::string& bad :
       {with_option(url(), "password=" + wrong),
        // the same password in the user:password@ form
        std::string("postgresql://floodgate:") + wrong + "@127.0.0.1:1/floodgate_test"}) {
    const std::string error = error_of(bad);
    EXPECT_TRUE(error.starts_with("cannot open PostgreSQL database at ")) << error;
    EXPECT_FALSE(contains(error, wrong)) << error;
    EXPECT_TRUE(contains(error, "***")) << error;
  }
  EXPECT_TRUE(contains(error_of(with_option(url(), "password=" + wrong)),
                       "password authentication failed"));
}

TEST_F(PostgresStoreTest, OpenStoreTakesPostgresUrls) {
  // open_store takes the scheme in any case (libpq only in lower case), and with a replica id
  // the store shares the database under leases (several may open it at once).
  auto store = open_store(url(), "r1");
  ASSERT_NE(store, nullptr);
  ASSERT_NE(store->leases(), nullptr);
  EXPECT_TRUE(store->insert_batch(make_batch("b"), {}).inserted);
  EXPECT_EQ(query("SELECT owner_id FROM batches WHERE id = 'b'"), "r1");
  std::string upper = url();
  upper.replace(0, upper.find("://"), "PostgreSQL");
  auto second = open_store(upper, "r2");
  EXPECT_NE(second->leases(), nullptr);
  EXPECT_EQ(open_store(url())->leases(), nullptr);
}

TEST_F(PostgresStoreTest, ReconnectsAfterTheServerClosedItsConnections) {
  PostgresStore store(url(), shared());
  store.insert_batch(make_batch("b", 2), make_items(2));
  EXPECT_TRUE(store.get_batch("b").has_value());
  schema_->terminate_sessions();  // as a server restart or an administrator would
  // The pool notices the closed connections before using them and connects again.
  std::string error;
  for (int attempt = 0; attempt < 100; ++attempt) {
    try {
      EXPECT_TRUE(store.get_batch("b").has_value());
      error.clear();
      break;
    } catch (const StoreError& e) {
      error = e.what();  // the backend's end may reach the socket only after the check
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  EXPECT_EQ(error, "");
  ItemUpdate u;
  u.batch_id = "b";
  u.index = 1;
  u.state = ItemState::kLaunched;
  store.apply({u}, {});
  EXPECT_EQ(store.load_items("b", false)[1].state, ItemState::kLaunched);
}

// Retries `write` until the store's pooled connections have noticed that the server closed
// them (the socket's end may arrive a moment after the server let the session go).
template <typename Write>
std::string retry_write(Write write) {
  std::string error;
  for (int attempt = 0; attempt < 100; ++attempt) {
    try {
      write();
      return "";
    } catch (const StoreError& e) {
      error = e.what();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return error;
}

ItemUpdate launched(int64_t index) {
  ItemUpdate u;
  u.batch_id = "b";
  u.index = index;
  u.state = ItemState::kLaunched;
  return u;
}

TEST_F(PostgresStoreTest, WritesGoOnAfterTheServerEndedTheSessions) {
  PostgresStore store(url(), PostgresStore::Options{});
  store.insert_batch(make_batch("b", 2), make_items(2));
  schema_->terminate_sessions();
  EXPECT_EQ(retry_write([&] { store.apply({launched(0)}, {}); }), "");
  EXPECT_EQ(store.load_items("b", false)[0].state, ItemState::kLaunched);
}

TEST_F(PostgresStoreTest, TextPostgresRefusesIsStoredWithReplacementCharacters) {
  PostgresStore store(url(), shared());
  auto items = make_items(1);
  constexpr char kRaw[] = "bad \xff byte, NUL \0 and tab\there";
  items[0].last_error = std::string(kRaw, sizeof kRaw - 1);
  items[0].spec_json = R"({"name":"back\\slash \"quoted\" ü"})";
  store.insert_batch(make_batch("b", 1), items);
  auto got = store.load_items("b", true);
  EXPECT_EQ(got[0].last_error, "bad \xEF\xBF\xBD byte, NUL \xEF\xBF\xBD and tab\there");
  EXPECT_EQ(got[0].spec_json, items[0].spec_json);

  ItemUpdate u;
  u.batch_id = "b";
  u.index = 0;
  u.state = ItemState::kFailed;
  u.last_error = "HTTP 500: \"{\\\"detail\\\": \xc3\x28}\"";
  u.detail_json = R"({"a":"\"b\"","c":"\\"})";
  store.apply({u}, {});
  got = store.load_items("b", false);
  EXPECT_EQ(got[0].last_error, "HTTP 500: \"{\\\"detail\\\": \xEF\xBF\xBD(}\"");
  EXPECT_EQ(got[0].detail_json, u.detail_json);
}

TEST_F(PostgresStoreTest, OfSeveralUpdatesToOneItemInOneApplyTheLastWins) {
  PostgresStore store(url(), shared());
  store.insert_batch(make_batch("b", 2), make_items(2));
  std::vector<ItemUpdate> updates(3);
  for (int i = 0; i < 3; ++i) {
    updates[static_cast<size_t>(i)].batch_id = "b";
    updates[static_cast<size_t>(i)].index = 1;
    updates[static_cast<size_t>(i)].attempts = i;
  }
  updates[0].state = ItemState::kLaunching;
  updates[1].state = ItemState::kLaunched;
  updates[2].state = ItemState::kCompleted;
  store.apply(updates, {});
  const auto got = store.load_items("b", false);
  EXPECT_EQ(got[1].state, ItemState::kCompleted);
  EXPECT_EQ(got[1].attempts, 2);
  EXPECT_EQ(store.skipped_updates(), 0);
}

// Prints timings; asserts none (shared CI machines vary too much). The same steps as
// SqliteFileTest.LargeBatchTiming, for a side-by-side look.
TEST_F(PostgresStoreTest, LargeBatchTiming) {
  PostgresStore store(url(), shared());
  constexpr int64_t kItems = 100'000;
  const auto items = make_items(kItems);
  auto report = [](const char* what, const Stopwatch& sw, double divisor = 1) {
    std::printf("[ timing   ] %-34s wall %8.3f ms  cpu %8.3f ms\n", what, sw.wall_ms() / divisor,
                sw.cpu_ms() / divisor);
  };

  Stopwatch sw;
  ASSERT_TRUE(store.insert_batch(make_batch("large", kItems), items).inserted);
  report("insert_batch(100k items)", sw);

  sw.restart();
  ASSERT_EQ(store.load_items("large", true).size(), static_cast<size_t>(kItems));
  report("load_items(100k, with spec)", sw);

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

  sw.restart();
  EXPECT_EQ(store.list_items("large", ItemState::kLaunched, 50'000, 200).size(), 200u);
  report("list_items(state filter, 200)", sw);

  sw.restart();
  EXPECT_EQ(store.count_items("large")[static_cast<size_t>(ItemState::kLaunched)], 10'000);
  report("count_items(100k)", sw);

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
}  // namespace floodgate::store::testing
