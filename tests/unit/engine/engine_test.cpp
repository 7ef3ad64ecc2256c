// The engine through its public API, on simulated time, against a scripted fake Prefect and a
// SQLite store in a temporary folder: no sockets, no sleeps.

#include "engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine_test_support.h"

namespace floodgate::engine {
namespace {

using namespace std::chrono_literals;
using testing::answer;
using testing::EngineHarness;
using testing::FakePrefect;
using testing::paced_spec;
using testing::spec_for;
using testing::transport_error;
using json = nlohmann::json;

std::set<std::string> keys_of(const std::vector<json>& bodies) {
  std::set<std::string> keys;
  for (const auto& b : bodies) keys.insert(b["idempotency_key"].get<std::string>());
  return keys;
}

TEST(EngineTest, LaunchesABatchWithBulkCreates) {
  EngineHarness h;
  h.start();
  auto id = h.submit(spec_for(), 250);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.count(id, "LAUNCHED"), 250);
  EXPECT_EQ(h.prefect.runs.size(), 250u);
  EXPECT_EQ(h.prefect.sent("GET", "/deployments/name/flow/dep").size(), 1u);
  // 250 runs at 100 per request: three bulk creates, no single one.
  EXPECT_EQ(h.prefect.sent("POST", "/create_flow_run/bulk").size(), 3u);
  EXPECT_EQ(h.prefect.creates(), 3u);
  auto bodies = h.prefect.create_bodies();
  EXPECT_EQ(keys_of(bodies).size(), 250u);
  EXPECT_EQ(bodies[7]["idempotency_key"], "floodgate:" + id + ":7");
  EXPECT_EQ(bodies[7]["parameters"]["i"], 7);
}

TEST(EngineTest, LaunchesWithSingleCreatesWhenBulkIsOff) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.start();
  auto id = h.submit(spec_for(), 5);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.prefect.sent("POST", "/create_flow_run/bulk").size(), 0u);
  EXPECT_EQ(h.prefect.creates(), 5u);
  EXPECT_EQ(h.prefect.runs.size(), 5u);
}

TEST(EngineTest, FallsBackToSingleCreatesWithoutABulkEndpoint) {
  EngineHarness h;
  h.prefect.bulk_endpoint = false;
  h.start();
  auto id = h.submit(spec_for(), 4);
  h.advance(1s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.prefect.sent("POST", "/create_flow_run/bulk").size(), 1u);
  EXPECT_EQ(h.prefect.creates(), 5u);  // the one refused bulk request, then four single ones
  EXPECT_EQ(h.prefect.runs.size(), 4u);
  EXPECT_FALSE(h.engine->status_json()["bulk"].get<bool>());
}

TEST(EngineTest, RetriesA503WithBackOffAndTheSameKey) {
  EngineHarness h;
  h.start();
  h.prefect.script("POST", "/create_flow_run", answer(503, {{"detail", "busy"}}));
  auto id = h.submit(spec_for(), 1);
  EXPECT_EQ(h.count(id, "RETRY_WAIT"), 1);
  EXPECT_EQ(h.prefect.creates(), 1u);
  h.advance(100ms);
  EXPECT_EQ(h.prefect.creates(), 1u);  // backing off
  h.advance(5s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  auto bodies = h.prefect.create_bodies();
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(bodies[0]["idempotency_key"], bodies[1]["idempotency_key"]);
  EXPECT_EQ(h.prefect.runs.size(), 1u);
  EXPECT_EQ(h.runs(id)[0].attempts, 2);
}

TEST(EngineTest, ATimeoutAndALostAnswerCreateTheRunOnce) {
  EngineHarness h;
  h.start();
  // The first create times out before it reaches Prefect; the second reaches it but the
  // connection drops before the answer. Each is followed by a lookup of the key: the first
  // finds nothing (the create goes again), the second finds the run (it is not sent again).
  h.prefect.script("POST", "/create_flow_run", transport_error(true), /*apply=*/false);
  h.prefect.script("POST", "/create_flow_run", transport_error(false), /*apply=*/true);
  auto id = h.submit(spec_for(), 1);
  h.advance(30s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  auto bodies = h.prefect.create_bodies();
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(keys_of(bodies).size(), 1u);
  EXPECT_EQ(h.prefect.sent("POST", "/flow_runs/filter").size(), 2u);
  EXPECT_EQ(h.prefect.runs.size(), 1u);
  EXPECT_EQ(h.runs(id)[0].flow_run_id, "run-1");
}

// A bulk create that timed out after Prefect made its runs (a busy SQLite server waits for the
// write lock longer than floodgate waits for the answer): one lookup of its keys, when the
// retry is due, finds them all; no create is sent again (more writes to a locked database).
TEST(EngineTest, ATimedOutBulkIsLookedUpOnceBeforeAnyCreateGoesAgain) {
  EngineHarness h;
  h.start();
  h.prefect.script("POST", "/create_flow_run/bulk", transport_error(true), /*apply=*/true);
  auto id = h.submit(spec_for(), 50);
  EXPECT_EQ(h.prefect.runs.size(), 50u);  // made, but the answer was lost
  EXPECT_EQ(h.count(id, "RETRY_WAIT"), 50);
  EXPECT_TRUE(h.prefect.sent("POST", "/flow_runs/filter").empty());  // not before the retry
  h.advance(30s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.count(id, "LAUNCHED"), 50);
  EXPECT_EQ(h.prefect.creates(), 1u);
  const auto lookups = h.prefect.sent("POST", "/flow_runs/filter");
  ASSERT_EQ(lookups.size(), 1u);
  EXPECT_EQ(json::parse(lookups[0].body)["flow_runs"]["idempotency_key"]["any_"].size(), 50u);
  EXPECT_EQ(h.prefect.runs.size(), 50u);
}

// The same bulk timed out before it reached Prefect: the lookup finds nothing and the runs are
// created again, once, under the same keys.
TEST(EngineTest, ATimedOutBulkThatMadeNothingIsSentAgainAfterTheLookup) {
  EngineHarness h;
  h.start();
  h.prefect.script("POST", "/create_flow_run/bulk", transport_error(true), /*apply=*/false);
  auto id = h.submit(spec_for(), 50);
  h.advance(30s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.prefect.sent("POST", "/flow_runs/filter").size(), 1u);
  EXPECT_EQ(h.prefect.creates(), 2u);
  const auto bodies = h.prefect.create_bodies();
  EXPECT_EQ(bodies.size(), 100u);
  EXPECT_EQ(keys_of(bodies).size(), 50u);
  EXPECT_EQ(h.prefect.runs.size(), 50u);
  for (const auto& r : h.runs(id)) EXPECT_EQ(r.attempts, 2);
}

TEST(EngineTest, AStaleConnectionIsResentAtNoCost) {
  EngineHarness h;
  h.start();
  auto stale = transport_error(false, "Failed to write request body");
  stale.transport = prefect::TransportError::kStaleConnection;
  h.prefect.script("POST", "/create_flow_run", stale);
  auto id = h.submit(spec_for(), 1);
  h.advance(100ms);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.prefect.creates(), 2u);
  EXPECT_EQ(h.runs(id)[0].attempts, 1);  // the failed write is not an attempt
}

TEST(EngineTest, RetryAfterPausesEveryRequest) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.start();
  h.prefect.script("POST", "/create_flow_run", answer(429, {}, {{"Retry-After", "5"}}));
  auto spec = spec_for();
  spec.limits.max_in_flight = 1;
  auto id = h.submit(spec, 3);
  EXPECT_EQ(h.prefect.creates(), 1u);
  EXPECT_GT(h.engine->status_json()["paused_s"].get<double>(), 4.9);
  // A second batch, resolved already, waits too.
  auto other = h.submit(spec_for(), 2);
  h.advance(4900ms);
  EXPECT_EQ(h.prefect.creates(), 1u);
  EXPECT_EQ(h.count(other, "PENDING"), 2);
  h.advance(5s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.state(other), "COMPLETED");
}

TEST(EngineTest, TheBreakerOpensProbesAndClosesAfterHalfOpenTrials) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.start();
  h.prefect.down = true;
  auto spec = spec_for();
  spec.retry.max_attempts = 1000;
  auto id = h.submit(spec, 40);
  h.advance(2s);
  std::string why;
  EXPECT_FALSE(h.engine->ready(&why));
  EXPECT_NE(why.find("circuit breaker open"), std::string::npos);
  const size_t creates_when_open = h.prefect.creates();
  h.advance(3s);
  EXPECT_GE(h.prefect.sent("GET", "/health").size(), 1u);
  // While open, only probes go out (the probe answers 200 only once Prefect is back).
  h.prefect.down = false;
  const size_t probes = h.prefect.sent("GET", "/health").size();
  // Hold the trials to see that half-open sends one at a time.
  h.prefect.hold_all = true;
  h.advance(35s);
  EXPECT_GT(h.prefect.sent("GET", "/health").size(), probes);
  EXPECT_GT(h.prefect.creates(), creates_when_open);
  EXPECT_EQ(h.prefect.held.size(), 1u);
  EXPECT_EQ(h.engine->status_json()["breaker"], "half_open");
  h.prefect.hold_all = false;
  for (int i = 0; i < 50 && h.state(id) != "COMPLETED"; ++i) {
    h.prefect.release_all();
    h.advance(1s);
  }
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.engine->status_json()["breaker"], "closed");
  EXPECT_TRUE(h.engine->ready(&why));
  EXPECT_EQ(h.prefect.runs.size(), 40u);
}

TEST(EngineTest, PlaceholdersGoBeforeTheCreatesUnderAParent) {
  EngineHarness h;
  h.prefect.runs["parent-1"] = {"parent-1",     "", "", "", "RUNNING", "Running", "",
                                json::object(), {}, {}};
  h.start();
  auto spec = spec_for();
  spec.parent_flow_run_id = "parent-1";
  spec.track = true;
  auto id = h.submit(spec, 3);
  h.advance(100ms);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 3);
  // The parent is read first, then every child's placeholder goes before any create.
  std::vector<std::string> order;
  for (const auto& r : h.prefect.requests) {
    if (r.method == "POST") order.push_back(r.path);
  }
  ASSERT_GE(order.size(), 5u);
  EXPECT_EQ(order[0], "/flow_runs/filter");
  EXPECT_EQ(order[1], "/task_runs/");
  EXPECT_EQ(order[2], "/task_runs/");
  EXPECT_EQ(order[3], "/task_runs/");
  EXPECT_NE(order[4].find("/create_flow_run"), std::string::npos);
  EXPECT_EQ(h.prefect.task_runs, 3);
  std::set<std::string> parents;
  for (auto* run : h.prefect.runs_in_order()) {
    if (run->id != "parent-1") parents.insert(run->parent_task_run_id);
  }
  EXPECT_EQ(parents, (std::set<std::string>{"task-1", "task-2", "task-3"}));
  json placeholder = json::parse(h.prefect.sent("POST", "/task_runs/")[0].body);
  EXPECT_EQ(placeholder["flow_run_id"], "parent-1");
  EXPECT_EQ(placeholder["task_key"], "prefect.deployments.flow_runs.run_deployment.flow-dep");
  EXPECT_EQ(placeholder["dynamic_key"], "floodgate:" + id + ":0");
}

// Times at which the engine read the batch's children.
std::vector<core::TimePoint> track_reads(EngineHarness& h, const std::string& run_id,
                                         core::Duration total, core::Duration step) {
  std::vector<core::TimePoint> at;
  const auto end = h.clock.now() + total;
  size_t seen = h.prefect.sent("POST", "/flow_runs/filter").size();
  while (h.clock.now() < end) {
    h.advance(step);
    auto reads = h.prefect.sent("POST", "/flow_runs/filter");
    for (size_t i = seen; i < reads.size(); ++i) {
      if (reads[i].body.find(run_id) != std::string::npos) at.push_back(h.clock.now());
    }
    seen = reads.size();
  }
  return at;
}

TEST(EngineTest, TrackingStretchesWhileNothingEndsAndShortensWhenARunEnds) {
  EngineHarness h;
  h.start();
  auto spec = spec_for();
  spec.track = true;
  auto id = h.submit(spec, 2);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 2);
  auto at = track_reads(h, "run-1", 20s, 100ms);
  ASSERT_GE(at.size(), 5u);
  std::vector<double> gaps;
  for (size_t i = 1; i < at.size(); ++i) gaps.push_back(core::to_seconds(at[i] - at[i - 1]));
  EXPECT_LT(gaps.front(), 2.1);
  EXPECT_GT(gaps.back(), 4.0);  // stretched…
  EXPECT_LE(gaps.back(), 6.1);  // …to at most 5 s while one read covers every child
  h.prefect.set_run_state("run-1", "COMPLETED");
  auto after = track_reads(h, "run-2", 10s, 100ms);
  ASSERT_GE(after.size(), 3u);
  EXPECT_LT(core::to_seconds(after[2] - after[1]), 2.1);  // back to the fast cadence
  EXPECT_EQ(h.count(id, "COMPLETED"), 1);
  h.prefect.set_run_state("run-2", "FAILED", "boom");
  h.advance(3s);
  EXPECT_EQ(h.count(id, "FAILED"), 1);
  EXPECT_EQ(h.state(id), "FAILED");  // no failure tolerated
  EXPECT_EQ(h.runs(id)[1].last_error, "boom");
}

TEST(EngineTest, ACrashedChildIsRelaunchedWithANewKey) {
  EngineHarness h;
  h.start();
  auto spec = spec_for();
  spec.track = true;
  spec.relaunch_crashed = 1;
  auto id = h.submit(spec, 1);
  h.prefect.set_run_state("run-1", "CRASHED", "worker lost");
  h.advance(3s);
  ASSERT_EQ(h.prefect.runs.size(), 2u);
  EXPECT_EQ(h.prefect.runs["run-2"].idempotency_key, "floodgate:" + id + ":0:r1");
  EXPECT_EQ(h.prefect.runs["run-2"].parameters["i"], 0);  // the spec read back from the store
  auto run = h.runs(id)[0];
  EXPECT_EQ(run.flow_run_id, "run-2");
  json detail = json::parse(run.detail_json);
  EXPECT_EQ(detail["earlier_runs"][0]["flow_run_id"], "run-1");
  // A second crash is past relaunch_crashed: the item ends CRASHED.
  h.prefect.set_run_state("run-2", "CRASHED");
  h.advance(3s);
  EXPECT_EQ(h.count(id, "CRASHED"), 1);
  EXPECT_EQ(h.state(id), "FAILED");
}

class ParentEnds : public ::testing::TestWithParam<std::string> {};

TEST_P(ParentEnds, TheBatchIsCancelledAndOnCancelApplies) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.prefect.runs["parent-1"] = {"parent-1",     "", "", "", "RUNNING", "Running", "",
                                json::object(), {}, {}};
  h.start();
  auto spec = spec_for();
  spec.parent_flow_run_id = "parent-1";
  spec.track = true;
  spec.on_cancel = parse_on_cancel(GetParam()).value();
  spec.limits.launches_per_second = 1;
  spec.limits.burst = 1;
  auto id = h.submit(spec, 10);
  h.advance(2500ms);
  const int64_t launched = h.count(id, "LAUNCHED");
  ASSERT_GE(launched, 2);
  ASSERT_LT(launched, 10);
  h.prefect.set_run_state("parent-1", "COMPLETED");
  h.advance(3s);
  EXPECT_EQ(h.state(id), "CANCELLED");
  EXPECT_EQ(h.count(id, "SKIPPED") + h.count(id, "LAUNCHED") + h.count(id, "CANCELLED"), 10);
  EXPECT_GE(h.count(id, "SKIPPED"), 1);
  const size_t cancels = h.prefect.cancel_targets().size();
  if (GetParam() == "cancel_children") {
    EXPECT_EQ(cancels, static_cast<size_t>(launched));
    h.advance(3s);
    EXPECT_EQ(h.count(id, "CANCELLED"), launched);
  } else {
    EXPECT_EQ(cancels, 0u);
  }
  const size_t creates = h.prefect.creates();
  h.advance(10s);
  EXPECT_EQ(h.prefect.creates(), creates);  // nothing more launched under the ended parent
}

INSTANTIATE_TEST_SUITE_P(OnCancel, ParentEnds, ::testing::Values("abandon", "cancel_children"));

TEST(EngineTest, CancelSkipsWhatIsNotLaunchedAndCancelsChildren) {
  EngineHarness h;
  h.start();
  auto spec = paced_spec(1, 1);
  spec.track = true;
  auto id = h.submit(spec, 5);
  h.advance(1500ms);
  ASSERT_EQ(h.count(id, "LAUNCHED"), 2);
  auto a = h.engine->cancel(id, OnCancel::kCancelChildren);
  EXPECT_EQ(a.result, Engine::ControlResult::kOk);
  EXPECT_EQ(h.state(id), "CANCELLED");
  EXPECT_EQ(h.count(id, "SKIPPED"), 3);
  h.advance(3s);
  EXPECT_EQ(h.prefect.cancel_targets(), (std::vector<std::string>{"run-1", "run-2"}));
  EXPECT_EQ(h.prefect.sent("POST", "/flow_runs/bulk_set_state").size(), 1u);  // both at once
  EXPECT_EQ(h.count(id, "CANCELLED"), 2);
  EXPECT_EQ(h.engine->cancel(id, std::nullopt).result, Engine::ControlResult::kConflict);
  EXPECT_EQ(h.engine->cancel("nope", std::nullopt).result, Engine::ControlResult::kNotFound);
}

// A server older than 3.6.16 answers bulk_set_state with 405: the children are cancelled one
// request each, and later cancels go that way at once.
TEST(EngineTest, WithoutBulkSetStateChildrenAreCancelledOneByOne) {
  EngineHarness h;
  h.prefect.bulk_set_state = false;
  h.start();
  auto spec = spec_for();
  spec.track = true;
  auto first = h.submit(spec, 3);
  auto second = h.submit(spec, 2);
  h.advance(1s);
  ASSERT_EQ(h.count(first, "LAUNCHED") + h.count(second, "LAUNCHED"), 5);
  EXPECT_EQ(h.engine->cancel(first, OnCancel::kCancelChildren).result, Engine::ControlResult::kOk);
  h.advance(3s);
  EXPECT_EQ(h.count(first, "CANCELLED"), 3);
  EXPECT_EQ(h.engine->cancel(second, OnCancel::kCancelChildren).result, Engine::ControlResult::kOk);
  h.advance(3s);
  EXPECT_EQ(h.count(second, "CANCELLED"), 2);
  EXPECT_EQ(h.prefect.sent("POST", "/flow_runs/bulk_set_state").size(), 1u);  // found out once
  auto targets = h.prefect.cancel_targets();
  std::sort(targets.begin(), targets.end());
  // run-1..3 named twice for the first batch (the refused bulk, then one each), then run-4, 5.
  EXPECT_EQ(targets, (std::vector<std::string>{"run-1", "run-1", "run-2", "run-2", "run-3", "run-3",
                                               "run-4", "run-5"}));
}

TEST(EngineTest, PauseHoldsLaunchesAndResumeGoesOn) {
  EngineHarness h;
  h.start();
  auto spec = paced_spec(1, 1);
  auto id = h.submit(spec, 4);
  EXPECT_EQ(h.engine->pause(id).result, Engine::ControlResult::kOk);
  EXPECT_EQ(h.state(id), "PAUSED");
  const int64_t launched = h.count(id, "LAUNCHED");
  h.advance(10s);
  EXPECT_EQ(h.count(id, "LAUNCHED"), launched);
  EXPECT_EQ(h.engine->resume(id).result, Engine::ControlResult::kOk);
  EXPECT_EQ(h.engine->resume(id).result, Engine::ControlResult::kConflict);
  h.advance(5s);
  EXPECT_EQ(h.state(id), "COMPLETED");
}

TEST(EngineTest, RedriveRelaunchesFailedItems) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.prefect.reject_parameter = "bad";
  h.start();
  auto spec = spec_for();
  spec.tolerated_failure_count = 5;
  auto id = h.submit(spec, 4, [](int i) {
    return i == 2 ? json{{"parameters", {{"bad", true}}}} : json{{"parameters", {{"i", i}}}};
  });
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.count(id, "LAUNCH_FAILED"), 1);
  EXPECT_NE(h.runs(id)[2].last_error.find("schema"), std::string::npos);
  h.advance(1s);  // flushed to the store
  h.prefect.reject_parameter.clear();
  EXPECT_EQ(h.redrive(id).result, Engine::ControlResult::kOk);
  h.advance(1s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.count(id, "LAUNCHED"), 4);
  EXPECT_EQ(h.prefect.runs["run-4"].parameters["bad"], true);
  EXPECT_EQ(h.redrive(id).result, Engine::ControlResult::kConflict);
}

// A run that FAILED in Prefect no longer holds its spec: the redrive asks the caller to read it
// from the store (the API does so on its store reader) and applies it when given. A refused
// create keeps its spec in memory and is not asked for.
TEST(EngineTest, RedriveOfARunThatFailedTakesItsSpecFromTheCaller) {
  EngineHarness h;
  h.prefect.reject_parameter = "bad";
  h.start();
  auto spec = spec_for();
  spec.track = true;
  spec.tolerated_failure_count = 2;
  auto id = h.submit(spec, 3, [](int i) {
    return json{{"parameters", {{i == 2 ? "bad" : "i", i}}}};
  });
  h.prefect.set_run_state("run-1", "COMPLETED");
  h.prefect.set_run_state("run-2", "FAILED", "boom");
  h.advance(5s);
  ASSERT_EQ(h.state(id), "COMPLETED");
  ASSERT_EQ(h.count(id, "LAUNCH_FAILED"), 1);
  Engine::ControlAnswer a = h.engine->redrive(id);
  ASSERT_EQ(a.result, Engine::ControlResult::kReadFirst);
  EXPECT_EQ(h.state(id), "COMPLETED");  // nothing changed yet
  h.prefect.reject_parameter.clear();
  EXPECT_EQ(h.redrive(id).result, Engine::ControlResult::kOk);
  h.advance(1s);
  EXPECT_EQ(h.count(id, "LAUNCH_FAILED") + h.count(id, "FAILED"), 0);
  ASSERT_EQ(h.prefect.runs.size(), 4u);
  EXPECT_EQ(h.prefect.runs["run-3"].idempotency_key, "floodgate:" + id + ":1:r1");
  EXPECT_EQ(h.prefect.runs["run-3"].parameters["i"], 1);
  EXPECT_EQ(h.prefect.runs["run-4"].parameters["bad"], 2);
}

TEST(EngineTest, UpdateSpecChangesLimitsWhileRunning) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.start();
  auto spec = paced_spec(0.1, 1);
  auto id = h.submit(spec, 6);
  h.advance(1s);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 1);
  spec.limits.launches_per_second = 100;
  spec.limits.burst = 100;
  EXPECT_EQ(h.engine->update_spec(id, spec).result, Engine::ControlResult::kOk);
  h.advance(11s);  // the token the slow rate was waiting for, then the new rate
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.batch(id)["limits"]["launches_per_second"], 100);
  EXPECT_EQ(h.engine->update_spec(id, spec).result, Engine::ControlResult::kConflict);
}

TEST(EngineTest, ARestartResumesFromTheStoreWithoutDuplicates) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.start();
  auto spec = paced_spec(1, 1);
  // Two launched; the third created at Prefect but its answer lost, and its retry still in
  // flight when the process stops.
  auto id = h.submit(spec, 6);
  h.advance(1500ms);
  ASSERT_EQ(h.count(id, "LAUNCHED"), 2);
  h.prefect.script("POST", "/create_flow_run", transport_error(false), /*apply=*/true);
  h.prefect.hold_next("POST", "/create_flow_run");
  for (int i = 0; i < 50 && h.prefect.held.empty(); ++i) h.advance(100ms);
  ASSERT_EQ(h.prefect.held.size(), 1u);
  ASSERT_EQ(h.prefect.runs.size(), 3u);
  h.advance(100ms);  // the flush
  h.stop();
  h.prefect.held.clear();
  h.start();
  EXPECT_EQ(h.state(id), "RUNNING");
  h.advance(10s);
  EXPECT_EQ(h.state(id), "COMPLETED") << h.batch(id).dump();
  EXPECT_EQ(h.prefect.runs.size(), 6u);
  std::set<std::string> ids;
  for (const auto& r : h.runs(id)) ids.insert(r.flow_run_id);
  EXPECT_EQ(ids.size(), 6u);
}

TEST(EngineTest, AFinishedBatchIsServedFromTheStoreAfterARestart) {
  EngineHarness h;
  h.start();
  auto id = h.submit(spec_for(), 3);
  h.advance(1s);
  h.stop();
  h.start();
  EXPECT_FALSE(h.engine->has_batch(id));
  auto rec = h.store().get_batch(id);
  ASSERT_TRUE(rec.has_value());
  json j = Engine::stored_batch_json(*rec, h.store().count_items(id));
  EXPECT_EQ(j["state"], "COMPLETED");
  EXPECT_EQ(j["counts"]["LAUNCHED"], 3);
}

TEST(EngineTest, FailsEarlyWhenFailuresPassTheTolerance) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.prefect.reject_parameter = "bad";
  h.start();
  auto spec = spec_for();
  spec.tolerated_failure_count = 1;
  spec.limits.max_in_flight = 1;
  auto id = h.submit(spec, 10, [](int i) {
    return i < 3 ? json{{"parameters", {{"bad", i}}}} : json{{"parameters", {{"i", i}}}};
  });
  EXPECT_EQ(h.state(id), "FAILED");
  EXPECT_EQ(h.count(id, "LAUNCH_FAILED"), 2);
  EXPECT_EQ(h.count(id, "SKIPPED"), 8);
  EXPECT_EQ(h.prefect.creates(), 2u);
  EXPECT_EQ(h.batch(id)["tolerated_failures"], 1);
}

TEST(EngineTest, AnUnknownDeploymentFailsTheItemsThatUseIt) {
  EngineHarness h;
  h.start();
  auto spec = spec_for();
  spec.tolerated_failure_count = 2;
  auto id = h.submit(spec, 4, [](int i) {
    return i % 2 == 0 ? json{{"parameters", json::object()}, {"deployment", "missing/dep"}}
                      : json{{"parameters", json::object()}};
  });
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.count(id, "LAUNCH_FAILED"), 2);
  EXPECT_NE(h.runs(id)[0].last_error.find("missing/dep"), std::string::npos);
  EXPECT_EQ(h.prefect.sent("GET", "/deployments/name/").size(), 2u);
}

TEST(EngineTest, ALongPollAnswersOnChangeOrAtItsDeadline) {
  EngineHarness h;
  h.start();
  auto spec = paced_spec(1, 1);
  auto id = h.submit(spec, 3);
  json got;
  int calls = 0;
  const int64_t v = h.engine->batch_version(id);
  h.engine->wait_for_change(id, v, 30s, [&](json j) {
    got = std::move(j);
    ++calls;
  });
  EXPECT_EQ(calls, 0);
  h.advance(1100ms);
  EXPECT_EQ(calls, 1);
  EXPECT_GT(got["version"].get<int64_t>(), v);
  h.advance(5s);
  const int64_t done = h.engine->batch_version(id);
  h.engine->wait_for_change(id, done, 2s, [&](json) { ++calls; });
  h.advance(1900ms);
  EXPECT_EQ(calls, 1);
  h.advance(200ms);
  EXPECT_EQ(calls, 2);
}

// Advances simulated time a second at a time until batch `id` has ended (at most `limit`), so
// that its items are still in memory (the engine frees them 30 s after the end).
void advance_until_done(EngineHarness& h, const std::string& id, core::Duration limit) {
  const auto end = h.clock.now() + limit;
  while (h.clock.now() < end && h.state(id) != "COMPLETED" && h.state(id) != "FAILED") {
    h.advance(1s);
  }
}

TEST(EngineTest, ABulkWithLockedRunsLaunchesEveryRunOnce) {
  EngineHarness h;
  // Prefect on SQLite refuses each even run of the bulk creates twice with "database is
  // locked" (per run, in a 201 answer) before it takes it.
  std::map<int, int> refused;
  h.prefect.lock_item = [&](const json& body) {
    const int i = body["parameters"]["i"].get<int>();
    if (i % 2 != 0 || refused[i] >= 2) return false;
    refused[i] += 1;
    return true;
  };
  h.start();
  auto spec = spec_for();
  spec.retry.max_attempts = 2;  // contention is "not now": it counts against max_elapsed_s only
  auto id = h.submit(spec, 10);
  advance_until_done(h, id, 120s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.count(id, "LAUNCHED"), 10);
  EXPECT_EQ(h.prefect.runs.size(), 10u);
  EXPECT_EQ(h.prefect.sent("POST", "/create_flow_run/bulk").size(), h.prefect.creates());
  std::map<std::string, int> sends;
  for (const auto& b : h.prefect.create_bodies()) sends[b["idempotency_key"]] += 1;
  ASSERT_EQ(sends.size(), 10u);
  const auto runs = h.runs(id);
  ASSERT_EQ(runs.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(sends["floodgate:" + id + ":" + std::to_string(i)], i % 2 == 0 ? 3 : 1);
    EXPECT_EQ(runs[i].attempts, i % 2 == 0 ? 3 : 1);
    EXPECT_EQ(runs[i].transient_attempts, i % 2 == 0 ? 2 : 0);
    EXPECT_FALSE(runs[i].flow_run_id.empty());
  }
  std::set<std::string> run_ids;
  for (const auto& r : runs) run_ids.insert(r.flow_run_id);
  EXPECT_EQ(run_ids.size(), 10u);
}

// A fast Prefect whose bulk creates lose most runs to "database is locked": floodgate sends
// fewer requests a second while that lasts, though one request in flight is all a fast server
// needs for the batch's own rate (the integration test saw 100 a second fall only to 69).
TEST(EngineTest, BulkContentionSlowsTheRequestRateNotOnlyTheConcurrency) {
  EngineHarness h;
  h.start();
  auto spec = paced_spec(100, 5);
  spec.retry.max_elapsed_s = 600;
  auto id = h.submit(spec, 3000);
  auto requests_in = [&](core::Duration d) {
    const size_t before = h.prefect.creates();
    h.advance(d);
    return static_cast<double>(h.prefect.creates() - before);
  };
  h.advance(2s);
  const double clean = requests_in(5s) / 5;
  int n = 0;
  h.prefect.lock_item = [&](const json&) { return (n++ % 5) != 0; };  // 4 runs in 5
  const double contended = requests_in(20s) / 20;
  h.prefect.lock_item = nullptr;
  EXPECT_GT(clean, 15);  // grants of 1 to 5 runs at 100 runs a second
  EXPECT_LT(contended, 0.5 * clean) << "clean " << clean << " contended " << contended;
  advance_until_done(h, id, 600s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.prefect.runs.size(), 3000u);
  EXPECT_EQ(h.count(id, "LAUNCH_FAILED"), 0);
}

// Runs whose parameters carry `pad` bytes each.
json padded_run(int i, size_t pad) {
  return json{{"parameters", {{"i", i}, {"pad", std::string(pad, 'x')}}}};
}

// The bulk creates floodgate sent, by their body's size in bytes.
std::vector<size_t> bulk_sizes(const FakePrefect& prefect) {
  std::vector<size_t> out;
  for (const auto& r : prefect.sent("POST", "/create_flow_run/bulk")) out.push_back(r.body.size());
  return out;
}

TEST(EngineTest, BulksArePackedByBytesAsWellAsCount) {
  auto o = EngineHarness::defaults();
  o.max_body_bytes = 4096;
  EngineHarness h(o);
  h.prefect.max_body_bytes = 4096;
  h.start();
  auto id = h.submit(spec_for(), 20, [](int i) { return padded_run(i, 1000); });
  advance_until_done(h, id, 60s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.prefect.runs.size(), 20u);
  const auto sizes = bulk_sizes(h.prefect);
  ASSERT_GE(sizes.size(), 7u);  // at most three 1 KB bodies in 4 KiB
  for (size_t s : sizes) EXPECT_LE(s, 4096u);
  for (const auto& r : h.runs(id)) EXPECT_EQ(r.attempts, 1);
}

TEST(EngineTest, ABulkRefusedAsTooLargeIsSplitAtNoAttemptsCost) {
  EngineHarness h;  // packs up to 4 MiB, where a proxy in front of Prefect takes 4 KiB
  h.prefect.max_body_bytes = 4096;
  h.start();
  auto spec = spec_for();
  spec.retry.max_attempts = 1;
  auto id = h.submit(spec, 20, [](int i) { return padded_run(i, 1000); });
  advance_until_done(h, id, 60s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.count(id, "LAUNCH_FAILED"), 0);
  EXPECT_EQ(h.prefect.runs.size(), 20u);
  const auto sizes = bulk_sizes(h.prefect);
  ASSERT_FALSE(sizes.empty());
  EXPECT_GT(sizes.front(), 20000u);  // all 20 at first: refused
  EXPECT_LE(sizes.back(), 4096u);
  for (const auto& r : h.runs(id)) EXPECT_EQ(r.attempts, 1);
}

TEST(EngineTest, ABodyTooLargeOnItsOwnFailsOnlyItsRun) {
  EngineHarness h;
  h.prefect.max_body_bytes = 4096;
  h.start();
  auto spec = spec_for();
  spec.tolerated_failure_count = 1;
  auto id = h.submit(spec, 6, [](int i) { return padded_run(i, i == 3 ? 10000 : 100); });
  advance_until_done(h, id, 60s);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.count(id, "LAUNCHED"), 5);
  EXPECT_EQ(h.count(id, "LAUNCH_FAILED"), 1);
  const auto runs = h.runs(id);
  ASSERT_EQ(runs.size(), 6u);
  EXPECT_NE(runs[3].last_error.find("413"), std::string::npos) << runs[3].last_error;
  EXPECT_EQ(h.prefect.runs.size(), 5u);
}

// A single create whose every answer is lost (a timeout after Prefect made the run, or before
// the request reached it) until max_elapsed_s has passed.
struct UnansweredCreate {
  EngineHarness h{[] {
    auto o = EngineHarness::defaults();
    o.use_bulk = false;
    return o;
  }()};
  std::string id;

  explicit UnansweredCreate(bool reaches_prefect) {
    h.start();
    for (int n = 0; n < 100; ++n) {
      h.prefect.script("POST", "/create_flow_run", transport_error(true), reaches_prefect);
    }
    auto spec = spec_for();
    spec.retry.max_attempts = 3;  // timeouts do not count against it
    spec.retry.max_elapsed_s = 20;
    id = h.submit(spec, 1);
    advance_until_done(h, id, 60s);
  }
  std::vector<json> lookups() const {
    std::vector<json> out;
    for (const auto& r : h.prefect.sent("POST", "/flow_runs/filter")) {
      json f = json::parse(r.body)["flow_runs"];
      if (f.contains("idempotency_key")) out.push_back(f["idempotency_key"]["any_"]);
    }
    return out;
  }
};

TEST(EngineTest, ACreateWhoseAnswerIsLostIsFoundByItsKeyNotSentAgain) {
  UnansweredCreate t(/*reaches_prefect=*/true);
  auto& h = t.h;
  EXPECT_EQ(h.state(t.id), "COMPLETED");
  EXPECT_EQ(h.count(t.id, "LAUNCHED"), 1);
  EXPECT_EQ(h.count(t.id, "LAUNCH_FAILED"), 0);
  EXPECT_EQ(h.prefect.runs.size(), 1u);
  EXPECT_EQ(h.prefect.creates(), 1u);  // the lookup after the first lost answer found it
  const auto lookups = t.lookups();
  ASSERT_EQ(lookups.size(), 1u);
  EXPECT_EQ(lookups[0], json::array({"floodgate:" + t.id + ":0"}));
  const auto runs = h.runs(t.id);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].flow_run_id, "run-1");
  EXPECT_EQ(runs[0].transient_attempts, runs[0].attempts);
}

TEST(EngineTest, ACreateThatNeverArrivedFailsOnceTheLookupFindsNothing) {
  UnansweredCreate t(/*reaches_prefect=*/false);
  auto& h = t.h;
  EXPECT_EQ(h.count(t.id, "LAUNCH_FAILED"), 1);
  EXPECT_EQ(h.prefect.runs.size(), 0u);
  EXPECT_GT(h.prefect.creates(), 3u);  // more tries than max_attempts: all were timeouts
  // One lookup after each timed-out create: before it went again, and before giving up.
  EXPECT_EQ(t.lookups().size(), h.prefect.creates());
  const auto runs = h.runs(t.id);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_NE(runs[0].last_error.find("gave up after"), std::string::npos);
}

// An item that met a 503, then waited an hour behind its batch's own max_running cap, is not
// given up for max_elapsed_s when its next try meets another 503: the wait was for the batch's
// children, not for Prefect (the demo on a busy machine lost an item exactly so).
TEST(EngineTest, WaitingForTheBatchsRunningCapDoesNotUseUpMaxElapsed) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;
  EngineHarness h(o);
  h.start();
  h.prefect.script("POST", "/create_flow_run", answer(503, {{"detail", "database is locked"}}));
  auto spec = spec_for();
  spec.track = true;
  spec.limits.max_running = 2;
  spec.retry.max_elapsed_s = 20;
  auto id = h.submit(spec, 3);
  h.advance(1s);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 2);  // items 1 and 2: the cap is reached
  h.prefect.script("POST", "/create_flow_run", answer(503, {{"detail", "database is locked"}}));
  h.advance(std::chrono::hours(1));
  EXPECT_EQ(h.prefect.creates(), 3u);  // item 0 waited at the cap the whole hour
  h.prefect.set_run_state("run-1", "COMPLETED");
  advance_until_done(h, id, 60s);
  EXPECT_EQ(h.count(id, "LAUNCH_FAILED"), 0);
  EXPECT_EQ(h.prefect.creates(), 5u);  // 503 again, then created
  const auto runs = h.runs(id);
  EXPECT_EQ(runs[0].attempts, 3);
  EXPECT_FALSE(runs[0].flow_run_id.empty());
  h.prefect.set_run_state("run-2", "COMPLETED");
  h.prefect.set_run_state("run-3", "COMPLETED");
  advance_until_done(h, id, 60s);
  EXPECT_EQ(h.state(id), "COMPLETED");
}

}  // namespace
}  // namespace floodgate::engine
