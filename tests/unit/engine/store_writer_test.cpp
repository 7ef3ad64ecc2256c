// StoreWriter against a store whose writes fail on demand (a full or read-only disk): health,
// bounded drain, recovery, and a destructor that never waits for the disk. Real threads; the
// waits are bounded polls of the writer's own state, not sleeps that assume timings.
#include "engine/store_writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "store/store.h"

namespace floodgate::engine {
namespace {

using namespace std::chrono_literals;

/// Counts what it is asked to write; throws like SQLite on a full disk while `failing`.
class FlakyStore final : public store::Store {
 public:
  std::atomic<bool> failing{false};
  std::atomic<int> attempts{0};
  std::atomic<size_t> items_written{0};

  store::InsertResult insert_batch(const store::BatchRecord&,
                                   const std::vector<store::ItemRecord>&) override {
    return {};
  }
  void apply(const std::vector<store::ItemUpdate>& items,
             const std::vector<store::BatchUpdate>&) override {
    ++attempts;
    if (failing) throw store::StoreError("database or disk is full");
    items_written += items.size();
  }
  std::optional<store::BatchRecord> get_batch(const std::string&) override { return {}; }
  std::vector<store::BatchRecord> list_batches(std::optional<core::BatchState>, int64_t,
                                               int) override {
    return {};
  }
  std::vector<store::BatchRecord> load_unfinished_batches() override { return {}; }
  std::vector<store::ItemRecord> load_items(const std::string&, bool) override { return {}; }
  std::vector<store::ItemRecord> list_items(const std::string&, std::optional<core::ItemState>,
                                            int64_t, int) override {
    return {};
  }
  std::vector<std::pair<int64_t, std::string>> load_item_specs(
      const std::string&, const std::vector<int64_t>&) override {
    return {};
  }
};

std::vector<store::ItemUpdate> updates(int n) {
  std::vector<store::ItemUpdate> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out[static_cast<size_t>(i)].index = i;
  return out;
}

template <typename F>
bool eventually(F&& condition) {
  for (int i = 0; i < 1000; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

TEST(StoreWriter, WritesAndReportsHealthy) {
  FlakyStore store;
  metrics::Metrics metrics("test");
  StoreWriter writer(store, metrics);
  writer.submit(updates(3), {});
  EXPECT_TRUE(writer.drain_for(5s));
  EXPECT_TRUE(writer.caught_up());
  EXPECT_EQ(store.items_written.load(), 3u);
  EXPECT_TRUE(writer.healthy());
}

TEST(StoreWriter, UnhealthyWhileWritesFailAndHealthyOnceTheyWorkAgain) {
  FlakyStore store;
  metrics::Metrics metrics("test");
  StoreWriter writer(store, metrics);
  store.failing = true;
  writer.submit(updates(2), {});
  ASSERT_TRUE(eventually([&] { return !writer.healthy(); }));
  std::string why;
  EXPECT_FALSE(writer.healthy(&why));
  EXPECT_EQ(why, "store cannot be written: database or disk is full");
  // A bounded drain gives up instead of blocking the caller.
  EXPECT_FALSE(writer.drain_for(50ms));
  EXPECT_FALSE(writer.caught_up());
  EXPECT_EQ(store.items_written.load(), 0u);

  store.failing = false;
  EXPECT_TRUE(writer.drain_for(10s));
  EXPECT_TRUE(writer.healthy());
  EXPECT_EQ(store.items_written.load(), 2u);  // retried, not dropped
}

TEST(StoreWriter, DestructorDoesNotWaitForAStoreThatCannotBeWritten) {
  FlakyStore store;
  metrics::Metrics metrics("test");
  auto writer = std::make_unique<StoreWriter>(store, metrics);
  store.failing = true;
  writer->submit(updates(5), {});
  ASSERT_TRUE(eventually([&] { return store.attempts.load() >= 1; }));
  writer->submit(updates(4), {});  // queued behind the failing write
  const auto start = std::chrono::steady_clock::now();
  writer.reset();  // before the fix: blocked for as long as the store failed
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(store.items_written.load(), 0u);
}

TEST(StoreWriter, DestructorStillWritesWhatItCan) {
  FlakyStore store;
  metrics::Metrics metrics("test");
  {
    StoreWriter writer(store, metrics);
    for (int i = 0; i < 20; ++i) writer.submit(updates(10), {});
  }
  EXPECT_EQ(store.items_written.load(), 200u);
}

}  // namespace
}  // namespace floodgate::engine
