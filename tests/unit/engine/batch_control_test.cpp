// Batch control alone: the one "is it still active" check, and what each operation changes.

#include "engine/batch_control.h"

#include <gtest/gtest.h>

#include <string>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "core/random.h"
#include "engine/deployment_resolver.h"
#include "engine/start_pacer.h"
#include "engine_test_support.h"
#include "metrics/metrics.h"
#include "parts_test_support.h"

namespace floodgate::engine {
namespace {

using core::BatchState;
using core::ItemState;

class BatchControlTest : public ::testing::Test {
 protected:
  BatchControlTest() {
    book.add_observer(&resolver);  // a batch that ends leaves the scheduler
  }
  Batch& batch(const std::string& id, int n = 2) {
    BatchSpec s;
    s.deployment = "flow/dep";
    s.track = false;
    Batch& b = testing::new_batch(book, id, s, n);
    scheduler.add_batch(b.key, effective_quota(b));
    return b;
  }

  core::SimulatedClock clock;
  core::SimulatedWallClock wall{clock};
  core::FixedRandom random{0.5};
  metrics::Metrics metrics{"test"};
  core::LaunchScheduler scheduler{clock};
  prefect::PrefectApi api{prefect::Credentials{}, "floodgate"};
  testing::RecordingOutbox outbox;
  BatchBook book{clock, wall, metrics};
  DeploymentResolver resolver{clock, random, book, scheduler, outbox, api, metrics};
  // No store: batch control gets what a redrive needs from the store as arguments, read off
  // its thread by the caller, so it cannot wait on the disk.
  BatchControl control{clock, book, resolver, scheduler, outbox};
};

TEST_F(BatchControlTest, AnEndedOrUnknownBatchIsRefusedAlike) {
  batch("b1");
  EXPECT_EQ(control.cancel("b1", std::nullopt).result, ControlResult::kOk);
  for (auto answer : {control.cancel("b1", std::nullopt), control.pause("b1"),
                      control.update_spec("b1", BatchSpec{})}) {
    EXPECT_EQ(answer.result, ControlResult::kConflict);
    EXPECT_EQ(answer.message, "batch is already CANCELLED");
  }
  for (auto answer :
       {control.cancel("nope", std::nullopt), control.pause("nope"), control.resume("nope"),
        control.redrive("nope"), control.update_spec("nope", BatchSpec{})}) {
    EXPECT_EQ(answer.result, ControlResult::kNotFound);
    EXPECT_EQ(answer.message, "no batch with id nope");
  }
}

TEST_F(BatchControlTest, CancelTakesTheOnCancelItIsGiven) {
  Batch& b = batch("b1");
  EXPECT_EQ(control.cancel("b1", OnCancel::kCancelChildren).result, ControlResult::kOk);
  EXPECT_EQ(b.spec.on_cancel, OnCancel::kCancelChildren);
  EXPECT_EQ(b.rec.state, BatchState::kCancelled);
  EXPECT_EQ(b.count(ItemState::kSkipped), 2);
  EXPECT_FALSE(scheduler.has_batch(b.key));
}

TEST_F(BatchControlTest, PauseAndResumeGoBothWaysOnly) {
  Batch& b = batch("b1");
  EXPECT_EQ(control.resume("b1").result, ControlResult::kConflict);
  EXPECT_EQ(control.pause("b1").result, ControlResult::kOk);
  EXPECT_EQ(b.rec.state, BatchState::kPaused);
  EXPECT_EQ(control.resume("b1").result, ControlResult::kOk);
  EXPECT_EQ(b.rec.state, BatchState::kRunning);
  EXPECT_EQ(outbox.dispatches, 1);
}

TEST_F(BatchControlTest, AnUpdateChangesTheSpecAndTheVersion) {
  Batch& b = batch("b1");
  const int64_t v = b.rec.version;
  BatchSpec next = b.spec;
  next.limits.max_in_flight = 3;
  next.priority = 2;
  EXPECT_EQ(control.update_spec("b1", next).result, ControlResult::kOk);
  EXPECT_EQ(b.spec.limits.max_in_flight, 3);
  EXPECT_EQ(b.spec.priority, 2);
  EXPECT_GT(b.rec.version, v);
}

TEST_F(BatchControlTest, RedriveRelaunchesFailedItemsFromTheSpecInMemory) {
  Batch& b = batch("b1");
  book.launch_failed(b, 0, "rejected");
  EXPECT_EQ(b.rec.state, BatchState::kFailed);  // no failure tolerated: item 1 skipped
  EXPECT_EQ(control.redrive("b1").result, ControlResult::kOk);
  EXPECT_EQ(b.rec.state, BatchState::kRunning);
  EXPECT_EQ(b.count(ItemState::kPending), 2);
  EXPECT_EQ(b.failures, 0);
  EXPECT_TRUE(scheduler.has_batch(b.key));
  EXPECT_EQ(control.redrive("b1").result, ControlResult::kConflict);  // nothing failed now
}

// Item `index` of `b` as the store holds it: its state and run, with its spec.
store::ItemRecord stored_item(const Batch& b, int64_t index, const std::string& spec_json) {
  store::ItemRecord r;
  r.index = index;
  r.state = b.items[index].state;
  r.flow_run_id = b.items[index].flow_run_id;
  r.spec_json = spec_json;
  return r;
}

// Ends item `index` as a run that existed and FAILED: its spec is no longer in memory.
void run_failed(BatchBook& book, Batch& b, int64_t index) {
  book.launched(b, index, "run-" + std::to_string(index), false);
  book.set_state(b, index, ItemState::kFailed);
  b.items[index].spec.reset();
}

TEST_F(BatchControlTest, RedriveOfItemsNotInMemoryAsksForThemThenAppliesWhatWasRead) {
  Batch& b = batch("b1");
  book.launch_failed(b, 0, "rejected");  // item 1 skipped: the batch FAILED
  std::vector<store::ItemRecord> stored = {stored_item(b, 0, R"({"parameters":{"x":0}})"),
                                           stored_item(b, 1, R"({"parameters":{"x":1}})")};
  book.evict(b, 0);  // written, then evicted
  book.evict(b, 1);
  EXPECT_TRUE(b.items.empty());
  ControlAnswer a = control.redrive("b1");
  ASSERT_EQ(a.result, ControlResult::kReadFirst);
  EXPECT_TRUE(a.needs.items);
  EXPECT_TRUE(a.needs.specs.empty());
  EXPECT_EQ(a.needs.evictions, 2u);
  EXPECT_EQ(b.rec.state, BatchState::kFailed);  // nothing changed
  EXPECT_TRUE(b.items.empty());

  RedriveReads reads;
  reads.items = stored;
  reads.evictions = a.needs.evictions;
  ASSERT_EQ(control.redrive("b1", reads).result, ControlResult::kOk);
  EXPECT_EQ(b.rec.state, BatchState::kRunning);
  ASSERT_EQ(b.items.size(), 2u);
  EXPECT_EQ(b.count(ItemState::kPending), 2);
  EXPECT_EQ(b.items[1].spec->fields["parameters"], (nlohmann::json{{"x", 1}}));
  EXPECT_EQ(outbox.dispatches, 1);
}

TEST_F(BatchControlTest, ItemsEvictedAfterTheReadAreAskedForAgain) {
  Batch& b = batch("b1");
  book.launch_failed(b, 0, "rejected");
  RedriveReads reads;
  reads.items = {stored_item(b, 0, "{}"), stored_item(b, 1, "{}")};
  book.evict(b, 0);
  reads.evictions = control.redrive("b1").needs.evictions;
  // Meanwhile item 1 was written and evicted too: the read may be older than the store now.
  book.evict(b, 1);
  ControlAnswer a = control.redrive("b1", reads);
  EXPECT_EQ(a.result, ControlResult::kReadFirst);
  EXPECT_TRUE(a.needs.items);
  EXPECT_EQ(a.needs.evictions, reads.evictions + 1);
  EXPECT_TRUE(b.items.empty());
  EXPECT_EQ(b.rec.state, BatchState::kFailed);
}

TEST_F(BatchControlTest, RedriveTakesTheSpecsOfRunsThatEndedFromTheReads) {
  Batch& b = batch("b1");
  run_failed(book, b, 0);
  book.launch_failed(b, 1, "rejected");  // keeps its spec
  ControlAnswer a = control.redrive("b1");
  ASSERT_EQ(a.result, ControlResult::kReadFirst);
  EXPECT_FALSE(a.needs.items);
  EXPECT_EQ(a.needs.specs, std::vector<int64_t>{0});
  EXPECT_EQ(b.count(ItemState::kFailed), 1);  // nothing changed

  RedriveReads reads;
  reads.specs = {{0, R"({"parameters":{"again":true}})"}};
  ASSERT_EQ(control.redrive("b1", reads).result, ControlResult::kOk);
  EXPECT_EQ(b.count(ItemState::kPending), 2);
  ASSERT_TRUE(b.items[0].spec);
  EXPECT_EQ(b.items[0].spec->fields["parameters"], (nlohmann::json{{"again", true}}));
  EXPECT_EQ(b.items[0].relaunches, 1);
  EXPECT_EQ(b.items[0].earlier_runs[0]["flow_run_id"], "run-0");
}

TEST_F(BatchControlTest, ASpecStillMissingIsAskedForAgainAndNothingIsLeftOut) {
  Batch& b = batch("b1", 3);
  b.spec.tolerated_failure_count = 3;
  run_failed(book, b, 0);
  const ControlAnswer first = control.redrive("b1");
  ASSERT_EQ(first.needs.specs, std::vector<int64_t>{0});
  RedriveReads reads;
  reads.specs = {{0, "{}"}};
  // Item 1's run ended FAILED after the read: its spec is missing too.
  run_failed(book, b, 1);
  ControlAnswer a = control.redrive("b1", reads);
  ASSERT_EQ(a.result, ControlResult::kReadFirst);
  EXPECT_EQ(a.needs.specs, (std::vector<int64_t>{0, 1}));  // nothing of a read is kept
  EXPECT_EQ(b.count(ItemState::kFailed), 2);               // not redriven without item 1
  EXPECT_FALSE(b.items[0].spec);
  EXPECT_EQ(outbox.dispatches, 0);

  reads.specs.emplace_back(1, "{}");
  ASSERT_EQ(control.redrive("b1", reads).result, ControlResult::kOk);
  EXPECT_EQ(b.count(ItemState::kFailed), 0);
  EXPECT_EQ(b.items[0].relaunches, 1);
  EXPECT_EQ(b.items[1].relaunches, 1);
}

TEST_F(BatchControlTest, ASpecTheStoreDoesNotHaveIsAConflict) {
  Batch& b = batch("b1");
  run_failed(book, b, 0);
  RedriveReads reads;
  reads.specs = {{0, ""}};
  ControlAnswer a = control.redrive("b1", reads);
  EXPECT_EQ(a.result, ControlResult::kConflict);
  EXPECT_EQ(a.message, "the store holds no run spec for item 0");
  EXPECT_EQ(b.count(ItemState::kFailed), 1);
}

}  // namespace
}  // namespace floodgate::engine
