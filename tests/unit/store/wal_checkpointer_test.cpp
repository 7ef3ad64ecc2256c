#include "store/wal_checkpointer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "store/sqlite_connection.h"
#include "store_test_support.h"

namespace floodgate::store {
namespace {

using testing::TempDir;

// Writes enough pages to cross the checkpoint threshold in one commit.
void write_pages(SqliteConnection& db, int rows) {
  Transaction tx(db, Transaction::Mode::kImmediate, "test insert");
  Statement insert(db, "INSERT INTO t (v) VALUES (?1)", "test insert");
  const std::string value(1000, 'x');
  for (int i = 0; i < rows; ++i) {
    insert.bind(1, value);
    insert.run();
  }
  tx.commit();
}

bool wait_for(const WalCheckpointer& checkpointer, int64_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (checkpointer.completed() < count) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

TEST(WalCheckpointerTest, CheckpointsOffTheCommittingThread) {
  TempDir dir;
  const std::string path = dir.file("ckpt.db");
  SqliteConnection writer(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  ASSERT_EQ(writer.query_text("PRAGMA journal_mode = WAL", "wal"), "wal");
  writer.exec("CREATE TABLE t (v TEXT)", "create");
  WalCheckpointer checkpointer(writer, path);

  write_pages(writer, 10);  // below the threshold: no checkpoint
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(checkpointer.completed(), 0);

  // About 4 rows per 4 KiB page: 6000 rows are well past 1000 pages.
  write_pages(writer, 6000);
  ASSERT_TRUE(wait_for(checkpointer, 1)) << "no checkpoint ran";
  const auto wal_size = std::filesystem::file_size(path + "-wal");

  // Once checkpointed, the next commits reuse the WAL from its start instead of growing it.
  write_pages(writer, 6000);
  ASSERT_TRUE(wait_for(checkpointer, 2));
  EXPECT_LE(std::filesystem::file_size(path + "-wal"), wal_size + wal_size / 10);
  EXPECT_EQ(writer.query_text("SELECT count(*) FROM t", "count"), "12010");
}

}  // namespace
}  // namespace floodgate::store
