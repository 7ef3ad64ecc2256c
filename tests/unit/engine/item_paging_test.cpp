// Items stay in the store until their turn to launch comes (ItemPager), and leave memory once
// done and written (ChangeFlusher): a batch holds a page or two of items, not all of them.

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "engine_test_support.h"

namespace floodgate::engine::testing {
namespace {

using namespace std::chrono_literals;
using core::ItemState;

constexpr int kPage = 10;

EngineOptions paged_options() {
  auto o = EngineHarness::defaults();
  o.page_items = kPage;
  o.dispatch.max_in_flight = 4;
  o.use_bulk = false;
  return o;
}

BatchSpec untracked() {
  BatchSpec s = spec_for();
  s.track = false;
  return s;
}

// Runs the engine until the store writer (a thread of its own) has written what was flushed
// and the written items left memory, or about a second passed.
void until_evicted(EngineHarness& h, const std::string& id, size_t at_most) {
  for (int i = 0; i < 1000 && h.engine->held_items(id) > at_most; ++i) {
    std::this_thread::sleep_for(1ms);
    h.advance(100ms);
  }
}

TEST(ItemPagingTest, ABatchHoldsAtMostTwoPagesOfItemsWaitingToLaunch) {
  EngineHarness h(paged_options());
  h.prefect.hold_path = "/create_flow_run";  // no create is answered: nothing leaves memory
  h.start();
  const auto id = h.submit(untracked(), 200);
  for (int i = 0; i < 20; ++i) h.advance(100ms);
  // A page read while fewer than a page wait: under two pages, plus nothing else held.
  EXPECT_LT(h.engine->held_items(id), 2u * kPage);
  EXPECT_GE(h.engine->held_items(id), static_cast<size_t>(kPage));
  EXPECT_EQ(h.count(id, "PENDING") + h.count(id, "LAUNCHING"), 200);
  EXPECT_EQ(h.prefect.held.size(), 4u);  // max_in_flight
}

TEST(ItemPagingTest, EveryItemIsLaunchedOnceAndLeavesMemoryOnceWritten) {
  EngineHarness h(paged_options());
  h.start();
  auto spec = untracked();
  spec.limits.launches_per_second = 100;  // two seconds of launches, sampled every 100 ms
  spec.limits.burst = 1;
  const auto id = h.submit(spec, 200);
  size_t most = 0;
  for (int i = 0; i < 200 && h.state(id) != "COMPLETED"; ++i) {
    h.advance(100ms);
    // The store writer (a thread) keeps up, as it would in 100 ms: what it wrote leaves memory
    // at the next flush.
    for (int w = 0; w < 1000 && !h.engine->store_caught_up(); ++w) {
      std::this_thread::sleep_for(1ms);
    }
    most = std::max(most, h.engine->held_items(id));
  }
  ASSERT_EQ(h.state(id), "COMPLETED") << h.batch(id).dump();
  EXPECT_EQ(h.count(id, "LAUNCHED"), 200);
  EXPECT_EQ(h.prefect.runs.size(), 200u);
  std::set<std::string> keys;
  for (const auto& [run_id, run] : h.prefect.runs) keys.insert(run.idempotency_key);
  EXPECT_EQ(keys.size(), 200u);
  until_evicted(h, id, 0);
  EXPECT_EQ(h.engine->held_items(id), 0u);
  std::printf("[paging] most items held at once: %zu of 200 (page %d)\n", most, kPage);
  // Under two pages waiting, 4 in flight, and the launches of the last two steps (10 each)
  // written but not yet evicted.
  EXPECT_GT(most, 0u);
  EXPECT_LT(most, 2u * kPage + 4 + 20);
  // Listed from the store, all launched.
  const auto runs = h.runs(id);
  ASSERT_EQ(runs.size(), 200u);
  for (const auto& r : runs) EXPECT_EQ(r.state, ItemState::kLaunched);
}

TEST(ItemPagingTest, ABatchThatEndsSkipsItsUnpagedItemsInTheStoreToo) {
  EngineHarness h(paged_options());
  h.prefect.hold_path = "/create_flow_run";
  h.start();
  const auto id = h.submit(untracked(), 100);
  h.advance(500ms);
  ASSERT_EQ(h.prefect.held.size(), 4u);
  ASSERT_EQ(h.engine->cancel(id, std::nullopt).result, Engine::ControlResult::kOk);
  h.prefect.release_all();  // the 4 in flight are created after all
  h.advance(1s);
  EXPECT_EQ(h.state(id), "CANCELLED");
  EXPECT_EQ(h.count(id, "LAUNCHED"), 4);
  EXPECT_EQ(h.count(id, "SKIPPED"), 96);
  EXPECT_EQ(h.count(id, "PENDING"), 0);
  until_evicted(h, id, 0);
  const auto stored = h.store().count_items(id);
  EXPECT_EQ(stored[static_cast<int>(ItemState::kSkipped)], 96);
  EXPECT_EQ(stored[static_cast<int>(ItemState::kPending)], 0);
  EXPECT_EQ(stored[static_cast<int>(ItemState::kLaunched)], 4);
  // A redrive reads the skipped items back from the store and launches them.
  h.prefect.hold_path.clear();
  EXPECT_EQ(h.redrive(id).result, Engine::ControlResult::kOk);
  for (int i = 0; i < 100 && h.state(id) != "COMPLETED"; ++i) h.advance(100ms);
  EXPECT_EQ(h.state(id), "COMPLETED") << h.batch(id).dump();
  EXPECT_EQ(h.prefect.runs.size(), 100u);
}

TEST(ItemPagingTest, ARestartPagesTheRestFromTheStoreWithoutDuplicates) {
  EngineHarness h(paged_options());
  h.start();
  auto spec = untracked();
  spec.limits.launches_per_second = 20;
  spec.limits.burst = 1;
  const auto id = h.submit(spec, 100);
  h.advance(1500ms);
  const auto launched = h.count(id, "LAUNCHED");
  ASSERT_GT(launched, 10);
  ASSERT_LT(launched, 60);
  h.advance(100ms);  // the flush
  h.stop();
  h.start();
  EXPECT_EQ(h.state(id), "RUNNING");
  EXPECT_EQ(h.count(id, "LAUNCHED") + h.count(id, "PENDING"), 100);
  for (int i = 0; i < 200 && h.state(id) != "COMPLETED"; ++i) h.advance(100ms);
  EXPECT_EQ(h.state(id), "COMPLETED") << h.batch(id).dump();
  EXPECT_EQ(h.prefect.runs.size(), 100u);  // the fake answers a known key with its run
  std::set<std::string> keys;
  for (const auto& [run_id, run] : h.prefect.runs) keys.insert(run.idempotency_key);
  EXPECT_EQ(keys.size(), 100u);
  EXPECT_LT(h.engine->held_items(id), 100u);
}

TEST(ItemPagingTest, AppendedRunsArePagedInAsTheirTurnComes) {
  EngineHarness h(paged_options());
  h.prefect.hold_path = "/create_flow_run";
  h.submit_sealed = false;
  h.start();
  const auto id = h.submit(untracked(), 5);
  store::AppendRequest r;
  r.batch_id = id;
  r.body_hash = "h";
  std::vector<std::string> more(50, R"({"parameters":{"x":1}})");
  const auto appended = h.store().append_items(r, more);
  ASSERT_EQ(appended.outcome, store::AppendOutcome::kAppended);
  ASSERT_TRUE(h.engine->append_items(id, appended.first_index, appended.count));
  h.advance(500ms);
  EXPECT_EQ(h.batch(id)["total"], 55);
  EXPECT_LT(h.engine->held_items(id), 2u * kPage);
  h.prefect.hold_path.clear();
  h.prefect.release_all();
  ASSERT_TRUE(h.engine->seal(id));
  for (int i = 0; i < 100 && h.state(id) != "COMPLETED"; ++i) h.advance(100ms);
  EXPECT_EQ(h.state(id), "COMPLETED") << h.batch(id).dump();
  EXPECT_EQ(h.prefect.runs.size(), 55u);
}

}  // namespace
}  // namespace floodgate::engine::testing
