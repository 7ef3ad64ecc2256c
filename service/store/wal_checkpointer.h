#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "store/sqlite_connection.h"

namespace floodgate::store {

/// Copies the WAL back into the database file on a thread of its own, so that the thread that
/// commits never pays for it. SQLite's automatic checkpoint runs inside the COMMIT that crosses
/// the threshold: it would add a few hundred milliseconds to the insert of a large batch and
/// stall the engine's apply() now and then.
class WalCheckpointer {
 public:
  /// Takes over checkpointing from `writer` (whose automatic checkpoints stop) using its own
  /// connection to `path`. `writer` must outlive this object.
  WalCheckpointer(SqliteConnection& writer, const std::string& path);
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  /// WAL size, in pages, past which a commit wakes the checkpointer (SQLite's own default).
  static constexpr int kThresholdPages = 1000;

  /// Checkpoints that copied the whole WAL into the database.
  int64_t completed() const { return completed_.load(std::memory_order_relaxed); }

 private:
  static int on_commit(void* self, sqlite3* db, const char* schema, int wal_pages);
  void run();

  SqliteConnection& writer_;
  SqliteConnection connection_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool pending_ = false;   // guarded by mutex_
  bool stopping_ = false;  // guarded by mutex_
  std::atomic<int64_t> completed_{0};
  std::thread thread_;
};

}  // namespace floodgate::store
