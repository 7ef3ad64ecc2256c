#include "store_contract.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cctype>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store_test_support.h"

// What every store does, checked on each (see store_contract.h for where they are instantiated).
namespace floodgate::store::testing {
namespace {

using core::BatchState;
using core::ItemState;

std::vector<int64_t> indexes_of(const std::vector<ItemRecord>& items) {
  std::vector<int64_t> out;
  for (const auto& i : items) out.push_back(i.index);
  return out;
}

std::vector<std::string> ids_of(const std::vector<BatchRecord>& batches) {
  std::vector<std::string> out;
  for (const auto& b : batches) out.push_back(b.id);
  return out;
}

TEST_P(StoreContractTest, BatchRoundTripsEveryField) {
  BatchRecord b;
  b.id = "0b7c9f1e-batch";
  b.spec_json = R"({"deployment":"f/d","tags":["x"]})";
  b.state = BatchState::kPaused;
  b.total = 3;
  b.created_at_ms = 1'700'000'000'001;
  b.updated_at_ms = 1'700'000'000'002;
  b.finished_at_ms = 1'700'000'000'003;
  b.version = 42;
  b.idempotency_key = "key-1";
  b.seq = 999;  // ignored: the store assigns seq

  const InsertResult r = store_->insert_batch(b, make_items(3));
  EXPECT_TRUE(r.inserted);
  EXPECT_EQ(r.batch_id, b.id);

  const auto got = store_->get_batch(b.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, b.id);
  EXPECT_EQ(got->spec_json, b.spec_json);
  EXPECT_EQ(got->state, BatchState::kPaused);
  EXPECT_EQ(got->total, 3);
  EXPECT_EQ(got->created_at_ms, b.created_at_ms);
  EXPECT_EQ(got->updated_at_ms, b.updated_at_ms);
  EXPECT_EQ(got->finished_at_ms, b.finished_at_ms);
  EXPECT_EQ(got->version, 42);
  EXPECT_EQ(got->idempotency_key, std::optional<std::string>("key-1"));
  EXPECT_GT(got->seq, 0);
  EXPECT_NE(got->seq, 999);

  auto without_key = make_batch("no-key");
  ASSERT_TRUE(store_->insert_batch(without_key, {}).inserted);
  const auto got2 = store_->get_batch("no-key");
  ASSERT_TRUE(got2.has_value());
  EXPECT_FALSE(got2->idempotency_key.has_value());
  EXPECT_GT(got2->seq, got->seq);
}

TEST_P(StoreContractTest, EveryBatchStateRoundTrips) {
  for (int i = 0; i < core::kBatchStateCount; ++i) {
    auto b = make_batch("b" + std::to_string(i));
    b.state = static_cast<BatchState>(i);
    store_->insert_batch(b, {});
    EXPECT_EQ(store_->get_batch(b.id)->state, b.state);
  }
}

TEST_P(StoreContractTest, ItemsRoundTripEveryField) {
  std::vector<ItemRecord> items;
  for (int i = 0; i < core::kItemStateCount; ++i) {
    ItemRecord item;
    item.index = i * 10;
    item.state = static_cast<ItemState>(i);
    item.attempts = i + 1;
    item.flow_run_id = "run-" + std::to_string(i);
    item.flow_run_state = "Running";
    item.last_error = i % 2 ? "HTTP 503: \"unavailable\"\nline 2" : "";
    item.spec_json = R"({"parameters":{"i":)" + std::to_string(i) + "}}";
    item.detail_json = i % 3 ? R"({"earlier_runs":["a","b"]})" : "";
    items.push_back(item);
  }
  // Stored out of order: loads come back in index order.
  std::vector<ItemRecord> shuffled(items.rbegin(), items.rend());
  store_->insert_batch(make_batch("b", core::kItemStateCount), shuffled);

  for (const bool with_spec : {true, false}) {
    const auto got = store_->load_items("b", with_spec);
    ASSERT_EQ(got.size(), items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(got[i].index, items[i].index);
      EXPECT_EQ(got[i].state, items[i].state);
      EXPECT_EQ(got[i].attempts, items[i].attempts);
      EXPECT_EQ(got[i].flow_run_id, items[i].flow_run_id);
      EXPECT_EQ(got[i].flow_run_state, items[i].flow_run_state);
      EXPECT_EQ(got[i].last_error, items[i].last_error);
      EXPECT_EQ(got[i].detail_json, items[i].detail_json);
      EXPECT_EQ(got[i].spec_json, with_spec ? items[i].spec_json : "");
    }
  }
}

TEST_P(StoreContractTest, UnknownBatchReadsAreEmpty) {
  EXPECT_FALSE(store_->get_batch("nope").has_value());
  EXPECT_TRUE(store_->load_items("nope", true).empty());
  EXPECT_TRUE(store_->list_items("nope", std::nullopt, -1, 10).empty());
  EXPECT_TRUE(store_->load_item_specs("nope", {0, 1}).empty());
  EXPECT_TRUE(store_->list_batches(std::nullopt, 0, 10).empty());
  EXPECT_TRUE(store_->load_unfinished_batches().empty());
}

TEST_P(StoreContractTest, TakenIdempotencyKeyWritesNothingAndNamesTheFirstBatch) {
  ASSERT_TRUE(store_->insert_batch(make_batch("first", 2, "k"), make_items(2)).inserted);

  const InsertResult again = store_->insert_batch(make_batch("second", 5, "k"), make_items(5));
  EXPECT_FALSE(again.inserted);
  EXPECT_EQ(again.batch_id, "first");
  EXPECT_FALSE(store_->get_batch("second").has_value());
  EXPECT_TRUE(store_->load_items("second", false).empty());
  EXPECT_EQ(store_->load_items("first", false).size(), 2u);
  EXPECT_EQ(store_->list_batches(std::nullopt, 0, -1).size(), 1u);

  // Another key, and no key at all (twice), are independent.
  EXPECT_TRUE(store_->insert_batch(make_batch("third", 0, "k2"), {}).inserted);
  EXPECT_TRUE(store_->insert_batch(make_batch("fourth"), {}).inserted);
  EXPECT_TRUE(store_->insert_batch(make_batch("fifth"), {}).inserted);
}

TEST_P(StoreContractTest, ConcurrentInsertsWithOneKeyInsertExactlyOnce) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    const std::string key = "key-" + std::to_string(round);
    std::atomic<int> inserted{0};
    std::vector<std::string> answers(kThreads);
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        while (!go.load()) std::this_thread::yield();
        const std::string id = "r" + std::to_string(round) + "-t" + std::to_string(t);
        const InsertResult r = store_->insert_batch(make_batch(id, 50, key), make_items(50));
        if (r.inserted) inserted.fetch_add(1);
        answers[static_cast<size_t>(t)] = r.batch_id;
      });
    }
    go = true;
    for (auto& th : threads) th.join();
    EXPECT_EQ(inserted.load(), 1) << "round " << round;
    EXPECT_EQ(std::set<std::string>(answers.begin(), answers.end()).size(), 1u);
  }
  EXPECT_EQ(store_->list_batches(std::nullopt, 0, -1).size(), static_cast<size_t>(kRounds));
}

TEST_P(StoreContractTest, FailedInsertLeavesNothingBehind) {
  ASSERT_TRUE(store_->insert_batch(make_batch("taken"), {}).inserted);
  // Same id again: the batch row violates UNIQUE.
  EXPECT_THROW(store_->insert_batch(make_batch("taken", 0, "fresh-key"), make_items(3)),
               StoreError);
  // A duplicate item index fails half-way through the items.
  auto items = make_items(10);
  items[7].index = 3;
  try {
    store_->insert_batch(make_batch("dup-items", 10, "dup-key"), items);
    FAIL() << "expected StoreError";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("inserting batch dup-items"), std::string::npos)
        << e.what();
    std::string message = e.what();
    for (char& c : message) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_NE(message.find("unique"), std::string::npos) << e.what();  // names the violation
  }
  EXPECT_FALSE(store_->get_batch("dup-items").has_value());
  EXPECT_TRUE(store_->load_items("dup-items", false).empty());
  // The rolled-back keys are free again, and the connection is still usable.
  EXPECT_TRUE(store_->insert_batch(make_batch("ok", 1, "dup-key"), make_items(1)).inserted);
  EXPECT_TRUE(store_->insert_batch(make_batch("ok2", 0, "fresh-key"), {}).inserted);
}

TEST_P(StoreContractTest, ApplyUpdatesEveryMutableFieldButNeverTheSpec) {
  const auto original = make_items(4);
  store_->insert_batch(make_batch("b", 4), original);

  ItemUpdate u;
  u.batch_id = "b";
  u.index = 2;
  u.state = ItemState::kLaunched;
  u.attempts = 3;
  u.flow_run_id = "4f1c-run";
  u.flow_run_state = "Pending";
  u.last_error = "timed out during opening handshake";
  u.detail_json = R"({"earlier_runs":["x"]})";

  BatchUpdate bu;
  bu.id = "b";
  bu.state = BatchState::kRunning;
  bu.updated_at_ms = 1'700'000'100'000;
  bu.finished_at_ms = 0;
  bu.version = 7;
  store_->apply({u}, {bu});

  const auto items = store_->load_items("b", true);
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[2].state, ItemState::kLaunched);
  EXPECT_EQ(items[2].attempts, 3);
  EXPECT_EQ(items[2].flow_run_id, "4f1c-run");
  EXPECT_EQ(items[2].flow_run_state, "Pending");
  EXPECT_EQ(items[2].last_error, "timed out during opening handshake");
  EXPECT_EQ(items[2].detail_json, R"({"earlier_runs":["x"]})");
  EXPECT_EQ(items[2].spec_json, original[2].spec_json);
  for (const size_t other : {0u, 1u, 3u}) {
    EXPECT_EQ(items[other].state, ItemState::kPending);
    EXPECT_EQ(items[other].flow_run_id, "");
  }

  auto batch = store_->get_batch("b");
  EXPECT_EQ(batch->state, BatchState::kRunning);
  EXPECT_EQ(batch->updated_at_ms, 1'700'000'100'000);
  EXPECT_EQ(batch->version, 7);
  EXPECT_EQ(batch->spec_json, make_batch("b").spec_json);  // spec unset: unchanged
  EXPECT_EQ(batch->created_at_ms, make_batch("b").created_at_ms);
  EXPECT_EQ(batch->total, 4);

  bu.state = BatchState::kCompleted;
  bu.finished_at_ms = 1'700'000'200'000;
  bu.version = 8;
  bu.spec_json = R"({"limits":{"max_running":5}})";
  u.state = ItemState::kCompleted;
  u.last_error = "";
  store_->apply({u}, {bu});
  batch = store_->get_batch("b");
  EXPECT_EQ(batch->state, BatchState::kCompleted);
  EXPECT_EQ(batch->finished_at_ms, 1'700'000'200'000);
  EXPECT_EQ(batch->version, 8);
  EXPECT_EQ(batch->spec_json, R"({"limits":{"max_running":5}})");
  EXPECT_EQ(store_->load_items("b", false)[2].last_error, "");
  EXPECT_EQ(skipped_updates(), 0);
}

TEST_P(StoreContractTest, ApplySkipsUnknownBatchesAndItems) {
  store_->insert_batch(make_batch("b", 2), make_items(2));
  std::vector<ItemUpdate> items(4);
  items[0].batch_id = "b";
  items[0].index = 0;
  items[0].state = ItemState::kLaunching;
  items[1].batch_id = "missing";
  items[1].index = 0;
  items[2].batch_id = "b";
  items[2].index = 99;  // no such item
  items[3].batch_id = "b";
  items[3].index = 1;
  items[3].state = ItemState::kSkipped;
  BatchUpdate missing;
  missing.id = "missing-too";

  EXPECT_NO_THROW(store_->apply(items, {missing}));
  EXPECT_EQ(skipped_updates(), 3);
  const auto got = store_->load_items("b", false);
  EXPECT_EQ(got[0].state, ItemState::kLaunching);
  EXPECT_EQ(got[1].state, ItemState::kSkipped);
  EXPECT_FALSE(store_->get_batch("missing-too").has_value());
  EXPECT_NO_THROW(store_->apply({}, {}));
}

TEST_P(StoreContractTest, ListItemsFiltersByStateAndPagesByIndex) {
  store_->insert_batch(make_batch("b", 10), make_items(10));
  store_->insert_batch(make_batch("other", 10), make_items(10));
  std::vector<ItemUpdate> updates;
  for (int64_t i : {1, 4, 5, 8}) {
    ItemUpdate u;
    u.batch_id = "b";
    u.index = i;
    u.state = ItemState::kFailed;
    u.last_error = "boom";
    updates.push_back(u);
  }
  store_->apply(updates, {});

  const auto all = store_->list_items("b", std::nullopt, -1, 100);
  EXPECT_EQ(indexes_of(all), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  for (const auto& item : all) EXPECT_EQ(item.spec_json, "");

  EXPECT_EQ(indexes_of(store_->list_items("b", std::nullopt, 3, 4)),
            (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(indexes_of(store_->list_items("b", std::nullopt, 7, -1)), (std::vector<int64_t>{8, 9}));
  EXPECT_TRUE(store_->list_items("b", std::nullopt, -1, 0).empty());

  const auto failed = store_->list_items("b", ItemState::kFailed, -1, 100);
  EXPECT_EQ(indexes_of(failed), (std::vector<int64_t>{1, 4, 5, 8}));
  EXPECT_EQ(failed[0].last_error, "boom");
  EXPECT_EQ(indexes_of(store_->list_items("b", ItemState::kFailed, -1, 2)),
            (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(indexes_of(store_->list_items("b", ItemState::kFailed, 4, 2)),
            (std::vector<int64_t>{5, 8}));
  EXPECT_TRUE(store_->list_items("b", ItemState::kFailed, 8, 2).empty());
  EXPECT_EQ(store_->list_items("b", ItemState::kPending, -1, 100).size(), 6u);
  EXPECT_TRUE(store_->list_items("other", ItemState::kFailed, -1, 100).empty());
}

TEST_P(StoreContractTest, CountsItemsByState) {
  store_->insert_batch(make_batch("b", 10), make_items(10));
  store_->insert_batch(make_batch("other", 5), make_items(5));
  std::vector<ItemUpdate> updates;
  for (int64_t i = 0; i < 6; ++i) {
    ItemUpdate u;
    u.batch_id = "b";
    u.index = i;
    u.state = i < 2 ? ItemState::kCompleted : (i < 5 ? ItemState::kLaunched : ItemState::kCrashed);
    updates.push_back(u);
  }
  store_->apply(updates, {});

  const auto counts = store_->count_items("b");
  std::array<int64_t, core::kItemStateCount> expected{};
  expected[static_cast<size_t>(ItemState::kPending)] = 4;
  expected[static_cast<size_t>(ItemState::kCompleted)] = 2;
  expected[static_cast<size_t>(ItemState::kLaunched)] = 3;
  expected[static_cast<size_t>(ItemState::kCrashed)] = 1;
  EXPECT_EQ(counts, expected);
  // The same as the interface's generic version computes by paging.
  EXPECT_EQ(counts, store_->Store::count_items("b"));
  EXPECT_EQ(store_->count_items("other")[static_cast<size_t>(ItemState::kPending)], 5);
  EXPECT_EQ(store_->count_items("nope"), (std::array<int64_t, core::kItemStateCount>{}));
}

TEST_P(StoreContractTest, ListBatchesFiltersByStateAndPagesBySeq) {
  const std::vector<BatchState> states = {BatchState::kQueued,    BatchState::kRunning,
                                          BatchState::kCompleted, BatchState::kRunning,
                                          BatchState::kFailed,    BatchState::kRunning};
  for (size_t i = 0; i < states.size(); ++i) {
    auto b = make_batch("b" + std::to_string(i));
    b.state = states[i];
    store_->insert_batch(b, {});
  }
  const auto all = store_->list_batches(std::nullopt, 0, -1);
  EXPECT_EQ(ids_of(all), (std::vector<std::string>{"b0", "b1", "b2", "b3", "b4", "b5"}));
  for (size_t i = 1; i < all.size(); ++i) EXPECT_GT(all[i].seq, all[i - 1].seq);

  const auto page1 = store_->list_batches(std::nullopt, 0, 2);
  EXPECT_EQ(ids_of(page1), (std::vector<std::string>{"b0", "b1"}));
  const auto page2 = store_->list_batches(std::nullopt, page1.back().seq, 2);
  EXPECT_EQ(ids_of(page2), (std::vector<std::string>{"b2", "b3"}));

  const auto running = store_->list_batches(BatchState::kRunning, 0, 10);
  EXPECT_EQ(ids_of(running), (std::vector<std::string>{"b1", "b3", "b5"}));
  EXPECT_EQ(ids_of(store_->list_batches(BatchState::kRunning, running[0].seq, 1)),
            (std::vector<std::string>{"b3"}));
  EXPECT_TRUE(store_->list_batches(BatchState::kPaused, 0, 10).empty());
  EXPECT_TRUE(store_->list_batches(std::nullopt, all.back().seq, 10).empty());
}

TEST_P(StoreContractTest, LoadsUnfinishedBatchesInInsertionOrder) {
  int n = 0;
  for (int i = 0; i < core::kBatchStateCount; ++i) {
    for (int copy = 0; copy < 2; ++copy) {
      auto b = make_batch("b" + std::to_string(n++));
      b.state = static_cast<BatchState>((i + copy * 3) % core::kBatchStateCount);
      store_->insert_batch(b, {});
    }
  }
  const auto unfinished = store_->load_unfinished_batches();
  EXPECT_EQ(unfinished.size(), 6u);
  for (size_t i = 0; i < unfinished.size(); ++i) {
    EXPECT_FALSE(core::is_final(unfinished[i].state)) << unfinished[i].id;
    if (i > 0) {
      EXPECT_GT(unfinished[i].seq, unfinished[i - 1].seq);
    }
  }

  // Finishing one takes it out.
  BatchUpdate done;
  done.id = unfinished[0].id;
  done.state = BatchState::kCancelled;
  store_->apply({}, {done});
  EXPECT_EQ(store_->load_unfinished_batches().size(), 5u);
}

TEST_P(StoreContractTest, LoadsSpecsOfTheGivenItems) {
  const auto items = make_items(20);
  store_->insert_batch(make_batch("b", 20), items);
  const auto specs = store_->load_item_specs("b", {17, 3, 42, 3});
  ASSERT_EQ(specs.size(), 3u);  // 42 does not exist
  EXPECT_EQ(specs[0], std::make_pair(int64_t{17}, items[17].spec_json));
  EXPECT_EQ(specs[1], std::make_pair(int64_t{3}, items[3].spec_json));
  EXPECT_EQ(specs[2], std::make_pair(int64_t{3}, items[3].spec_json));
  EXPECT_TRUE(store_->load_item_specs("b", {}).empty());
}

TEST_P(StoreContractTest, ReadsProceedWhileAnotherThreadWrites) {
  store_->insert_batch(make_batch("b", 1000), make_items(1000));
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    while (!stop.load()) {
      const auto b = store_->get_batch("b");
      ASSERT_TRUE(b.has_value());
      const auto items = store_->list_items("b", std::nullopt, -1, 50);
      ASSERT_EQ(items.size(), 50u);
      reads.fetch_add(1);
    }
  });
  for (int round = 0; round < 20; ++round) {
    std::vector<ItemUpdate> updates;
    for (int64_t i = 0; i < 1000; ++i) {
      ItemUpdate u;
      u.batch_id = "b";
      u.index = i;
      u.state = round % 2 ? ItemState::kLaunched : ItemState::kPending;
      u.attempts = round;
      updates.push_back(u);
    }
    BatchUpdate bu;
    bu.id = "b";
    bu.state = BatchState::kRunning;
    bu.version = round + 1;
    store_->apply(updates, {bu});
    store_->insert_batch(make_batch("extra-" + std::to_string(round), 100), make_items(100));
  }
  stop = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(store_->get_batch("b")->version, 20);
  EXPECT_EQ(store_->load_items("b", false)[999].attempts, 19);
}

// --- Chunked appends ---

std::vector<std::string> run_specs(int64_t n, const std::string& tag) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(R"({"parameters":{"chunk":")" + tag + R"(","i":)" + std::to_string(i) + "}}");
  }
  return out;
}

AppendRequest append_to(const std::string& id, std::optional<std::string> key,
                        const std::string& hash) {
  AppendRequest r;
  r.batch_id = id;
  r.idempotency_key = std::move(key);
  r.body_hash = hash;
  return r;
}

TEST_P(StoreContractTest, UnsealedFlagRoundTripsAndOlderInsertsAreSealed) {
  auto open_batch = make_batch("open", 2);
  open_batch.sealed = false;
  ASSERT_TRUE(store_->insert_batch(open_batch, make_items(2)).inserted);
  ASSERT_TRUE(store_->insert_batch(make_batch("closed", 1), make_items(1)).inserted);
  EXPECT_FALSE(store_->get_batch("open")->sealed);
  EXPECT_TRUE(store_->get_batch("closed")->sealed);
  // The engine reloads unsealed batches after a restart from this list.
  const auto unfinished = store_->load_unfinished_batches();
  ASSERT_EQ(unfinished.size(), 2u);
  EXPECT_FALSE(unfinished[0].sealed);
  EXPECT_TRUE(unfinished[1].sealed);
  EXPECT_FALSE(store_->list_batches(std::nullopt, 0, -1).at(0).sealed);
}

TEST_P(StoreContractTest, AppendsContinueTheIndexesAndGrowTheTotal) {
  auto b = make_batch("b", 2);
  b.sealed = false;
  ASSERT_TRUE(store_->insert_batch(b, make_items(2)).inserted);

  const AppendResult first = store_->append_items(append_to("b", "c1", "h1"), run_specs(3, "a"));
  EXPECT_EQ(first.outcome, AppendOutcome::kAppended);
  EXPECT_EQ(first.first_index, 2);
  EXPECT_EQ(first.count, 3);
  EXPECT_EQ(first.total, 5);
  const AppendResult second =
      store_->append_items(append_to("b", std::nullopt, "h2"), run_specs(2, "b"));
  EXPECT_EQ(second.outcome, AppendOutcome::kAppended);
  EXPECT_EQ(second.first_index, 5);
  EXPECT_EQ(second.total, 7);

  EXPECT_EQ(store_->get_batch("b")->total, 7);
  const auto items = store_->load_items("b", true);
  EXPECT_EQ(indexes_of(items), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(items[2].spec_json, run_specs(3, "a")[0]);
  EXPECT_EQ(items[6].spec_json, run_specs(2, "b")[1]);
  EXPECT_EQ(items[4].state, ItemState::kPending);
  EXPECT_EQ(items[4].attempts, 0);
  EXPECT_EQ(items[4].flow_run_id, "");
  EXPECT_EQ(store_->count_items("b")[static_cast<int>(ItemState::kPending)], 7);
}

TEST_P(StoreContractTest, AChunkSentAgainWithItsKeyAppendsNothing) {
  auto b = make_batch("b", 1);
  b.sealed = false;
  ASSERT_TRUE(store_->insert_batch(b, make_items(1)).inserted);
  ASSERT_EQ(store_->append_items(append_to("b", "c1", "h1"), run_specs(3, "a")).outcome,
            AppendOutcome::kAppended);
  ASSERT_EQ(store_->append_items(append_to("b", "c2", "h2"), run_specs(2, "b")).outcome,
            AppendOutcome::kAppended);

  const AppendResult again = store_->append_items(append_to("b", "c1", "h1"), run_specs(3, "a"));
  EXPECT_EQ(again.outcome, AppendOutcome::kRepeated);
  EXPECT_EQ(again.first_index, 1);
  EXPECT_EQ(again.count, 3);
  EXPECT_EQ(again.total, 6);
  const AppendResult other = store_->append_items(append_to("b", "c1", "hX"), run_specs(4, "x"));
  EXPECT_EQ(other.outcome, AppendOutcome::kKeyReused);
  EXPECT_EQ(other.first_index, 1);
  EXPECT_EQ(store_->get_batch("b")->total, 6);
  EXPECT_EQ(store_->load_items("b", false).size(), 6u);

  // Keys are per batch: another batch may use the same one.
  auto c = make_batch("c", 0);
  c.sealed = false;
  ASSERT_TRUE(store_->insert_batch(c, {}).inserted);
  EXPECT_EQ(store_->append_items(append_to("c", "c1", "h1"), run_specs(1, "a")).outcome,
            AppendOutcome::kAppended);
}

TEST_P(StoreContractTest, AppendsAreRefusedToSealedFinalAndUnknownBatches) {
  auto b = make_batch("b", 1);
  b.sealed = false;
  ASSERT_TRUE(store_->insert_batch(b, make_items(1)).inserted);
  ASSERT_EQ(store_->append_items(append_to("b", "c1", "h1"), run_specs(1, "a")).outcome,
            AppendOutcome::kAppended);

  EXPECT_EQ(store_->append_items(append_to("nope", "c1", "h1"), run_specs(1, "a")).outcome,
            AppendOutcome::kNotFound);
  // Not allowed by the caller (the engine said no): only a repeat is answered.
  auto refused = append_to("b", "c2", "h2");
  refused.allowed = false;
  EXPECT_EQ(store_->append_items(refused, run_specs(1, "a")).outcome, AppendOutcome::kRefused);
  refused.idempotency_key = "c1";
  refused.body_hash = "h1";
  EXPECT_EQ(store_->append_items(refused, run_specs(1, "a")).outcome, AppendOutcome::kRepeated);

  EXPECT_EQ(store_->seal_batch("b"), SealResult::kSealed);
  EXPECT_EQ(store_->seal_batch("b"), SealResult::kAlreadySealed);
  EXPECT_EQ(store_->seal_batch("nope"), SealResult::kNotFound);
  EXPECT_TRUE(store_->get_batch("b")->sealed);
  EXPECT_EQ(store_->append_items(append_to("b", "c3", "h3"), run_specs(1, "a")).outcome,
            AppendOutcome::kSealed);
  // A chunk that made it before the seal is still answered as the first time.
  EXPECT_EQ(store_->append_items(append_to("b", "c1", "h1"), run_specs(1, "a")).outcome,
            AppendOutcome::kRepeated);

  auto done = make_batch("done", 1);
  done.sealed = false;
  done.state = BatchState::kCancelled;
  ASSERT_TRUE(store_->insert_batch(done, make_items(1)).inserted);
  EXPECT_EQ(store_->append_items(append_to("done", "c1", "h1"), run_specs(1, "a")).outcome,
            AppendOutcome::kFinal);
  EXPECT_EQ(store_->get_batch("b")->total, 2);
  EXPECT_EQ(store_->get_batch("done")->total, 1);
}

TEST_P(StoreContractTest, ConcurrentAppendsGetDisjointIndexesAndOneKeyAppendsOnce) {
  auto b = make_batch("b", 0);
  b.sealed = false;
  ASSERT_TRUE(store_->insert_batch(b, {}).inserted);
  constexpr int kThreads = 4;
  constexpr int kRounds = 5;
  std::vector<std::thread> threads;
  std::atomic<int> repeated{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Store* store = store_.get();
      for (int r = 0; r < kRounds; ++r) {
        // Every thread sends chunk "shared-r" once and a chunk of its own.
        const auto a = store->append_items(append_to("b", "shared-" + std::to_string(r), "h"),
                                           run_specs(3, "s"));
        if (a.outcome == AppendOutcome::kRepeated) repeated.fetch_add(1);
        store->append_items(
            append_to("b", "own-" + std::to_string(t) + "-" + std::to_string(r), "h"),
            run_specs(2, "o"));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(repeated.load(), (kThreads - 1) * kRounds);
  const int64_t expected = kRounds * 3 + kThreads * kRounds * 2;
  EXPECT_EQ(store_->get_batch("b")->total, expected);
  const auto items = store_->load_items("b", false);
  ASSERT_EQ(static_cast<int64_t>(items.size()), expected);
  for (int64_t i = 0; i < expected; ++i) EXPECT_EQ(items[static_cast<size_t>(i)].index, i);
}

}  // namespace
}  // namespace floodgate::store::testing
