// The child tracker alone, on simulated time: which reads a round queues, the cadence after
// each answer, the parent watch, crash relaunches and cancelling children.

#include "engine/child_tracker.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "core/random.h"
#include "engine/deployment_resolver.h"
#include "engine_test_support.h"
#include "metrics/metrics.h"
#include "parts_test_support.h"

namespace floodgate::engine {
namespace {

using namespace std::chrono_literals;
using core::BatchState;
using core::ItemState;
using nlohmann::json;
using testing::answer;

json run(const std::string& id, const std::string& type, const std::string& message = "") {
  return {{"id", id},
          {"state", {{"type", type}, {"name", type.substr(0, 1) + "x"}, {"message", message}}}};
}

class ChildTrackerTest : public ::testing::Test {
 protected:
  ChildTrackerTest() {
    book.add_observer(&resolver);
    book.add_observer(&tracker);  // cancels the children of a batch that ends
  }
  // A tracked batch of `n` children, all launched.
  Batch& launched_batch(int n, BatchSpec s = spec()) {
    Batch& b = testing::new_batch(book, "b1", s, n);
    for (int i = 0; i < n; ++i) book.launched(b, i, "run-" + std::to_string(i), false);
    return b;
  }
  static BatchSpec spec() {
    BatchSpec s;
    s.deployment = "flow/dep";
    s.track = true;
    return s;
  }
  // Answers the last queued read with `runs`.
  void answer_read(const json& runs) {
    auto r = outbox.queued.back();
    tracker.on_answer(*r, answer(200, runs), prefect::classify(answer(200, runs), wall.now()));
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
  int ids = 0;
  ChildTracker tracker{clock,
                       wall,
                       random,
                       [this] { return "uuid-" + std::to_string(++ids); },
                       TrackOptions{1000ms, 15000ms},
                       book,
                       resolver,
                       outbox,
                       api,
                       metrics};
};

TEST_F(ChildTrackerTest, OneRoundQueuesOneReadPerTwoHundredChildren) {
  launched_batch(450);
  tracker.round();
  auto reads = outbox.queued_of<ReadRuns>();
  ASSERT_EQ(reads.size(), 3u);
  EXPECT_EQ(reads[0].ids.size(), 200u);
  EXPECT_EQ(reads[2].ids.size(), 50u);
  EXPECT_EQ(outbox.dispatches, 1);
  tracker.round();  // reads outstanding: nothing more
  EXPECT_EQ(outbox.queued_of<ReadRuns>().size(), 3u);
}

TEST_F(ChildTrackerTest, TheCadenceStretchesWhileNothingEndsAndShortensWhenSomethingDoes) {
  Batch& b = launched_batch(2);
  std::vector<double> intervals;
  for (int i = 0; i < 6; ++i) {
    tracker.round();
    answer_read(json::array({run("run-0", "RUNNING"), run("run-1", "RUNNING")}));
    intervals.push_back(core::to_seconds(b.track_interval));
    clock.advance(b.track_interval);
  }
  // 1 s, then half as long again each round, up to 5 s while one read covers every child.
  EXPECT_EQ(intervals, (std::vector<double>{1.5, 2.25, 3.375, 5, 5, 5}));
  tracker.round();
  answer_read(json::array({run("run-0", "COMPLETED"), run("run-1", "RUNNING")}));
  EXPECT_EQ(core::to_seconds(b.track_interval), 1.0);
  EXPECT_EQ(b.count(ItemState::kCompleted), 1);
  EXPECT_EQ(b.rec.state, BatchState::kQueued);
}

TEST_F(ChildTrackerTest, NotDueYetMeansNoRead) {
  Batch& b = launched_batch(1);
  tracker.round();
  answer_read(json::array({run("run-0", "RUNNING")}));
  clock.advance(b.track_interval - 1ms);
  tracker.round();
  EXPECT_EQ(outbox.queued_of<ReadRuns>().size(), 1u);
  clock.advance(1ms);
  tracker.round();
  EXPECT_EQ(outbox.queued_of<ReadRuns>().size(), 2u);
}

TEST_F(ChildTrackerTest, ACrashedChildIsRelaunchedFromTheSpecInMemory) {
  auto s = spec();
  s.relaunch_crashed = 1;
  Batch& b = launched_batch(1, s);
  tracker.round();
  answer_read(json::array({run("run-0", "CRASHED", "worker lost")}));
  EXPECT_EQ(b.items[0].state, ItemState::kPending);
  EXPECT_EQ(b.items[0].relaunches, 1);
  EXPECT_EQ(b.items[0].last_error, "run run-0 crashed: worker lost");
  EXPECT_EQ(idempotency_key(b, 0, b.items[0]), "floodgate:b1:0:r1");
  EXPECT_EQ(outbox.queued_of<ResolveDeployment>().size(), 1u);  // on its way to launch again
}

TEST_F(ChildTrackerTest, TheParentEndingCancelsTheBatchAndItsChildrenWhenAsked) {
  auto s = spec();
  s.parent_flow_run_id = "parent";
  s.on_cancel = OnCancel::kCancelChildren;
  Batch& b = testing::new_batch(book, "b1", s, 3);
  book.launched(b, 0, "run-0", false);
  EXPECT_FALSE(tracker.parent_seen_recently(b));
  tracker.round();
  auto reads = outbox.queued_of<ReadRuns>();
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].ids, (std::vector<std::string>{"run-0", "parent"}));
  answer_read(json::array({run("run-0", "RUNNING"), run("parent", "COMPLETED")}));
  EXPECT_EQ(b.rec.state, BatchState::kCancelled);
  EXPECT_EQ(b.count(ItemState::kSkipped), 2);
  auto cancels = outbox.queued_of<CancelChildren>();
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].flow_run_ids, (std::vector<std::string>{"run-0"}));
  EXPECT_EQ(cancels[0].transition_id, "uuid-1");
}

TEST_F(ChildTrackerTest, AParentReadFoundRunningLetsLaunchesGoForAWhile) {
  auto s = spec();
  s.parent_flow_run_id = "parent";
  Batch& b = testing::new_batch(book, "b1", s, 1);
  tracker.queue_parent_read(b);
  tracker.queue_parent_read(b);  // one at a time
  ASSERT_EQ(outbox.queued_of<ReadRuns>().size(), 1u);
  EXPECT_TRUE(b.parent_read_outstanding);
  answer_read(json::array({run("parent", "RUNNING")}));
  EXPECT_FALSE(b.parent_read_outstanding);
  EXPECT_TRUE(tracker.parent_seen_recently(b));
  clock.advance(ChildTracker::kParentRecheck);
  EXPECT_FALSE(tracker.parent_seen_recently(b));
}

}  // namespace
}  // namespace floodgate::engine
