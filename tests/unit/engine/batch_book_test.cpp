// The batch book alone: state changes, what its observers are told and in which order, the
// tolerance and the end of a batch.

#include "engine/batch_book.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/clock.h"
#include "metrics/metrics.h"
#include "parts_test_support.h"

namespace floodgate::engine {
namespace {

using core::BatchState;
using core::ItemState;
using testing::new_batch;

// Writes down every notification as one line.
class Recorder final : public BatchObserver {
 public:
  void on_batch_held(Batch& b) override { log.push_back("held " + b.rec.id); }
  void on_item_state(Batch&, int64_t index, ItemState from, ItemState to) override {
    log.push_back("item " + std::to_string(index) + " " + std::string(core::to_string(from)) +
                  "->" + std::string(core::to_string(to)));
  }
  void on_item_changed(Batch&, int64_t index) override {
    log.push_back("changed " + std::to_string(index));
  }
  void on_batch_changed(Batch& b) override {
    log.push_back("batch v" + std::to_string(b.rec.version));
  }
  void on_batch_state(Batch&, BatchState from, BatchState to) override {
    log.push_back("batch " + std::string(core::to_string(from)) + "->" +
                  std::string(core::to_string(to)));
  }
  void on_batch_ending(Batch&, const std::vector<int64_t>& in_doubt) override {
    log.push_back("ending in_doubt=" + std::to_string(in_doubt.size()));
  }
  void on_batch_finished(Batch& b) override {
    log.push_back("finished " + std::string(core::to_string(b.rec.state)));
  }
  std::vector<std::string> log;
};

class BatchBookTest : public ::testing::Test {
 protected:
  BatchBookTest() { book.add_observer(&recorder); }
  BatchSpec spec() {
    BatchSpec s;
    s.deployment = "flow/dep";
    s.track = false;
    return s;
  }
  core::SimulatedClock clock;
  core::SimulatedWallClock wall{clock};
  metrics::Metrics metrics{"test"};
  BatchBook book{clock, wall, metrics};
  Recorder recorder;
};

TEST_F(BatchBookTest, AStateChangeUpdatesCountsAndTellsObserversInOrder) {
  Batch& b = new_batch(book, "b1", spec(), 2);
  EXPECT_EQ(b.count(ItemState::kPending), 2);
  recorder.log.clear();
  book.set_state(b, 0, ItemState::kLaunching);
  // LAUNCHING is not written: no item change for the store, but the version moves on.
  EXPECT_EQ(recorder.log, (std::vector<std::string>{"item 0 PENDING->LAUNCHING", "batch v2"}));
  recorder.log.clear();
  book.set_state(b, 0, ItemState::kRetryWait);
  EXPECT_EQ(recorder.log,
            (std::vector<std::string>{"item 0 LAUNCHING->RETRY_WAIT", "changed 0", "batch v3"}));
  EXPECT_EQ(b.count(ItemState::kPending), 1);
  EXPECT_EQ(b.count(ItemState::kRetryWait), 1);
  recorder.log.clear();
  book.set_state(b, 0, ItemState::kRetryWait);  // no change, no news
  EXPECT_TRUE(recorder.log.empty());
}

TEST_F(BatchBookTest, FailuresBeyondTheToleranceEndTheBatchAndSkipTheRest) {
  auto s = spec();
  s.tolerated_failure_count = 1;
  Batch& b = new_batch(book, "b1", s, 4);
  book.launch_failed(b, 0, "rejected");
  EXPECT_EQ(b.rec.state, BatchState::kQueued);
  EXPECT_EQ(b.failures, 1);
  // Item 3's create may have made its run: it is left for a lookup, not skipped.
  b.items[3].in_doubt = true;
  recorder.log.clear();
  book.launch_failed(b, 1, "rejected\n[SQL: INSERT ...]");
  EXPECT_EQ(b.rec.state, BatchState::kFailed);
  EXPECT_EQ(b.count(ItemState::kLaunchFailed), 2);
  EXPECT_EQ(b.count(ItemState::kSkipped), 1);
  EXPECT_EQ(b.count(ItemState::kPending), 1);
  EXPECT_EQ(b.items[1].last_error, "rejected");  // the first line only
  EXPECT_NE(std::find(recorder.log.begin(), recorder.log.end(), "ending in_doubt=1"),
            recorder.log.end());
  EXPECT_EQ(recorder.log.back(), "finished FAILED");
  // Lookups are asked for before the final state is set, as the state is then told.
  auto ending = std::find(recorder.log.begin(), recorder.log.end(), "ending in_doubt=1");
  auto state = std::find(recorder.log.begin(), recorder.log.end(), "batch QUEUED->FAILED");
  EXPECT_LT(ending, state);
}

TEST_F(BatchBookTest, APercentageToleranceLetsTheBatchComplete) {
  auto s = spec();
  s.tolerated_failure_percentage = 50;
  Batch& b = new_batch(book, "b1", s, 4);
  book.launch_failed(b, 0, "no");
  book.launch_failed(b, 1, "no");
  book.launched(b, 2, "run-2", false);
  EXPECT_EQ(b.rec.state, BatchState::kQueued);
  book.launched(b, 3, "run-3", true);
  EXPECT_EQ(b.rec.state, BatchState::kCompleted);
  EXPECT_GT(b.rec.finished_at_ms, 0);
}

TEST_F(BatchBookTest, ALaunchedRunKeepsItsSpecOnlyWhileACrashCouldRelaunchIt) {
  auto s = spec();
  s.track = true;
  s.relaunch_crashed = 1;
  Batch& b = new_batch(book, "b1", s, 2);
  book.launched(b, 0, "run-1", false);
  EXPECT_NE(b.items[0].spec, nullptr);
  b.items[1].relaunches = 1;
  book.launched(b, 1, "run-2", false);
  EXPECT_EQ(b.items[1].spec, nullptr);
  EXPECT_EQ(b.rec.state, BatchState::kQueued);  // tracked: launched is not done
}

TEST_F(BatchBookTest, RunSpecsAreParsedOnceWithTheirOwnDeploymentAndKey) {
  Batch& b = book.add(testing::record_of("b1", 3), spec());
  book.load_items(
      b, {R"({"parameters": {"x": 1}})", R"({"deployment": "flow/other", "parameters": {}})",
          R"({"idempotency_key": "mine", "deployment": "flow/dep"})"});
  ASSERT_EQ(b.deployments.size(), 2u);
  EXPECT_EQ(b.items[0].deployment, 0);
  EXPECT_EQ(b.items[1].deployment, 1);
  EXPECT_EQ(b.items[2].deployment, 0);
  EXPECT_EQ(b.items[0].spec->fields["parameters"]["x"], 1);
  EXPECT_FALSE(b.items[1].spec->fields.contains("deployment"));
  EXPECT_EQ(idempotency_key(b, 0, b.items[0]), "floodgate:b1:0");
  EXPECT_EQ(idempotency_key(b, 2, b.items[2]), "mine");
  b.items[0].relaunches = 2;
  EXPECT_EQ(idempotency_key(b, 0, b.items[0]), "floodgate:b1:0:r2");
}

}  // namespace
}  // namespace floodgate::engine
