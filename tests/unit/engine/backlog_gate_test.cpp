// Backlog gating and the batch's progress through the engine, on simulated time: launches wait
// while the batch's children created and not yet started reach max_backlog (fixed, or derived
// from the rate at which workers start them), and the batch says what it waits on.

#include "engine/backlog_gate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine_test_support.h"

namespace floodgate::engine {
namespace {

using namespace std::chrono_literals;
using testing::EngineHarness;
using testing::spec_for;
using json = nlohmann::json;

BatchSpec tracked_spec(std::optional<int> max_backlog) {
  BatchSpec s = spec_for();
  s.track = true;
  s.limits.max_backlog = max_backlog;
  return s;
}

// Runs Prefect holds without starting them.
int64_t waiting_runs(EngineHarness& h) {
  int64_t n = 0;
  for (auto& [id, run] : h.prefect.runs) n += run.state_type == "SCHEDULED" ? 1 : 0;
  return n;
}

// A worker that starts at most `n` waiting runs, oldest first.
void start_runs(EngineHarness& h, int n) {
  for (auto* run : h.prefect.runs_in_order()) {
    if (n == 0) break;
    if (run->state_type != "SCHEDULED") continue;
    h.prefect.set_run_state(run->id, "RUNNING");
    --n;
  }
}

bool waits_on(const json& batch, const std::string& reason) {
  const auto& w = batch["progress"]["waiting_on"];
  return std::find(w.begin(), w.end(), reason) != w.end();
}

TEST(BacklogGateTest, AFixedLimitHoldsLaunchesUntilChildrenStart) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked_spec(20), 100);
  h.advance(3s);
  EXPECT_EQ(h.prefect.order.size(), 20u);  // no worker: the backlog fills and holds
  json b = h.batch(id);
  EXPECT_EQ(b["progress"]["backlog"], 20);
  EXPECT_EQ(b["progress"]["max_backlog"], 20);
  EXPECT_TRUE(waits_on(b, "backlog")) << b["progress"].dump();
  // A worker starts 5: the next read makes room for 5 more, not more.
  start_runs(h, 5);
  h.advance(3s);
  EXPECT_EQ(h.prefect.order.size(), 25u);
  EXPECT_EQ(waiting_runs(h), 20);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 25);
  EXPECT_EQ(h.count(id, "PENDING"), 75);
}

TEST(BacklogGateTest, CreatesFollowTheWorkersStartRateAndTheBatchCompletes) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked_spec(std::nullopt), 1200);  // derived limit
  int64_t peak = 0;
  int64_t peak_limit = 0;
  for (int s = 0; s < 400 && h.state(id) != "COMPLETED"; ++s) {
    start_runs(h, 10);  // workers start 10 runs a second
    for (auto* run : h.prefect.runs_in_order()) {
      if (run->state_type == "RUNNING") h.prefect.set_run_state(run->id, "COMPLETED");
    }
    h.advance(1s);
    peak = std::max(peak, waiting_runs(h));
    const json p = h.batch(id)["progress"];
    if (!p.is_null() && p["max_backlog"].is_number()) {
      peak_limit = std::max<int64_t>(peak_limit, p["max_backlog"]);
    }
  }
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(h.prefect.order.size(), 1200u);  // each child once
  // The derived limit: about 30 s of 10 starts a second (plus two read intervals), never all.
  EXPECT_GE(peak_limit, 300);
  EXPECT_LE(peak_limit, 400);
  EXPECT_LE(peak, peak_limit);
  EXPECT_LT(peak, 500);
}

TEST(BacklogGateTest, AWorkerThatPollsEvery15sGetsMoreEachPoll) {
  // A worker that polls every 15 s and can start 100 runs a poll: the derived limit must grow
  // from its minimum to what the worker takes, not settle at what the last poll found.
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked_spec(std::nullopt), 3000);
  std::vector<int64_t> taken;
  for (int poll = 0; poll < 8; ++poll) {
    h.advance(15s);
    const int64_t before = waiting_runs(h);
    start_runs(h, 100);
    taken.push_back(before - waiting_runs(h));
    for (auto* run : h.prefect.runs_in_order()) {
      if (run->state_type == "RUNNING") h.prefect.set_run_state(run->id, "COMPLETED");
    }
  }
  EXPECT_EQ(taken.front(), BacklogGate::kMinBacklog);
  EXPECT_EQ(taken.back(), 100) << ::testing::PrintToString(taken);  // the worker's capacity
  EXPECT_NE(h.state(id), "FAILED");
}

TEST(BacklogGateTest, ZeroOrAnUntrackedBatchIsNotGated) {
  EngineHarness h;
  h.start();
  auto off = h.submit(tracked_spec(0), 60);
  BatchSpec untracked = tracked_spec(std::nullopt);
  untracked.track = false;
  auto blind = h.submit(untracked, 60);
  h.advance(3s);
  EXPECT_EQ(h.count(off, "LAUNCHED"), 60);
  EXPECT_EQ(h.count(blind, "LAUNCHED"), 60);
  EXPECT_TRUE(h.batch(off)["progress"]["max_backlog"].is_null());
}

TEST(BacklogGateTest, TheServersDefaultIsFixedIntoABatchThatSetsNone) {
  EngineOptions o = EngineHarness::defaults();
  o.max_backlog = 15;
  EngineHarness h(o);
  h.start();
  auto server_default = h.submit(tracked_spec(std::nullopt), 60);
  auto own = h.submit(tracked_spec(0), 60);
  h.advance(3s);
  EXPECT_EQ(h.batch(server_default)["limits"]["max_backlog"], 15);
  EXPECT_EQ(h.count(server_default, "LAUNCHED"), 15);
  EXPECT_EQ(h.count(own, "LAUNCHED"), 60);  // the batch's own 0 wins
}

TEST(BacklogGateTest, ADerivedLimitStartsSmallWhileNoChildStarts) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked_spec(std::nullopt), 200);
  h.advance(5s);
  EXPECT_EQ(h.prefect.order.size(), static_cast<size_t>(BacklogGate::kMinBacklog));
  EXPECT_EQ(h.batch(id)["progress"]["max_backlog"], BacklogGate::kMinBacklog);
}

TEST(BatchProgressTest, SaysWhatTheBatchWaitsOnAndItsEta) {
  EngineHarness h;
  h.start();
  BatchSpec capped = tracked_spec(0);
  capped.limits.max_running = 5;
  auto id = h.submit(capped, 200);
  h.advance(2s);
  json b = h.batch(id);
  EXPECT_TRUE(waits_on(b, "running_cap")) << b["progress"].dump();
  EXPECT_TRUE(b["progress"]["eta_s"].is_null());  // nothing finished yet
  // Children finish: a completion rate and an ETA appear.
  for (int s = 0; s < 10; ++s) {
    for (auto* run : h.prefect.runs_in_order()) {
      if (run->state_type == "SCHEDULED") h.prefect.set_run_state(run->id, "COMPLETED");
    }
    h.advance(1s);
  }
  b = h.batch(id);
  ASSERT_FALSE(b["progress"].is_null());
  EXPECT_GT(b["progress"]["completion_rate"].get<double>(), 0);
  EXPECT_TRUE(b["progress"]["eta_s"].is_number()) << b["progress"].dump();
  EXPECT_GT(b["progress"]["launch_rate"].get<double>(), 0);
  // Paused: that alone.
  ASSERT_EQ(h.engine->pause(id).result, ControlResult::kOk);
  h.advance(2s);
  EXPECT_EQ(h.batch(id)["progress"]["waiting_on"], json::array({"paused"}));
  EXPECT_NE(h.metrics.serialize().find("floodgate_batch_waiting{batch_id=\"" + id +
                                       "\",reason=\"paused\"} 1"),
            std::string::npos);
}

TEST(BatchProgressTest, ABatchWithEverythingLaunchedWaitsOnItsChildren) {
  EngineHarness h;
  h.start();
  auto id = h.submit(tracked_spec(0), 5);
  h.advance(2s);
  ASSERT_EQ(h.count(id, "LAUNCHED"), 5);
  EXPECT_EQ(h.batch(id)["progress"]["waiting_on"], json::array({"children"}));
  const std::string text = h.metrics.serialize();
  EXPECT_NE(text.find("floodgate_batches_waiting{reason=\"children\"} 1"), std::string::npos);
  EXPECT_NE(text.find("floodgate_batches_waiting{reason=\"backlog\"} 0"), std::string::npos);
}

}  // namespace
}  // namespace floodgate::engine
