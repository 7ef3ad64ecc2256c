// Deadlines for children, through the engine's public API on simulated time: a child that does
// not start or does not end in time, or is deleted in Prefect, is reported STUCK, cancelled and
// FAILED, or cancelled and launched again, as the batch's on_deadline says; and children a batch
// left running when it ended early are followed to their end.

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "engine/engine.h"
#include "engine_test_support.h"

namespace floodgate::engine {
namespace {

using namespace std::chrono_literals;
using testing::EngineHarness;
using testing::spec_for;
using json = nlohmann::json;

BatchSpec tracked(OnDeadline on_deadline, double start_s, double run_s) {
  BatchSpec s = spec_for();
  s.track = true;
  s.deadlines = {start_s, run_s, on_deadline};
  return s;
}

double deadline_count(EngineHarness& h, const std::string& reason, const std::string& action) {
  return h.metrics.child_deadlines(reason, action).Value();
}

TEST(DeadlinesTest, ReportMarksAChildThatNeverStartsStuckAndLeavesItRunning) {
  EngineHarness h;
  h.start();
  auto s = tracked(OnDeadline::kReport, 60, 0);
  s.tolerated_failure_count = 1;  // the stuck child alone does not fail the batch
  auto id = h.submit(s, 2);
  h.prefect.set_run_state("run-2", "RUNNING");
  h.advance(50s);
  EXPECT_EQ(h.count(id, "STUCK"), 0);  // not yet
  h.advance(15s);
  EXPECT_EQ(h.count(id, "STUCK"), 1);
  auto runs = h.runs(id);
  EXPECT_EQ(runs[0].state, core::ItemState::kStuck);
  EXPECT_NE(runs[0].last_error.find("start deadline (60 s) passed: run run-1 still Scheduled"),
            std::string::npos)
      << runs[0].last_error;
  EXPECT_TRUE(h.prefect.cancel_targets().empty());  // report leaves the decision to the parent
  EXPECT_EQ(deadline_count(h, "start_deadline", "report"), 1);
  EXPECT_EQ(h.state(id), "RUNNING");  // run-2 still runs
  // A started child is not held to the start deadline; the stuck one is still followed and
  // takes its final state when it ends.
  h.prefect.set_run_state("run-1", "COMPLETED");
  h.prefect.set_run_state("run-2", "COMPLETED");
  h.advance(6s);
  EXPECT_EQ(h.count(id, "COMPLETED"), 2);
  EXPECT_EQ(h.state(id), "COMPLETED");
}

TEST(DeadlinesTest, FailCancelsAChildPastItsRunDeadlineAndCountsItFailed) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked(OnDeadline::kFail, 0, 120), 1);
  h.advance(300s);  // no start deadline: it may wait as long as it likes to start
  EXPECT_EQ(h.count(id, "LAUNCHED"), 1);
  h.prefect.set_run_state("run-1", "RUNNING");
  h.advance(100s);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 1);
  h.advance(30s);
  EXPECT_EQ(h.count(id, "FAILED"), 1);
  EXPECT_EQ(h.state(id), "FAILED");
  ASSERT_EQ(h.prefect.cancel_targets(), std::vector<std::string>{"run-1"});
  EXPECT_EQ(h.prefect.runs["run-1"].state_type, "CANCELLED");
  EXPECT_NE(h.runs(id)[0].last_error.find("run deadline (120 s) passed: run run-1 still Running"),
            std::string::npos)
      << h.runs(id)[0].last_error;
  EXPECT_EQ(deadline_count(h, "run_deadline", "fail"), 1);
  EXPECT_EQ(h.prefect.creates(), 1u);  // nothing launched in its place
}

TEST(DeadlinesTest, RelaunchCancelsTheStuckChildAndLaunchesTheNextKey) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked(OnDeadline::kRelaunch, 30, 0), 1);  // relaunch_crashed 0: one relaunch
  h.prefect.set_run_state("run-1", "PENDING");                   // a worker claimed it and died
  h.advance(40s);
  ASSERT_EQ(h.prefect.runs.size(), 2u);
  EXPECT_EQ(h.prefect.runs["run-2"].idempotency_key, "floodgate:" + id + ":0:r1");
  EXPECT_EQ(h.prefect.runs["run-2"].parameters["i"], 0);
  EXPECT_EQ(h.prefect.cancel_targets(), std::vector<std::string>{"run-1"});
  auto run = h.runs(id)[0];
  EXPECT_EQ(run.flow_run_id, "run-2");
  EXPECT_EQ(run.state, core::ItemState::kLaunched);
  json detail = json::parse(run.detail_json);
  EXPECT_EQ(detail["earlier_runs"][0]["flow_run_id"], "run-1");
  EXPECT_EQ(detail["earlier_runs"][0]["state"], "START_DEADLINE");
  EXPECT_EQ(deadline_count(h, "start_deadline", "relaunch"), 1);
  // The new run starts and ends: the batch completes with one relaunch.
  h.prefect.set_run_state("run-2", "RUNNING");
  h.advance(5s);
  h.prefect.set_run_state("run-2", "COMPLETED");
  h.advance(6s);
  EXPECT_EQ(h.state(id), "COMPLETED");
}

TEST(DeadlinesTest, RelaunchPastTheBudgetFails) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked(OnDeadline::kRelaunch, 30, 0), 1);
  h.advance(40s);  // run-1 past its deadline: relaunched as run-2
  ASSERT_EQ(h.prefect.runs.size(), 2u);
  h.advance(40s);  // run-2 too, with no relaunch left
  EXPECT_EQ(h.prefect.runs.size(), 2u);
  EXPECT_EQ(h.count(id, "FAILED"), 1);
  EXPECT_NE(h.runs(id)[0].last_error.find("no relaunch left"), std::string::npos);
  EXPECT_EQ(h.prefect.cancel_targets(), (std::vector<std::string>{"run-1", "run-2"}));
  EXPECT_EQ(deadline_count(h, "start_deadline", "fail"), 1);
}

TEST(DeadlinesTest, AChildDeletedInPrefectIsHandledByTheSamePolicy) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked(OnDeadline::kRelaunch, 0, 0), 2);
  h.prefect.runs.erase("run-1");  // deleted in the UI
  h.advance(1500ms);              // one read missed it: not yet taken as deleted
  EXPECT_EQ(h.count(id, "LAUNCHED"), 2);
  h.advance(5s);
  EXPECT_EQ(deadline_count(h, "deleted", "relaunch"), 1);
  EXPECT_TRUE(h.prefect.cancel_targets().empty());  // nothing to cancel
  auto run = h.runs(id)[0];
  EXPECT_EQ(run.flow_run_id, "run-3");
  EXPECT_EQ(json::parse(run.detail_json)["earlier_runs"][0]["state"], "DELETED");
  EXPECT_EQ(run.last_error, "");  // cleared when its new run was created, as after a crash
}

TEST(DeadlinesTest, ADeletedChildUnderReportIsStuckAndNoLongerRead) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked(OnDeadline::kReport, 0, 0), 1);
  h.prefect.runs.erase("run-1");
  h.advance(5s);
  EXPECT_EQ(h.count(id, "STUCK"), 1);
  EXPECT_EQ(h.state(id), "FAILED");  // no failure tolerated
  const auto reads = h.prefect.sent("POST", "/flow_runs/filter").size();
  h.advance(60s);
  EXPECT_EQ(h.prefect.sent("POST", "/flow_runs/filter").size(), reads);
}

TEST(DeadlinesTest, ABatchThatFailedEarlyFollowsTheChildrenItLeftRunning) {
  EngineHarness h;
  h.start();
  auto s = spec_for();
  s.track = true;
  auto id = h.submit(s, 3);
  h.prefect.set_run_state("run-1", "FAILED", "boom");
  h.prefect.set_run_state("run-2", "RUNNING");
  h.advance(2s);
  EXPECT_EQ(h.state(id), "FAILED");  // tolerance 0: failed on run-1
  EXPECT_EQ(h.count(id, "LAUNCHED"), 2);
  h.prefect.set_run_state("run-2", "COMPLETED");
  h.prefect.set_run_state("run-3", "CRASHED");
  h.advance(20s);
  EXPECT_EQ(h.count(id, "COMPLETED"), 1);
  EXPECT_EQ(h.count(id, "CRASHED"), 1);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 0);
  EXPECT_EQ(h.state(id), "FAILED");
}

// After a restart the deadlines count from the run's own times in Prefect (created,
// start_time), not again from the restart: the steady clock does not survive it.
TEST(DeadlinesTest, AfterARestartTheStartDeadlineCountsFromTheRunsCreation) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked(OnDeadline::kReport, 600, 0), 2);
  h.prefect.set_run_state("run-2", "RUNNING");
  h.advance(500s);  // run-1 SCHEDULED for 500 s of its 600
  h.stop();
  h.start();
  EXPECT_EQ(h.count(id, "LAUNCHED"), 2);
  h.advance(90s);  // 590 s since run-1 was created
  EXPECT_EQ(h.count(id, "STUCK"), 0);
  h.advance(15s);  // past 600 s: not 600 s after the restart
  EXPECT_EQ(h.count(id, "STUCK"), 1);
  const auto error = h.runs(id)[0].last_error;
  EXPECT_NE(error.find("start deadline (600 s) passed: run run-1 still Scheduled 60"),
            std::string::npos)
      << error;
}

TEST(DeadlinesTest, AChildPastItsStartDeadlineWhileFloodgateWasDownMeetsItAtTheFirstRead) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked(OnDeadline::kFail, 600, 0), 1);
  h.advance(60s);
  h.stop();
  h.clock.advance(std::chrono::minutes(50));  // down for 50 minutes
  h.start();
  h.advance(2s);  // the first read
  EXPECT_EQ(h.count(id, "FAILED"), 1);
  EXPECT_EQ(h.prefect.cancel_targets(), std::vector<std::string>{"run-1"});
  EXPECT_NE(h.runs(id)[0].last_error.find("still Scheduled 306"), std::string::npos)
      << h.runs(id)[0].last_error;
}

TEST(DeadlinesTest, AfterARestartTheRunDeadlineCountsFromTheRunsStartTime) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked(OnDeadline::kFail, 0, 600), 1);
  h.advance(100s);
  h.prefect.set_run_state("run-1", "RUNNING");  // started at 100 s
  h.advance(400s);
  h.stop();
  h.start();        // the first read finds it RUNNING: started 400 s ago, not now
  h.advance(190s);  // 590 s since it started
  EXPECT_EQ(h.count(id, "LAUNCHED"), 1);
  h.advance(15s);
  EXPECT_EQ(h.count(id, "FAILED"), 1);
  EXPECT_NE(
      h.runs(id)[0].last_error.find("run deadline (600 s) passed: run run-1 still Running 60"),
      std::string::npos)
      << h.runs(id)[0].last_error;
}

TEST(DeadlinesTest, AfterARestartARunThatStartsLaterCountsFromItsStartTime) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked(OnDeadline::kFail, 600, 300), 1);
  h.advance(100s);
  h.stop();
  h.clock.advance(200s);  // it starts while floodgate is down
  h.prefect.set_run_state("run-1", "RUNNING");
  h.clock.advance(50s);
  h.start();
  h.advance(240s);  // 290 s since it started
  EXPECT_EQ(h.count(id, "LAUNCHED"), 1);
  h.advance(15s);
  EXPECT_EQ(h.count(id, "FAILED"), 1);
  EXPECT_NE(h.runs(id)[0].last_error.find("run deadline (300 s)"), std::string::npos);
}

TEST(DeadlinesTest, ARunACreateFindsByItsKeyAfterARestartCountsFromItsCreation) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.start();
  // Created at Prefect, its answer lost; the read by key that would find it still in flight
  // when the process stops.
  h.prefect.script("POST", "/create_flow_run", testing::transport_error(false), /*apply=*/true);
  h.prefect.hold_next("POST", "/flow_runs/filter");
  auto id = h.submit(tracked(OnDeadline::kReport, 600, 0), 1);
  for (int i = 0; i < 50 && h.prefect.held.empty(); ++i) h.advance(100ms);
  ASSERT_EQ(h.prefect.held.size(), 1u);
  h.advance(500s);
  h.stop();
  h.prefect.held.clear();
  h.start();  // sends the create again: Prefect answers with the run made 500 s ago
  EXPECT_EQ(h.count(id, "LAUNCHED"), 1);
  EXPECT_EQ(h.prefect.runs.size(), 1u);
  h.advance(90s);
  EXPECT_EQ(h.count(id, "STUCK"), 0);
  h.advance(15s);
  EXPECT_EQ(h.count(id, "STUCK"), 1);
}

TEST(DeadlinesTest, ChildrenThisProcessCreatedKeepItsOwnClockWhatEverPrefectsClockSays) {
  EngineHarness h;
  // Prefect's server clock runs 500 s behind: its created and start_time look 500 s old.
  h.prefect.server_skew = -std::chrono::seconds(500);
  h.start();
  auto id = h.submit(tracked(OnDeadline::kFail, 600, 600), 2);
  h.prefect.set_run_state("run-2", "RUNNING");
  h.advance(590s);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 2);  // a deadline from Prefect's times would have passed
  h.advance(20s);
  EXPECT_EQ(h.count(id, "FAILED"), 2);
}

TEST(DeadlinesTest, AfterARestartARunCreatedAheadOfThisClockCountsFromTheFirstRead) {
  EngineHarness h;
  // Prefect's server clock runs 1000 s ahead: its times are taken as now at the latest.
  h.prefect.server_skew = std::chrono::seconds(1000);
  h.start();
  auto id = h.submit(tracked(OnDeadline::kReport, 600, 0), 1);
  h.advance(100s);
  h.stop();
  h.start();
  h.advance(590s);
  EXPECT_EQ(h.count(id, "STUCK"), 0);
  h.advance(15s);
  EXPECT_EQ(h.count(id, "STUCK"), 1);
}

TEST(DeadlinesTest, TheServersDefaultsFillWhatTheBatchLeavesUnset) {
  auto o = EngineHarness::defaults();
  o.deadlines = {600.0, 0.0, OnDeadline::kFail};
  EngineHarness h(o);
  h.start();
  auto s = spec_for();
  s.track = true;
  s.deadlines.run_s = 60;
  auto id = h.submit(s, 1);
  auto spec = h.batch(id);
  EXPECT_EQ(spec["start_deadline_s"], 600.0);
  EXPECT_EQ(spec["run_deadline_s"], 60.0);
  EXPECT_EQ(spec["on_deadline"], "fail");
}

}  // namespace
}  // namespace floodgate::engine
