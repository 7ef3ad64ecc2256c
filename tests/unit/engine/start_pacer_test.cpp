// Crash-aware start pacing through the engine, on simulated time: children that crash soon
// after they start cut the batch's launch rate and running cap, once per burst; children seen
// starting raise them again; a batch with start_pacing off is left alone.

#include "engine/start_pacer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "engine/engine.h"
#include "engine_test_support.h"

namespace floodgate::engine {
namespace {

using namespace std::chrono_literals;
using testing::EngineHarness;
using testing::paced_spec;
using json = nlohmann::json;

// Crashes every run Prefect has that is not final yet.
void crash_all(EngineHarness& h) {
  for (auto& [id, run] : h.prefect.runs) {
    if (run.state_type == "SCHEDULED" || run.state_type == "RUNNING") {
      h.prefect.set_run_state(id, "CRASHED", "Flow run infrastructure exited with code 1.");
    }
  }
}

BatchSpec crashing_spec(bool pacing) {
  BatchSpec s = paced_spec(20, 20);
  s.track = true;
  s.relaunch_crashed = 3;
  s.tolerated_failure_percentage = 100;
  s.start_pacing = pacing;
  s.limits.max_backlog = 0;  // the fake's runs wait SCHEDULED until crashed: no backlog gating
  return s;
}

TEST(StartPacerTest, EarlyCrashesCutTheLaunchRateOnceABurst) {
  EngineHarness h;
  h.start();
  auto id = h.submit(crashing_spec(true), 400);
  h.advance(3s);
  const size_t before = h.prefect.creates();
  ASSERT_GE(h.prefect.order.size(), 50u);  // about 20 a second
  EXPECT_TRUE(h.batch(id)["start_pace"].is_null());
  crash_all(h);
  h.advance(6s);  // the next read sees the crashes (reads stretch to 5 s)
  json pace = h.batch(id)["start_pace"];
  ASSERT_FALSE(pace.is_null());
  EXPECT_EQ(pace["cuts"], 1);  // one burst, one cut
  EXPECT_GE(pace["early_crashes"].get<int>(), 50);
  const double rate = pace["launches_per_second"];
  EXPECT_LE(rate, 10.0);  // half the 20/s it launched at, at most
  EXPECT_GE(rate, StartPacer::kMinRate);
  EXPECT_EQ(h.metrics.start_pace_cuts().Value(), 1);
  // Launches (relaunches included) now follow the cut rate.
  const size_t runs_then = h.prefect.order.size();
  h.advance(10s);
  const double launched_per_s = static_cast<double>(h.prefect.order.size() - runs_then) / 10.0;
  EXPECT_LE(launched_per_s, rate + 1.5) << "rate " << rate;
  EXPECT_GT(h.prefect.creates(), before);
}

// Submits `n` runs launching at 20/s, lets them launch for 3 s, crashes them all and lets the
// next read see it.
std::string launch_and_crash(EngineHarness& h, bool pacing, int n) {
  h.start();
  auto id = h.submit(crashing_spec(pacing), n);
  h.advance(3s);
  crash_all(h);
  h.advance(6s);
  return id;
}

TEST(StartPacerTest, ChildrenSeenStartingRaiseThePaceAgain) {
  EngineHarness h;
  auto id = launch_and_crash(h, true, 400);
  const double cut = h.batch(id)["start_pace"]["launches_per_second"];
  // The relaunched and new children start cleanly.
  for (int round = 0; round < 4; ++round) {
    for (auto& [rid, run] : h.prefect.runs) {
      if (run.state_type == "SCHEDULED") h.prefect.set_run_state(rid, "RUNNING");
    }
    h.advance(2s);
  }
  json pace = h.batch(id)["start_pace"];
  EXPECT_EQ(pace["cuts"], 1);
  EXPECT_GT(pace["launches_per_second"].get<double>(), cut + 1.0);
}

TEST(StartPacerTest, LateCrashesAndPacingOffLeaveThePaceAlone) {
  {
    EngineHarness h;
    auto id = launch_and_crash(h, false, 100);
    EXPECT_TRUE(h.batch(id)["start_pace"].is_null());
  }
  {
    EngineHarness h;
    h.start();
    auto id = h.submit(crashing_spec(true), 40);
    h.advance(3s);
    for (auto& [rid, run] : h.prefect.runs) h.prefect.set_run_state(rid, "RUNNING");
    h.advance(70s);  // running well past kEarlyCrash
    crash_all(h);
    h.advance(2s);
    EXPECT_TRUE(h.batch(id)["start_pace"].is_null());
  }
}

TEST(StartPacerTest, AnItemWaitingForItsRelaunchWhenTheBatchFailsEndsAsItsRunDid) {
  EngineHarness h;
  h.start();
  BatchSpec s = crashing_spec(false);
  s.tolerated_failure_percentage = 0;
  s.relaunch_crashed = 1;
  s.limits.launches_per_second = 0.2;  // three at once, then the relaunches wait their turn
  s.limits.burst = 3;
  auto id = h.submit(s, 3);
  h.advance(3s);
  ASSERT_EQ(h.prefect.order.size(), 3u);
  crash_all(h);   // all three crash: each waits for its relaunch
  h.advance(6s);  // one relaunch crashes too: the batch fails
  crash_all(h);
  h.advance(6s);
  EXPECT_EQ(h.state(id), "FAILED");
  ASSERT_LT(h.prefect.order.size(), 6u);  // some relaunch never happened
  // Nothing is SKIPPED: every item's run exists and crashed.
  EXPECT_EQ(h.count(id, "SKIPPED"), 0);
  EXPECT_GE(h.count(id, "CRASHED"), 2);                            // the one past its budget
  EXPECT_EQ(h.count(id, "CRASHED") + h.count(id, "LAUNCHED"), 3);  // and one still relaunched
}

}  // namespace
}  // namespace floodgate::engine
