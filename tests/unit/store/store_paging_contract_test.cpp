// What every store does for items kept out of memory (the engine's paging), checked on each
// store like store_contract_test.cpp.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "store_contract.h"
#include "store_test_support.h"

namespace floodgate::store::testing {
namespace {

using core::BatchState;
using core::ItemState;

BatchRecord batch_of(const std::string& id, int64_t total) {
  BatchRecord b;
  b.id = id;
  b.spec_json = "{}";
  b.state = BatchState::kRunning;
  b.total = total;
  b.created_at_ms = b.updated_at_ms = 1'700'000'000'000;
  b.version = 1;
  return b;
}

std::vector<std::string> specs(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(R"({"parameters":{"i":)" + std::to_string(i) + "}}");
  return out;
}

ItemUpdate update_of(const std::string& batch, int64_t index, ItemState state) {
  ItemUpdate u;
  u.batch_id = batch;
  u.index = index;
  u.state = state;
  return u;
}

TEST_P(StoreContractTest, APendingBatchIsInsertedFromItsSpecsAlone) {
  ASSERT_TRUE(store_->insert_pending_batch(batch_of("p1", 5), specs(5)).inserted);
  const auto items = store_->load_items("p1", true);
  ASSERT_EQ(items.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(items[i].index, i);
    EXPECT_EQ(items[i].state, ItemState::kPending);
    EXPECT_EQ(items[i].attempts, 0);
    EXPECT_EQ(items[i].spec_json, specs(5)[i]);
    EXPECT_TRUE(items[i].flow_run_id.empty());
  }
  // The idempotency key still decides.
  BatchRecord again = batch_of("p2", 1);
  again.idempotency_key = "k";
  ASSERT_TRUE(store_->insert_pending_batch(again, specs(1)).inserted);
  BatchRecord other = batch_of("p3", 1);
  other.idempotency_key = "k";
  const InsertResult r = store_->insert_pending_batch(other, specs(1));
  EXPECT_FALSE(r.inserted);
  EXPECT_EQ(r.batch_id, "p2");
}

TEST_P(StoreContractTest, APendingPageSkipsOtherStatesAndStopsBeforeTheBound) {
  ASSERT_TRUE(store_->insert_pending_batch(batch_of("p1", 10), specs(10)).inserted);
  store_->apply({update_of("p1", 1, ItemState::kLaunched), update_of("p1", 2, ItemState::kFailed)},
                {});
  auto page = store_->pending_page("p1", -1, 10, 3);
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0].index, 0);
  EXPECT_EQ(page[1].index, 3);
  EXPECT_EQ(page[2].index, 4);
  EXPECT_EQ(page[2].spec_json, specs(10)[4]);    // with its spec
  page = store_->pending_page("p1", 4, 7, 100);  // after 4, before 7
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].index, 5);
  EXPECT_EQ(page[1].index, 6);
  EXPECT_TRUE(store_->pending_page("p1", 9, 100, 10).empty());
  EXPECT_TRUE(store_->pending_page("nobody", -1, 100, 10).empty());
}

TEST_P(StoreContractTest, ItemsInStatesComeInIndexOrderWithTheirSpecs) {
  ASSERT_TRUE(store_->insert_pending_batch(batch_of("p1", 6), specs(6)).inserted);
  store_->apply({update_of("p1", 4, ItemState::kFailed), update_of("p1", 1, ItemState::kSkipped),
                 update_of("p1", 2, ItemState::kLaunched)},
                {});
  const auto got = store_->items_in_states("p1", {ItemState::kSkipped, ItemState::kFailed}, true);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].index, 1);
  EXPECT_EQ(got[0].state, ItemState::kSkipped);
  EXPECT_EQ(got[0].spec_json, specs(6)[1]);
  EXPECT_EQ(got[1].index, 4);
  EXPECT_EQ(got[1].state, ItemState::kFailed);
  EXPECT_TRUE(store_->items_in_states("p1", {ItemState::kLaunched}, false)[0].spec_json.empty());
}

TEST_P(StoreContractTest, ABatchUpdateSkipsThePendingItemsFromAnIndexOn) {
  ASSERT_TRUE(store_->insert_pending_batch(batch_of("p1", 6), specs(6)).inserted);
  ASSERT_TRUE(store_->insert_pending_batch(batch_of("p2", 2), specs(2)).inserted);
  store_->apply({update_of("p1", 3, ItemState::kLaunched)}, {});
  BatchUpdate u;
  u.id = "p1";
  u.state = BatchState::kCancelled;
  u.version = 2;
  u.skip_pending_from = 2;
  store_->apply({}, {u});
  const auto counts = store_->count_items("p1");
  EXPECT_EQ(counts[static_cast<int>(ItemState::kPending)], 2);  // 0 and 1
  EXPECT_EQ(counts[static_cast<int>(ItemState::kSkipped)], 3);  // 2, 4 and 5
  EXPECT_EQ(counts[static_cast<int>(ItemState::kLaunched)], 1);
  EXPECT_EQ(store_->count_items("p2")[static_cast<int>(ItemState::kPending)], 2);  // untouched
  // A batch update that names no batch skips nothing.
  u.id = "nobody";
  store_->apply({}, {u});
}

}  // namespace
}  // namespace floodgate::store::testing
