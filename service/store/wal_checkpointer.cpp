#include "store/wal_checkpointer.h"

namespace floodgate::store {

WalCheckpointer::WalCheckpointer(SqliteConnection& writer, const std::string& path)
    : writer_(writer), connection_(path, SQLITE_OPEN_READWRITE) {
  // A connection that has not read the database yet does not know it is in WAL mode, and its
  // checkpoints silently do nothing (they report -1 frames).
  connection_.query_text("PRAGMA schema_version", "starting the WAL checkpointer");
  thread_ = std::thread([this] { run(); });
  // Replaces the automatic checkpoint, which SQLite implements with this same hook.
  sqlite3_wal_hook(writer_.handle(), &WalCheckpointer::on_commit, this);
}

WalCheckpointer::~WalCheckpointer() {
  sqlite3_wal_hook(writer_.handle(), nullptr, nullptr);
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

int WalCheckpointer::on_commit(void* self, sqlite3* /*db*/, const char* /*schema*/, int wal_pages) {
  if (wal_pages < kThresholdPages) return SQLITE_OK;
  auto* checkpointer = static_cast<WalCheckpointer*>(self);
  {
    std::lock_guard lock(checkpointer->mutex_);
    checkpointer->pending_ = true;
  }
  checkpointer->wake_.notify_one();
  return SQLITE_OK;
}

void WalCheckpointer::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return pending_ || stopping_; });
    if (stopping_) return;
    pending_ = false;
    lock.unlock();
    // PASSIVE never waits for readers or the writer; what it cannot copy now is copied on a
    // later wake-up, and the writer's close checkpoints whatever is left. A failure (SQLITE_BUSY
    // while another checkpoint runs) is therefore harmless and only retried later.
    int wal_frames = 0;
    int copied_frames = 0;
    const int rc = sqlite3_wal_checkpoint_v2(
        connection_.handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied_frames);
    if (rc == SQLITE_OK && wal_frames >= 0 && copied_frames == wal_frames) {
      completed_.fetch_add(1, std::memory_order_relaxed);
    }
    lock.lock();
  }
}

}  // namespace floodgate::store
