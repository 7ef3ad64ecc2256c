// Chunked appends in the engine (POST /v1/batches/{id}/runs and /seal): an unsealed batch does
// not finish, appended runs are launched through the batch's limits, a seal lets it finish, and
// all of it survives a restart. Simulated time, the fake Prefect and a SQLite store.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "engine_test_support.h"

namespace floodgate::engine::testing {
namespace {

using namespace std::chrono_literals;

json run_spec(int i) { return json{{"parameters", {{"i", i}}}}; }

std::vector<std::string> run_specs(int from, int n) {
  std::vector<std::string> out;
  for (int i = from; i < from + n; ++i) out.push_back(run_spec(i).dump());
  return out;
}

/// Accepts an unsealed batch of `n` runs as the API does.
std::string submit_unsealed(EngineHarness& h, BatchSpec spec, int n,
                            const std::string& id = "open-1") {
  h.engine->apply_defaults(spec);
  store::BatchRecord rec;
  rec.id = id;
  rec.spec_json = to_json(spec).dump();
  rec.total = n;
  rec.created_at_ms = rec.updated_at_ms = h.wall.unix_ms();
  rec.version = 1;
  rec.sealed = false;
  h.store().insert_pending_batch(rec, run_specs(0, n));
  h.engine->add_batch(rec, std::move(spec));
  h.settle();
  return id;
}

/// Appends runs as the API does: into the store first, then to the engine.
store::AppendResult append(EngineHarness& h, const std::string& id, int from, int n) {
  store::AppendRequest r;
  r.batch_id = id;
  r.body_hash = "h";
  const auto specs = run_specs(from, n);
  const auto result = h.store().append_items(r, specs);
  EXPECT_EQ(result.outcome, store::AppendOutcome::kAppended);
  EXPECT_TRUE(h.engine->append_items(id, result.first_index, result.count));
  h.settle();
  return result;
}

void seal(EngineHarness& h, const std::string& id) {
  h.store().seal_batch(id);
  EXPECT_TRUE(h.engine->seal(id));
  h.settle();
}

std::multiset<int> created_parameters(const FakePrefect& prefect) {
  std::multiset<int> out;
  for (const auto& [id, run] : prefect.runs) out.insert(run.parameters["i"].get<int>());
  return out;
}

TEST(ChunkedAppendTest, AnUnsealedBatchWithEveryItemDoneKeepsRunningUntilSealed) {
  EngineHarness h;
  h.start();
  const auto id = submit_unsealed(h, spec_for(), 3);
  h.advance(5s);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 3);
  EXPECT_EQ(h.state(id), "RUNNING");
  EXPECT_FALSE(h.batch(id)["sealed"].get<bool>());

  seal(h, id);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_TRUE(h.batch(id)["sealed"].get<bool>());
  // The sealed batch is what the store holds too.
  h.advance(1s);
  h.stop();  // after its store writes are done
  EXPECT_TRUE(h.store().get_batch(id)->sealed);
  EXPECT_EQ(h.store().get_batch(id)->state, core::BatchState::kCompleted);
}

TEST(ChunkedAppendTest, AnEmptyUnsealedBatchWaitsQueuedForItsRuns) {
  EngineHarness h;
  h.start();
  const auto id = submit_unsealed(h, spec_for(), 0);
  h.advance(2s);
  EXPECT_EQ(h.state(id), "QUEUED");
  append(h, id, 0, 4);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 4);
  EXPECT_EQ(h.state(id), "RUNNING");
  seal(h, id);
  EXPECT_EQ(h.state(id), "COMPLETED");
}

TEST(ChunkedAppendTest, AppendedRunsAreLaunchedOnceEach) {
  EngineHarness h;
  h.start();
  const auto id = submit_unsealed(h, spec_for(), 2);
  const auto first = append(h, id, 2, 3);
  EXPECT_EQ(first.first_index, 2);
  const auto second = append(h, id, 5, 4);
  EXPECT_EQ(second.first_index, 5);
  EXPECT_EQ(h.batch(id)["total"], 9);
  EXPECT_EQ(h.count(id, "LAUNCHED"), 9);
  EXPECT_EQ(h.state(id), "RUNNING");
  seal(h, id);
  EXPECT_EQ(h.state(id), "COMPLETED");
  EXPECT_EQ(created_parameters(h.prefect), (std::multiset<int>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  // Each run under the key of its own index.
  std::set<std::string> keys;
  for (const auto& [rid, run] : h.prefect.runs) keys.insert(run.idempotency_key);
  EXPECT_EQ(keys.size(), 9u);
  EXPECT_EQ(keys.count("floodgate:" + id + ":8"), 1u);
}

TEST(ChunkedAppendTest, AppendedRunsGoThroughTheBatchsLimits) {
  EngineHarness h;
  h.start();
  BatchSpec spec = spec_for();
  spec.track = true;
  spec.limits.max_running = 2;
  const auto id = submit_unsealed(h, spec, 1);
  append(h, id, 1, 4);
  h.advance(1ms);
  // Two children not yet final: the other three wait, appended or not.
  EXPECT_EQ(h.prefect.runs.size(), 2u);
  EXPECT_EQ(h.count(id, "PENDING"), 3);
  for (auto* run : h.prefect.runs_in_order()) h.prefect.set_run_state(run->id, "COMPLETED");
  h.advance(3s);
  EXPECT_EQ(h.prefect.runs.size(), 4u);
  for (auto* run : h.prefect.runs_in_order()) h.prefect.set_run_state(run->id, "COMPLETED");
  h.advance(3s);
  EXPECT_EQ(h.prefect.runs.size(), 5u);
  for (auto* run : h.prefect.runs_in_order()) h.prefect.set_run_state(run->id, "COMPLETED");
  h.advance(3s);
  EXPECT_EQ(h.count(id, "COMPLETED"), 5);
  EXPECT_EQ(h.state(id), "RUNNING");  // not sealed yet
  seal(h, id);
  EXPECT_EQ(h.state(id), "COMPLETED");
}

TEST(ChunkedAppendTest, AnAppendAndASealWakeLongPolls) {
  EngineHarness h;
  h.start();
  const auto id = submit_unsealed(h, spec_for(), 1);
  h.advance(1s);
  const int64_t version = h.batch(id)["version"];
  json seen;
  h.engine->wait_for_change(id, version, std::chrono::milliseconds(60000),
                            [&](json view) { seen = std::move(view); });
  h.settle();
  EXPECT_TRUE(seen.is_null());
  store::AppendRequest r;
  r.batch_id = id;
  const auto result = h.store().append_items(r, run_specs(1, 2));
  ASSERT_TRUE(h.engine->append_items(id, result.first_index, result.count));
  ASSERT_FALSE(seen.is_null());
  EXPECT_EQ(seen["total"], 3);
  EXPECT_GT(seen["version"].get<int64_t>(), version);
  h.advance(1s);

  json sealed_view;
  h.engine->wait_for_change(id, h.batch(id)["version"].get<int64_t>(),
                            std::chrono::milliseconds(60000),
                            [&](json view) { sealed_view = std::move(view); });
  h.settle();
  EXPECT_TRUE(sealed_view.is_null());
  h.store().seal_batch(id);
  ASSERT_TRUE(h.engine->seal(id));
  ASSERT_FALSE(sealed_view.is_null());
  EXPECT_TRUE(sealed_view["sealed"].get<bool>());
}

TEST(ChunkedAppendTest, ARestartReloadsAppendedRunsAndTheSealedFlag) {
  EngineHarness h;
  h.prefect.hold_all = true;  // nothing is answered before the crash
  h.start();
  const auto id = submit_unsealed(h, spec_for(), 2);
  append(h, id, 2, 3);
  h.advance(1s);
  h.stop();

  h.prefect.hold_all = false;
  h.prefect.held.clear();  // the answers are lost with the process
  h.prefect.runs.clear();
  h.start();
  h.advance(2s);
  EXPECT_EQ(h.batch(id)["total"], 5);
  EXPECT_FALSE(h.batch(id)["sealed"].get<bool>());
  EXPECT_EQ(h.count(id, "LAUNCHED"), 5);
  EXPECT_EQ(h.state(id), "RUNNING");
  EXPECT_EQ(created_parameters(h.prefect), (std::multiset<int>{0, 1, 2, 3, 4}));
  // Appends go on after the restart where the batch ends.
  EXPECT_EQ(append(h, id, 5, 1).first_index, 5);
  seal(h, id);
  EXPECT_EQ(h.state(id), "COMPLETED");

  // A seal is stored: a batch sealed before a restart finishes after it.
  const auto other = submit_unsealed(h, spec_for(), 1, "open-2");
  h.prefect.hold_all = true;
  append(h, other, 1, 1);
  seal(h, other);
  EXPECT_EQ(h.state(other), "RUNNING");
  h.stop();
  h.prefect.hold_all = false;
  h.prefect.held.clear();
  h.start();
  h.advance(2s);
  EXPECT_TRUE(h.batch(other)["sealed"].get<bool>());
  EXPECT_EQ(h.state(other), "COMPLETED");
}

TEST(ChunkedAppendTest, APercentageToleranceWaitsForTheSealButACountDoesNot) {
  auto o = EngineHarness::defaults();
  o.use_bulk = false;  // the fake refuses the runs one by one
  EngineHarness h(o);
  h.prefect.reject_parameter = "bad";
  h.start();
  BatchSpec lenient = spec_for();
  lenient.tolerated_failure_percentage = 50;
  const auto id = submit_unsealed(h, lenient, 0);
  store::AppendRequest r;
  r.batch_id = id;
  const std::vector<std::string> bad = {R"({"parameters":{"bad":1}})",
                                        R"({"parameters":{"bad":2}})", run_spec(0).dump()};
  const auto result = h.store().append_items(r, bad);
  ASSERT_TRUE(h.engine->append_items(id, result.first_index, result.count));
  h.advance(2s);
  EXPECT_EQ(h.count(id, "LAUNCH_FAILED"), 2);
  // Two of three failed, more than half; but more runs may come.
  EXPECT_EQ(h.state(id), "RUNNING");
  append(h, id, 1, 3);
  seal(h, id);
  EXPECT_EQ(h.state(id), "COMPLETED");  // two of six

  BatchSpec strict = spec_for();
  strict.tolerated_failure_count = 1;
  const auto other = submit_unsealed(h, strict, 0, "open-2");
  const auto again = h.store().append_items(
      [&] {
        store::AppendRequest a;
        a.batch_id = other;
        return a;
      }(),
      bad);
  ASSERT_TRUE(h.engine->append_items(other, again.first_index, again.count));
  h.advance(2s);
  EXPECT_EQ(h.state(other), "FAILED");  // a count no further run can raise
}

TEST(ChunkedAppendTest, MayAppendOnlyToAnUnsealedBatchThatHasNotEnded) {
  EngineHarness h;
  h.start();
  EXPECT_EQ(h.engine->may_append("nope").result, ControlResult::kNotFound);
  const auto sealed = h.submit(spec_for(), 1);
  h.advance(1s);
  EXPECT_EQ(h.engine->may_append(sealed).result, ControlResult::kConflict);
  const auto id = submit_unsealed(h, spec_for(), 1);
  EXPECT_EQ(h.engine->may_append(id).result, ControlResult::kOk);
  h.engine->pause(id);
  EXPECT_EQ(h.engine->may_append(id).result, ControlResult::kOk);
  h.engine->resume(id);
  seal(h, id);
  const auto answer = h.engine->may_append(id);
  EXPECT_EQ(answer.result, ControlResult::kConflict);
  EXPECT_NE(answer.message.find("COMPLETED"), std::string::npos) << answer.message;
}

TEST(ChunkedAppendTest, RunsAppendedAsTheBatchEndsAreSkipped) {
  EngineHarness h;
  h.prefect.hold_all = true;
  h.start();
  const auto id = submit_unsealed(h, spec_for(), 2);
  // The API looked (may append), then the batch was cancelled before the store's append came
  // back.
  ASSERT_EQ(h.engine->may_append(id).result, ControlResult::kOk);
  store::AppendRequest r;
  r.batch_id = id;
  const auto result = h.store().append_items(r, run_specs(2, 3));
  h.engine->cancel(id, std::nullopt);
  ASSERT_TRUE(h.engine->append_items(id, result.first_index, result.count));
  h.settle();
  EXPECT_EQ(h.state(id), "CANCELLED");
  EXPECT_EQ(h.batch(id)["total"], 5);
  EXPECT_EQ(h.count(id, "SKIPPED"), 5);
  h.prefect.hold_all = false;
  h.prefect.release_all();
  h.advance(2s);
  for (const auto& [rid, run] : h.prefect.runs) EXPECT_LT(run.parameters["i"].get<int>(), 2);
  // Written as skipped: a restart does not launch them.
  h.stop();
  const auto counts = h.store().count_items(id);
  EXPECT_EQ(counts[static_cast<int>(core::ItemState::kPending)], 0);
}

}  // namespace
}  // namespace floodgate::engine::testing
