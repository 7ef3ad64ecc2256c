// Batch control alone: the one "is it still active" check, and what each operation changes.

#include "engine/batch_control.h"

#include <gtest/gtest.h>

#include <string>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "core/random.h"
#include "engine/deployment_resolver.h"
#include "engine_test_support.h"
#include "metrics/metrics.h"
#include "parts_test_support.h"

namespace floodgate::engine {
namespace {

using core::BatchState;
using core::ItemState;

class BatchControlTest : public ::testing::Test {
 protected:
  BatchControlTest() : store_(store::open_store("sqlite://" + dir_.file("floodgate.db"))) {
    book.add_observer(&resolver);  // a batch that ends leaves the scheduler
  }
  Batch& batch(const std::string& id) {
    BatchSpec s;
    s.deployment = "flow/dep";
    s.track = false;
    Batch& b = testing::new_batch(book, id, s, 2);
    scheduler.add_batch(b.key, quota_of(b.spec));
    return b;
  }

  testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  core::SimulatedClock clock;
  core::SimulatedWallClock wall{clock};
  core::FixedRandom random{0.5};
  metrics::Metrics metrics{"test"};
  core::LaunchScheduler scheduler{clock};
  prefect::PrefectApi api{prefect::Credentials{}, "floodgate"};
  testing::RecordingOutbox outbox;
  BatchBook book{clock, wall, metrics};
  DeploymentResolver resolver{clock, random, book, scheduler, outbox, api, metrics};
  BatchControl control{clock, book, resolver, scheduler, outbox, *store_};
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

}  // namespace
}  // namespace floodgate::engine
